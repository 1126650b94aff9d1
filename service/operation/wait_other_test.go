package operation

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestWaitOnAnotherRunner: replicas share the store, and a Wait reaches a
// replica that does not run the operation (a load balancer's choice).
// It returns within OtherRunnerPoll of the operation's end, as a Wait on
// the replica that runs it does at once; it returned only at its
// timeout, however long before the operation had ended.
func TestWaitOnAnotherRunner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		release := make(chan struct{})
		fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			select {
			case <-release:
				return state.ItemResult{Code: codes.OK}
			case <-ctx.Done():
				return state.ItemResult{Code: codes.Canceled}
			}
		}}
		a, _ := newRunner(t, mem, fe.exec, Options{})
		defer closeBounded(t, a)
		b, _ := newRunner(t, mem, (&fakeExec{}).exec, Options{MaxWait: time.Hour})
		defer closeBounded(t, b)
		op, err := a.Start(t.Context(), newOp("alice", 1, "v"))
		if err != nil {
			t.Fatal(err)
		}
		const ends = 10 * time.Second
		time.AfterFunc(ends, func() { close(release) })
		start := time.Now()
		got, err := b.Wait(t.Context(), op.ID, time.Hour, nil)
		took := time.Since(start)
		if err != nil || !got.Done {
			t.Fatalf("B's Wait = %+v, %v after %v; want the operation done", got, err, took)
		}
		if took < ends || took > ends+OtherRunnerPoll {
			t.Errorf("B's Wait returned %v after the start; the operation ended at %v", took, ends)
		}
	})
}
