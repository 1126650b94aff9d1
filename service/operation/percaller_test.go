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

// Options.MaxPerCaller counts an unauthenticated caller's operations
// (Caller empty) by the address they came from (ClientAddr): another
// address has a bound of its own, the same address shares it, and an
// address never counts with an authenticated caller named like it,
// which is counted by its name only, whatever its address. After a
// restart the operations Resume takes up count under the same address.
func TestMaxPerCallerByAddress(t *testing.T) {
	const limit = 2
	type who struct{ caller, addr string }
	tests := []struct {
		name    string
		full    who  // has limit unfinished operations
		restart bool // a restart between full's operations and next's
		next    who
		refused bool
	}{
		{"same address", who{"", "192.0.2.1"}, false, who{"", "192.0.2.1"}, true},
		{"another address", who{"", "192.0.2.1"}, false, who{"", "192.0.2.2"}, false},
		{"no address, an address", who{"", ""}, false, who{"", "192.0.2.1"}, false},
		{"a caller named like the address", who{"", "192.0.2.1"}, false, who{"192.0.2.1", ""}, false},
		{"an address like a caller's name", who{"192.0.2.1", ""}, false, who{"", "192.0.2.1"}, false},
		{"an authenticated caller from the address", who{"", "192.0.2.1"}, false, who{"token:ci", "192.0.2.1"}, false},
		{"an authenticated caller from another address", who{"token:ci", "192.0.2.1"}, false, who{"token:ci", "192.0.2.2"}, true},
		{"same address after a restart", who{"", "192.0.2.1"}, true, who{"", "192.0.2.1"}, true},
		{"another address after a restart", who{"", "192.0.2.1"}, true, who{"", "192.0.2.2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemory(t)
				held := func(ctx context.Context, _ *state.Operation, _ state.PendingItem) state.ItemResult {
					return blockUntilDone(ctx)
				}
				op := func(w who) *state.Operation {
					o := newOp(w.caller, 1, "v")
					o.ClientAddr = w.addr
					return o
				}
				r, _ := newRunner(t, store, held, Options{MaxPerCaller: limit})
				for i := range limit {
					if _, err := r.Start(t.Context(), op(tt.full)); err != nil {
						t.Fatalf("%+v's operation %d: %v", tt.full, i, err)
					}
				}
				if tt.restart {
					synctest.Wait()
					stopped, stop := context.WithCancel(context.Background())
					stop() // a hard stop: the items in flight are cut, to run again
					_ = r.Close(stopped)
					r, _ = newRunner(t, store, held, Options{MaxPerCaller: limit})
					if n, err := r.Resume(t.Context()); n != limit || err != nil {
						t.Fatalf("Resume = %d, %v; want %d", n, err, limit)
					}
				}
				_, err := r.Start(t.Context(), op(tt.next))
				if got := errors.Is(err, ErrTooMany); got != tt.refused || (!tt.refused && err != nil) {
					t.Errorf("%+v's operation while %+v has %d: %v; refused (ErrTooMany) %v, want %v", tt.next, tt.full, limit, err, got, tt.refused)
				}
				synctest.Wait()
				stopped, stop := context.WithCancel(context.Background())
				stop()
				_ = r.Close(stopped)
			})
		})
	}
}
