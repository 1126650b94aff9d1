package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// A shared call whose fn panics hands every waiter the same error, which
// names the panic's type but not its value and maps to Internal; the key
// is free again for the next caller. Without the recovery, singleflight
// re-panics in a fresh goroutine and the test binary dies.
func TestSharePanicReachesEveryWaiter(t *testing.T) {
	tests := []struct {
		name     string
		value    any
		wantType string
	}{
		{"string", "built from " + plantedSecret, "string"},
		{"error wrapping a deadline", fmt.Errorf("%s: %w", plantedSecret, context.DeadlineExceeded), "*fmt.wrapError"},
		{"nil", nil, "*runtime.PanicNilError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					g     singleflight.Group
					gate  = make(chan struct{})
					calls atomic.Int32
				)
				fn := func(context.Context) (int, error) {
					calls.Add(1)
					<-gate
					panic(tt.value)
				}
				const waiters = 10
				errs := make([]error, waiters)
				var wg sync.WaitGroup
				for i := range waiters {
					wg.Go(func() {
						_, errs[i] = share(t.Context(), &g, "k", fn)
					})
				}
				synctest.Wait() // every waiter has joined the one call
				close(gate)
				wg.Wait()
				if got := calls.Load(); got != 1 {
					t.Fatalf("fn ran %d times, want 1 shared call", got)
				}
				for i, err := range errs {
					var pe *sharedPanicError
					if !errors.As(err, &pe) {
						t.Fatalf("waiter %d: err = %v, want a recovered panic", i, err)
					}
					if want := "panic in shared GitHub call: " + tt.wantType; err.Error() != want {
						t.Fatalf("waiter %d: err = %q, want %q", i, err, want)
					}
					if strings.Contains(err.Error(), plantedSecret) || errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("waiter %d: the panic value leaked into the error: %v", i, err)
					}
					if st := classify(err); st.Code() != codes.Internal || st.Message() != "internal error" {
						t.Fatalf("waiter %d: classify = %v %q, want Internal \"internal error\"", i, st.Code(), st.Message())
					}
				}
				// The key is forgotten: the next caller runs fn afresh.
				v, err := share(t.Context(), &g, "k", func(context.Context) (int, error) { return 7, nil })
				if err != nil || v != 7 {
					t.Fatalf("share after a panic = %d, %v; want a fresh call", v, err)
				}
			})
		})
	}
}

// panickyReads is an Upstream whose reads panic, with a value built from
// the request.
type panickyReads struct{ Upstream }

func (panickyReads) GetSecret(_ context.Context, s upstream.Scope, name string) (upstream.Secret, error) {
	panic("reading " + s.Path() + "/" + name + " " + plantedSecret)
}

// Through the service: a panic in a coalesced read is an Internal error
// for the caller, and the message is the fixed one.
func TestServiceSharedReadPanicIsInternal(t *testing.T) {
	logs := &syncBuffer{}
	srv := New(panickyReads{}, Options{Logger: newTestLogger(logs)})
	for range 2 {
		_, err := srv.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: "orgs/octo-org/actions/secrets/PLANTED"})
		wantCode(t, err, codes.Internal)
		if msg := status.Convert(err).Message(); msg != "internal error" {
			t.Fatalf("message = %q, want \"internal error\"", msg)
		}
	}
	if strings.Contains(logs.String(), plantedSecret) {
		t.Fatalf("the panic value reached the logs:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "panic in shared GitHub call: string") {
		t.Fatalf("the failure was not logged at the service boundary:\n%s", logs)
	}
}
