package operation

import (
	"context"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestCancelRacesOwnResume: a Cancel whose store update comes after a
// Resume on the same runner claimed the operation must cancel that run,
// not end the operation under it (heldByOther is false for the runner's
// own live lease): else every item ran after the operation was reported
// done, "3 of 3 items not run" (found by a review).
func TestCancelRacesOwnResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		in := newOp("alice", 3, "v")
		in.ID, in.Metadata.Total = "op1", 3 // left by a previous process, lease released
		if err := mem.PutOperation(t.Context(), in); err != nil {
			t.Fatal(err)
		}
		gate := make(chan struct{})
		hs := &hookStore{Operations: mem, updateErr: func(n int) error {
			if n == 1 { // Cancel's update: after its local check, before its write
				<-gate
			}
			return nil
		}}
		started := make(chan struct{})
		goOn := make(chan struct{})
		fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(0) {
				close(started)
				<-goOn
			}
			return state.ItemResult{Code: codes.OK, Action: "create"}
		}}
		r, _ := newRunner(t, hs, fe.exec, Options{})
		defer closeBounded(t, r)
		cancelled := make(chan *state.Operation)
		go func() {
			op, err := r.Cancel(context.Background(), "op1", nil)
			if err != nil {
				t.Error(err)
			}
			cancelled <- op
		}()
		synctest.Wait() // Cancel: local=false, blocked in its UpdateOperation
		if n, err := r.Resume(t.Context()); n != 1 || err != nil {
			t.Fatalf("Resume = %d, %v", n, err)
		}
		<-started // claimed by r, item 0 in flight
		close(gate)
		<-cancelled
		close(goOn)
		synctest.Wait()
		final := stored(t, mem, "op1")
		if !final.Done || final.Error == nil || final.Error.Code != codes.Canceled {
			t.Fatalf("stored operation: done=%v error=%+v, want done and cancelled", final.Done, final.Error)
		}
		if got := fe.total(); got != len(final.Results)-notRun(final) {
			t.Errorf("%d items ran, but the cancelled operation records %d results of items run: items ran after it was done", got, len(final.Results)-notRun(final))
		}
		if len(final.Results) != 3 {
			t.Errorf("%d results, want one per item (3)", len(final.Results))
		}
		if fe.total() > 1 {
			t.Errorf("%d items ran after the cancel, want at most the one in flight", fe.total())
		}
	})
}
