package operation

import (
	"context"
	"fmt"
	"time"

	"github.com/secretbroker/secretbroker/service/state"
)

// Get returns the operation with this ID when visible lets the caller see
// it. A missing operation and one the caller may not see are the same
// error, wrapping state.ErrNotFound, so its existence does not leak.
func (r *Runner) Get(ctx context.Context, id string, visible Visible) (*state.Operation, error) {
	op, err := r.get(ctx, id, visible)
	if err != nil {
		return nil, err
	}
	return redact(op), nil
}

func (r *Runner) get(ctx context.Context, id string, visible Visible) (*state.Operation, error) {
	op, err := r.store.GetOperation(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("operation: get: %w", err)
	}
	if visible != nil && !visible(op) {
		return nil, fmt.Errorf("operation: get: state: operation %s: %w", id, state.ErrNotFound)
	}
	return op, nil
}

// List returns the operations that match f and that visible lets the
// caller see, sorted by ID. With f.Limit positive it returns at most that
// many and, when it filled the page, next: the f.After for the next page
// (which may turn out empty); next is empty at the end. The service passes
// f.Caller = the calling identity unless its policy lets the caller read
// others' operations, so the store's index does the filtering. A stored
// operation that does not decode is left out and logged (see Resume),
// unless f.Corrupt is set.
func (r *Runner) List(ctx context.Context, f state.OperationFilter, visible Visible) (ops []*state.Operation, next string, err error) {
	ops = []*state.Operation{}
	if f.Corrupt == nil {
		f.Corrupt = r.reportCorrupt(ctx)
	}
	for {
		page, err := r.store.ListOperations(ctx, f)
		if err != nil {
			return nil, "", fmt.Errorf("operation: list: %w", err)
		}
		for _, op := range page {
			if visible != nil && !visible(op) {
				continue
			}
			ops = append(ops, redact(op))
			if f.Limit > 0 && len(ops) == f.Limit {
				return ops, op.ID, nil
			}
		}
		if f.Limit <= 0 || len(page) < f.Limit {
			return ops, "", nil
		}
		f.After = page[len(page)-1].ID
	}
}

// Cancel asks the operation to stop (AIP-151 CancelOperation). The item in
// flight is interrupted (its Exec context ends; an item that still
// completes is recorded) and no other item starts; the operation ends done
// with a codes.Canceled error, the results of the items it finished, and
// a codes.Canceled result for each item it did not run (NotRun, "not
// run: the operation was cancelled").
// Cancelling a done operation changes nothing and returns it. An
// operation no runner runs (nobody resumed it, or its runner's lease
// ended) is ended at once; one another runner holds (another replica) is
// marked CancelRequested, and that runner stops it at its next lease
// renewal. Cancel returns the operation's latest state, which may not be
// done yet: Wait for it.
func (r *Runner) Cancel(ctx context.Context, id string, visible Visible) (*state.Operation, error) {
	op, err := r.get(ctx, id, visible)
	if err != nil {
		return nil, fmt.Errorf("operation: cancel: %w", err)
	}
	if op.Done {
		return redact(op), nil
	}
	var (
		cancel context.CancelCauseFunc
		local  bool
	)
	now := time.Now()
	op, err = r.store.UpdateOperation(ctx, id, func(o *state.Operation) error {
		if o.Done {
			return nil
		}
		// Whether this process runs it is read here, with the stored
		// operation, not before: a resume of this runner tracks an
		// operation before it claims it, so a claim this update sees is
		// one whose run is tracked, and that run is cancelled, not
		// ended under it while its items go on.
		r.mu.Lock()
		cancel, local = r.running[id]
		r.mu.Unlock()
		o.CancelRequested = true
		if !local && !r.heldByOther(o, now) {
			r.end(o, cancelled(), now)
		} else {
			o.UpdateTime = now
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("operation: cancel: %w", err)
	}
	if local {
		cancel(ErrCancelRequested)
	}
	r.notify(id)
	r.log.InfoContext(ctx, "operation cancel requested", "operation", id, "running_here", local)
	return redact(op), nil
}

// OtherRunnerPoll is how often Wait reads an operation that this process
// does not run (another replica runs it): no notification of this
// runner's comes when it changes.
const OtherRunnerPoll = time.Second

// Wait returns the operation when it is done, or its latest state when
// timeout passes first (AIP-151 WaitOperation). timeout zero or above
// Options.MaxWait means MaxWait. It waits on a notification from this
// process's runner, not by polling the store, for an operation this
// process runs; one another replica runs it reads every OtherRunnerPoll,
// so that it is returned within that of its end, not at the timeout. When the runner is closing, it returns the latest state at
// once (the operation resumes after the restart; wait again then). When
// ctx ends first it returns ctx's error.
func (r *Runner) Wait(ctx context.Context, id string, timeout time.Duration, visible Visible) (*state.Operation, error) {
	if timeout <= 0 || timeout > r.maxWait {
		timeout = r.maxWait
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed, release := r.subscribe(id)
		op, err := r.get(ctx, id, visible)
		if err != nil || op.Done {
			release()
			if err != nil {
				return nil, fmt.Errorf("operation: wait: %w", err)
			}
			return redact(op), nil
		}
		var poll <-chan time.Time // nil: never
		if !r.runsHere(id) {
			poll = time.After(OtherRunnerPoll) // collected once it fires or is dropped
		}
		select {
		case <-changed:
			release()
		case <-poll:
			release()
		case <-timer.C:
			release()
			if op, err = r.get(ctx, id, visible); err != nil {
				return nil, fmt.Errorf("operation: wait: %w", err)
			}
			return redact(op), nil
		case <-r.closing:
			release()
			if op, err = r.get(ctx, id, visible); err != nil {
				return nil, fmt.Errorf("operation: wait: %w", err)
			}
			return redact(op), nil
		case <-ctx.Done():
			release()
			return nil, fmt.Errorf("operation: wait %s: %w", id, context.Cause(ctx))
		}
	}
}

// runsHere reports whether this process runs (or queues) operation id,
// and so notifies its waiters of its changes.
func (r *Runner) runsHere(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.running[id]
	return ok
}

// watch is the notification for one operation: ch is closed (and
// replaced) whenever the runner stores a change; refs counts the waiters.
type watch struct {
	ch   chan struct{}
	refs int
}

// subscribe returns a channel closed at the operation's next stored
// change, and a release function to call once done with it.
func (r *Runner) subscribe(id string) (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watches[id]
	if w == nil {
		w = &watch{ch: make(chan struct{})}
		r.watches[id] = w
	}
	w.refs++
	return w.ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		w.refs--
		if w.refs == 0 && r.watches[id] == w {
			delete(r.watches, id)
		}
	}
}

// notify wakes the operation's waiters.
func (r *Runner) notify(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.watches[id]; w != nil {
		close(w.ch)
		w.ch = make(chan struct{})
	}
}
