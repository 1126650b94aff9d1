package coalesce

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// groupCallTime is how long a call takes in the Group scenarios.
const groupCallTime = 5 * time.Second

// groupArrival is one caller in a Group scenario. Times are fake (inside a
// synctest bubble), from the scenario's start.
type groupArrival struct {
	at      time.Duration // when it calls Do, after the caller before it has joined
	leaveAt time.Duration // when it stops waiting (its context is cancelled); 0: never
	// wantCall is the call (1, 2, ...) whose result it gets; 0 for none:
	// it left first and gets context.Canceled.
	wantCall   int32
	wantShared bool
	wantAt     time.Duration // when Do returns
}

// A Group coalesces callers for as long as anyone waits, later arrivals
// included, and cancels a call's context when, and only when, its last
// waiter leaves.

func TestGroupWaiters(t *testing.T) {
	tests := []struct {
		name      string
		arrivals  []groupArrival
		wantCalls int32
		// wantCancelled is when each call's context was cancelled, call 1
		// first; 0 for a call that finished uncancelled.
		wantCancelled []time.Duration
	}{
		{
			name: "a waiter leaving early does not un-coalesce the call",
			arrivals: []groupArrival{
				{at: 0, wantCall: 1, wantShared: true, wantAt: 5 * time.Second},
				{at: 0, leaveAt: time.Second, wantAt: time.Second},
				{at: 2 * time.Second, wantCall: 1, wantShared: true, wantAt: 5 * time.Second},
			},
			wantCalls: 1, wantCancelled: []time.Duration{0},
		},
		{
			name: "nor does the caller that started it",
			arrivals: []groupArrival{
				{at: 0, leaveAt: time.Second, wantAt: time.Second},
				{at: 0, wantCall: 1, wantShared: true, wantAt: 5 * time.Second},
				{at: 2 * time.Second, wantCall: 1, wantShared: true, wantAt: 5 * time.Second},
			},
			wantCalls: 1, wantCancelled: []time.Duration{0},
		},
		{
			// net's ForgetUnshared would not forget here, nor cancel: two
			// callers joined. The Group counts who is still waiting.
			name: "once every waiter has left the call is cancelled and the next caller starts a new one",
			arrivals: []groupArrival{
				{at: 0, leaveAt: time.Second, wantAt: time.Second},
				{at: 0, leaveAt: 2 * time.Second, wantAt: 2 * time.Second},
				{at: 3 * time.Second, wantCall: 2, wantAt: 8 * time.Second},
			},
			wantCalls: 2, wantCancelled: []time.Duration{2 * time.Second, 0},
		},
		{
			name: "a lone caller that left",
			arrivals: []groupArrival{
				{at: 0, leaveAt: time.Second, wantAt: time.Second},
				{at: 2 * time.Second, wantCall: 2, wantAt: 7 * time.Second},
			},
			wantCalls: 2, wantCancelled: []time.Duration{time.Second, 0},
		},
		{
			// The starter leaves at 3 s, after a later caller joined: the
			// call is cancelled when that one leaves too, at 4 s.
			name: "a caller arriving later joins the call and keeps it running",
			arrivals: []groupArrival{
				{at: 0, leaveAt: 3 * time.Second, wantAt: 3 * time.Second},
				{at: 2 * time.Second, leaveAt: 4 * time.Second, wantAt: 4 * time.Second},
				{at: 4*time.Second + time.Millisecond, wantCall: 2, wantAt: 9*time.Second + time.Millisecond},
			},
			wantCalls: 2, wantCancelled: []time.Duration{4 * time.Second, 0},
		},
		{
			name: "a caller after the call finished starts a new one",
			arrivals: []groupArrival{
				{at: 0, wantCall: 1, wantAt: 5 * time.Second},
				{at: 6 * time.Second, wantCall: 2, wantAt: 11 * time.Second},
			},
			wantCalls: 2, wantCancelled: []time.Duration{0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runGroupScenario(t, groupScenario{arrivals: tt.arrivals, wantCalls: tt.wantCalls, wantCancelled: tt.wantCancelled})
		})
	}
}

// A call's result names the latest deadline of the callers that waited
// for it, those that stopped waiting too, or none when one had none.
func TestGroupLatestDeadline(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name      string
		deadlines []time.Duration // each caller's, from the start; 0: none
		leaver    int             // this caller stops waiting at 1 s; -1: none
		want      time.Duration   // 0: no deadline
	}{
		{"one caller", []time.Duration{10 * s}, -1, 10 * s},
		{"the latest of several", []time.Duration{10 * s, 30 * s, 20 * s}, -1, 30 * s},
		{"a caller that left counts", []time.Duration{10 * s, 30 * s}, 1, 30 * s},
		{"a caller without a deadline", []time.Duration{10 * s, 0, 20 * s}, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var g Group[int]
				start := time.Now()
				fn := func(context.Context) (int, error) {
					time.Sleep(groupCallTime)
					return 1, nil
				}
				var wg sync.WaitGroup
				for i, d := range tt.deadlines {
					ctx, cancel := context.WithCancel(t.Context())
					if d > 0 {
						ctx, cancel = context.WithDeadline(t.Context(), start.Add(d))
					}
					if i == tt.leaver {
						time.AfterFunc(time.Second, cancel)
					}
					wg.Go(func() {
						defer cancel()
						res, err := g.Do(ctx, "k", fn)
						if i == tt.leaver {
							return
						}
						want := time.Time{}
						if tt.want > 0 {
							want = start.Add(tt.want)
						}
						if err != nil || !res.Latest.Equal(want) || res.Call != 1 {
							t.Errorf("caller %d: Do = %+v, %v; want call 1 with Latest %v", i, res, err, want)
						}
					})
					synctest.Wait()
				}
				wg.Wait()
			})
		})
	}
}

type traceKey struct{}

// fn's context carries the first caller's values, but neither its
// deadline nor its cancellation: the call outlives the caller.
func TestGroupCallContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g Group[string]
		firstLeft := make(chan struct{})
		type seen struct {
			trace       any
			hasDeadline bool
			errAfter    error // ctx.Err() once the first caller has left
		}
		seenCh := make(chan seen, 1)
		fn := func(ctx context.Context) (string, error) {
			_, ok := ctx.Deadline()
			<-firstLeft
			seenCh <- seen{trace: ctx.Value(traceKey{}), hasDeadline: ok, errAfter: ctx.Err()}
			return "v", nil
		}
		firstErr := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), traceKey{}, "first"), time.Second)
			defer cancel()
			_, err := g.Do(ctx, "k", fn)
			firstErr <- err
		}()
		synctest.Wait()
		second := make(chan GroupResult[string], 1)
		go func() {
			res, _ := g.Do(context.WithValue(t.Context(), traceKey{}, "second"), "k", fn)
			second <- res
		}()
		if err := <-firstErr; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("first caller: err = %v, want context.DeadlineExceeded", err)
		}
		close(firstLeft)
		got := <-seenCh
		if got.trace != "first" || got.hasDeadline || got.errAfter != nil {
			t.Errorf("fn's context: trace %v, deadline %v, err after the first caller left %v; want the first caller's trace, no deadline, no error", got.trace, got.hasDeadline, got.errAfter)
		}
		if res := <-second; res.Val != "v" || res.Err != nil || !res.Shared {
			t.Errorf("second caller: %+v, want the shared result", res)
		}
	})
}

// Do's error is its caller's context's; fn's error is the result's.
func TestGroupErrors(t *testing.T) {
	errFn := errors.New("fn failed")
	synctest.Test(t, func(t *testing.T) {
		var g Group[int]
		res, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 0, errFn })
		if err != nil || res.Err != errFn {
			t.Errorf("a failing fn: Do = %+v, %v; want its error in the result", res, err)
		}
		gate := make(chan struct{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		res, err = g.Do(ctx, "k", func(context.Context) (int, error) { <-gate; return 1, nil })
		if err != context.Canceled || res != (GroupResult[int]{}) {
			t.Errorf("a cancelled caller: Do = %+v, %v; want context.Canceled and no result", res, err)
		}
		close(gate)
	})
}

// A panic in fn becomes a *PanicError for every waiter, naming the panic
// value's type only, and frees the key; so does runtime.Goexit.
func TestGroupPanic(t *testing.T) {
	const planted = "PLANTED-secret-Zebra-4711"
	tests := []struct {
		name    string
		fn      func()
		wantErr string
	}{
		{"string", func() { panic("built from " + planted) }, "upstream: panic in a shared call: string"},
		{"error", func() { panic(fmt.Errorf("%s: %w", planted, context.DeadlineExceeded)) }, "upstream: panic in a shared call: *fmt.wrapError"},
		{"nil", func() { panic(nil) }, "upstream: panic in a shared call: *runtime.PanicNilError"},
		{"Goexit", runtime.Goexit, errGoexit.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					g     Group[int]
					gate  = make(chan struct{})
					calls atomic.Int32
				)
				fn := func(context.Context) (int, error) {
					calls.Add(1)
					<-gate
					tt.fn()
					return 1, nil
				}
				const waiters = 5
				errs := make([]error, waiters)
				var wg sync.WaitGroup
				for i := range waiters {
					wg.Go(func() {
						res, err := g.Do(t.Context(), "k", fn)
						if err != nil {
							t.Errorf("waiter %d: Do error %v", i, err)
						}
						errs[i] = res.Err
					})
				}
				synctest.Wait()
				close(gate)
				wg.Wait()
				if n := calls.Load(); n != 1 {
					t.Fatalf("fn ran %d times, want 1", n)
				}
				for i, err := range errs {
					if err == nil || err.Error() != tt.wantErr {
						t.Fatalf("waiter %d: err = %v, want %q", i, err, tt.wantErr)
					}
					if strings.Contains(err.Error(), planted) || errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("waiter %d: the panic value leaked into the error: %v", i, err)
					}
				}
				res, err := g.Do(t.Context(), "k", func(context.Context) (int, error) { return 7, nil })
				if err != nil || res.Val != 7 || res.Err != nil {
					t.Fatalf("Do after the failed call = %+v, %v; want a fresh call", res, err)
				}
			})
		})
	}
}

// hold is one Hold a call makes: at, after the call started, and
// released at release (0: never), twice, since a second release must do
// nothing.
type hold struct{ at, release time.Duration }

// A call that holds itself is neither forgotten nor cancelled when its
// last waiter leaves: a later caller joins it. Once released with nobody
// waiting, it is cancelled at once; a Hold after the last waiter left
// holds nothing.
func TestGroupHold(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name     string
		holds    []hold // each call's
		arrivals []groupArrival
		// wantHeld is what each of call 1's Holds reported.
		wantHeld      []bool
		wantCalls     int32
		wantCancelled []time.Duration
	}{
		{
			name:  "a held call outlives its last waiter, and a later caller joins it",
			holds: []hold{{at: 1 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 2 * s, wantAt: 2 * s},
				{at: 3 * s, wantCall: 1, wantShared: true, wantAt: 5 * s},
			},
			wantHeld: []bool{true}, wantCalls: 1, wantCancelled: []time.Duration{0},
		},
		{
			name:  "a caller that joins a held call and leaves does not cancel it",
			holds: []hold{{at: 1 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 2 * s, wantAt: 2 * s},
				{at: 3 * s, leaveAt: 4 * s, wantAt: 4 * s},
				{at: 4*s + 500*time.Millisecond, wantCall: 1, wantShared: true, wantAt: 5 * s},
			},
			wantHeld: []bool{true}, wantCalls: 1, wantCancelled: []time.Duration{0},
		},
		{
			name:  "a call abandoned before it holds is cancelled, and its Hold holds nothing",
			holds: []hold{{at: 2 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 1 * s, wantAt: 1 * s},
				{at: 3 * s, wantCall: 2, wantAt: 8 * s},
			},
			wantHeld: []bool{false}, wantCalls: 2, wantCancelled: []time.Duration{1 * s, 0},
		},
		{
			name:  "released after the last waiter left, it is cancelled at the release",
			holds: []hold{{at: 1 * s, release: 3 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 2 * s, wantAt: 2 * s},
				{at: 4 * s, wantCall: 2, wantAt: 9 * s},
			},
			wantHeld: []bool{true}, wantCalls: 2, wantCancelled: []time.Duration{3 * s, 0},
		},
		{
			name:  "released while a caller waits, it is cancelled when that caller leaves",
			holds: []hold{{at: 1 * s, release: 2 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 3 * s, wantAt: 3 * s},
			},
			wantHeld: []bool{true}, wantCalls: 1, wantCancelled: []time.Duration{3 * s},
		},
		{
			name:  "a second Hold keeps the call when the first is released twice",
			holds: []hold{{at: 1 * s, release: 2 * s}, {at: 1 * s}},
			arrivals: []groupArrival{
				{at: 0, leaveAt: 3 * s, wantAt: 3 * s},
				{at: 4 * s, wantCall: 1, wantShared: true, wantAt: 5 * s},
			},
			wantHeld: []bool{true, true}, wantCalls: 1, wantCancelled: []time.Duration{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runGroupScenario(t, groupScenario{holds: tt.holds, arrivals: tt.arrivals,
				wantHeld: tt.wantHeld, wantCalls: tt.wantCalls, wantCancelled: tt.wantCancelled})
		})
	}
}

// groupScenario is callers arriving at one Group's key, each call
// (groupCallTime long unless cancelled) holding itself as holds say.
type groupScenario struct {
	holds    []hold // each call's
	arrivals []groupArrival
	// wantHeld is what each of call 1's Holds reported.
	wantHeld  []bool
	wantCalls int32
	// wantCancelled is when each call's context was cancelled, call 1
	// first; 0 for a call that finished uncancelled.
	wantCancelled []time.Duration
}

// runGroupScenario runs sc in a synctest bubble: each caller in turn at
// its time, once the one before it has joined or started a call.
func runGroupScenario(t *testing.T, sc groupScenario) {
	synctest.Test(t, func(t *testing.T) {
		var (
			g         Group[int32]
			calls     atomic.Int32
			mu        sync.Mutex
			cancelled = map[int32]time.Duration{} // by call
			held      = map[int32][]bool{}        // by call
		)
		start := time.Now()
		fn := func(ctx context.Context) (int32, error) {
			n := calls.Add(1)
			for _, h := range sc.holds {
				time.AfterFunc(h.at, func() {
					release, ok := Hold(ctx)
					mu.Lock()
					held[n] = append(held[n], ok)
					mu.Unlock()
					if h.release > 0 {
						time.AfterFunc(h.release-h.at, func() { release(); release() })
					}
				})
			}
			select {
			case <-time.After(groupCallTime):
				return n, nil
			case <-ctx.Done():
				if cause := context.Cause(ctx); cause != ErrCallAbandoned {
					t.Errorf("call %d: context cancelled with cause %v, want ErrCallAbandoned", n, cause)
				}
				mu.Lock()
				cancelled[n] = time.Since(start)
				mu.Unlock()
				return 0, ctx.Err()
			}
		}
		var wg sync.WaitGroup
		for i, a := range sc.arrivals {
			time.Sleep(a.at - time.Since(start))
			ctx, cancel := context.WithCancel(t.Context())
			if a.leaveAt > 0 {
				time.AfterFunc(a.leaveAt-a.at, cancel)
			}
			wg.Go(func() {
				defer cancel()
				res, err := g.Do(ctx, "k", fn)
				if at := time.Since(start); at != a.wantAt {
					t.Errorf("caller %d: Do returned at %v, want %v", i, at, a.wantAt)
				}
				if a.wantCall == 0 {
					if !errors.Is(err, context.Canceled) || res != (GroupResult[int32]{}) {
						t.Errorf("caller %d: Do = %+v, %v; want context.Canceled and no result", i, res, err)
					}
					return
				}
				if want := (GroupResult[int32]{Val: a.wantCall, Shared: a.wantShared, Call: uint64(a.wantCall)}); err != nil || res != want {
					t.Errorf("caller %d: Do = %+v, %v; want %+v", i, res, err, want)
				}
			})
			synctest.Wait() // it has joined or started a call
		}
		wg.Wait()
		time.Sleep(time.Minute) // every call and timer has ended
		mu.Lock()
		defer mu.Unlock()
		if got := calls.Load(); got != sc.wantCalls {
			t.Errorf("%d calls, want %d", got, sc.wantCalls)
		}
		for i, want := range sc.wantCancelled {
			if got := cancelled[int32(i+1)]; got != want {
				t.Errorf("call %d: context cancelled at %v, want %v (0: never)", i+1, got, want)
			}
		}
		if got := held[1]; !slices.Equal(got, sc.wantHeld) {
			t.Errorf("call 1's Holds reported %v, want %v", got, sc.wantHeld)
		}
	})
}

// Hold holds nothing outside a Group's call.
func TestHoldOutsideACall(t *testing.T) {
	release, ok := Hold(t.Context())
	if ok {
		t.Error("Hold outside a call reported true")
	}
	release()
}
