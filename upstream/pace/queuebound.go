package pace

import (
	"context"
	"fmt"
	"time"
)

// The bounds on a pacer's queue (Config.MaxQueue, Config.MaxQueueWait)
// keep a synchronous caller from waiting without end: a request beyond
// them is refused at once with a *ThrottledError, so that the caller is
// told to come back (RESOURCE_EXHAUSTED with a RetryInfo at the broker's
// front) rather than held while memory and waits grow. A request whose
// context carries WithPatience is never refused by them: the long-running
// operations (syncs and batches run in the background) wait for GitHub's
// content budget for minutes or hours by design.

// patienceKey is the context key of WithPatience.
type patienceKey struct{}

// WithPatience returns a context whose requests the pacer never refuses
// for its queue bounds (Config.MaxQueue and MaxQueueWait): they wait
// their turn however long the queue or the wait is, bounded only by
// ctx's own deadline, if any. It is meant for background work that
// waits for GitHub's budgets on purpose, never for a caller's RPC.
func WithPatience(ctx context.Context) context.Context {
	return context.WithValue(ctx, patienceKey{}, true)
}

// Patient reports whether ctx was made by WithPatience.
func Patient(ctx context.Context) bool {
	v, _ := ctx.Value(patienceKey{}).(bool)
	return v
}

// queueFullLocked returns the refusal of t when the queue already holds
// MaxQueue requests (patient ones included), or nil. Its RetryAfter is
// the estimate of when t could start, at least minRetryAfter.
func (p *Pacer) queueFullLocked(now time.Time, t *Permit) *ThrottledError {
	if p.maxQueue <= 0 {
		return nil
	}
	n := p.queue.Len(false) + p.queue.Len(true)
	if n < p.maxQueue {
		return nil
	}
	ahead := 0
	if t.write {
		ahead = p.queue.Ahead(t.req.Caller, true)
	}
	at, _ := p.estimateLocked(now, t, ahead)
	retry := max(at.Sub(now), minRetryAfter)
	err := p.throttledLocked(t, retry, ReasonQueue, ahead)
	err.Detail = fmt.Sprintf("the pacer's queue is full: %d requests wait (the bound is %d)", n, p.maxQueue)
	err.Bound = "and the queue is full"
	return err
}

// waitBound returns when an impatient request queued now must have
// started by MaxQueueWait (plus the latency allowance its answer needs,
// as for a caller's deadline), and whether that bound applies: false for
// a patient request, without MaxQueueWait, or when ctx's own deadline
// comes first. Called with p.mu held.
func (p *Pacer) waitBoundLocked(now time.Time, patient bool, deadline time.Time, hasDeadline bool) (time.Time, bool) {
	if patient || p.maxQueueWait <= 0 {
		return time.Time{}, false
	}
	b := now.Add(p.maxQueueWait + p.lat.allowance())
	if hasDeadline && !b.Before(deadline) {
		return time.Time{}, false
	}
	return b, true
}

// boundedLocked marks err, a refusal of t, as due to MaxQueueWait when
// t's deadline is the pacer's bound rather than the caller's.
func (p *Pacer) boundedLocked(t *Permit, err *ThrottledError) *ThrottledError {
	if t.waitBound {
		err.Detail += fmt.Sprintf("; the pacer refuses waits longer than %v", p.maxQueueWait)
		err.Bound = fmt.Sprintf("beyond the pacer's bound on waits (%v)", p.maxQueueWait)
	}
	return err
}
