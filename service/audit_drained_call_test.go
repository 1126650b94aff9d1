package service

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestDrainedCallOutcomeIsItsAnswer: a mutating call the shutdown's drain
// stops before anything was sent returns CANCELLED, which the drain
// answers UNAVAILABLE "send it again" (cmd/secretbroker's callDrain, which
// ends the call's context with ErrDrained); its outcome record said
// CANCELLED. It says UNAVAILABLE now, the caller's answer; a call its
// caller cancelled (who reads no answer) is still CANCELLED.
func TestDrainedCallOutcomeIsItsAnswer(t *testing.T) {
	calls := []struct {
		name     string
		rpc      string
		resource string
		// slow is the emulator's route that hangs; "" hangs the state
		// store's operation writes instead.
		slow string
		do   func(ctx context.Context, h *harness) error
	}{
		{"put, key fetch", rpcPutSecret, repoScope + "/secrets/P", emulator.RouteGetRepoPublicKey, func(ctx context.Context, h *harness) error {
			_, err := h.server.PutSecret(ctx, plain(repoScope+"/secrets/P", plantedSecret))
			return err
		}},
		{"sync, planning", rpcSyncSecrets, repoScope, emulator.RouteListRepoSecrets, func(ctx context.Context, h *harness) error {
			_, err := h.server.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"S": plantedSecret}))
			return err
		}},
		{"async batch, start", rpcBatchPut, operationsCollection, "", func(ctx context.Context, h *harness) error {
			req := batchOf(repoScope, "A", 1)
			req.Async = true
			_, err := h.server.BatchPutSecrets(ctx, req)
			return err
		}},
		{"async sync, start", rpcSyncSecrets, repoScope, "", func(ctx context.Context, h *harness) error {
			req := syncReq(repoScope, "team", map[string]string{"S": plantedSecret})
			req.Async = true
			_, err := h.server.SyncSecrets(ctx, req)
			return err
		}},
		{"cancel", rpcCancelOperation, "operations/op1", "", func(ctx context.Context, h *harness) error {
			_, err := h.server.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: "operations/op1"})
			return err
		}},
	}
	for _, c := range calls {
		for _, drained := range []bool{true, false} {
			name := c.name + map[bool]string{true: ", drained", false: ", its caller gone"}[drained]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					// An operation that is not done, for the cancel: stored,
					// never run (the runner does not resume it).
					mem := storeWaitingOperation(t)
					arrived := make(chan struct{}, 1)
					store := &faultyOpStore{Store: mem, fault: hangOps(arrived)}
					var trail syncBuffer
					h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil), state: store})
					closeOps(t, h.server)
					if c.slow != "" {
						h.emu.InjectFault(emulator.Fault{Route: c.slow, Latency: time.Hour, Arrived: arrived})
					} else {
						store.on.Store(true)
					}
					ctx, stop := context.WithCancelCause(t.Context())
					defer stop(nil)
					answered := make(chan error, 1)
					go func() { answered <- c.do(ctx, h) }()
					<-arrived
					synctest.Wait()
					want := "CANCELLED"
					if drained {
						stop(ErrDrained)
						want = "UNAVAILABLE"
					} else {
						stop(context.Canceled)
					}
					err := <-answered
					store.on.Store(false)
					time.Sleep(2 * time.Hour) // what the call left (a shared key fetch) ends
					if status.Code(err) != codes.Canceled {
						t.Fatalf("answered %v, want CANCELLED (the drain answers UNAVAILABLE)", err)
					}
					var outcomes []string
					for _, r := range trailRecords(t, trail.String()) {
						if r.RPC == c.rpc && r.Resource == c.resource && r.Phase == audit.PhaseOutcome {
							outcomes = append(outcomes, r.Outcome)
						}
					}
					if len(outcomes) != 1 || outcomes[0] != want {
						t.Errorf("outcome records of the call %v, want [%s]:\n%s", outcomes, want, trail.String())
					}
				})
			})
		}
	}
}

// TestDrainedWaitIsCancelled: a WaitOperation the drain stops returns
// CANCELLED, which the drain answers UNAVAILABLE "send it again", not the
// state store's UNAVAILABLE (the wait's error is its context's cause,
// ErrDrained, a context.Canceled).
func TestDrainedWaitIsCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := storeWaitingOperation(t)
		h := newHarness(t, harnessOpts{state: mem})
		closeOps(t, h.server)
		ctx, stop := context.WithCancelCause(t.Context())
		defer stop(nil)
		answered := make(chan error, 1)
		go func() {
			_, err := h.server.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: "operations/op1"})
			answered <- err
		}()
		synctest.Wait()
		stop(ErrDrained)
		if err := <-answered; status.Code(err) != codes.Canceled {
			t.Errorf("answered %v, want CANCELLED", err)
		}
	})
}

// storeWaitingOperation returns a memory state store holding operation
// op1 of owner "x": a batch put of one item (Q), not done and never run.
func storeWaitingOperation(t *testing.T) *state.Memory {
	t.Helper()
	mem, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	op := &state.Operation{ID: "op1", Kind: state.KindBatchPutSecrets, Owner: "x",
		Pending: []state.PendingItem{{Name: repoScope + "/secrets/Q", Value: []byte(plantedSecret)}}}
	op.Metadata.Total = 1
	if err := mem.PutOperation(t.Context(), op); err != nil {
		t.Fatal(err)
	}
	return mem
}
