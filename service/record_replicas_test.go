package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// trackingStore is a memory store shared with other replicas, as far as
// writes are counted: its WriteTracker answers what the test says another
// replica is doing, and counts the begun and ended writes.
type trackingStore struct {
	state.Store
	mu                 sync.Mutex
	beginAlone         bool
	endAlone           bool
	beginErr, endErr   error
	begun, ended       int
	keys               []string
	tokens, endedToken []string
}

func (t *trackingStore) BeginWrite(_ context.Context, key string) (string, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.begun++ // counted even when it fails: the store may have counted it
	t.keys = append(t.keys, key)
	token := "w" + string(rune('0'+t.begun))
	t.tokens = append(t.tokens, token)
	if t.beginErr != nil {
		return token, false, t.beginErr
	}
	return token, t.beginAlone, nil
}

func (t *trackingStore) EndWrite(_ context.Context, _, token string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended++
	t.endedToken = append(t.endedToken, token)
	return t.endAlone, t.endErr
}

// TestWritesOfOtherReplicas: a write during which another replica wrote
// the same secret (the shared store's WriteTracker says so at its begin
// or its end) leaves the record distrusted, so the same put again is
// written, not answered unchanged; a write alone throughout is recorded
// as before. Every write begun is ended, with its own token.
func TestWritesOfOtherReplicas(t *testing.T) {
	failure := errors.New("redis: connection refused")
	for _, tc := range []struct {
		name                string
		beginAlone          bool
		endAlone            bool
		beginErr, endErr    error
		wantSecondUnchanged bool
	}{
		{name: "alone throughout", beginAlone: true, endAlone: true, wantSecondUnchanged: true},
		{name: "another replica writing at the begin", beginAlone: false, endAlone: true},
		{name: "another replica began before the end", beginAlone: true, endAlone: false},
		{name: "the begin cannot be counted", beginErr: failure},
		{name: "the end cannot be counted", beginAlone: true, endAlone: true, endErr: failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				st := &trackingStore{Store: mem, beginAlone: tc.beginAlone, endAlone: tc.endAlone, beginErr: tc.beginErr, endErr: tc.endErr}
				h := newHarness(t, harnessOpts{state: st})
				ctx := t.Context()
				put := plain(repoScope+"/secrets/SHARED", plantedSecret)
				if _, err := h.broker.PutSecret(ctx, put); err != nil {
					t.Fatal(err)
				}
				// The second put is alone, so that only the first's
				// tracking decides.
				st.mu.Lock()
				st.beginAlone, st.endAlone, st.beginErr, st.endErr = true, true, nil, nil
				st.mu.Unlock()
				resp, err := h.broker.PutSecret(ctx, put)
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetUnchanged() != tc.wantSecondUnchanged {
					t.Errorf("the same put again: unchanged=%v, want %v", resp.GetUnchanged(), tc.wantSecondUnchanged)
				}
				st.mu.Lock()
				defer st.mu.Unlock()
				if st.begun != st.ended {
					t.Errorf("%d writes begun, %d ended", st.begun, st.ended)
				}
				for i, tok := range st.endedToken {
					if i < len(st.tokens) && tok != st.tokens[i] {
						t.Errorf("write %d ended with token %q, began with %q", i, tok, st.tokens[i])
					}
				}
				for _, k := range st.keys {
					if k != repoScope+"/secrets/SHARED" {
						t.Errorf("a write counted under %q, want the secret's key", k)
					}
				}
			})
		})
	}
}

// TestSelectionChangeCountsAsWrite: a selection change is counted as a
// write of the secret, so that a put another replica makes meanwhile does
// not record the selection it replaces; and a put during which another
// replica changed the selection is not recorded.
func TestSelectionChangeCountsAsWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st := &trackingStore{Store: mem, beginAlone: true, endAlone: true}
		h := newHarness(t, harnessOpts{state: st})
		ctx := t.Context()
		const name = "orgs/octo-org/actions/secrets/SELECTED"
		put := orgPut(name, plantedSecret, "selected", 1296269)
		if _, err := h.broker.PutSecret(ctx, put); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{1296271}}); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		begun, ended := st.begun, st.ended
		st.mu.Unlock()
		if begun != 2 || ended != 2 {
			t.Errorf("a put and a selection change: %d writes begun and %d ended, want 2 and 2", begun, ended)
		}
		// Another replica changes the selection while this put runs: it
		// must not be recorded, so that the put again is written.
		st.mu.Lock()
		st.endAlone = false
		st.mu.Unlock()
		if _, err := h.broker.PutSecret(ctx, put); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		st.endAlone = true
		st.mu.Unlock()
		resp, err := h.broker.PutSecret(ctx, put)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetUnchanged() {
			t.Error("a put not alone was recorded: the same put again was answered unchanged")
		}
	})
}

// hookTracker is a shared store whose BeginWrite first runs a hook: what
// another replica finished between this replica's read of the record
// (lockSecret) and its BeginWrite.
type hookTracker struct {
	state.Store
	mu   sync.Mutex
	hook func()
}

func (h *hookTracker) BeginWrite(context.Context, string) (string, bool, error) {
	h.mu.Lock()
	f := h.hook
	h.hook = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return "t", true, nil
}

func (h *hookTracker) EndWrite(context.Context, string, string) (bool, error) { return true, nil }

// TestWriteDistrustsRecordReadAfterBegin: a record another replica wrote
// after this replica read the secret's record under its own lock, but
// before this write began, is the one the write distrusts: a selection
// change must not leave another replica's record of the old selection
// trusted (found by a review: the record was read before the begin).
func TestWriteDistrustsRecordReadAfterBegin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		st := &hookTracker{Store: mem}
		h := newHarness(t, harnessOpts{state: st})
		ctx := t.Context()
		const name = "orgs/octo-org/actions/secrets/SELECTED"
		put := orgPut(name, plantedSecret, "selected", 1296269) // (V, S1)
		if _, err := h.broker.PutSecret(ctx, put); err != nil {
			t.Fatal(err)
		}
		recs, err := mem.ListRecords(ctx, "orgs/octo-org/actions")
		if err != nil || len(recs) != 1 {
			t.Fatalf("records %v (%v), want the put's one", recs, err)
		}
		other := recs[0] // what another replica's put of (V, S1) leaves
		// An earlier selection change left the record distrusted.
		if err := mem.PutRecord(ctx, state.Record{Name: other.Name, Owner: other.Owner, KeyID: other.KeyID, WrittenAt: other.WrittenAt}); err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		st.hook = func() {
			if err := mem.PutRecord(context.Background(), other); err != nil {
				t.Error(err)
			}
		}
		st.mu.Unlock()
		if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{1296271}}); err != nil {
			t.Fatal(err)
		}
		resp, err := h.broker.PutSecret(ctx, put) // GitHub holds S2
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetUnchanged() {
			t.Error("a put of (V, S1) answered unchanged while GitHub holds the selection S2")
		}
	})
}
