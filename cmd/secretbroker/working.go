package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// workingCalls bounds the calls at work at once: admitted calls that use
// the broker's CPUs (authentication, decoding, sealing, encoding) or have
// a request in flight to GitHub, not those waiting for the upstream pacer
// (the pacer's own bounds limit those: --upstream-max-queue,
// --max-queue-wait). A call over the bound waits for a place in a short
// queue: first come, first served, until the queue overflows; then the
// oldest waiting call is refused in favour of the newcomer and, for
// maxWait after an overflow, the newest waiting call is served first, the
// bound is one call per CPU (overloadWorkingPerCPU) and the queue as short,
// so that under overload the calls admitted are the ones that arrived last
// and keep their normal latency, while the excess is refused within
// maxWait (adaptive LIFO, as in Facebook's "Fail at Scale"). A refused
// call gets RESOURCE_EXHAUSTED with a RetryInfo. A caller with fewer calls
// at work than its share of the bound (the bound divided among the callers
// at work, at least one) is admitted at once, so that one caller's flood
// never holds up or locks out another caller (the bound is then exceeded
// by at most each caller's share; --max-concurrent-calls still bounds
// them all).
type workingCalls struct {
	limit    int           // calls at work
	tight    int           // calls at work while the queue overflows
	maxQueue int           // calls waiting for a place
	maxWait  time.Duration // longest wait for a place

	mu         sync.Mutex
	busy       int            // calls at work
	byCaller   map[string]int // calls at work by caller (fairness key), none at 0
	head, tail *waiter        // calls waiting for a place, oldest first
	waiting    int            // calls in the queue
	overflowed time.Time      // when the queue last overflowed; zero once that is maxWait ago
}

// workQueueWait is the longest a call waits for a place among the calls
// at work before it is refused: well within the 100 ms issue 12 gives a
// refusal, and long enough for a closed loop of a few dozen calls (each a
// millisecond of CPU or so) to take its turn instead of being refused.
const workQueueWait = 50 * time.Millisecond

// overloadWorkingPerCPU is the bound on calls at work per CPU while the
// queue overflows: the calls arriving then are more than the broker can
// serve, and every CPU the admitted calls leave free is one the refusals,
// the callers and GitHub's side use without delaying them. On the 2-core
// development machine, at twice the saturation throughput, the admitted
// calls' p99 was 13–16 ms with 8 at work and 5.5 ms with 2, for a third
// less throughput (docs/BENCHMARKS.md, issue 12).
const overloadWorkingPerCPU = 1

// newWorkingCalls returns the bound, or nil when limit is 0 (off): limit
// calls at work (tight while the queue overflows, at most limit), maxQueue
// more waiting for a place.
func newWorkingCalls(limit, tight, maxQueue int) *workingCalls {
	if limit <= 0 {
		return nil
	}
	return &workingCalls{limit: limit, tight: min(max(tight, 1), limit), maxQueue: max(maxQueue, 0),
		maxWait: workQueueWait, byCaller: map[string]int{}}
}

// workSlot is one admitted call's place among the calls at work. It is
// the call's upstream.Idler: from the first of the call's requests that
// waits for the pacer until the last one stops waiting, the place is free for another call (a batch, whose items take
// their turns one after another, mostly waits; its sealing has a bound of
// its own). A call that resumes work is never refused, so busy may
// briefly exceed limit.
type workSlot struct {
	w       *workingCalls
	caller  string
	waiting int  // the call's requests waiting; under w.mu
	done    bool // released; under w.mu
}

// waiter is a call waiting for a place: an element of workingCalls's queue.
type waiter struct {
	slot       *workSlot
	prev, next *waiter
	queued     bool          // in the queue; under w.mu
	admitted   bool          // given a place; under w.mu, final once ready is closed
	ready      chan struct{} // closed when the call is admitted or refused
}

// workRefusal is the answer to a call the bound refuses.
var workRefusal = refusal{reason: "the broker is at its limit of calls at work", kind: refusedWorking, retryAfter: time.Second}

// admit counts a call of caller in: at once when fewer than limit calls
// are at work or caller is under its share, else after a wait in the queue
// (at most maxWait, or until ctx ends); or refuses it.
func (w *workingCalls) admit(ctx context.Context, caller string) (*workSlot, *refusal) {
	s := &workSlot{w: w, caller: caller}
	w.mu.Lock()
	w.grantLocked() // the bound may have grown back since the last grant
	if limit := w.limitLocked(); w.busy < limit || w.underShareLocked(caller, limit) {
		w.addLocked(s, 1)
		w.mu.Unlock()
		return s, nil
	}
	if w.maxQueue == 0 {
		w.mu.Unlock()
		return nil, &workRefusal
	}
	if w.waiting >= w.queueBoundLocked() { // overflow: the oldest give way
		w.overflowed = time.Now()
		for bound := w.queueBoundLocked(); w.waiting >= bound; {
			w.decideLocked(w.head, false)
		}
	}
	q := &waiter{slot: s, ready: make(chan struct{})}
	w.pushLocked(q)
	w.mu.Unlock()

	t := time.NewTimer(w.maxWait)
	select {
	case <-q.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	w.mu.Lock()
	if q.queued { // not decided: out of time or cancelled, or the bound grew back
		w.decideLocked(q, ctx.Err() == nil && w.busy < w.limitLocked())
	}
	admitted := q.admitted
	w.mu.Unlock()
	if !admitted {
		return nil, &workRefusal
	}
	return s, nil
}

// underShareLocked reports whether caller has fewer calls at work than
// its share of the bound now (limit): limit divided among the callers at
// work, caller counted (at least one call). Such a call never waits, so
// that a caller with a call or two at a time is not held behind another
// caller's flood; the bound is then exceeded by at most each caller's
// share.
func (w *workingCalls) underShareLocked(caller string, limit int) bool {
	n, callers := w.byCaller[caller], len(w.byCaller)
	if n == 0 {
		callers++
	}
	return n < max(limit/callers, 1)
}

// pushLocked appends q to the queue.
func (w *workingCalls) pushLocked(q *waiter) {
	q.queued, q.prev = true, w.tail
	if w.tail != nil {
		w.tail.next = q
	} else {
		w.head = q
	}
	w.tail = q
	w.waiting++
}

// decideLocked takes q out of the queue and admits it (counting it at
// work) or refuses it, and wakes it.
func (w *workingCalls) decideLocked(q *waiter, admit bool) {
	if q.prev != nil {
		q.prev.next = q.next
	} else {
		w.head = q.next
	}
	if q.next != nil {
		q.next.prev = q.prev
	} else {
		w.tail = q.prev
	}
	q.prev, q.next, q.queued = nil, nil, false
	w.waiting--
	if admit {
		q.admitted = true
		w.addLocked(q.slot, 1)
	}
	close(q.ready)
}

// overloadedLocked reports whether the queue overflowed less than maxWait
// ago (and forgets an older overflow, so that the clock is read only
// during one).
func (w *workingCalls) overloadedLocked() bool {
	if w.overflowed.IsZero() {
		return false
	}
	if time.Since(w.overflowed) < w.maxWait {
		return true
	}
	w.overflowed = time.Time{}
	return false
}

// limitLocked is the bound now: tight while overloaded, else limit.
func (w *workingCalls) limitLocked() int {
	if w.overloadedLocked() {
		return w.tight
	}
	return w.limit
}

// queueBoundLocked is the most calls that may wait now: maxQueue, or
// while the queue overflows as many as the tight bound has at work, so
// that a call admitted then has waited for at most that many others
// (and at the flood's end those left wait no longer).
func (w *workingCalls) queueBoundLocked() int {
	if w.overloadedLocked() {
		return min(w.maxQueue, w.tight)
	}
	return w.maxQueue
}

// grantLocked gives the places free to waiting calls: the oldest first,
// the newest first (and fewer places) for maxWait after the queue
// overflowed.
func (w *workingCalls) grantLocked() {
	if w.waiting == 0 {
		return
	}
	overloaded := w.overloadedLocked()
	limit := w.limit
	if overloaded {
		limit = w.tight
	}
	for w.waiting > 0 && w.busy < limit {
		q := w.head
		if overloaded {
			q = w.tail
		}
		w.decideLocked(q, true)
	}
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
		s.w.grantLocked()
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
		s.w.grantLocked()
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
func (f *frontDoor) workAdmit(ctx context.Context, listener, method, caller, fairness string, release func()) (context.Context, func(), error) {
	if f.working == nil {
		return ctx, release, nil
	}
	slot, refused := f.working.admit(ctx, fairness)
	if refused != nil {
		release()
		f.refusals.add(ctx, listener, refusedWorking)
		f.log.DebugContext(ctx, "call refused: the broker is at its limit of calls at work", slog.String("method", method),
			slog.String("caller", caller))
		return nil, nil, exhausted(refused.reason, refused.retryAfter)
	}
	return upstream.WithIdler(ctx, slot), func() { slot.release(); release() }, nil
}
