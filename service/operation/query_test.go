package operation

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestCancel cancels operations at different points.
func TestCancel(t *testing.T) {
	tests := []struct {
		name string
		// inFlight is how Exec behaves on item 2, in flight when the
		// cancel comes: true honours ctx and reports Canceled, false
		// completes the write anyway.
		honour  bool
		wantRun int
	}{
		{name: "item in flight interrupted", honour: true, wantRun: 2},
		{name: "item in flight completes", honour: false, wantRun: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemory(t)
				inFlight := make(chan struct{})
				fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
					if item.Name != itemName(2) {
						return state.ItemResult{Code: codes.OK}
					}
					close(inFlight)
					<-ctx.Done()
					if tt.honour {
						return state.ItemResult{Code: codes.Canceled}
					}
					return state.ItemResult{Code: codes.OK}
				}}
				r, _ := newRunner(t, mem, fe.exec, Options{FlushEvery: 1})
				defer closeRunner(t, r)
				op, err := r.Start(t.Context(), newOp("alice", 5, "v"))
				if err != nil {
					t.Fatal(err)
				}
				<-inFlight
				if _, err := r.Cancel(t.Context(), op.ID, CallerOnly("bob")); !errors.Is(err, state.ErrNotFound) {
					t.Errorf("Cancel by another caller = %v, want ErrNotFound", err)
				}
				if _, err := r.Cancel(t.Context(), op.ID, CallerOnly("alice")); err != nil {
					t.Fatal(err)
				}
				done := waitDone(t, r, op.ID)
				if done.Error == nil || done.Error.Code != codes.Canceled {
					t.Fatalf("Error = %+v, want Canceled", done.Error)
				}
				// One result per item: those not run say so, and count
				// as remaining.
				if len(done.Results) != 5 || done.Metadata.Written != tt.wantRun || done.Metadata.Failed != 0 ||
					done.Metadata.Remaining != 5-tt.wantRun || done.Metadata.Total != 5 || !done.CancelRequested {
					t.Errorf("cancelled: %+v results %d", done.Metadata, len(done.Results))
				}
				for i, res := range done.Results {
					want := state.ItemResult{Name: itemName(i), Code: codes.OK}
					if i >= tt.wantRun {
						want = state.ItemResult{Name: itemName(i), Code: codes.Canceled, Message: "not run: the operation was cancelled", NotRun: true}
					}
					if res != want {
						t.Errorf("result %d = %+v, want %+v", i, res, want)
					}
				}
				if n := fe.count(itemName(3)) + fe.count(itemName(4)); n != 0 {
					t.Errorf("items after the cancel ran %d times", n)
				}
				// Cancelling a done operation changes nothing.
				again, err := r.Cancel(t.Context(), op.ID, nil)
				if err != nil || !again.Done || !again.UpdateTime.Equal(done.UpdateTime) || len(again.Results) != 5 {
					t.Errorf("Cancel of a done operation = %+v, %v", again, err)
				}
			})
		})
	}
}

// TestCancelQueued cancels an operation waiting for a slot: it ends at once
// without running an item.
func TestCancelQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
			<-release
			return state.ItemResult{Code: codes.OK}
		}}
		r, _ := newRunner(t, newMemory(t), fe.exec, Options{MaxRunning: 1})
		defer closeRunner(t, r)
		first, err := r.Start(t.Context(), newOp("alice", 1, "v"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the first operation holds the slot
		queued, err := r.Start(t.Context(), newOp("alice", 2, "w"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if _, err := r.Cancel(t.Context(), queued.ID, nil); err != nil {
			t.Fatal(err)
		}
		done := waitDone(t, r, queued.ID)
		if done.Error == nil || done.Error.Code != codes.Canceled || len(done.Results) != 2 || notRun(done) != 2 || done.Metadata.Remaining != 2 {
			t.Errorf("queued and cancelled: %+v %+v %+v", done.Error, done.Metadata, done.Results)
		}
		if n := fe.total(); n != 1 {
			t.Errorf("Exec ran %d times, want 1 (the first operation's item only)", n)
		}
		close(release)
		waitDone(t, r, first.ID)
	})
}

// TestCancelNotRunHere ends an operation nobody runs (stored but not
// resumed) at once.
func TestCancelNotRunHere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		op := newOp("alice", 2, "v")
		op.ID = "orphan"
		op.Metadata = state.Progress{Total: 2, Remaining: 2}
		if err := mem.PutOperation(t.Context(), op); err != nil {
			t.Fatal(err)
		}
		fe := &fakeExec{}
		r, _ := newRunner(t, mem, fe.exec, Options{})
		defer closeRunner(t, r)
		got, err := r.Cancel(t.Context(), "orphan", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Done || got.Error == nil || got.Error.Code != codes.Canceled || got.Pending != nil ||
			len(got.Results) != 2 || notRun(got) != 2 || got.Metadata.Remaining != 2 || got.Metadata.Failed != 0 {
			t.Errorf("Cancel = %+v", got)
		}
		if n, err := r.Resume(t.Context()); n != 0 || err != nil {
			t.Errorf("Resume after the cancel = %d, %v; want nothing to resume", n, err)
		}
		if fe.total() != 0 {
			t.Errorf("Exec ran")
		}
	})
}

func TestWait(t *testing.T) {
	tests := []struct {
		name     string
		timeout  time.Duration
		maxWait  time.Duration
		itemTime time.Duration // each of 3 items
		wantDone bool
		wantTook time.Duration
	}{
		{name: "done before the timeout", timeout: time.Minute, itemTime: 10 * time.Second, wantDone: true, wantTook: 30 * time.Second},
		{name: "timeout first", timeout: 15 * time.Second, itemTime: 10 * time.Second, wantTook: 15 * time.Second},
		{name: "zero timeout means MaxWait", timeout: 0, maxWait: 25 * time.Second, itemTime: 10 * time.Second, wantTook: 25 * time.Second},
		{name: "timeout capped by MaxWait", timeout: time.Hour, maxWait: 5 * time.Second, itemTime: 10 * time.Second, wantTook: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
					time.Sleep(tt.itemTime)
					return state.ItemResult{Code: codes.OK}
				}}
				r, _ := newRunner(t, newMemory(t), fe.exec, Options{MaxWait: tt.maxWait, FlushEvery: 1})
				defer closeRunner(t, r)
				op, err := r.Start(t.Context(), newOp("alice", 3, "v"))
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				got, err := r.Wait(t.Context(), op.ID, tt.timeout, CallerOnly("alice"))
				if err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took != tt.wantTook || got.Done != tt.wantDone {
					t.Errorf("Wait returned after %v, done=%v; want %v, %v", took, got.Done, tt.wantTook, tt.wantDone)
				}
				// The latest state: the items finished by then.
				if want := min(3, int(tt.wantTook/tt.itemTime)); got.Metadata.Written != want {
					t.Errorf("Written = %d, want %d", got.Metadata.Written, want)
				}
				waitDone(t, r, op.ID)
			})
		})
	}
}

// TestWaitDoesNotPoll: a Wait on an operation that does not change reads
// the store twice (before and after), however long it waits.
func TestWaitDoesNotPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		fe := &fakeExec{fn: func(context.Context, *state.Operation, state.PendingItem) state.ItemResult {
			<-release
			return state.ItemResult{Code: codes.OK}
		}}
		hs := &hookStore{Operations: newMemory(t)}
		r, _ := newRunner(t, hs, fe.exec, Options{MaxWait: time.Hour})
		defer closeRunner(t, r)
		op, err := r.Start(t.Context(), newOp("alice", 1, "v"))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		before := hs.getCount()
		got, err := r.Wait(t.Context(), op.ID, time.Hour, nil)
		if err != nil || got.Done {
			t.Fatalf("Wait = %+v, %v", got, err)
		}
		if n := hs.getCount() - before; n != 2 {
			t.Errorf("an hour's Wait read the store %d times, want 2", n)
		}
		close(release)
		waitDone(t, r, op.ID)
	})
}

func TestWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fe := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			return blockUntilDone(ctx)
		}}
		r, _ := newRunner(t, newMemory(t), fe.exec, Options{})
		op, err := r.Start(t.Context(), newOp("alice", 1, "v"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wait(t.Context(), op.ID, time.Second, CallerOnly("bob")); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Wait by another caller = %v, want ErrNotFound", err)
		}
		if _, err := r.Wait(t.Context(), "missing", time.Second, nil); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Wait for a missing operation = %v, want ErrNotFound", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := r.Wait(ctx, op.ID, time.Minute, nil); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 3*time.Second {
			t.Errorf("Wait with a 3s context = %v after %v", err, time.Since(start))
		}
		if len(r.watches) != 0 {
			t.Errorf("watches left behind: %d", len(r.watches))
		}
		if _, err := r.Cancel(t.Context(), op.ID, nil); err != nil {
			t.Fatal(err)
		}
		waitDone(t, r, op.ID)
		closeRunner(t, r)
	})
}

func TestVisibility(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newRunner(t, newMemory(t), (&fakeExec{}).exec, Options{})
		defer closeRunner(t, r)
		byCaller := map[string][]string{}
		for i, caller := range []string{"alice", "bob", "alice", "carol", "alice", "bob", "alice"} {
			op := newOp(caller, 1, "v")
			op.ID = string(rune('a'+i)) + "-op"
			if _, err := r.Start(t.Context(), op); err != nil {
				t.Fatal(err)
			}
			byCaller[caller] = append(byCaller[caller], op.ID)
		}
		if _, err := r.Get(t.Context(), "b-op", CallerOnly("alice")); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Get of bob's op by alice = %v, want ErrNotFound", err)
		}
		if op, err := r.Get(t.Context(), "b-op", CallerOnly("bob")); err != nil || op.Caller != "bob" {
			t.Errorf("Get of bob's op by bob = %+v, %v", op, err)
		}
		readsAll := func(op *state.Operation) bool { return op.Caller == "carol" || op.Caller == "bob" }
		tests := []struct {
			name    string
			visible Visible
			filter  state.OperationFilter
			want    []string
		}{
			{name: "own, index", visible: CallerOnly("alice"), filter: state.OperationFilter{Caller: "alice"}, want: byCaller["alice"]},
			{name: "own, filtered", visible: CallerOnly("alice"), want: byCaller["alice"]},
			{name: "policy", visible: readsAll, want: []string{"b-op", "d-op", "f-op"}},
			{name: "nobody", visible: CallerOnly("dave"), want: nil},
		}
		for _, tt := range tests {
			for _, limit := range []int{0, 1, 2, 3, 10} {
				var got []string
				f := tt.filter
				f.Limit = limit
				for pages := 0; ; pages++ {
					if pages > 10 {
						t.Fatalf("%s, limit %d: no end of pages", tt.name, limit)
					}
					ops, next, err := r.List(t.Context(), f, tt.visible)
					if err != nil {
						t.Fatal(err)
					}
					if limit > 0 && len(ops) > limit {
						t.Errorf("%s: page of %d, limit %d", tt.name, len(ops), limit)
					}
					for _, op := range ops {
						got = append(got, op.ID)
					}
					if next == "" {
						break
					}
					f.After = next
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s, limit %d: %v, want %v", tt.name, limit, got, tt.want)
				}
			}
		}
	})
}
