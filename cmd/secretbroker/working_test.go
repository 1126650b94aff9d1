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
		w := newWorkingCalls(2)
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
