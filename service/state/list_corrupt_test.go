package state

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

// testListUndecodable: one stored operation that does not decode (a
// newer broker's format after a rollback, damaged bytes) fails
// ListOperations when OperationFilter.Corrupt is nil, as before; with
// Corrupt set, the list reports it (ID and an error wrapping ErrCorrupt)
// and returns the other operations, the undecodable ones not counted
// towards Limit. An undecodable operation the store can tell is done (by
// its index, or by the "done" its bytes still show) is left out of a
// NotDone list without a report, so resuming does not report it. It
// stays readable as ErrCorrupt, and can be deleted.
func testListUndecodable(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	for _, c := range []struct {
		id, caller string
		done       bool
	}{
		{"a1", "alice", false}, {"a2", "alice", false}, {"a3", "alice", true},
		{"b1", "bob", false}, {"b2", "bob", false},
	} {
		op := operation(c.id, c.caller)
		op.Done = c.done
		if err := s.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	// a2: written by a newer format version; a3: the same, done.
	h.corrupt(t, s, "a2", []byte(`{"v":2,"id":"a2","caller":"alice","kind":"SyncSecrets","done":false}`))
	h.corrupt(t, s, "a3", []byte(`{"v":2,"id":"a3","caller":"alice","kind":"SyncSecrets","done":true}`))

	if _, err := s.ListOperations(ctx, OperationFilter{NotDone: true}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ListOperations without Corrupt: %v, want ErrCorrupt", err)
	}
	tests := []struct {
		name     string
		f        OperationFilter
		want     []string
		reported []string
	}{
		{"not done (resume)", OperationFilter{NotDone: true}, []string{"a1", "b1", "b2"}, []string{"a2"}},
		{"not done, paged", OperationFilter{NotDone: true, After: "a1", Limit: 2}, []string{"b1", "b2"}, []string{"a2"}},
		{"caller", OperationFilter{Caller: "alice"}, []string{"a1"}, []string{"a2", "a3"}},
		{"all, limit", OperationFilter{Limit: 2}, []string{"a1", "b1"}, []string{"a2", "a3"}},
		{"other caller", OperationFilter{Caller: "bob"}, []string{"b1", "b2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var reported []string
			tt.f.Corrupt = func(id string, err error) {
				mu.Lock()
				defer mu.Unlock()
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("Corrupt(%s, %v): the error does not wrap ErrCorrupt", id, err)
				}
				reported = append(reported, id)
			}
			ops, err := s.ListOperations(ctx, tt.f)
			if err != nil {
				t.Fatalf("ListOperations: %v", err)
			}
			var got []string
			for _, op := range ops {
				got = append(got, op.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("listed %v, want %v", got, tt.want)
			}
			if !slices.Equal(reported, tt.reported) {
				t.Errorf("reported %v as undecodable, want %v", reported, tt.reported)
			}
		})
	}
	if _, err := s.GetOperation(ctx, "a2"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetOperation of the undecodable operation: %v, want ErrCorrupt", err)
	}
	if err := s.DeleteOperation(ctx, "a2"); err != nil {
		t.Fatalf("DeleteOperation of the undecodable operation: %v", err)
	}
	if ops, err := s.ListOperations(ctx, OperationFilter{NotDone: true}); err != nil || len(ops) != 3 {
		t.Errorf("after deleting it: %d operations, %v; want 3", len(ops), err)
	}
}
