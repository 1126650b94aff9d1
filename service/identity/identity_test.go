package identity

import (
	"context"
	"testing"
)

// otherKey is another package's context key.
type otherKey struct{}

func TestCallerContext(t *testing.T) {
	tests := []struct {
		name   string
		ctx    context.Context
		want   string
		wantOK bool
	}{
		{name: "none", ctx: context.Background()},
		{name: "token caller", ctx: WithCaller(context.Background(), "token:deployer"), want: "token:deployer", wantOK: true},
		{name: "jwt caller", ctx: WithCaller(context.Background(), "jwt:system:serviceaccount:ci:deployer"), want: "jwt:system:serviceaccount:ci:deployer", wantOK: true},
		{name: "empty caller", ctx: WithCaller(context.Background(), "")},
		{name: "innermost wins", ctx: WithCaller(WithCaller(context.Background(), "token:a"), "x509:b"), want: "x509:b", wantOK: true},
		{name: "unrelated string value", ctx: context.WithValue(context.Background(), otherKey{}, "token:a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := CallerFrom(tt.ctx)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("CallerFrom = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
