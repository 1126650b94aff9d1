package operation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// errDone: the stored operation is already done (another replica, or a
// Cancel of an operation nobody ran, finished it).
var errDone = errors.New("operation is already done")

// errConflict: the stored pending items are not the ones this runner ran.
var errConflict = errors.New("stored pending items differ from the items run")

// run runs one operation until it is done, the runner closes, or its
// record cannot be updated. ctx is the operation's context (see track).
func (r *Runner) run(ctx context.Context, id string) {
	defer r.untrack(id)
	finished := false
	if r.onFinish != nil {
		defer func() {
			if finished {
				return
			}
			// A cancelled operation still finishes its work; a hard stop
			// (Close out of time) does not wait for it.
			fctx := context.WithoutCancel(ctx)
			if r.ctx.Err() != nil {
				fctx = r.ctx
			}
			r.onFinish(fctx, id)
		}()
	}
	// The store outlives a hard stop (Close cancels r.ctx) long enough to
	// record what finished.
	sctx := context.WithoutCancel(ctx)
	holding := false // a slot: this run's turn
	defer func() {
		if holding {
			<-r.slots
		}
	}()
	r.waiting.Add(1)
	select {
	case r.slots <- struct{}{}:
		r.waiting.Add(-1)
		holding = true
	case <-ctx.Done():
		r.waiting.Add(-1)
		if r.ctx.Err() != nil {
			r.release(sctx, id, nil) // Start's lease
			return
		}
		// Cancelled while waiting for a slot: it ends below without
		// running an item, so it needs no slot.
	case <-r.closing:
		r.waiting.Add(-1)
		r.release(sctx, id, nil) // Start's lease
		return
	}
	op, err := r.claim(sctx, id)
	switch {
	case errors.Is(err, errLeaseHeld):
		r.log.DebugContext(sctx, "operation not run: another runner holds its lease", "operation", id)
		finished = true // this process never ran it
		return
	case errors.Is(err, errDone):
		return
	case err != nil:
		r.log.ErrorContext(sctx, "operation not run: cannot claim it", "operation", id, "error", err)
		return
	}
	r.notify(id)
	stopRenew := r.renew(sctx, id, r.cancelFunc(id), op.LeaseUntil)
	defer stopRenew()
	var group []state.ItemResult // finished items not recorded yet: op.Pending[:len(group)]
	lastFlush := time.Now()
	// flush records group; op becomes the operation as recorded, whose
	// Pending starts after group.
	flush := func() error {
		recorded, err := r.update(sctx, id, r.record(group))
		if err != nil {
			return err
		}
		r.recorded(sctx, recorded, group)
		op, group, lastFlush = recorded, nil, time.Now()
		return nil
	}
	for !op.Done {
		next := len(group) // op.Pending[next] is the next item to run
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errLeaseLost) || errors.Is(cause, errDone):
			// Logged by renew; the item in flight, if any, was dropped.
			return
		case next == len(op.Pending):
			if r.onFinish != nil {
				r.onFinish(sctx, id)
				finished = true
			}
			stopRenew() // so it does not find the operation done by this run
			r.finish(sctx, id, group, nil)
			return
		case op.CancelRequested || errors.Is(cause, ErrCancelRequested):
			if r.onFinish != nil {
				r.onFinish(sctx, id)
				finished = true
			}
			stopRenew() // so it does not find the operation done by this run
			r.finish(sctx, id, group, cancelled())
			return
		case isClosed(r.closing):
			stopRenew()
			r.release(sctx, id, group)
			if r.volatile {
				r.log.WarnContext(sctx, "operation lost at shutdown: the state store is in memory (no --state-dir or --redis-url)",
					"operation", id, "remaining", len(op.Pending)-len(group))
			} else {
				r.log.InfoContext(sctx, "operation paused by shutdown; it resumes after a restart",
					"operation", id, "remaining", len(op.Pending)-len(group))
			}
			return
		}
		if !holding {
			if !r.takeTurn(ctx) {
				if r.ctx.Err() != nil { // a hard stop
					r.release(sctx, id, group)
					return
				}
				continue // cancelled, or closing: the checks above end the run
			}
			holding = true
			continue // the checks above again: it may have been cancelled, or the runner closed, while it waited
		}
		// The group is recorded FlushInterval after the last record at
		// the latest, also while this item still runs.
		var due time.Time
		if len(group) > 0 {
			due = lastFlush.Add(r.flushInterval)
		}
		res, ok, err := r.runItemFlushing(ctx, op, op.Pending[next], due, flush)
		if err != nil {
			return // logged by update; the item returned
		}
		yield := r.waiting.Load() > 0
		if yield {
			// Another operation waits for a slot: this one yields its
			// turn after each item and queues again behind it, so one
			// caller's long operations cannot keep every slot (a channel
			// serves its waiters in turn).
			<-r.slots
			holding = false
		}
		if !ok {
			continue // interrupted: the checks above end the run
		}
		group = append(group, res)
		// An operation that yields records what it finished before it
		// waits for its next turn, which may take longer than
		// FlushInterval.
		if yield || len(group) >= r.flushEvery || time.Since(lastFlush) >= r.flushInterval {
			if err := flush(); err != nil {
				return
			}
		}
	}
}

// itemDone is what runItem returned.
type itemDone struct {
	res state.ItemResult
	ok  bool
}

// runItemFlushing runs item of op, as runItem, and calls flush once at
// due (when due is not zero) if the item is still running then: a run
// records the items it finished while the next one waits for the pacer,
// which may take up to a rate limit's reset. When flush fails it stops
// the item, waits for it to return and returns flush's error.
func (r *Runner) runItemFlushing(ctx context.Context, op *state.Operation, item state.PendingItem, due time.Time, flush func() error) (state.ItemResult, bool, error) {
	ictx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan itemDone, 1)
	go func() {
		res, ok := r.runItem(ictx, op, item)
		done <- itemDone{res, ok}
	}()
	var timer <-chan time.Time
	if !due.IsZero() {
		t := time.NewTimer(time.Until(due))
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case d := <-done:
			return d.res, d.ok, nil
		case <-timer:
			timer = nil
			if err := flush(); err != nil {
				stop()
				<-done
				return state.ItemResult{}, false, err
			}
		}
	}
}

// takeTurn waits for a slot for an operation's next item; false when ctx
// ended or the runner is closing first.
func (r *Runner) takeTurn(ctx context.Context) bool {
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	select {
	case r.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-r.closing:
		return false
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Interrupted reports whether res, the result of an item Exec ran under
// ctx, is only the runner's own interruption (the operation cancelled, or
// the runner stopped, while the item ran): such an item has not ended, is
// not recorded and stays pending.
func Interrupted(ctx context.Context, res state.ItemResult) bool {
	return ctx.Err() != nil && (res.Code == codes.Canceled || res.Code == codes.DeadlineExceeded)
}

// runItem runs one item. ok is false when the item was interrupted (the
// operation cancelled or the runner stopped while it ran) and did not
// complete: it is then not recorded and stays pending.
func (r *Runner) runItem(ctx context.Context, op *state.Operation, item state.PendingItem) (res state.ItemResult, ok bool) {
	if item.ValueLost {
		return state.ItemResult{Name: item.Name, Sent: item.Sent, Code: codes.DataLoss, Message: LostValueMessage}, true
	}
	view := *op
	view.Results, view.Pending = nil, nil
	res = r.safeExec(ctx, &view, item)
	res.Name, res.Sent = item.Name, item.Sent
	if Interrupted(ctx, res) {
		return res, false
	}
	if res.Code != codes.OK {
		r.log.DebugContext(ctx, "operation item failed", "operation", op.ID, "item", item.Name, "code", res.Code.String())
	}
	return res, true
}

// safeExec calls Exec, turning a panic into an Internal result. The panic
// value is not logged: it might hold the item's value.
func (r *Runner) safeExec(ctx context.Context, op *state.Operation, item state.PendingItem) (res state.ItemResult) {
	defer func() {
		if p := recover(); p != nil {
			r.log.ErrorContext(ctx, "operation item panicked", "operation", op.ID, "item", item.Name, "panic_type", fmt.Sprintf("%T", p))
			res = state.ItemResult{Name: item.Name, Code: codes.Internal, Message: "internal error while running the item"}
		}
	}()
	return r.exec(ctx, op, item)
}

// update applies fn to the stored operation, then wakes its waiters. A
// failure is logged: the operation is left as stored, and resumes after a
// restart; one the store no longer holds (a Redis that lost its data) is
// gone, its remaining items with it.
func (r *Runner) update(ctx context.Context, id string, fn func(*state.Operation) error) (*state.Operation, error) {
	op, err := r.store.UpdateOperation(ctx, id, fn)
	if err != nil {
		switch {
		case errors.Is(err, errDone):
			r.log.InfoContext(ctx, "operation stopped: it was finished elsewhere", "operation", id)
		case errors.Is(err, errLeaseLost):
			r.log.InfoContext(ctx, "operation stopped: another runner took it over", "operation", id)
		case errors.Is(err, state.ErrNotFound):
			r.log.ErrorContext(ctx, "operation stopped: the state store no longer holds it (did it lose its data?); its remaining items will not run, and its caller finds no operation", "operation", id)
		default:
			r.log.ErrorContext(ctx, "operation progress not recorded; it resumes after a restart", "operation", id, "error", err)
		}
		return nil, err
	}
	r.notify(id)
	return op, nil
}

// record returns an update that moves group's items from Pending to
// Results.
func (r *Runner) record(group []state.ItemResult) func(*state.Operation) error {
	return func(o *state.Operation) error {
		now := time.Now()
		if err := r.hold(o, now); err != nil {
			return err
		}
		if err := apply(o, group); err != nil {
			return err
		}
		r.progress(o, now)
		return nil
	}
}

// apply moves group's items from o.Pending to o.Results.
func apply(o *state.Operation, group []state.ItemResult) error {
	if o.Done {
		return errDone
	}
	if len(o.Pending) < len(group) {
		return errConflict
	}
	for i, res := range group {
		if o.Pending[i].Name != res.Name {
			return errConflict
		}
	}
	o.Results = append(o.Results, group...)
	o.Pending = o.Pending[len(group):]
	return nil
}

// dropRecorded removes pending items already in Results: when Results and
// Pending together hold more items than Total, the first pending items
// whose name has a result (as many as the excess) were recorded without
// leaving Pending.
func (r *Runner) dropRecorded(o *state.Operation) error {
	if o.Done {
		return errDone
	}
	extra := len(o.Results) + len(o.Pending) - o.Metadata.Total
	done := make(map[string]bool, len(o.Results))
	for _, res := range o.Results {
		done[res.Name] = true
	}
	keep := o.Pending[:0:0]
	for _, p := range o.Pending {
		if extra > 0 && done[p.Name] {
			extra--
			continue
		}
		keep = append(keep, p)
	}
	o.Pending = keep
	r.progress(o, time.Now())
	return nil
}

// finish records group and ends the operation, with e's error unless
// every item ran (a cancel that came after the last item changes
// nothing). Pending is dropped so no value stays stored; the items that
// never ran get results that say so (see end).
func (r *Runner) finish(ctx context.Context, id string, group []state.ItemResult, e *ending) {
	op, err := r.update(ctx, id, func(o *state.Operation) error {
		now := time.Now()
		if err := r.hold(o, now); err != nil {
			return err
		}
		if err := apply(o, group); err != nil {
			return err
		}
		r.end(o, e, now)
		return nil
	})
	if err != nil {
		return
	}
	r.recorded(ctx, op, group)
	code := codes.OK
	if op.Error != nil {
		code = op.Error.Code
	}
	m := op.Metadata
	r.log.InfoContext(ctx, "operation finished", "operation", id, "kind", string(op.Kind), "code", code.String(),
		"total", m.Total, "written", m.Written, "unchanged", m.Unchanged, "failed", m.Failed, "not_run", m.Remaining)
}

// recorded passes the results of group, just recorded in op, to
// Options.Recorded.
func (r *Runner) recorded(ctx context.Context, op *state.Operation, group []state.ItemResult) {
	if r.onRecorded != nil && len(group) > 0 {
		r.onRecorded(ctx, op, group)
	}
}

// ending is why an operation ends with items it did not run: its error,
// and why those items did not run (their results are codes.Canceled,
// "not run: " and notRun).
type ending struct {
	err    state.Status
	notRun string
}

// cancelled is the ending of a cancelled operation (CancelOperation).
func cancelled() *ending {
	return &ending{
		err:    state.Status{Code: codes.Canceled, Message: "operation cancelled"},
		notRun: "the operation was cancelled",
	}
}

// end marks o done (nil e when nothing was left to run). Each item it did
// not run gets a result after the others, in the order they were pending:
// NotRun and codes.Canceled; they count as remaining (progress).
func (r *Runner) end(o *state.Operation, e *ending, now time.Time) {
	remaining := len(o.Pending)
	var st *state.Status
	if remaining > 0 && e != nil {
		st = &state.Status{Code: e.err.Code, Message: fmt.Sprintf("%s; %d of %d items not run", e.err.Message, remaining, o.Metadata.Total)}
		for _, p := range o.Pending {
			o.Results = append(o.Results, state.ItemResult{Name: p.Name, Sent: p.Sent, Code: codes.Canceled, Message: "not run: " + e.notRun, NotRun: true})
		}
	}
	o.Done, o.Error, o.Pending = true, st, nil
	o.LeaseUntil = time.Time{} // a done operation is nobody's to run
	r.progress(o, now)
}
