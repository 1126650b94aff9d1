package service

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestAsyncItemWithAuditDown: an operation accepted while the audit trail
// worked and run (resumed) after it broke fails its items UNAVAILABLE and
// sends nothing to GitHub first, not even the scope's listing (found by a
// review: the listing went before the intent record).
func TestAsyncItemWithAuditDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st, w := newBreakableAuditHarness(t)
		op := &state.Operation{ID: "op1", Kind: state.KindBatchPutSecrets, Caller: "", Owner: "x"}
		for _, n := range []string{"A", "B"} {
			op.Pending = append(op.Pending, state.PendingItem{Name: repoScope + "/secrets/" + n, Value: []byte(plantedSecret)})
		}
		op.Metadata.Total = 2
		if err := st.PutOperation(t.Context(), op); err != nil {
			t.Fatal(err)
		}
		w.broken.Store(true)
		h.emu.ResetCounts()
		if n, err := h.server.ResumeOperations(t.Context()); n != 1 || err != nil {
			t.Fatalf("resume %d %v", n, err)
		}
		done := waitOp(t.Context(), t, h.broker, "operations/op1", 0)
		var codes []string
		for _, r := range done.GetResponse().GetBatchPutResults() {
			codes = append(codes, r.GetCode().String())
		}
		if got := strings.Join(codes, ","); got != "UNAVAILABLE,UNAVAILABLE" {
			t.Errorf("item codes %s, want UNAVAILABLE for both", got)
		}
		if n := h.emu.TotalRequests(); n != 0 {
			var sent []string
			for _, c := range h.upstream.calls("") {
				sent = append(sent, c.method+" "+c.path)
			}
			t.Errorf("%d requests went upstream for an operation's items with the audit trail down, want 0: %v", n, sent)
		}
	})
}

type panicPut struct{ Upstream }

func (p panicPut) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	panic("boom")
}

// TestItemPanicWritesOutcome: an item whose write panics (the runner's
// recovery answers it INTERNAL) still gets its outcome record beside its
// intent record (found by a review: the intent was left alone).
func TestItemPanicWritesOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trail syncBuffer
		h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil), wrap: func(u Upstream) Upstream { return panicPut{u} }, ops: OperationOptions{FlushEvery: 1}})
		closeOps(t, h.server)
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/P1", plantedSecret)}}
		resp, err := h.broker.BatchPutSecrets(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		_ = waitOp(t.Context(), t, h.broker, resp.GetOperation().GetName(), 0)
		intents, outcomes := 0, 0
		for line := range strings.Lines(trail.String()) {
			if strings.Contains(line, "secrets/P1") {
				if strings.Contains(line, `"phase":"intent"`) {
					intents++
				} else {
					outcomes++
				}
			}
		}
		if intents != 1 || outcomes != 1 {
			t.Errorf("P1: %d intent, %d outcome records\n%s", intents, outcomes, trail.String())
		}
	})
}
