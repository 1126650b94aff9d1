package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

const interceptorSecret = "plaintext-in-a-panic-9f8e7d"

func TestRecoverUnary(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	req := &secretbrokerv1.PutSecretRequest{
		Name:    "orgs/acme/actions/secrets/X",
		Payload: &secretbrokerv1.PutSecretRequest_Value{Value: interceptorSecret},
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/secretbroker.v1.SecretService/PutSecret"}

	tests := []struct {
		name      string
		panicWith func(req any)
		wantLog   string
	}{
		{"string built from the request", func(req any) {
			panic("bad value " + req.(*secretbrokerv1.PutSecretRequest).GetValue())
		}, `"panic":"string"`},
		{"error built from the request", func(req any) {
			panic(errors.New(req.(*secretbrokerv1.PutSecretRequest).GetValue()))
		}, `"panic":"*errors.errorString"`},
		{"runtime error", func(req any) {
			v := req.(*secretbrokerv1.PutSecretRequest).GetValue()
			_ = v[len(v)] // index out of range
		}, "index out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			resp, err := recoverUnary(logger)(context.Background(), req, info, func(_ context.Context, req any) (any, error) {
				tt.panicWith(req)
				return "unreachable", nil
			})
			if resp != nil {
				t.Errorf("resp = %v, want nil", resp)
			}
			if st, _ := status.FromError(err); st.Code() != codes.Internal || st.Message() != "internal error" {
				t.Errorf("err = %v, want Internal \"internal error\"", err)
			}
			out := logs.String()
			if strings.Contains(out, interceptorSecret) || strings.Contains(err.Error(), interceptorSecret) {
				t.Errorf("the request's value leaked: log %s err %v", out, err)
			}
			for _, w := range []string{"panic in gRPC handler", "PutSecret", tt.wantLog, `"stack"`} {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q: %s", w, out)
				}
			}
		})
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestRecoverStream(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	err := recoverStream(logger)(nil, fakeStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: "/x.Y/Z"},
		func(any, grpc.ServerStream) error { panic(interceptorSecret) })
	if status.Code(err) != codes.Internal || strings.Contains(logs.String(), interceptorSecret) {
		t.Errorf("err %v, log %s", err, logs.String())
	}
}

func TestLogUnary(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	req := &secretbrokerv1.PutSecretRequest{Payload: &secretbrokerv1.PutSecretRequest_Value{Value: interceptorSecret}}
	resp := &secretbrokerv1.PutSecretResponse{Name: interceptorSecret}

	_, _ = logUnary(logger)(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/secretbroker.v1.SecretService/PutSecret"},
		func(context.Context, any) (any, error) { return resp, nil })
	_, _ = logUnary(logger)(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/secretbroker.v1.SecretService/GetSecret"},
		func(context.Context, any) (any, error) {
			return nil, status.Error(codes.Unavailable, "GitHub is unavailable")
		})
	_, _ = logUnary(logger)(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"},
		func(context.Context, any) (any, error) { return nil, nil })

	out := logs.String()
	if strings.Contains(out, interceptorSecret) {
		t.Errorf("log holds a message's content: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines (health checks at debug level), got %d: %s", len(lines), out)
	}
	for i, w := range [][]string{
		{`"level":"INFO"`, `"method":"/secretbroker.v1.SecretService/PutSecret"`, `"code":"OK"`, `"duration_ms"`},
		{`"level":"WARN"`, `"method":"/secretbroker.v1.SecretService/GetSecret"`, `"code":"Unavailable"`},
	} {
		for _, s := range w {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d lacks %s: %s", i, s, lines[i])
			}
		}
	}
}
