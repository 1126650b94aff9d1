package operation

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// Options.MaxPerCaller bounds a caller's unfinished operations in a
// runner: Start refuses one more with ErrTooMany and stores nothing;
// another caller's still start; an operation that ends frees its place;
// and the operations Resume takes up, after a restart, are all resumed
// and count against the bound.
func TestMaxPerCaller(t *testing.T) {
	const limit = 2
	synctest.Test(t, func(t *testing.T) {
		store, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		held := func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
			select {
			case <-release:
				return state.ItemResult{Code: codes.OK, Action: "create"}
			case <-ctx.Done():
				return blockUntilDone(ctx)
			}
		}
		r1, _ := newRunner(t, store, held, Options{MaxPerCaller: limit})
		var ids []string
		for i := range limit + 1 {
			op, err := r1.Start(t.Context(), newOp("alice", 1, "v"))
			switch {
			case i < limit && err != nil:
				t.Fatalf("alice's operation %d: %v", i, err)
			case i < limit:
				ids = append(ids, op.ID)
			case !errors.Is(err, ErrTooMany):
				t.Fatalf("alice's operation %d, past the bound: %v, want ErrTooMany", i, err)
			}
		}
		if _, err := r1.Start(t.Context(), newOp("bob", 1, "v")); err != nil {
			t.Fatalf("bob's operation: %v", err)
		}
		stored, err := store.ListOperations(t.Context(), state.OperationFilter{Caller: "alice", NotDone: true})
		if err != nil || len(stored) != limit {
			t.Fatalf("alice's stored operations: %d, %v; want %d (the refused one not stored)", len(stored), err, limit)
		}
		// A restart: the next runner resumes all of them, whatever
		// its bound, and they count against it.
		synctest.Wait()
		stopped, stop := context.WithCancel(context.Background())
		stop() // a hard stop: the items in flight are cut, to run again
		_ = r1.Close(stopped)
		r2, _ := newRunner(t, store, held, Options{MaxPerCaller: limit - 1})
		defer closeRunner(t, r2)
		if n, err := r2.Resume(t.Context()); n != limit+1 || err != nil {
			t.Fatalf("Resume = %d, %v; want %d", n, err, limit+1)
		}
		if _, err := r2.Start(t.Context(), newOp("alice", 1, "v")); !errors.Is(err, ErrTooMany) {
			t.Fatalf("alice's operation after the restart: %v, want ErrTooMany", err)
		}
		close(release)
		for _, id := range ids {
			waitDone(t, r2, id)
		}
		synctest.Wait()
		if _, err := r2.Start(t.Context(), newOp("alice", 1, "v")); err != nil {
			t.Fatalf("alice's operation once hers ended: %v", err)
		}
	})
}
