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
	"time"

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
					g     upstream.Group[any]
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

// shareCallTime is how long the upstream takes in the share scenarios.
const shareCallTime = 5 * time.Second

// shareArrival is one caller in a share scenario. Times are fake (inside a
// synctest bubble), from the scenario's start.
type shareArrival struct {
	at       time.Duration // when it calls share, after the caller before it has joined
	deadline time.Duration // its context's deadline, from the start; 0: none
	leaveAt  time.Duration // when its context is cancelled; 0: never
	// wantCall is the upstream call (1, 2, ...) whose result it gets; 0
	// for none: it gets wantErr.
	wantCall int
	wantErr  error
	wantAt   time.Duration // when share returns
}

func (a shareArrival) timing() arrival { return arrival{a.at, a.deadline, a.leaveAt, a.wantAt} }

// arrival is when one caller of a scenario run by arriveInTurn comes,
// leaves, and is answered. Times are fake (inside a synctest bubble), from
// the scenario's start.
type arrival struct {
	at       time.Duration // when it calls, after the caller before it has joined
	deadline time.Duration // its context's deadline, from the start; 0: none
	leaveAt  time.Duration // when its context is cancelled; 0: never
	wantAt   time.Duration // when its call returns
}

// arriveInTurn runs call for each caller in turn, inside a synctest bubble:
// at its time from start, with a context that has its deadline and is
// cancelled at its leaveAt, the next one only once it has joined or
// started the work (synctest.Wait). It reports a call that returns at
// another time than its wantAt, and returns once every call has.
func arriveInTurn[A interface{ timing() arrival }](t *testing.T, start time.Time, callers []A, call func(ctx context.Context, i int, c A)) {
	t.Helper()
	var wg sync.WaitGroup
	for i, c := range callers {
		a := c.timing()
		time.Sleep(a.at - time.Since(start))
		ctx, cancel := context.WithCancel(t.Context())
		if a.deadline > 0 {
			cancel()
			ctx, cancel = context.WithDeadline(t.Context(), start.Add(a.deadline))
		}
		if a.leaveAt > 0 {
			time.AfterFunc(a.leaveAt-a.at, cancel)
		}
		wg.Go(func() {
			defer cancel()
			call(ctx, i, c)
			if at := time.Since(start); at != a.wantAt {
				t.Errorf("caller %d: returned at %v, want %v", i, at, a.wantAt)
			}
		})
		synctest.Wait() // it has joined or started the work
	}
	wg.Wait()
}

// share coalesces callers for as long as anyone waits: one waiter leaving
// does not un-coalesce the call for later arrivals, as it did when share
// forgot the key whenever any waiter left.
func TestShareWaiters(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name      string
		arrivals  []shareArrival
		wantCalls int32
	}{
		{
			name: "a short-deadline waiter leaving early leaves one upstream call",
			arrivals: []shareArrival{
				{at: 0, wantCall: 1, wantAt: 5 * s},                                        // B starts the call
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s}, // A
				{at: 2 * s, wantCall: 1, wantAt: 5 * s},                                    // C joins the same call
			},
			wantCalls: 1,
		},
		{
			name: "the caller that started the call leaving early leaves one upstream call",
			arrivals: []shareArrival{
				{at: 0, leaveAt: 1 * s, wantErr: context.Canceled, wantAt: 1 * s},
				{at: 0, wantCall: 1, wantAt: 5 * s},
				{at: 2 * s, deadline: 10 * s, wantCall: 1, wantAt: 5 * s},
			},
			wantCalls: 1,
		},
		{
			name: "once every waiter has left the next arrival starts a new call",
			arrivals: []shareArrival{
				{at: 0, leaveAt: 1 * s, wantErr: context.Canceled, wantAt: 1 * s},
				{at: 0, deadline: 2 * s, wantErr: context.DeadlineExceeded, wantAt: 2 * s},
				{at: 3 * s, wantCall: 2, wantAt: 8 * s},
			},
			wantCalls: 2,
		},
		{
			name: "a lone waiter that left",
			arrivals: []shareArrival{
				{at: 0, leaveAt: 1 * s, wantErr: context.Canceled, wantAt: 1 * s},
				{at: 2 * s, wantCall: 2, wantAt: 7 * s},
			},
			wantCalls: 2,
		},
		{
			// The call keeps A's deadline; B had more time, so it tries
			// once more on its own when the call runs out of it.
			name: "a waiter with more time than the shared call tries once more",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
				{at: 0, wantCall: 2, wantAt: 6 * s},
			},
			wantCalls: 2,
		},
		{
			// One impatient caller must not turn one call for many into
			// one each: those with more time retry together, until the
			// latest deadline among them (C's).
			name: "the waiters with more time than the shared call try once more together",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
				{at: 0, deadline: 3 * s, wantErr: context.DeadlineExceeded, wantAt: 3 * s},
				{at: 0, deadline: 10 * s, wantCall: 2, wantAt: 6 * s},
				{at: 0, deadline: 8 * s, wantCall: 2, wantAt: 6 * s},
			},
			wantCalls: 2,
		},
		{
			name: "and so do waiters without a deadline",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
				{at: 0, wantCall: 2, wantAt: 6 * s},
				{at: 0, deadline: 20 * s, wantCall: 2, wantAt: 6 * s},
				{at: 0, wantCall: 2, wantAt: 6 * s},
			},
			wantCalls: 2,
		},
		{
			// The retry is bounded too: sharedCallTimeout when a waiter
			// had no deadline, the latest deadline otherwise.
			name: "a retry runs out of time at most once",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
				{at: 0, deadline: 2 * s, wantErr: context.DeadlineExceeded, wantAt: 2 * s},
				{at: 0, deadline: 4 * s, wantErr: context.DeadlineExceeded, wantAt: 4 * s},
			},
			wantCalls: 2,
		},
		{
			name: "a waiter with as much time as the shared call does not retry",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
			},
			wantCalls: 1,
		},
		{
			name: "a lone caller whose call ran out of time does not retry",
			arrivals: []shareArrival{
				{at: 0, deadline: 1 * s, wantErr: context.DeadlineExceeded, wantAt: 1 * s},
			},
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					g     upstream.Group[any]
					calls atomic.Int32
				)
				fn := func(ctx context.Context) (int, error) {
					n := calls.Add(1)
					select {
					case <-time.After(shareCallTime):
						return int(n), nil
					case <-ctx.Done():
						return 0, fmt.Errorf("upstream call %d: %w", n, ctx.Err())
					}
				}
				arriveInTurn(t, time.Now(), tt.arrivals, func(ctx context.Context, i int, a shareArrival) {
					v, err := share(ctx, &g, "k", fn)
					if a.wantCall == 0 {
						if !errors.Is(err, a.wantErr) {
							t.Errorf("caller %d: share = %d, %v; want %v", i, v, err, a.wantErr)
						}
						return
					}
					if err != nil || v != a.wantCall {
						t.Errorf("caller %d: share = %d, %v; want the result of call %d", i, v, err, a.wantCall)
					}
				})
				if got := calls.Load(); got != tt.wantCalls {
					t.Errorf("%d upstream calls, want %d", got, tt.wantCalls)
				}
			})
		})
	}
}

type shareTraceKey struct{}

// A shared call keeps the first caller's values and runs on while anyone
// waits for it, bounded by that caller's deadline, or by sharedCallTimeout
// when it had none; it is cancelled when its last waiter leaves, and not
// before (it ran on to its deadline when everybody had left).
func TestShareAbandonedCallCancelled(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name      string
		deadline  time.Duration   // the first caller's; 0: none
		leaves    []time.Duration // when each waiter leaves, the first caller first; 0: it waits on
		wantEnd   time.Duration
		wantCause error
	}{
		{"the first caller leaves, no deadline", 0, []time.Duration{1 * s}, 1 * s, upstream.ErrCallAbandoned},
		{"the first caller leaves, a deadline", 10 * s, []time.Duration{1 * s}, 1 * s, upstream.ErrCallAbandoned},
		{"the last of two waiters leaves", 0, []time.Duration{1 * s, 2 * s}, 2 * s, upstream.ErrCallAbandoned},
		{"the last of two waiters leaves, a deadline", 10 * s, []time.Duration{1 * s, 3 * s}, 3 * s, upstream.ErrCallAbandoned},
		{"the first of two waiters leaves last", 10 * s, []time.Duration{3 * s, 1 * s}, 3 * s, upstream.ErrCallAbandoned},
		{"a waiter waits on, no deadline", 0, []time.Duration{1 * s, 0}, sharedCallTimeout, context.DeadlineExceeded},
		{"a waiter waits on, a deadline", 10 * s, []time.Duration{1 * s, 0}, 10 * s, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g upstream.Group[any]
				type end struct {
					at    time.Duration
					cause error
					trace any
				}
				ended := make(chan end, 2) // a waiter that waits on retries once
				start := time.Now()
				fn := func(ctx context.Context) (int, error) {
					<-ctx.Done() // a stuck upstream
					ended <- end{time.Since(start), context.Cause(ctx), ctx.Value(shareTraceKey{})}
					return 0, ctx.Err()
				}
				var wg sync.WaitGroup
				for i, leave := range tt.leaves {
					ctx := context.WithValue(t.Context(), shareTraceKey{}, "joiner")
					if i == 0 {
						ctx = context.WithValue(t.Context(), shareTraceKey{}, "first")
						if tt.deadline > 0 {
							var cancel context.CancelFunc
							ctx, cancel = context.WithTimeout(ctx, tt.deadline)
							defer cancel()
						}
					}
					ctx, cancel := context.WithCancel(ctx)
					want := context.DeadlineExceeded
					if leave > 0 {
						time.AfterFunc(leave, cancel)
						want = context.Canceled
					}
					wg.Go(func() {
						defer cancel()
						if _, err := share(ctx, &g, "k", fn); !errors.Is(err, want) {
							t.Errorf("waiter %d: err = %v, want %v", i, err, want)
						}
					})
					synctest.Wait()
				}
				got := <-ended
				if got.at != tt.wantEnd || got.cause != tt.wantCause || got.trace != "first" {
					t.Errorf("the call ended at %v with cause %v, trace %v; want %v at %v, trace first", got.at, got.cause, got.trace, tt.wantCause, tt.wantEnd)
				}
				wg.Wait()
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

// gatedLists is an Upstream whose ListSecrets blocks on gate and counts
// its calls, and whose DeleteSecret returns at once.
type gatedLists struct {
	Upstream
	gate  chan struct{}
	calls atomic.Int32
}

func (u *gatedLists) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	u.calls.Add(1)
	<-u.gate
	return upstream.SecretList{}, nil
}

func (u *gatedLists) DeleteSecret(context.Context, upstream.Scope, string) error { return nil }

// A caller always sees its own writes: a list that began after a write to
// its scope ended never joins one that began before (which may have read
// the scope before the write), while lists of the same generation still
// share one request, and a write elsewhere changes nothing.
func TestSharedReadsFollowWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := &gatedLists{gate: make(chan struct{})}
		r := &sharedReads{Upstream: u}
		repo := upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r"}
		other := upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "other"}
		page := upstream.Page{Page: 1, PerPage: 100}
		var wg sync.WaitGroup
		list := func() {
			wg.Go(func() {
				if _, err := r.ListSecrets(t.Context(), repo, page); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait()
		}
		list()
		list() // joins the first
		if got := u.calls.Load(); got != 1 {
			t.Fatalf("two lists at once made %d requests, want 1", got)
		}
		if err := r.DeleteSecret(t.Context(), other, "X"); err != nil {
			t.Fatal(err)
		}
		list() // a write elsewhere: still joins
		if got := u.calls.Load(); got != 1 {
			t.Fatalf("after a write to another scope: %d requests, want 1", got)
		}
		if err := r.DeleteSecret(t.Context(), repo, "X"); err != nil {
			t.Fatal(err)
		}
		list() // began after the write ended: a request of its own
		list() // joins that one
		if got := u.calls.Load(); got != 2 {
			t.Fatalf("after a write to the scope: %d requests, want 2", got)
		}
		close(u.gate)
		wg.Wait()
	})
}
