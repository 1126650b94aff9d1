package operation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestPlantedValueNeverShows runs operations carrying a planted value
// through every path (success, failure, panic, cancel, restart, lost
// value, store failure) and checks that the value reaches Exec and nothing
// else: no log line, error, returned operation, or byte of the file store.
func TestPlantedValueNeverShows(t *testing.T) {
	const planted = "planted-S3CRET-value-7f3q"
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var seen []string // everything the package handed back, formatted
	show := func(v ...any) {
		for _, x := range v {
			seen = append(seen, fmt.Sprintf("%v|%+v|%#v", x, x, x))
		}
	}

	var mu sync.Mutex
	execValues := 0
	inFlight := make(chan struct{}, 8)
	exec := func(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult {
		if op.Pending != nil || op.Results != nil {
			t.Errorf("Exec got an operation with items: %d pending, %d results", len(op.Pending), len(op.Results))
		}
		mu.Lock()
		if strings.Contains(string(item.Value), planted) {
			execValues++
		}
		mu.Unlock()
		switch item.Name {
		case itemName(1):
			panic("cannot write " + string(item.Value))
		case itemName(2):
			return state.ItemResult{Code: codes.InvalidArgument, Message: "value rejected"}
		case itemName(4):
			inFlight <- struct{}{}
			return blockUntilDone(ctx)
		}
		return state.ItemResult{Code: codes.OK}
	}

	store1 := openBolt(t, dir, bytes.Repeat([]byte("a"), 32))
	r1, err := New(Options{Store: store1, Exec: exec, Logger: logger, FlushEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A store that refuses the operation: the error carries no value.
	failing, err := New(Options{Store: &hookStore{Operations: store1, putErr: errBoom}, Exec: exec, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	_, err = failing.Start(t.Context(), newOp("alice", 2, planted))
	show(err)
	if !errors.Is(err, errBoom) {
		t.Errorf("Start on a failing store = %v", err)
	}
	_ = failing.Close(t.Context())

	// One operation cancelled, one left at a restart.
	a, err := r1.Start(t.Context(), newOp("alice", 6, planted))
	show(a, err)
	<-inFlight
	c, err := r1.Cancel(t.Context(), a.ID, nil)
	show(c, err)
	done, err := r1.Wait(t.Context(), a.ID, 0, nil)
	show(done, err)
	b, err := r1.Start(t.Context(), newOp("bob", 6, planted))
	show(b, err)
	<-inFlight
	got, err := r1.Get(t.Context(), b.ID, nil)
	show(got, err)
	if len(got.Pending) == 0 || got.Pending[0].Value != nil {
		t.Errorf("Get returned pending values: %v", got.Pending)
	}
	list, next, err := r1.List(t.Context(), state.OperationFilter{}, nil)
	show(list, next, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	show(r1.Close(ctx))
	if err := store1.Close(); err != nil {
		t.Fatal(err)
	}

	// The file holds operation b's pending values, sealed.
	file, err := os.ReadFile(filepath.Join(dir, state.BoltFileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(file, []byte(planted)) {
		t.Error("the planted value is in the state file")
	}

	// Restart with another key: b's values are lost and fail clearly.
	store2 := openBolt(t, dir, bytes.Repeat([]byte("b"), 32))
	defer store2.Close()
	r2, err := New(Options{Store: store2, Exec: exec, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r2.Resume(t.Context())
	show(n, err)
	final := waitDone(t, r2, b.ID)
	show(final)
	if final.Metadata.Failed == 0 {
		t.Errorf("no item failed after the key changed: %+v", final.Metadata)
	}
	closeRunner(t, r2)

	if execValues == 0 {
		t.Fatal("the planted value never reached Exec: the test proves nothing")
	}
	if !strings.Contains(logs.String(), "operation item panicked") || !strings.Contains(logs.String(), "operation finished") {
		t.Errorf("expected log lines are missing:\n%s", logs)
	}
	if strings.Contains(logs.String(), planted) {
		t.Errorf("the planted value is in the logs:\n%s", logs)
	}
	for _, s := range seen {
		if strings.Contains(s, planted) {
			t.Errorf("the planted value was returned: %s", s)
		}
	}
}
