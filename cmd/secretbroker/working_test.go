package main

import (
	"context"
	"net/http"
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
		w := newWorkingCalls(2, 2, 0) // no queue: over the bound is refused at once
		p, err := pace.New(pace.Config{MaxInFlight: 1})
		if err != nil {
			t.Fatal(err)
		}
		get := pace.Request{Method: http.MethodGet, Route: "/r"}
		// Every call is the same caller's but where a test says.
		admit := func(name string) *workSlot {
			t.Helper()
			s, refused := w.admit(t.Context(), "flood")
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
			if s, refused := w.admit(t.Context(), "flood"); refused == nil || refused.retryAfter <= 0 {
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
		other, refused := w.admit(t.Context(), "other")
		if refused != nil {
			t.Fatalf("another caller's first call refused: %s", refused.reason)
		}
		if s, refused := w.admit(t.Context(), "other"); refused == nil {
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

// TestWorkingQueue: a call over the bound waits in the queue: the oldest
// is served first; it is refused when its wait reaches maxWait or its
// context ends; when the queue overflows the oldest gives way to the
// newcomer and, for maxWait after, the newest is served first; a place
// freed by a call that waits for the pacer goes to a waiting call; and a
// caller with no call at work never waits.
func TestWorkingQueue(t *testing.T) {
	type answer struct {
		slot    *workSlot
		refused bool
	}
	// fill admits n calls of caller, none of which may wait.
	fill := func(t *testing.T, w *workingCalls, caller string, n int) []*workSlot {
		t.Helper()
		var held []*workSlot
		for range n {
			s, refused := w.admit(t.Context(), caller)
			if refused != nil {
				t.Fatalf("a call of %s refused under the bound or its share", caller)
			}
			held = append(held, s)
		}
		return held
	}
	// begin begins admitting a call of caller "f" and returns its
	// answer's channel once it waits or is answered.
	begin := func(ctx context.Context, w *workingCalls) chan answer {
		ch := make(chan answer, 1)
		go func() {
			s, refused := w.admit(ctx, "f")
			ch <- answer{s, refused != nil}
		}()
		synctest.Wait()
		return ch
	}
	// setup returns a bound of one call at work and two waiting, with
	// one call of caller "f" at work, and start (begin on that bound).
	setup := func(t *testing.T) (*workingCalls, *workSlot, func(context.Context) chan answer) {
		w := newWorkingCalls(1, 1, 2)
		first := fill(t, w, "f", 1)[0]
		return w, first, func(ctx context.Context) chan answer { return begin(ctx, w) }
	}
	// state says whether ch has an answer: "waiting", "admitted" or
	// "refused".
	state := func(ch chan answer) string {
		synctest.Wait()
		select {
		case a := <-ch:
			ch <- a // keep it for later looks
			if a.refused {
				return "refused"
			}
			return "admitted"
		default:
			return "waiting"
		}
	}
	// slot returns the place of an admitted call (a stand-in for a
	// refused one, so that the test goes on to report it).
	slot := func(ch chan answer) *workSlot {
		a := <-ch
		ch <- a
		if a.slot == nil {
			return &workSlot{w: newWorkingCalls(1, 1, 0)}
		}
		return a.slot
	}
	want := func(t *testing.T, w *workingCalls, busy int, got map[string]chan answer, states map[string]string) {
		t.Helper()
		for name, ch := range got {
			if s := state(ch); s != states[name] {
				t.Errorf("call %s %s, want %s", name, s, states[name])
			}
		}
		if b, _ := w.busyNow(); b != busy {
			t.Errorf("%d calls at work, want %d", b, busy)
		}
	}

	// wantOldestFirst: with first at work and b, then c, waiting for
	// the one place, the place goes to b when first ends, then to c.
	wantOldestFirst := func(t *testing.T, w *workingCalls, first *workSlot, b, c chan answer) {
		t.Helper()
		calls := map[string]chan answer{"b": b, "c": c}
		want(t, w, 1, calls, map[string]string{"b": "waiting", "c": "waiting"})
		first.release()
		want(t, w, 1, calls, map[string]string{"b": "admitted", "c": "waiting"})
		slot(b).release()
		want(t, w, 1, calls, map[string]string{"b": "admitted", "c": "admitted"})
		slot(c).release()
		want(t, w, 0, calls, map[string]string{"b": "admitted", "c": "admitted"})
	}

	t.Run("oldest first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			b := start(t.Context())
			time.Sleep(time.Millisecond)
			wantOldestFirst(t, w, first, b, start(t.Context()))
		})
	})
	t.Run("refused after maxWait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			b := start(t.Context())
			time.Sleep(workQueueWait - time.Nanosecond)
			want(t, w, 1, map[string]chan answer{"b": b}, map[string]string{"b": "waiting"})
			time.Sleep(time.Nanosecond)
			want(t, w, 1, map[string]chan answer{"b": b}, map[string]string{"b": "refused"})
			first.release() // no one waits to take it
			want(t, w, 0, nil, nil)
		})
	})
	t.Run("refused when its context ends", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			ctx, cancel := context.WithCancel(t.Context())
			b := start(ctx)
			c := start(t.Context())
			cancel()
			calls := map[string]chan answer{"b": b, "c": c}
			want(t, w, 1, calls, map[string]string{"b": "refused", "c": "waiting"})
			first.release() // to c: b left the queue
			want(t, w, 1, calls, map[string]string{"b": "refused", "c": "admitted"})
			slot(c).release()
		})
	})
	t.Run("overflow: the oldest give way, the newest first, fewer at work", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorkingCalls(8, 2, 4) // while overflowing: 2 at work, 2 waiting
			held := fill(t, w, "f", 8)
			calls := map[string]chan answer{}
			states := map[string]string{}
			admitOne := func(name string) {
				calls[name], states[name] = begin(t.Context(), w), "waiting"
			}
			for _, name := range []string{"b", "c", "d", "e"} {
				admitOne(name)
			}
			want(t, w, 8, calls, states)
			admitOne("x") // overflow: the queue is 2 long now, the oldest give way
			states["b"], states["c"], states["d"] = "refused", "refused", "refused"
			want(t, w, 8, calls, states)
			admitOne("y")
			states["e"] = "refused"
			want(t, w, 8, calls, states)
			for i, s := range held[:6] {
				s.release() // 2 at work is the bound now
				want(t, w, 7-i, calls, states)
			}
			held[6].release() // the newest first
			states["y"] = "admitted"
			want(t, w, 2, calls, states)
			slot(calls["y"]).release()
			states["x"] = "admitted"
			want(t, w, 2, calls, states)
			slot(calls["x"]).release()
			held[7].release()
			want(t, w, 0, nil, nil)
		})
	})
	t.Run("oldest first again once the overflow is past", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			start(t.Context())
			start(t.Context())
			start(t.Context())        // overflow
			time.Sleep(workQueueWait) // the two waiting are refused; the overflow is maxWait ago
			b := start(t.Context())
			wantOldestFirst(t, w, first, b, start(t.Context()))
		})
	})
	t.Run("a place freed by a wait for the pacer", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			b := start(t.Context())
			calls := map[string]chan answer{"b": b}
			first.Idle() // its request waits for the pacer: b takes the place
			want(t, w, 1, calls, map[string]string{"b": "admitted"})
			first.Resume() // back at work, over the bound
			want(t, w, 2, calls, map[string]string{"b": "admitted"})
			first.release()
			slot(b).release()
			want(t, w, 0, nil, nil)
		})
	})
	t.Run("a caller's share is of the tight bound", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorkingCalls(4, 1, 2) // while overflowing: 1 at work, 1 waiting
			held := fill(t, w, "f", 4)
			admitOne := func() chan answer { return begin(t.Context(), w) }
			b, c := admitOne(), admitOne()
			d := admitOne() // overflow: b and c give way
			calls := map[string]chan answer{"b": b, "c": c, "d": d}
			want(t, w, 4, calls, map[string]string{"b": "refused", "c": "refused", "d": "waiting"})
			for i, s := range held[:3] {
				s.release()
				want(t, w, 3-i, calls, map[string]string{"b": "refused", "c": "refused", "d": "waiting"})
			}
			// One at work, the bound 1: e waits too (the caller's share
			// is of the tight bound), and d gives way to it.
			e := admitOne()
			calls["e"] = e
			want(t, w, 1, calls, map[string]string{"b": "refused", "c": "refused", "d": "refused", "e": "waiting"})
			held[3].release()
			want(t, w, 1, calls, map[string]string{"b": "refused", "c": "refused", "d": "refused", "e": "admitted"})
			time.Sleep(workQueueWait) // the overflow is past: the bound is 4 again
			f := admitOne()
			want(t, w, 2, map[string]chan answer{"f": f}, map[string]string{"f": "admitted"})
			slot(e).release()
			slot(f).release()
		})
	})
	t.Run("a caller under its share never waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorkingCalls(4, 4, 4)
			held := fill(t, w, "flood", 4)
			// Two callers at work: the prober's share is 4/2 = 2.
			held = append(held, fill(t, w, "prober", 2)...)
			third := make(chan bool, 1)
			go func() { _, refused := w.admit(t.Context(), "prober"); third <- refused != nil }()
			synctest.Wait()
			select {
			case <-third:
				t.Fatal("the prober's third call, over its share and the bound, did not wait")
			default:
			}
			if b, callers := w.busyNow(); b != 6 || callers != 2 {
				t.Fatalf("%d calls of %d callers at work, want 6 of 2", b, callers)
			}
			if refused := <-third; !refused { // after maxWait: no place freed
				t.Fatal("the prober's third call admitted")
			}
			for _, s := range held {
				s.release()
			}
		})
	})
	t.Run("another caller never waits", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, first, start := setup(t)
			b := start(t.Context())
			other, refused := w.admit(t.Context(), "other")
			if refused != nil {
				t.Fatal("another caller's first call refused")
			}
			want(t, w, 2, map[string]chan answer{"b": b}, map[string]string{"b": "waiting"})
			other.release()
			first.release()
			want(t, w, 1, map[string]chan answer{"b": b}, map[string]string{"b": "admitted"})
			slot(b).release()
		})
	})
}

// TestWorkingCallsShed: with --max-working-calls calls held at GitHub,
// one more call (after its wait in the queue) is refused with
// RESOURCE_EXHAUSTED and a RetryInfo, over gRPC and JSON, health stays
// SERVING, and once the held calls end it is served.
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
