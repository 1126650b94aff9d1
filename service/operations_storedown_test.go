package service

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// downStore is a state store whose operations fail, once fail is set,
// with its error: Redis refusing the connection, or the store's own
// timeout while the caller's context is alive.
type downStore struct {
	state.Store
	fail atomic.Pointer[error]
}

func (d *downStore) down(what string) error {
	if err := d.fail.Load(); err != nil {
		return fmt.Errorf("state: %s: redis: %w", what, *err)
	}
	return nil
}

func (d *downStore) PutOperation(ctx context.Context, op *state.Operation) error {
	if err := d.down("put operation"); err != nil {
		return err
	}
	return d.Store.PutOperation(ctx, op)
}

func (d *downStore) GetOperation(ctx context.Context, id string) (*state.Operation, error) {
	if err := d.down("get operation " + id); err != nil {
		return nil, err
	}
	return d.Store.GetOperation(ctx, id)
}

func (d *downStore) UpdateOperation(ctx context.Context, id string, fn func(*state.Operation) error) (*state.Operation, error) {
	if err := d.down("update operation " + id); err != nil {
		return nil, err
	}
	return d.Store.UpdateOperation(ctx, id, fn)
}

func (d *downStore) ListRecords(ctx context.Context, parent string) ([]state.Record, error) {
	if err := d.down("list records of " + parent); err != nil {
		return nil, err
	}
	return d.Store.ListRecords(ctx, parent)
}

func (d *downStore) ListOperations(ctx context.Context, f state.OperationFilter) ([]*state.Operation, error) {
	if err := d.down("list operations"); err != nil {
		return nil, err
	}
	return d.Store.ListOperations(ctx, f)
}

// TestOperationCallsWithStoreDown: while the state store cannot be
// reached, every operation call answers UNAVAILABLE with a retry delay,
// as the broker's other outages do, so that a caller polling an
// operation, or starting one, tries again. They answered INTERNAL, which
// callers do not retry.
func TestOperationCallsWithStoreDown(t *testing.T) {
	refused := error(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	timedOut := context.DeadlineExceeded // the store's own timeout, not the caller's deadline
	for _, failure := range []struct {
		name string
		err  error
	}{{"connection refused", refused}, {"store timeout", timedOut}} {
		t.Run(failure.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				store := &downStore{Store: mem}
				h := newHarness(t, harnessOpts{state: store})
				closeOps(t, h.server)
				ctx := t.Context()
				req := batchOf(repoScope, "DOWN", 2)
				req.Async = true
				resp, err := h.broker.BatchPutSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				name := resp.GetOperation().GetName()
				if op := waitOp(ctx, t, h.broker, name, 0); !op.GetDone() {
					t.Fatalf("operation not done: %v", op)
				}
				store.fail.Store(&failure.err)
				for _, call := range []struct {
					rpc string
					do  func(context.Context) error
				}{
					{"GetOperation", func(ctx context.Context) error {
						_, err := h.broker.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: name})
						return err
					}},
					{"WaitOperation", func(ctx context.Context) error {
						_, err := h.broker.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(time.Second)})
						return err
					}},
					{"ListOperations", func(ctx context.Context) error {
						_, err := h.broker.ListOperations(ctx, &secretbrokerv1.ListOperationsRequest{})
						return err
					}},
					{"CancelOperation", func(ctx context.Context) error {
						_, err := h.broker.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: name})
						return err
					}},
					{"SyncSecrets", func(ctx context.Context) error {
						_, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"SYNCED": plantedSecret}))
						return err
					}},
					{"BatchPutSecrets async", func(ctx context.Context) error {
						req := batchOf(repoScope, "LATER", 1)
						req.Async = true
						_, err := h.broker.BatchPutSecrets(ctx, req)
						return err
					}},
				} {
					// With and without a deadline of the caller's own.
					cctx, cancel := context.WithTimeout(ctx, time.Minute)
					for _, c := range []context.Context{ctx, cctx} {
						st := status.Convert(call.do(c))
						var retry time.Duration
						for _, d := range st.Details() {
							if ri, ok := d.(*errdetails.RetryInfo); ok {
								retry = ri.GetRetryDelay().AsDuration()
							}
						}
						if st.Code() != codes.Unavailable || retry != RetryOutage || !strings.Contains(st.Message(), "state store") {
							t.Errorf("%s: %s %q, retry after %v; want UNAVAILABLE about the state store, retry after %v", call.rpc, st.Code(), st.Message(), retry, RetryOutage)
						}
					}
					cancel()
				}
			})
		})
	}
}
