package operation

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestRunningOperationLostByStore: a store that loses a running operation
// (a Redis restarted without persistence, or failed over to a replica
// that lagged) stops it at the runner's next record of progress, and the
// log says what that means: its remaining items do not run. It does not
// say the operation resumes after a restart, which it never does.
func TestRunningOperationLostByStore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		started, release := make(chan struct{}), make(chan struct{})
		f := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(0) {
				close(started)
				<-release
			}
			return state.ItemResult{Code: codes.OK, Action: "create"}
		}}
		r, logs := newRunner(t, mem, f.exec, Options{FlushEvery: 1})
		defer closeBounded(t, r)
		op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
		if err != nil {
			t.Fatal(err)
		}
		<-started
		if err := mem.DeleteOperation(t.Context(), op.ID); err != nil { // the store lost it
			t.Fatal(err)
		}
		close(release)
		synctest.Wait()
		if n := f.total(); n != 1 {
			t.Errorf("%d items ran, want the one running when the store lost the operation", n)
		}
		out := logs.String()
		if strings.Contains(out, "resumes after a restart") {
			t.Errorf("the runner says the lost operation resumes after a restart:\n%s", out)
		}
		if !strings.Contains(out, "its remaining items will not run") || !strings.Contains(out, op.ID) {
			t.Errorf("no log line says the operation is gone:\n%s", out)
		}
	})
}
