package pace

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// acquireAsync starts Acquire in a goroutine and returns where its result
// goes; synctest.Wait after it means the request is queued (or answered).
type acquired struct {
	p   *Permit
	err error
}

func acquireAsync(ctx context.Context, p *Pacer, r Request) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		pm, err := p.Acquire(ctx, r)
		ch <- acquired{pm, err}
	}()
	synctest.Wait()
	return ch
}

// throttledErr returns err as a *ThrottledError or fails the test.
func throttledErr(t *testing.T, err error) *ThrottledError {
	t.Helper()
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want a *ThrottledError", err)
	}
	if te.RetryAfter <= 0 {
		t.Fatalf("RetryAfter %v, want positive", te.RetryAfter)
	}
	return te
}

// TestMaxQueue: with MaxQueue requests waiting, one more (without a
// deadline) is refused at once with ReasonQueue; a patient one queues
// anyway; those queued are admitted in turn.
func TestMaxQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(Config{MaxInFlight: 1, MaxQueue: 2})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		get := Request{Caller: "a", Method: http.MethodGet, Route: "/r"}
		holder, err := p.Acquire(ctx, get)
		if err != nil {
			t.Fatal(err)
		}
		q1 := acquireAsync(ctx, p, get)
		q2 := acquireAsync(ctx, p, Request{Caller: "b", Method: http.MethodGet, Route: "/r"})
		if n := p.Stats().Queued; n != 2 {
			t.Fatalf("queued %d, want 2", n)
		}
		start := time.Now()
		_, err = p.Acquire(ctx, Request{Caller: "c", Method: http.MethodGet, Route: "/r"})
		te := throttledErr(t, err)
		if time.Since(start) != 0 {
			t.Fatalf("refused after %v, want at once", time.Since(start))
		}
		if te.Reason != ReasonQueue || te.RetryAfter != minRetryAfter || te.Bound == "" ||
			!strings.Contains(te.Error(), "queue is full") || strings.Contains(te.Error(), "deadline") {
			t.Fatalf("refusal %+v: %q", te, te.Error())
		}
		if s := p.Stats(); s.Throttled != 1 {
			t.Fatalf("Throttled %d, want 1", s.Throttled)
		}
		patient := acquireAsync(WithPatience(ctx), p, get)
		if n := p.Stats().Queued; n != 3 {
			t.Fatalf("a patient request over MaxQueue: queued %d, want 3", n)
		}
		// Each done admits one more, until all three were.
		next := holder
		pending := []<-chan acquired{q1, q2, patient}
		for len(pending) > 0 {
			next.Done(200, nil, time.Millisecond)
			synctest.Wait()
			admitted := 0
			for i := 0; i < len(pending); i++ {
				select {
				case a := <-pending[i]:
					if a.err != nil {
						t.Fatalf("queued request: %v", a.err)
					}
					next = a.p
					admitted++
					pending = append(pending[:i], pending[i+1:]...)
					i--
				default:
				}
			}
			if admitted != 1 {
				t.Fatalf("%d admitted after one place freed, want 1", admitted)
			}
		}
		next.Done(200, nil, time.Millisecond)
	})
}

// TestMaxQueueWaitAtOnce: a write whose estimated start is further off
// than MaxQueueWait is refused at once, without a deadline of its own; a
// write within it queues; a patient write queues however far off; a
// caller's deadline shorter than the bound is still the caller's.
func TestMaxQueueWaitAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(Config{MaxInFlight: 10, WriteInterval: 10 * time.Second, MaxQueueWait: 35 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		put := Request{Caller: "a", Method: http.MethodPut, Route: "/w"}
		first, err := p.Acquire(ctx, put)
		if err != nil {
			t.Fatal(err)
		}
		first.Done(204, nil, 0) // the next write may start 10 s after it
		var waiting []<-chan acquired
		for range 2 { // estimated 10 s and 20 s
			waiting = append(waiting, acquireAsync(ctx, p, put))
		}
		// A caller's deadline shorter than the bound: the caller's.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = p.Acquire(dctx, put)
		cancel()
		if te := throttledErr(t, err); te.Bound != "" || !strings.Contains(te.Error(), "after the caller's deadline") {
			t.Fatalf("with a 5 s deadline: %+v: %q", te, te.Error())
		}
		waiting = append(waiting, acquireAsync(ctx, p, put)) // 30 s: within the bound
		if n := p.Stats().Queued; n != 3 {
			t.Fatalf("queued %d, want 3", n)
		}
		start := time.Now()
		_, err = p.Acquire(ctx, put) // 40 s
		te := throttledErr(t, err)
		if time.Since(start) != 0 {
			t.Fatalf("refused after %v, want at once", time.Since(start))
		}
		if te.Reason != ReasonSpacing || te.RetryAfter != 40*time.Second ||
			!strings.Contains(te.Error(), "beyond the pacer's bound on waits (35s)") || !strings.Contains(te.Detail, "35s") {
			t.Fatalf("refusal %+v: %q", te, te.Error())
		}
		// Patient: queued 40 s out, and admitted in its turn.
		waiting = append(waiting, acquireAsync(WithPatience(ctx), p, put))
		if n := p.Stats().Queued; n != 4 {
			t.Fatalf("a patient write: queued %d, want 4", n)
		}
		t0 := time.Now()
		for i, ch := range waiting {
			a := <-ch
			if a.err != nil {
				t.Fatalf("write %d at +%v: %v", i, time.Since(t0), a.err)
			}
			if w, _ := a.p.Waited(); w != time.Duration(i+1)*10*time.Second {
				t.Fatalf("write %d waited %v, want %v", i, w, time.Duration(i+1)*10*time.Second)
			}
			a.p.Done(204, nil, 0)
		}
	})
}

// TestMaxQueueWaitWhileQueued: a request without a deadline that is still
// waiting for a place MaxQueueWait after it queued is refused then, with
// the bound named; a patient one keeps waiting and is admitted when a
// place frees, an hour later.
func TestMaxQueueWaitWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(Config{MaxInFlight: 1, MaxQueueWait: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		get := Request{Caller: "a", Method: http.MethodGet, Route: "/r"}
		holder, err := p.Acquire(ctx, get)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		impatient := acquireAsync(ctx, p, get)
		patient := acquireAsync(WithPatience(ctx), p, Request{Caller: "b", Method: http.MethodGet, Route: "/r"})
		a := <-impatient
		if waited := time.Since(start); waited != 30*time.Second {
			t.Fatalf("refused after %v, want 30s", waited)
		}
		te := throttledErr(t, a.err)
		if te.Reason != ReasonQueue || !strings.Contains(te.Error(), "bound on waits") {
			t.Fatalf("refusal %+v: %q", te, te.Error())
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case a := <-patient:
			t.Fatalf("the patient request ended while the place was held: %v", a.err)
		default:
		}
		if n := p.Stats().Queued; n != 1 {
			t.Fatalf("queued %d, want the patient one", n)
		}
		holder.Done(200, nil, time.Millisecond)
		a = <-patient
		if a.err != nil {
			t.Fatalf("patient: %v", a.err)
		}
		a.p.Done(200, nil, time.Millisecond)
	})
}

// TestQueueBoundsConfig: negative bounds are refused by New.
func TestQueueBoundsConfig(t *testing.T) {
	for _, cfg := range []Config{{MaxQueue: -1}, {MaxQueueWait: -time.Second}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
	if Patient(context.Background()) || !Patient(WithPatience(context.Background())) {
		t.Fatal("Patient does not tell WithPatience's context")
	}
}

// TestMaxQueueWaitContent: with the hour's content budget spent, a write
// without a deadline is refused at once, naming the bound, rather than
// waiting an hour; a patient write waits the hour.
func TestMaxQueueWaitContent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 10, WritesPerHour: 2, MaxQueueWait: 30 * time.Second})
		t0 := time.Now()
		ctx := context.Background()
		for range 2 {
			g := mustPermit(t, acquire(ctx, p, t0, "a", "PUT"))
			g.permit.Report(RateLimit{Status: 204, Remaining: -1, Used: -1}, 0)
		}
		g, ok := ready(acquire(ctx, p, t0, "a", "PUT"))
		if !ok || g.err == nil {
			t.Fatalf("a write without a deadline: ready %v, err %v; want a refusal at once", ok, g.err)
		}
		if te := throttledErr(t, g.err); te.Reason != ReasonContent || te.RetryAfter != time.Hour || !strings.Contains(te.Error(), "bound on waits (30s)") {
			t.Fatalf("refusal %+v: %q", te, te.Error())
		}
		ch := acquire(WithPatience(ctx), p, t0, "a", "PUT")
		mustWait(t, ch)
		time.Sleep(time.Hour)
		synctest.Wait()
		if g := mustPermit(t, ch); g.at != time.Hour {
			t.Fatalf("the patient write started at +%v, want +1h", g.at)
		}
	})
}
