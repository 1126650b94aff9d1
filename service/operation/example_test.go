package operation_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
)

// Example shows how the service wires the runner: one Runner for the
// process, Resume at start-up, Start for an async request, Wait/Get/
// Cancel/List with the caller's visibility, Close at shutdown.
func Example() {
	ctx := context.Background()
	store, err := state.NewMemory(state.Options{})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	r, err := operation.New(operation.Options{
		Store: store,
		// The service's executor: decide and do one item (write, skip
		// unchanged, delete), paced; report codes.Canceled when ctx ends
		// before the item is done.
		Exec: func(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult {
			return state.ItemResult{Code: codes.OK, Action: "create"}
		},
		// The pacer's view of how long the remaining writes take.
		Estimate:   func(remaining int) time.Duration { return time.Duration(remaining) * time.Second },
		MaxRunning: 4,
	})
	if err != nil {
		panic(err)
	}
	if _, err := r.Resume(ctx); err != nil { // at start-up
		panic(err)
	}

	// BatchPutSecrets with async: the operation is stored when Start
	// returns; answer the RPC with it.
	op, err := r.Start(ctx, &state.Operation{
		Kind:   state.KindBatchPutSecrets,
		Caller: "alice",
		Owner:  "alice",
		Pending: []state.PendingItem{
			{Name: "repos/o/r/actions/secrets/A", Value: []byte("a value")},
			{Name: "repos/o/r/actions/secrets/B", Value: []byte("b value")},
		},
	})
	if err != nil {
		panic(err)
	}

	// WaitOperation: visible to its caller (and to whom the policy lets
	// read it).
	visible := func(o *state.Operation) bool { return o.Caller == "alice" }
	done, err := r.Wait(ctx, op.ID, 10*time.Second, visible)
	if err != nil {
		panic(err)
	}
	fmt.Println("done:", done.Done, "written:", done.Metadata.Written, "of", done.Metadata.Total)
	if _, err := r.Get(ctx, op.ID, operation.CallerOnly("bob")); err != nil {
		fmt.Println("bob gets not found:", errors.Is(err, state.ErrNotFound))
	}

	if err := r.Close(ctx); err != nil { // at shutdown, before the store
		panic(err)
	}
	// Output:
	// done: true written: 2 of 2
	// bob gets not found: true
}
