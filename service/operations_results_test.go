package service

import (
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// opResult is one result of an operation, or of a synchronous call, as
// these tests compare them.
type opResult struct {
	name    string
	code    code.Code
	message string
	retry   time.Duration
}

// opResultsOf returns an operation's results, of either kind, in the
// order it shows them.
func opResultsOf(op *secretbrokerv1.Operation) []opResult {
	var out []opResult
	for _, r := range op.GetResponse().GetBatchPutResults() {
		out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
	}
	for _, r := range op.GetResponse().GetSyncResults() {
		out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
	}
	return out
}

// TestCancelledOperationResultsEveryItem: a cancelled operation ends with
// one result per item: the items it never ran are CANCELLED, "not run",
// after the ones it finished (a batch's in the order sent, a sync's by
// name), and they count as remaining, not as failed. They had no result.
func TestCancelledOperationResultsEveryItem(t *testing.T) {
	names := []string{"NR_A", "NR_B", "NR_C", "NR_D"}
	for _, kind := range []string{"batch", "sync"} {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pacing := upstream.DefaultPacing()
				pacing.WriteInterval = 100 * time.Second
				h := newHarness(t, harnessOpts{pacing: &pacing, ops: OperationOptions{FlushEvery: 1}})
				closeOps(t, h.server)
				ctx := t.Context()
				var op *secretbrokerv1.Operation
				switch kind {
				case "batch":
					req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
					for _, n := range names {
						req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret))
					}
					resp, err := h.broker.BatchPutSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					op = resp.GetOperation()
				case "sync":
					secrets := map[string]string{}
					for _, n := range names {
						secrets[n] = plantedSecret
					}
					req := syncReq(repoScope, "ops", secrets)
					req.Async = true
					resp, err := h.broker.SyncSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					op = resp.GetOperation()
				}
				time.Sleep(150 * time.Second) // NR_A written at 0 s, NR_B at 100 s
				if _, err := h.broker.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); err != nil {
					t.Fatal(err)
				}
				done := waitOp(ctx, t, h.broker, op.GetName(), 0)
				got := opResultsOf(done)
				if len(got) != len(names) {
					t.Fatalf("%d results %v, want one per item (%d)", len(got), got, len(names))
				}
				for i, r := range got {
					want := opResult{name: repoScope + "/secrets/" + names[i], code: code.Code_OK}
					if i >= 2 {
						want.code, want.message = code.Code_CANCELLED, "not run: the operation was cancelled"
					}
					if r != want {
						t.Errorf("result %d: %+v, want %+v", i, r, want)
					}
				}
				if m := done.GetMetadata(); m.GetWritten() != 2 || m.GetFailed() != 0 || m.GetRemaining() != 2 || m.GetTotal() != 4 {
					t.Errorf("metadata %v: want 2 written, 0 failed, 2 remaining (not run)", m)
				}
				if puts(h) != 2 {
					t.Errorf("%d PUTs, want the 2 before the cancel", puts(h))
				}
			})
		})
	}
}
