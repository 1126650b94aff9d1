package service

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// newBreakableAuditHarness returns a harness whose audit trail writes to
// w (break it with w's switch), with its state in st and operations
// flushed at every item; its operations runner is stopped, so a test
// resumes what it stores itself.
func newBreakableAuditHarness(t *testing.T) (h *harness, st state.Store, w *breakableWriter) {
	t.Helper()
	st, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w = &breakableWriter{}
	h = newHarness(t, harnessOpts{audit: audit.NewWriter(w, nil), state: st, ops: OperationOptions{FlushEvery: 1}})
	closeOps(t, h.server)
	return h, st, w
}

// breakableWriter is an audit sink that fails once broken.
type breakableWriter struct {
	broken atomic.Bool
	buf    syncBuffer
}

func (w *breakableWriter) Write(p []byte) (int, error) {
	if w.broken.Load() {
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

// TestAuditFailsClosedSyncAndAsync: with the audit trail failing, a sync
// (run or async) and an async batch are refused with UNAVAILABLE before
// anything goes upstream (not even the scope's listing or a repository
// name's lookup), no operation is stored and no record is dropped; a dry
// run, which changes nothing, is still served.
func TestAuditFailsClosedSyncAndAsync(t *testing.T) {
	const gone = repoScope + "/secrets/GONE"
	tests := []struct {
		name string
		call func(t *testing.T, h *harness) error
	}{
		{"SyncSecrets", func(t *testing.T, h *harness) error {
			_, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "ops", Prune: true,
				Secrets: map[string]string{"NEW": plantedSecret}})
			return err
		}},
		{"SyncSecrets prune only", func(t *testing.T, h *harness) error {
			_, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "ops", Prune: true,
				ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"OLD"}}})
			return err
		}},
		{"SyncSecrets async", func(t *testing.T, h *harness) error {
			_, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "ops", Prune: true, Async: true,
				Secrets: map[string]string{"NEW": plantedSecret}})
			return err
		}},
		{"BatchPutSecrets async", func(t *testing.T, h *harness) error {
			req := batchOf(repoScope, "B", 2)
			req.Async = true
			_, err := h.broker.BatchPutSecrets(t.Context(), req)
			return err
		}},
		{"BatchPutSecrets async with repository names", func(t *testing.T, h *harness) error {
			item := orgPut(orgScope+"/secrets/ORG", plantedSecret, "selected")
			item.SelectedRepositories = []string{"hello-world"}
			_, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{item}})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, st, w := newBreakableAuditHarness(t)
				// Something to prune, and a record of a secret gone
				// from GitHub, written while the trail worked.
				for _, n := range []string{"OLD", "GONE"} {
					if _, err := h.broker.SyncSecrets(t.Context(), syncReq(repoScope, "ops", map[string]string{n: plantedSecret})); err != nil {
						t.Fatal(err)
					}
				}
				if err := h.client.DeleteSecret(t.Context(), upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world"}, "GONE"); err != nil {
					t.Fatal(err)
				}
				w.broken.Store(true)
				h.emu.ResetCounts()

				err := tt.call(t, h)
				if got := statusCode(err); got != codes.Unavailable {
					t.Fatalf("code %v (%v), want Unavailable", got, err)
				}
				if n := h.emu.TotalRequests(); n != 0 {
					t.Errorf("%d requests went upstream with the audit trail down, want 0", n)
				}
				ops, err := h.broker.ListOperations(t.Context(), &secretbrokerv1.ListOperationsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if n := len(ops.GetOperations()); n != 0 {
					t.Errorf("%d operations stored with the audit trail down, want 0", n)
				}
				if _, err := st.GetRecord(t.Context(), gone); err != nil {
					t.Errorf("the record of %s was dropped with the audit trail down: %v", gone, err)
				}
				wantStored(t, h, repoScope+"/secrets/OLD", plantedSecret)

				// A dry run changes nothing: still served.
				dry, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "ops", Prune: true, DryRun: true})
				if err != nil {
					t.Fatalf("a dry run with the audit trail down: %v", err)
				}
				wantPlan(t, "dry run", dry, map[string]string{"OLD": "DELETE OK"})
			})
		})
	}
}

// CancelOperation changes what is written (the operation's remaining
// items are not): with the audit trail down it is refused with
// UNAVAILABLE and the operation is left as it was; with the trail up, the
// cancel has its intent and outcome records.
func TestCancelOperationFailsClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st, w := newBreakableAuditHarness(t)
		op := &state.Operation{ID: "op1", Kind: state.KindBatchPutSecrets, Owner: "x"}
		op.Pending = append(op.Pending, state.PendingItem{Name: repoScope + "/secrets/A", Value: []byte(plantedSecret)})
		op.Metadata.Total = 1
		if err := st.PutOperation(t.Context(), op); err != nil {
			t.Fatal(err)
		}
		cancel := &secretbrokerv1.CancelOperationRequest{Name: "operations/op1"}

		w.broken.Store(true)
		_, err := h.broker.CancelOperation(t.Context(), cancel)
		if got := statusCode(err); got != codes.Unavailable {
			t.Fatalf("CancelOperation with the audit trail down: code %v (%v), want Unavailable", got, err)
		}
		stored, err := st.GetOperation(t.Context(), "op1")
		if err != nil {
			t.Fatal(err)
		}
		if stored.Done || len(stored.Pending) != 1 {
			t.Errorf("the operation after a refused cancel: done %v, %d items pending; want not done, 1", stored.Done, len(stored.Pending))
		}

		w.broken.Store(false)
		before := w.buf.String()
		got, err := h.broker.CancelOperation(t.Context(), cancel)
		if err != nil || !got.GetDone() {
			t.Fatalf("CancelOperation: %v, done %v; want done", err, got.GetDone())
		}
		records := w.buf.String()[len(before):]
		for _, phase := range []string{`"phase":"intent"`, `"phase":"outcome"`} {
			if !strings.Contains(records, phase) || !strings.Contains(records, "CancelOperation") {
				t.Errorf("the cancel's audit records lack %s: %q", phase, records)
			}
		}
	})
}
