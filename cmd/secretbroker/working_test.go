package main

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// TestWorkingCalls: the bound counts calls at work; a call whose request
// waits for the pacer frees its place while it waits, takes it back when
// the wait ends (even over the bound: an admitted call is never refused
// later), and a call with several waiting requests frees one place, from
// the first request that waits until the last one stops waiting.
func TestWorkingCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorkingCalls(2)
		w.sched = func() time.Duration { return 0 } // the CPUs keep up
		p, err := pace.New(pace.Config{MaxInFlight: 1})
		if err != nil {
			t.Fatal(err)
		}
		get := pace.Request{Method: http.MethodGet, Route: "/r"}
		// Every call is the same caller's but where a test says.
		admit := func(name string) *workSlot {
			t.Helper()
			s, refused := w.admit("flood")
			if refused != nil {
				t.Fatalf("%s refused: %s", name, refused.reason)
			}
			return s
		}
		wantBusy := func(when string, n int) {
			t.Helper()
			if got, _ := w.busyNow(); got != n {
				t.Fatalf("%s: %d calls at work, want %d", when, got, n)
			}
		}
		wantRefused := func(when string) {
			t.Helper()
			if s, refused := w.admit("flood"); refused == nil || refused.retryAfter <= 0 {
				s.release()
				t.Fatalf("%s: a call was admitted over the bound", when)
			}
		}
		acquire := func(s *workSlot) <-chan *pace.Permit {
			ch := make(chan *pace.Permit, 1)
			go func() {
				pm, err := p.Acquire(upstream.WithIdler(t.Context(), s), get)
				if err != nil {
					t.Error(err)
				}
				ch <- pm
			}()
			synctest.Wait()
			return ch
		}

		a := admit("a")
		inFlight := <-acquire(a) // admitted at once: a stays at work
		wantBusy("a in flight", 1)
		b := admit("b")
		bWait := acquire(b) // queued behind a: b frees its place
		wantBusy("b waiting for the pacer", 1)
		c := admit("c")
		c1, c2 := acquire(c), acquire(c) // two requests of one call wait
		wantBusy("c's two requests waiting", 1)
		d := admit("d") // at work (no request)
		wantBusy("d at work", 2)
		wantRefused("a and d at work")
		// Another caller, with no call at work, is admitted over the
		// bound, once.
		other, refused := w.admit("other")
		if refused != nil {
			t.Fatalf("another caller's first call refused: %s", refused.reason)
		}
		if s, refused := w.admit("other"); refused == nil {
			s.release()
			t.Fatal("another caller's second call admitted over the bound")
		}
		if calls, callers := w.busyNow(); calls != 3 || callers != 1+1 {
			t.Fatalf("%d calls of %d callers at work, want 3 of 2", calls, callers)
		}
		other.release()

		inFlight.Done(http.StatusOK, nil, 0) // b's turn: b works again
		bPermit := <-bWait
		wantBusy("b admitted by the pacer", 3)
		wantRefused("over the bound")
		a.release()
		bPermit.Done(http.StatusOK, nil, 0)
		first := <-c1 // c's other request still waits: c still waits
		wantBusy("one of c's requests admitted", 2)
		b.release()
		d.release()
		wantBusy("b and d ended", 0)
		first.Done(http.StatusOK, nil, 0)
		second := <-c2 // c's last waiting request admitted: c works again
		wantBusy("c's last request admitted", 1)
		second.Done(http.StatusOK, nil, 0)
		c.release()
		c.release() // twice is once
		if calls, callers := w.busyNow(); calls != 0 || callers != 0 {
			t.Fatalf("every call ended: %d calls of %d callers at work, want none", calls, callers)
		}
		admit("e").release()
	})
}

// TestWorkingCallsAdapt: the bound shrinks by a quarter (down to its
// floor) after each window in which it refused calls while the CPUs were
// behind, grows by one after a window in which it refused calls on CPUs
// that kept up, and by an eighth of its ceiling after a window without
// refusals.
func TestWorkingCallsAdapt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorkingCalls(32)
		w.min = 8
		lat := time.Duration(0)
		w.sched = func() time.Duration { return lat }
		var flood []*workSlot
		for range 32 {
			s, refused := w.admit("flood")
			if refused != nil {
				t.Fatalf("call %d refused under the ceiling", len(flood))
			}
			flood = append(flood, s)
		}
		// window ends the current window: a call of a caller with none at
		// work (never refused) starts the next one and adapts the bound.
		window := func(refuse bool) int {
			t.Helper()
			if refuse {
				if s, refused := w.admit("flood"); refused == nil {
					s.release()
					t.Fatalf("a flood call admitted over the bound %d", w.bound())
				}
			}
			time.Sleep(workWindow)
			s, refused := w.admit("probe")
			if refused != nil {
				t.Fatalf("a caller with no call at work refused: %s", refused.reason)
			}
			s.release()
			return w.bound()
		}
		var got []int
		lat = 5 * time.Millisecond // the CPUs are behind
		for range 6 {
			got = append(got, window(true))
		}
		lat = 0 // they keep up, still refusing
		got = append(got, window(true))
		for _, s := range flood {
			s.release()
		}
		for range 7 {
			got = append(got, window(false))
		}
		want := []int{24, 18, 13, 9, 8, 8, 9, 13, 17, 21, 25, 29, 32, 32}
		if !slices.Equal(got, want) {
			t.Errorf("bounds %v, want %v", got, want)
		}
		lat = 5 * time.Millisecond // behind, but nothing refused: no change
		if got := window(false); got != 32 {
			t.Errorf("after a window without refusals on busy CPUs: %d, want 32", got)
		}
	})
}

// TestWorkingCallsShed: with --max-working-calls calls held at GitHub,
// another caller's call is refused at once with RESOURCE_EXHAUSTED and a
// RetryInfo, over gRPC and JSON, health stays SERVING, and once the held
// calls end it is served.
func TestWorkingCallsShed(t *testing.T) {
	gh := newFakeGitHub(t)
	cfg := prodConfig(t, gh.URL, 5*time.Second)
	const working = 2
	cfg.MaxWorkingCalls, cfg.UpstreamMaxInFlight = working, working
	cfg.CallerMaxConcurrent, cfg.CallerRPS, cfg.ShedSchedLatency = 0, 0, 0
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()

	held := holdAtGitHub(ctx, svc, gh, working)
	wantShed(t, b, "calls at work")

	gh.unblock()
	for range working {
		if err := <-held; status.Code(err) == codes.ResourceExhausted {
			t.Errorf("a held call was refused: %v", err)
		}
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := svc.GetPublicKey(callCtx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/acme/actions"}); err != nil {
		t.Fatalf("after the held calls ended: %v, want OK", err)
	}
}
