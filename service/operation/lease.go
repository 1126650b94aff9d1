package operation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/service/state"
)

// DefaultLease is Options.Lease's default.
const DefaultLease = 30 * time.Second

// errLeaseHeld: another runner holds a live lease on the operation.
var errLeaseHeld = errors.New("another runner holds the operation's lease")

// errLeaseLost: another runner took the operation over (this runner's
// lease had ended), or the lease ended while it could not be renewed.
var errLeaseLost = errors.New("the operation's lease was lost to another runner")

// errNoLease: a release found nothing of this runner's to release.
var errNoLease = errors.New("no lease of this runner to release")

// newRunnerID returns a random runner ID: 16 hex digits (64 bits) from
// crypto/rand.
func newRunnerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// ID returns the runner's random ID, stored as state.Operation.Runner in
// the operations it holds.
func (r *Runner) ID() string { return r.id }

// heldByOther reports whether another runner holds a lease on op that has
// not ended at now. A sole runner (Options.Sole) has no live other: a
// lease it did not take is a dead process's.
func (r *Runner) heldByOther(op *state.Operation, now time.Time) bool {
	return !r.sole && op.Runner != "" && op.Runner != r.id && now.Before(op.LeaseUntil)
}

// take gives r the lease on o, unless o is done or another runner's lease
// on it is live.
func (r *Runner) take(o *state.Operation, now time.Time) error {
	if o.Done {
		return errDone
	}
	if r.heldByOther(o, now) {
		return errLeaseHeld
	}
	o.Runner, o.LeaseUntil = r.id, now.Add(r.lease)
	return nil
}

// hold checks that r still holds the lease on o (while it runs o) and
// extends it.
func (r *Runner) hold(o *state.Operation, now time.Time) error {
	if o.Done {
		return errDone
	}
	if o.Runner != r.id {
		return errLeaseLost
	}
	o.LeaseUntil = now.Add(r.lease)
	return nil
}

// claim takes the lease on operation id for a run and drops pending items
// already recorded (see dropRecorded), in one update.
func (r *Runner) claim(ctx context.Context, id string) (*state.Operation, error) {
	return r.store.UpdateOperation(ctx, id, func(o *state.Operation) error {
		if err := r.take(o, time.Now()); err != nil {
			return err
		}
		if len(o.Results)+len(o.Pending) > o.Metadata.Total {
			return r.dropRecorded(o)
		}
		return nil
	})
}

// renew renews the lease on operation id every Lease/3 until the returned
// stop is called (stop waits for it; it may be called more than once).
// until is when the lease taken by claim ends. When another runner took
// the operation over, or the lease ended while it could not be renewed,
// it ends the operation's context with errLeaseLost; when the operation
// was finished elsewhere, with errDone; when a cancel was requested (by
// another replica's CancelOperation), with ErrCancelRequested.
func (r *Runner) renew(ctx context.Context, id string, cancel context.CancelCauseFunc, until time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			now := time.Now()
			op, err := r.store.UpdateOperation(ctx, id, func(o *state.Operation) error { return r.hold(o, now) })
			switch {
			case err == nil:
				until = op.LeaseUntil
				if op.CancelRequested {
					cancel(ErrCancelRequested)
				}
				continue
			case errors.Is(err, errDone):
				r.log.InfoContext(ctx, "operation stopped: it was finished elsewhere", "operation", id)
				cancel(errDone)
				return
			case errors.Is(err, errLeaseLost):
				r.log.InfoContext(ctx, "operation stopped: another runner took it over", "operation", id)
				cancel(errLeaseLost)
				return
			}
			if now.Before(until) {
				r.log.WarnContext(ctx, "operation lease not renewed; trying again", "operation", id,
					"lease_until", until, "error", err)
				continue
			}
			r.log.InfoContext(ctx, "operation stopped: its lease ended without renewal; another runner may take it over",
				"operation", id, "error", err)
			cancel(errLeaseLost)
			return
		}
	})
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
}

// release ends this runner's lease on operation id (LeaseUntil zero), so
// that another runner takes it over at once, recording group first. It
// does nothing when the operation is done or another runner holds it.
func (r *Runner) release(ctx context.Context, id string, group []state.ItemResult) {
	op, err := r.store.UpdateOperation(ctx, id, func(o *state.Operation) error {
		if o.Done || o.Runner != r.id {
			return errNoLease
		}
		if len(group) > 0 {
			if err := apply(o, group); err != nil {
				return err
			}
			r.progress(o, time.Now())
		} else if o.LeaseUntil.IsZero() {
			return errNoLease
		}
		o.LeaseUntil = time.Time{}
		return nil
	})
	switch {
	case err == nil:
		r.recorded(ctx, op, group)
		r.notify(id)
	case !errors.Is(err, errNoLease):
		r.log.WarnContext(ctx, "operation lease not released; another runner takes it over when it ends",
			"operation", id, "error", err)
	}
}

// cancelFunc returns the cancel function of the context of operation id,
// which this process runs.
func (r *Runner) cancelFunc(id string) context.CancelCauseFunc {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancel, ok := r.running[id]; ok {
		return cancel
	}
	return func(error) {}
}
