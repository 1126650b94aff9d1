package operation

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestYieldingOperationRecordsWhatItFinished: Options.FlushInterval
// bounds how long a finished item may stay unrecorded, also for an
// operation that yields its slot after an item and then waits for its next
// turn behind every other operation (here 3.6 s, FlushInterval 1 s): it
// records what it finished before it waits, so GetOperation shows the
// progress and a crash in the wait repeats nothing.
func TestYieldingOperationRecordsWhatItFinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
			time.Sleep(400 * time.Millisecond)
			return state.ItemResult{Code: codes.OK}
		}}
		r, _ := newRunner(t, newMemory(t), fe.exec, Options{MaxRunning: 1, FlushEvery: 10, FlushInterval: time.Second})
		defer closeRunner(t, r)
		a, err := r.Start(t.Context(), newOp("alice", 10, "v"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // alice holds the slot, in her first item
		var others []string
		for range 9 {
			op, err := r.Start(t.Context(), newOp("bob", 10, "v"))
			if err != nil {
				t.Fatal(err)
			}
			others = append(others, op.ID)
		}
		// alice's first item ends at 0.4 s; then she waits for 9 items of
		// the others (3.6 s).
		time.Sleep(400*time.Millisecond + 2500*time.Millisecond)
		synctest.Wait()
		got, err := r.Get(t.Context(), a.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Results) == 0 {
			t.Errorf("alice's first item finished 2.5 s ago (FlushInterval 1 s) and is still unrecorded: %+v", got.Metadata)
		}
		for _, id := range append(others, a.ID) {
			if _, err := r.Cancel(t.Context(), id, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}
