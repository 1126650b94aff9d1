package operation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
)

// itemName returns the resource name of test item i.
func itemName(i int) string { return fmt.Sprintf("repos/o/r/actions/secrets/S%d", i) }

// notRun counts op's results of items it ended without running.
func notRun(op *state.Operation) int {
	n := 0
	for _, res := range op.Results {
		if res.NotRun {
			n++
		}
	}
	return n
}

// newOp returns a batch operation of caller with n put items whose values
// are value+index.
func newOp(caller string, n int, value string) *state.Operation {
	op := &state.Operation{Kind: state.KindBatchPutSecrets, Caller: caller, Owner: caller}
	for i := range n {
		op.Pending = append(op.Pending, state.PendingItem{Name: itemName(i), Value: fmt.Appendf(nil, "%s%d", value, i)})
	}
	return op
}

// fakeExec counts calls per item and runs fn (OK when nil).
type fakeExec struct {
	mu    sync.Mutex
	calls map[string]int
	order []string
	fn    func(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult
}

func (f *fakeExec) exec(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[item.Name]++
	f.order = append(f.order, item.Name)
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, op, item)
	}
	return state.ItemResult{Code: codes.OK, Action: "create"}
}

func (f *fakeExec) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeExec) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.order)
}

// hookStore wraps a store to fail or count calls.
type hookStore struct {
	state.Operations
	mu        sync.Mutex
	putErr    error
	updateErr func(n int) error // n counts UpdateOperation calls from 1
	updates   int
	gets      int
}

func (h *hookStore) PutOperation(ctx context.Context, op *state.Operation) error {
	if h.putErr != nil {
		return h.putErr
	}
	return h.Operations.PutOperation(ctx, op)
}

func (h *hookStore) GetOperation(ctx context.Context, id string) (*state.Operation, error) {
	h.mu.Lock()
	h.gets++
	h.mu.Unlock()
	return h.Operations.GetOperation(ctx, id)
}

func (h *hookStore) UpdateOperation(ctx context.Context, id string, fn func(*state.Operation) error) (*state.Operation, error) {
	h.mu.Lock()
	h.updates++
	n := h.updates
	f := h.updateErr
	h.mu.Unlock()
	if f != nil {
		if err := f(n); err != nil {
			return nil, err
		}
	}
	return h.Operations.UpdateOperation(ctx, id, fn)
}

func (h *hookStore) getCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newMemory(t *testing.T) *state.Memory {
	t.Helper()
	m, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// newRunner returns a runner over store with exec; opts' Store and Exec
// are set from the arguments. Logs go to the returned buffer at debug.
func newRunner(t *testing.T, store state.Operations, exec Exec, opts Options) (*Runner, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.Store, opts.Exec = store, exec
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

// closeRunner closes r, failing the test when that does not end cleanly.
func closeRunner(t *testing.T, r *Runner) {
	t.Helper()
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitDone waits (in fake time, at most a day) for op id to be done.
func waitDone(t *testing.T, r *Runner, id string) *state.Operation {
	t.Helper()
	deadline := time.Now().Add(24 * time.Hour)
	for {
		op, err := r.Wait(context.Background(), id, time.Hour, nil)
		if err != nil {
			t.Fatalf("Wait(%s): %v", id, err)
		}
		if op.Done {
			return op
		}
		if time.Now().After(deadline) {
			t.Fatalf("Wait(%s): not done after a day: %+v", id, op.Metadata)
		}
	}
}

// blockUntilDone is an Exec behaviour: it blocks until ctx ends and
// reports Canceled, like the executor interrupted in its pacer's wait.
func blockUntilDone(ctx context.Context) state.ItemResult {
	<-ctx.Done()
	return state.ItemResult{Code: codes.Canceled, Message: "interrupted"}
}

var errBoom = errors.New("store is down")
