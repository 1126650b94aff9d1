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

// TestFinishBeforeDone: Finish runs before the operation is marked done,
// so a caller whose Wait returns done sees what Finish recorded (the
// service reads GitHub's updated_at back there: a sync right after would
// otherwise plan unchanged secrets as updates). Both for an operation that
// completes and for one that is cancelled.
func TestFinishBeforeDone(t *testing.T) {
	for _, cancel := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			ctx := context.Background()
			store, err := state.NewMemory(state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			exec := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
				select {
				case <-time.After(time.Second):
					return state.ItemResult{Code: codes.OK, Action: "create"}
				case <-ctx.Done():
					return state.ItemResult{Code: codes.Canceled}
				}
			}}
			var doneAtFinish []bool
			r, err := New(Options{Store: store, Exec: exec.exec, Finish: func(ctx context.Context, id string) {
				op, err := store.GetOperation(ctx, id)
				if err != nil {
					t.Errorf("Finish: %v", err)
					return
				}
				doneAtFinish = append(doneAtFinish, op.Done)
			}})
			if err != nil {
				t.Fatal(err)
			}
			op, err := r.Start(ctx, newOp("alice", 3, "v"))
			if err != nil {
				t.Fatal(err)
			}
			if cancel {
				time.Sleep(1500 * time.Millisecond) // one item done, the second in flight
				if _, err := r.Cancel(ctx, op.ID, nil); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.Wait(ctx, op.ID, time.Minute, nil)
			if err != nil || !got.Done {
				t.Fatalf("Wait: %+v %v", got, err)
			}
			synctest.Wait()
			if len(doneAtFinish) != 1 || doneAtFinish[0] {
				t.Errorf("cancel %v: Finish saw done = %v, want one call before done", cancel, doneAtFinish)
			}
			if err := r.Close(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
