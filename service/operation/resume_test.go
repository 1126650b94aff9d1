package operation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

func openBolt(t *testing.T, dir string, key []byte) *state.Bolt {
	t.Helper()
	b, err := state.OpenBolt(dir, state.Options{HMACKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResumeAfterRestart runs an operation on a file store, stops the
// runner while item k is in flight, reopens the store with a new runner
// and resumes: every item runs exactly once, except the one in flight at
// a hard stop, which runs twice.
func TestResumeAfterRestart(t *testing.T) {
	const n, k = 8, 3
	tests := []struct {
		name       string
		hard       bool // Close's context ends before item k does
		flushEvery int
	}{
		{name: "hard stop, grouped", hard: true},
		{name: "hard stop, every item", hard: true, flushEvery: 1},
		{name: "graceful, grouped"},
		{name: "graceful, every item", flushEvery: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			key := bytes.Repeat([]byte("k"), 32)
			store1 := openBolt(t, dir, key)
			inFlight, release := make(chan struct{}), make(chan struct{})
			fe1 := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
				if item.Name != itemName(k) {
					return state.ItemResult{Code: codes.OK, Action: "create"}
				}
				close(inFlight)
				if tt.hard {
					return blockUntilDone(ctx)
				}
				<-release
				return state.ItemResult{Code: codes.OK, Action: "create"}
			}}
			r1, _ := newRunner(t, store1, fe1.exec, Options{FlushEvery: tt.flushEvery})
			op, err := r1.Start(t.Context(), newOp("alice", n, "v"))
			if err != nil {
				t.Fatal(err)
			}
			<-inFlight
			recorded := k
			if tt.hard {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				if err := r1.Close(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Close with an ended context = %v, want Canceled", err)
				}
			} else {
				errc := make(chan error, 1)
				go func() { errc <- r1.Close(context.Background()) }()
				<-r1.closing
				close(release)
				if err := <-errc; err != nil {
					t.Fatalf("Close: %v", err)
				}
				recorded = k + 1
			}
			stored, err := store1.GetOperation(t.Context(), op.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Done || len(stored.Results) != recorded || len(stored.Pending) != n-recorded || stored.Metadata.Remaining != n-recorded {
				t.Fatalf("after Close: done=%v results %d pending %d %+v", stored.Done, len(stored.Results), len(stored.Pending), stored.Metadata)
			}
			if err := store1.Close(); err != nil {
				t.Fatal(err)
			}

			store2 := openBolt(t, dir, key)
			defer store2.Close()
			fe2 := &fakeExec{}
			r2, _ := newRunner(t, store2, fe2.exec, Options{FlushEvery: tt.flushEvery})
			defer closeRunner(t, r2)
			if got, err := r2.Resume(t.Context()); got != 1 || err != nil {
				t.Fatalf("Resume = %d, %v; want 1", got, err)
			}
			done := waitDone(t, r2, op.ID)
			if done.Error != nil || done.Metadata.Written != n || done.Metadata.Remaining != 0 || len(done.Results) != n {
				t.Fatalf("resumed: %+v %+v", done.Error, done.Metadata)
			}
			for i := range n {
				name := itemName(i)
				want := 1
				if tt.hard && i == k {
					want = 2 // in flight at the stop: dropped, run again
				}
				if got := fe1.count(name) + fe2.count(name); got != want {
					t.Errorf("%s ran %d times (%d before the restart, %d after), want %d", name, got, fe1.count(name), fe2.count(name), want)
				}
				if done.Results[i].Name != name || done.Results[i].Code != codes.OK {
					t.Errorf("result %d = %+v", i, done.Results[i])
				}
			}
			if got, err := r2.Resume(t.Context()); got != 0 || err != nil {
				t.Errorf("second Resume = %d, %v; want 0", got, err)
			}
		})
	}
}

// TestResumeLostValue reopens the file store with another server key: the
// pending values cannot be opened, and those items fail clearly instead
// of being written; a delete, which has no value, still runs.
func TestResumeLostValue(t *testing.T) {
	dir := t.TempDir()
	store1 := openBolt(t, dir, bytes.Repeat([]byte("a"), 32))
	inFlight := make(chan struct{})
	fe1 := &fakeExec{fn: func(ctx context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
		if item.Name == itemName(1) {
			close(inFlight)
			return blockUntilDone(ctx)
		}
		return state.ItemResult{Code: codes.OK}
	}}
	r1, _ := newRunner(t, store1, fe1.exec, Options{FlushEvery: 1})
	in := newOp("alice", 4, "v")
	in.Pending[2] = state.PendingItem{Name: itemName(2), Delete: true}
	op, err := r1.Start(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	<-inFlight
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = r1.Close(ctx)
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	store2 := openBolt(t, dir, bytes.Repeat([]byte("b"), 32))
	defer store2.Close()
	var execs []string
	fe2 := &fakeExec{fn: func(_ context.Context, _ *state.Operation, item state.PendingItem) state.ItemResult {
		execs = append(execs, item.String())
		return state.ItemResult{Code: codes.OK, Action: "delete"}
	}}
	r2, _ := newRunner(t, store2, fe2.exec, Options{})
	defer closeRunner(t, r2)
	if got, err := r2.Resume(t.Context()); got != 1 || err != nil {
		t.Fatalf("Resume = %d, %v", got, err)
	}
	done := waitDone(t, r2, op.ID)
	if fmt.Sprint(execs) != "[delete "+itemName(2)+"]" {
		t.Errorf("Exec after the restart ran %v, want the delete only", execs)
	}
	want := []codes.Code{codes.OK, codes.DataLoss, codes.OK, codes.DataLoss}
	if len(done.Results) != len(want) {
		t.Fatalf("results %+v", done.Results)
	}
	for i, res := range done.Results {
		if res.Name != itemName(i) || res.Code != want[i] {
			t.Errorf("result %d = %+v, want %s", i, res, want[i])
		}
		if res.Code == codes.DataLoss && res.Message != LostValueMessage {
			t.Errorf("result %d message %q", i, res.Message)
		}
	}
	if m := done.Metadata; m.Written != 2 || m.Failed != 2 || done.Error != nil {
		t.Errorf("metadata %+v error %+v", m, done.Error)
	}
}

// TestResumeTable resumes operations left in odd states in the store.
func TestResumeTable(t *testing.T) {
	pending := func(names ...int) []state.PendingItem {
		var out []state.PendingItem
		for _, i := range names {
			out = append(out, state.PendingItem{Name: itemName(i), Value: []byte("x")})
		}
		return out
	}
	tests := []struct {
		name      string
		op        state.Operation
		wantExecs []string
		wantCode  codes.Code
		wantRes   int
	}{
		{
			name: "recorded item still pending is skipped",
			op: state.Operation{Results: []state.ItemResult{{Name: itemName(0)}}, Pending: pending(0, 1, 2),
				Metadata: state.Progress{Total: 3}},
			wantExecs: []string{itemName(1), itemName(2)}, wantRes: 3,
		},
		{
			name: "same name twice in a batch runs twice",
			op: state.Operation{Results: []state.ItemResult{{Name: itemName(0)}}, Pending: pending(0, 1),
				Metadata: state.Progress{Total: 3}},
			wantExecs: []string{itemName(0), itemName(1)}, wantRes: 3,
		},
		{
			name: "cancel requested before the restart",
			op: state.Operation{Results: []state.ItemResult{{Name: itemName(0)}}, Pending: pending(1, 2),
				Metadata: state.Progress{Total: 3}, CancelRequested: true},
			wantCode: codes.Canceled, wantRes: 3, // 2 not run
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem := newMemory(t)
				op := tt.op
				op.ID, op.Kind, op.Caller = "op1", state.KindSyncSecrets, "alice"
				if err := mem.PutOperation(t.Context(), &op); err != nil {
					t.Fatal(err)
				}
				fe := &fakeExec{}
				r, _ := newRunner(t, mem, fe.exec, Options{})
				defer closeRunner(t, r)
				if n, err := r.Resume(t.Context()); n != 1 || err != nil {
					t.Fatalf("Resume = %d, %v", n, err)
				}
				done := waitDone(t, r, "op1")
				if fmt.Sprint(fe.order) != fmt.Sprint(tt.wantExecs) {
					t.Errorf("Exec ran %v, want %v", fe.order, tt.wantExecs)
				}
				code := codes.OK
				if done.Error != nil {
					code = done.Error.Code
				}
				if code != tt.wantCode || len(done.Results) != tt.wantRes {
					t.Errorf("done: %v with %d results, want %v with %d", code, len(done.Results), tt.wantCode, tt.wantRes)
				}
			})
		})
	}
}
