package service

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
)

// faultyOpStore is a state store whose operation writes, once on is set,
// are not stored but fail with fault's error: at once (failOps, Redis
// unreachable) or once the write's context ends (hangOps, a Redis that
// does not answer).
type faultyOpStore struct {
	state.Store
	on    atomic.Bool
	fault func(ctx context.Context) error
}

var errStoreDown = errors.New("redis: connection refused")

// failOps is a faultyOpStore's fault for a store that refuses at once.
func failOps(context.Context) error { return errStoreDown }

// hangOps is a faultyOpStore's fault for a store that does not answer: it
// tells arrived, then waits for the write's context to end.
func hangOps(arrived chan<- struct{}) func(context.Context) error {
	return func(ctx context.Context) error {
		arrived <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
}

func (f *faultyOpStore) PutOperation(ctx context.Context, op *state.Operation) error {
	if f.on.Load() {
		return fmt.Errorf("state: put operation: %w", f.fault(ctx))
	}
	return f.Store.PutOperation(ctx, op)
}

func (f *faultyOpStore) UpdateOperation(ctx context.Context, id string, fn func(*state.Operation) error) (*state.Operation, error) {
	if f.on.Load() {
		return nil, fmt.Errorf("state: update operation: %w", f.fault(ctx))
	}
	return f.Store.UpdateOperation(ctx, id, fn)
}

// TestOutcomeRecordSaysWhatTheCallerWasAnswered: when the state store
// refuses an operation's start or cancel, the caller is answered
// UNAVAILABLE, and the call's outcome record says UNAVAILABLE too, not
// INTERNAL.
func TestOutcomeRecordSaysWhatTheCallerWasAnswered(t *testing.T) {
	calls := []struct {
		name     string
		rpc      string
		resource string
		do       func(ctx context.Context, h *harness) error
	}{
		{"async batch", rpcBatchPut, operationsCollection, func(ctx context.Context, h *harness) error {
			req := batchOf(repoScope, "A", 1)
			req.Async = true
			_, err := h.broker.BatchPutSecrets(ctx, req)
			return err
		}},
		{"async sync", rpcSyncSecrets, repoScope, func(ctx context.Context, h *harness) error {
			req := syncReq(repoScope, "team", map[string]string{"S": plantedSecret})
			req.Async = true
			_, err := h.broker.SyncSecrets(ctx, req)
			return err
		}},
		{"cancel", rpcCancelOperation, "operations/op1", func(ctx context.Context, h *harness) error {
			_, err := h.broker.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: "operations/op1"})
			return err
		}},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				// An operation that is not done, for the cancel: stored,
				// never run (the runner does not resume it).
				op := &state.Operation{ID: "op1", Kind: state.KindBatchPutSecrets, Owner: "x",
					Pending: []state.PendingItem{{Name: repoScope + "/secrets/Q", Value: []byte(plantedSecret)}}}
				op.Metadata.Total = 1
				if err := mem.PutOperation(t.Context(), op); err != nil {
					t.Fatal(err)
				}
				store := &faultyOpStore{Store: mem, fault: failOps}
				var trail syncBuffer
				h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil), state: store})
				closeOps(t, h.server)
				store.on.Store(true)
				err = c.do(t.Context(), h)
				answered := status.Code(err)
				if answered != codes.Unavailable {
					t.Fatalf("answered %v (%v), want UNAVAILABLE", answered, err)
				}
				var outcomes []string
				for _, r := range trailRecords(t, trail.String()) {
					if r.RPC == c.rpc && r.Resource == c.resource && r.Phase == audit.PhaseOutcome {
						outcomes = append(outcomes, r.Outcome)
					}
				}
				if len(outcomes) != 1 || outcomes[0] != "UNAVAILABLE" {
					t.Errorf("outcome records of the call %v, want [UNAVAILABLE] (what its caller was answered):\n%s", outcomes, trail.String())
				}
			})
		})
	}
}
