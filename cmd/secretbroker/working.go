package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// workingCalls bounds the calls at work at once: admitted calls that are
// not waiting for the upstream pacer. A call at work uses the broker's
// CPUs (authentication, decoding, sealing, encoding) or has a request in
// flight to GitHub; a call waiting for GitHub's budget costs memory only,
// and the pacer's own bounds (--upstream-max-queue, --max-queue-wait)
// limit those. A call over the bound is refused at once with
// RESOURCE_EXHAUSTED, so that under overload the calls admitted keep
// their normal latency instead of all of them queueing for the CPUs;
// except that a caller with no call at work is always admitted, so that
// one caller's flood never locks another caller out (the bound is then
// exceeded by at most one call per caller; --max-concurrent-calls still
// bounds them all).
type workingCalls struct {
	limit int

	mu       sync.Mutex
	busy     int            // calls at work
	byCaller map[string]int // calls at work by caller (fairness key), none at 0
}

// newWorkingCalls returns the bound, or nil when limit is 0 (off).
func newWorkingCalls(limit int) *workingCalls {
	if limit <= 0 {
		return nil
	}
	return &workingCalls{limit: limit, byCaller: map[string]int{}}
}

// workSlot is one admitted call's place among the calls at work. It is
// the call's upstream.Idler: from the first of the call's requests that
// waits for the pacer until the last one stops waiting, the place is free
// for another call (a batch, whose items take their turns one after
// another, mostly waits; its sealing has a bound of its own). A call that
// resumes work is never refused, so busy may briefly exceed limit.
type workSlot struct {
	w       *workingCalls
	caller  string
	waiting int  // the call's requests waiting for the pacer; under w.mu
	done    bool // released; under w.mu
}

// admit counts a call of caller in, or refuses it when limit calls are at
// work and caller has one at work already.
func (w *workingCalls) admit(caller string) (*workSlot, *refusal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy >= w.limit && w.byCaller[caller] > 0 {
		return nil, &refusal{reason: "the broker is at its limit of calls at work", retryAfter: time.Second}
	}
	s := &workSlot{w: w, caller: caller}
	w.addLocked(s, 1)
	return s, nil
}

// addLocked counts s's call in (d 1) or out (d -1) of the calls at work.
func (w *workingCalls) addLocked(s *workSlot, d int) {
	w.busy += d
	if n := w.byCaller[s.caller] + d; n > 0 {
		w.byCaller[s.caller] = n
	} else {
		delete(w.byCaller, s.caller)
	}
}

// Idle frees the call's place while it waits for the pacer (the first of
// its requests to wait frees it).
func (s *workSlot) Idle() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.waiting++
	if s.waiting == 1 && !s.done {
		s.w.addLocked(s, -1)
	}
}

// Resume takes the call's place back when its last waiting request stops
// waiting.
func (s *workSlot) Resume() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.waiting--
	if s.waiting == 0 && !s.done {
		s.w.addLocked(s, 1)
	}
}

// release gives the place back when the call ends; later Idle and Resume
// calls (a request of the call still waiting) change nothing.
func (s *workSlot) release() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.waiting == 0 {
		s.w.addLocked(s, -1)
	}
}

// busyNow returns the calls at work now and the callers they are of, for
// tests.
func (w *workingCalls) busyNow() (calls, callers int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busy, len(w.byCaller)
}

// workAdmit counts a call admitted by the inbound limits and the adaptive
// bound (release gives their places back) against the bound on calls at
// work: the context that tells the bound when the call waits for the
// pacer and the release of all three, or RESOURCE_EXHAUSTED with a
// RetryInfo when the bound refuses it.
func (f *frontDoor) workAdmit(ctx context.Context, method, caller, fairness string, release func()) (context.Context, func(), error) {
	if f.working == nil {
		return ctx, release, nil
	}
	slot, refused := f.working.admit(fairness)
	if refused != nil {
		release()
		f.log.DebugContext(ctx, "call refused: the broker is at its limit of calls at work", slog.String("method", method),
			slog.String("caller", caller))
		return nil, nil, exhausted(refused.reason, refused.retryAfter)
	}
	return upstream.WithIdler(ctx, slot), func() { slot.release(); release() }, nil
}
