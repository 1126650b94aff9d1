package operation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

func TestStartRunsToDone(t *testing.T) {
	unchangedOdd := func(_ context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
		if item.Name == itemName(1) || item.Name == itemName(3) {
			return state.ItemResult{Code: codes.OK, Unchanged: true, Action: "unchanged"}
		}
		if item.Name == itemName(2) {
			return state.ItemResult{Code: codes.PermissionDenied, Message: "denied"}
		}
		return state.ItemResult{Code: codes.OK, Action: "update"}
	}
	tests := []struct {
		name       string
		n          int
		prefilled  []state.ItemResult
		fn         func(context.Context, *state.Operation, state.PendingItem) state.ItemResult
		flushEvery int
		want       state.Progress // counts only
	}{
		{name: "all written, flush each item", n: 3, flushEvery: 1,
			want: state.Progress{Total: 3, Written: 3}},
		{name: "all written, grouped", n: 7, flushEvery: 3,
			want: state.Progress{Total: 7, Written: 7}},
		{name: "mixed results", n: 5, fn: unchangedOdd,
			want: state.Progress{Total: 5, Written: 2, Unchanged: 2, Failed: 1}},
		{name: "prefilled results count", n: 2,
			prefilled: []state.ItemResult{{Name: "repos/o/r/actions/secrets/KEEP", Code: codes.OK, Unchanged: true, Action: "unchanged"}},
			want:      state.Progress{Total: 3, Written: 2, Unchanged: 1}},
		{name: "nothing pending", n: 0,
			want: state.Progress{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemory(t)
				fe := &fakeExec{fn: tt.fn}
				r, _ := newRunner(t, store, fe.exec, Options{FlushEvery: tt.flushEvery})
				defer closeRunner(t, r)
				in := newOp("alice", tt.n, "v")
				in.Results = tt.prefilled
				started, err := r.Start(t.Context(), in)
				if err != nil {
					t.Fatal(err)
				}
				if started.ID == "" || started.Done {
					t.Fatalf("Start returned %+v", started)
				}
				if in.ID != "" || in.CreateTime != (time.Time{}) {
					t.Errorf("Start modified the caller's op: %+v", in)
				}
				op := waitDone(t, r, started.ID)
				if op.Error != nil {
					t.Errorf("Error = %+v, want nil", op.Error)
				}
				got := op.Metadata
				got.EstimatedCompletion = time.Time{}
				if got != tt.want {
					t.Errorf("Metadata = %+v, want %+v", got, tt.want)
				}
				var names []string
				for _, res := range op.Results {
					names = append(names, res.Name)
				}
				var want []string
				for _, res := range tt.prefilled {
					want = append(want, res.Name)
				}
				for i := range tt.n {
					want = append(want, itemName(i))
					if c := fe.count(itemName(i)); c != 1 {
						t.Errorf("Exec(%s) called %d times, want 1", itemName(i), c)
					}
				}
				if !slices.Equal(names, want) {
					t.Errorf("Results = %v, want %v", names, want)
				}
				if op.Pending != nil {
					t.Errorf("a done operation keeps Pending: %v", op.Pending)
				}
				stored, err := store.GetOperation(t.Context(), op.ID)
				if err != nil || !stored.Done || stored.Pending != nil {
					t.Errorf("stored = %+v, %v; want done without pending items", stored, err)
				}
			})
		})
	}
}

// TestProgressAndEstimate follows an operation item by item in fake time:
// each item takes one second, the estimate is one second per remaining
// item.
func TestProgressAndEstimate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemory(t)
		fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			time.Sleep(time.Second)
			return state.ItemResult{Code: codes.OK}
		}}
		r, _ := newRunner(t, store, fe.exec, Options{FlushEvery: 1,
			Estimate: func(remaining int) time.Duration { return time.Duration(remaining) * time.Second }})
		defer closeRunner(t, r)
		start := time.Now()
		op, err := r.Start(t.Context(), newOp("alice", 4, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if want := start.Add(4 * time.Second); !op.Metadata.EstimatedCompletion.Equal(want) || op.Metadata.Remaining != 4 {
			t.Fatalf("at start: %+v, want remaining 4 and ETA %v", op.Metadata, want)
		}
		for done := 1; done <= 3; done++ {
			time.Sleep(time.Second)
			synctest.Wait()
			got, err := r.Get(t.Context(), op.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := got.Metadata
			if m.Written != done || m.Remaining != 4-done || got.Done {
				t.Fatalf("after %d s: %+v done=%v", done, m, got.Done)
			}
			// The estimate is made when the item is recorded: now.
			if want := time.Now().Add(time.Duration(4-done) * time.Second); !m.EstimatedCompletion.Equal(want) {
				t.Errorf("after %d s: ETA %v, want %v", done, m.EstimatedCompletion, want)
			}
		}
		final := waitDone(t, r, op.ID)
		if want := start.Add(4 * time.Second); !final.Metadata.EstimatedCompletion.Equal(want) || !final.UpdateTime.Equal(want) {
			t.Errorf("done: ETA %v, update %v, want both %v", final.Metadata.EstimatedCompletion, final.UpdateTime, want)
		}
	})
}

func TestStartPersistsBeforeReturning(t *testing.T) {
	t.Run("store refuses", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem := newMemory(t)
			fe := &fakeExec{}
			r, _ := newRunner(t, &hookStore{Operations: mem, putErr: errBoom}, fe.exec, Options{})
			_, err := r.Start(t.Context(), newOp("alice", 3, "v"))
			if !errors.Is(err, errBoom) {
				t.Fatalf("Start error = %v, want %v", err, errBoom)
			}
			synctest.Wait()
			closeRunner(t, r)
			if n := fe.total(); n != 0 {
				t.Errorf("Exec ran %d times after a failed Start", n)
			}
			ops, err := mem.ListOperations(t.Context(), state.OperationFilter{})
			if err != nil || len(ops) != 0 {
				t.Errorf("stored %d operations (%v), want none", len(ops), err)
			}
		})
	})
	t.Run("stored when Start returns", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem := newMemory(t)
			release := make(chan struct{})
			fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
				<-release
				return state.ItemResult{Code: codes.OK}
			}}
			r, _ := newRunner(t, mem, fe.exec, Options{})
			op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
			if err != nil {
				t.Fatal(err)
			}
			stored, err := mem.GetOperation(t.Context(), op.ID)
			if err != nil {
				t.Fatalf("not stored when Start returned: %v", err)
			}
			if stored.Done || stored.Metadata.Total != 3 || stored.Metadata.Remaining != 3 || len(stored.Pending) != 3 ||
				string(stored.Pending[0].Value) != "v0" || stored.Caller != "alice" {
				t.Errorf("stored = %+v", stored)
			}
			close(release)
			waitDone(t, r, op.ID)
			closeRunner(t, r)
		})
	})
	t.Run("ID taken", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem := newMemory(t)
			r, _ := newRunner(t, mem, (&fakeExec{}).exec, Options{})
			defer closeRunner(t, r)
			op, err := r.Start(t.Context(), newOp("alice", 1, "v"))
			if err != nil {
				t.Fatal(err)
			}
			again := newOp("bob", 1, "v")
			again.ID = op.ID
			if _, err := r.Start(t.Context(), again); !errors.Is(err, ErrAlreadyExists) {
				t.Errorf("Start with a taken ID: %v, want ErrAlreadyExists", err)
			}
			if got := waitDone(t, r, op.ID); got.Caller != "alice" {
				t.Errorf("the taken operation was replaced: caller %q", got.Caller)
			}
		})
	})
}

func TestNewAndStartRefuse(t *testing.T) {
	mem := newMemory(t)
	exec := (&fakeExec{}).exec
	for _, opts := range []Options{{}, {Store: mem}, {Exec: exec}, {Store: mem, Exec: exec, MaxRunning: -1}} {
		if _, err := New(opts); !errors.Is(err, state.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", opts, err)
		}
	}
	r, _ := newRunner(t, mem, exec, Options{})
	if _, err := r.Start(t.Context(), nil); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("Start(nil) = %v, want ErrInvalid", err)
	}
	bad := newOp("alice", 1, "v")
	bad.Kind = ""
	if _, err := r.Start(t.Context(), bad); !errors.Is(err, state.ErrInvalid) {
		t.Errorf("Start(no kind) = %v, want ErrInvalid", err)
	}
	closeRunner(t, r)
	if _, err := r.Start(t.Context(), newOp("alice", 1, "v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close = %v, want ErrClosed", err)
	}
	left := newOp("alice", 1, "v")
	left.ID = "left"
	if err := mem.PutOperation(t.Context(), left); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Resume(t.Context()); !errors.Is(err, ErrClosed) || n != 0 {
		t.Errorf("Resume after Close = %d, %v; want 0, ErrClosed", n, err)
	}
}

// TestConcurrencyBound runs more operations than MaxRunning: at most
// MaxRunning run items at once, each runs its items one at a time, and all
// finish. The operations take turns (one item each while others wait), so
// the slots stay busy to the end.
func TestConcurrencyBound(t *testing.T) {
	for _, maxRunning := range []int{1, 2, 3} {
		t.Run(string(rune('0'+maxRunning)), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				running := map[string]int{} // op ID -> items in flight
				peakOps, peakItems := 0, 0
				fe := &fakeExec{fn: func(_ context.Context, op *state.Operation, _ state.PendingItem) state.ItemResult {
					mu.Lock()
					running[op.ID]++
					peakOps = max(peakOps, len(running))
					peakItems = max(peakItems, running[op.ID])
					mu.Unlock()
					time.Sleep(time.Second)
					mu.Lock()
					if running[op.ID]--; running[op.ID] == 0 {
						delete(running, op.ID)
					}
					mu.Unlock()
					return state.ItemResult{Code: codes.OK}
				}}
				r, _ := newRunner(t, newMemory(t), fe.exec, Options{MaxRunning: maxRunning})
				defer closeRunner(t, r)
				start := time.Now()
				var ids []string
				for range 5 {
					op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, op.ID)
				}
				for _, id := range ids {
					if op := waitDone(t, r, id); op.Metadata.Written != 3 {
						t.Errorf("%s: %+v", id, op.Metadata)
					}
				}
				if peakOps != maxRunning || peakItems != 1 {
					t.Errorf("peak operations at once %d (want %d), items of one operation at once %d (want 1)", peakOps, maxRunning, peakItems)
				}
				// Fifteen one-second items, maxRunning at a time.
				if took, want := time.Since(start), time.Duration((15+maxRunning-1)/maxRunning)*time.Second; took != want {
					t.Errorf("took %v, want %v", took, want)
				}
			})
		})
	}
}

// TestOperationsTakeTurns: operations that fill every slot with long
// work yield a slot after each item while another operation waits, so
// another caller's one-item operation runs after one item, not after all
// of theirs.
func TestOperationsTakeTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
			time.Sleep(time.Second)
			return state.ItemResult{Code: codes.OK}
		}}
		r, _ := newRunner(t, newMemory(t), fe.exec, Options{MaxRunning: 2})
		defer closeRunner(t, r)
		var long []string
		for range 2 {
			op, err := r.Start(t.Context(), newOp("alice", 100, "v"))
			if err != nil {
				t.Fatal(err)
			}
			long = append(long, op.ID)
		}
		synctest.Wait() // both hold a slot, each in its first item
		start := time.Now()
		op, err := r.Start(t.Context(), newOp("bob", 1, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if op := waitDone(t, r, op.ID); op.Metadata.Written != 1 {
			t.Fatalf("bob's operation: %+v", op.Metadata)
		}
		// One of alice's items ends at 1 s and yields; bob's item runs 1 s.
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("bob's one-item operation took %v behind two of 100 items, want 2s", took)
		}
		for _, id := range long {
			if _, err := r.Cancel(t.Context(), id, nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestExecPanicFailsTheItemOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := &fakeExec{fn: func(_ context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
			if item.Name == itemName(1) {
				panic("boom")
			}
			return state.ItemResult{Code: codes.OK}
		}}
		r, logs := newRunner(t, newMemory(t), fe.exec, Options{})
		defer closeRunner(t, r)
		op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
		if err != nil {
			t.Fatal(err)
		}
		op = waitDone(t, r, op.ID)
		if op.Metadata.Written != 2 || op.Metadata.Failed != 1 || op.Results[1].Code != codes.Internal {
			t.Errorf("after a panic: %+v %+v", op.Metadata, op.Results)
		}
		if !strings.Contains(logs.String(), "operation item panicked") {
			t.Errorf("the panic is not logged: %s", logs)
		}
	})
}

// TestStoreFailureLeavesOperationToResume: when progress cannot be
// recorded, the runner stops the operation and leaves it stored, not
// done, for the next start (once the lease it could not release ends).
func TestStoreFailureLeavesOperationToResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		hs := &hookStore{Operations: mem, updateErr: func(n int) error {
			if n >= 3 { // 1 is the claim, 2 records the first item
				return errBoom
			}
			return nil
		}}
		fe := &fakeExec{}
		r, logs := newRunner(t, hs, fe.exec, Options{FlushEvery: 1})
		op, err := r.Start(t.Context(), newOp("alice", 4, "v"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		closeRunner(t, r)
		if n := fe.total(); n != 2 {
			t.Errorf("Exec ran %d times, want 2 (it stops when the second item cannot be recorded)", n)
		}
		stored, err := mem.GetOperation(t.Context(), op.ID)
		if err != nil || stored.Done || len(stored.Results) != 1 || len(stored.Pending) != 3 {
			t.Fatalf("stored = %+v, %v", stored, err)
		}
		if !strings.Contains(logs.String(), "progress not recorded") {
			t.Errorf("no log of the failure: %s", logs)
		}
		// A new runner on a healthy store finishes it, once the first
		// runner's lease ends.
		fe2 := &fakeExec{}
		r2, _ := newRunner(t, mem, fe2.exec, Options{})
		defer closeRunner(t, r2)
		if n, err := r2.Resume(t.Context()); n != 0 || err != nil {
			t.Fatalf("Resume within the lease = %d, %v; want 0", n, err)
		}
		time.Sleep(DefaultLease)
		if n, err := r2.Resume(t.Context()); n != 1 || err != nil {
			t.Fatalf("Resume = %d, %v", n, err)
		}
		if done := waitDone(t, r2, op.ID); done.Metadata.Written != 4 || fe2.total() != 3 {
			t.Errorf("resumed: %+v, %d calls", done.Metadata, fe2.total())
		}
	})
}
