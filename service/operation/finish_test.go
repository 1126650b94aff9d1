package operation

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestFinishHook: Finish is called once per run of an operation in this
// process, after its last item: when it is done, when it is cancelled (with
// a context the cancel did not end), and when Close pauses it. A Wait in
// progress returns the operation as it is when Close is called.
func TestFinishHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		var (
			mu       sync.Mutex
			finished = map[string]int{}
			ctxErr   = map[string]error{}
		)
		exec := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			select {
			case <-time.After(10 * time.Second):
				return state.ItemResult{Code: codes.OK, Action: "create"}
			case <-ctx.Done():
				return state.ItemResult{Code: codes.Canceled}
			}
		}}
		r, err := New(Options{Store: store, Exec: exec.exec, FlushEvery: 1, Finish: func(ctx context.Context, id string) {
			mu.Lock()
			defer mu.Unlock()
			if exec.total() == 0 {
				t.Errorf("Finish of %s before any item ran", id)
			}
			finished[id]++
			ctxErr[id] = ctx.Err()
		}})
		if err != nil {
			t.Fatal(err)
		}
		done, err := r.Start(ctx, newOp("alice", 2, "v"))
		if err != nil {
			t.Fatal(err)
		}
		cancelled, err := r.Start(ctx, newOp("alice", 3, "v"))
		if err != nil {
			t.Fatal(err)
		}
		paused, err := r.Start(ctx, newOp("alice", 5, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if op, err := r.Wait(ctx, done.ID, time.Minute, nil); err != nil || !op.Done {
			t.Fatalf("Wait: %+v %v", op, err)
		}
		if _, err := r.Cancel(ctx, cancelled.ID, nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mu.Lock()
		if finished[done.ID] != 1 || finished[cancelled.ID] != 1 || finished[paused.ID] != 0 {
			t.Errorf("Finish calls %v: want one for the done and the cancelled operation, none for the running one", finished)
		}
		if ctxErr[cancelled.ID] != nil {
			t.Errorf("Finish of the cancelled operation got an ended context: %v", ctxErr[cancelled.ID])
		}
		mu.Unlock()

		waited := make(chan *state.Operation)
		go func() {
			op, err := r.Wait(ctx, paused.ID, time.Hour, nil)
			if err != nil {
				t.Error(err)
			}
			waited <- op
		}()
		synctest.Wait()
		start := time.Now()
		if err := r.Close(ctx); err != nil {
			t.Fatal(err)
		}
		op := <-waited
		if op.Done || time.Since(start) > 10*time.Second {
			t.Errorf("Wait during Close: %+v after %v; want the paused operation, at once", op, time.Since(start))
		}
		mu.Lock()
		defer mu.Unlock()
		if finished[paused.ID] != 1 {
			t.Errorf("Finish of the paused operation called %d times, want 1", finished[paused.ID])
		}
	})
}
