package service

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
)

// TestAuditNamesTheOperation: the records of an async batch's items, and
// the outcome of the call that accepted it, name the operation; a
// synchronous write's records name none.
func TestAuditNamesTheOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trail syncBuffer
		h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil)})
		ctx := t.Context()
		if _, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/SYNCHRONOUS", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			plain(repoScope+"/secrets/OP_A", plantedSecret), plain(repoScope+"/secrets/OP_B", plantedSecret),
		}})
		if err != nil {
			t.Fatal(err)
		}
		name := resp.GetOperation().GetName()
		if op := waitOp(ctx, t, h.broker, name, time.Hour); !op.GetDone() {
			t.Fatalf("operation not done: %v", op)
		}
		byResource := map[string][]audit.Record{}
		for line := range strings.Lines(strings.TrimSpace(trail.String())) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			byResource[r.Resource] = append(byResource[r.Resource], r)
		}
		for res, want := range map[string]string{
			repoScope + "/secrets/SYNCHRONOUS": "",
			repoScope + "/secrets/OP_A":        name,
			repoScope + "/secrets/OP_B":        name,
		} {
			recs := byResource[res]
			if len(recs) != 2 {
				t.Errorf("%s: %d records, want an intent and an outcome", res, len(recs))
			}
			for _, r := range recs {
				if r.Operation != want {
					t.Errorf("%s: %s record names operation %q, want %q", res, r.Phase, r.Operation, want)
				}
			}
		}
		var accepted bool
		for _, r := range byResource[operationsCollection] {
			if r.Phase == audit.PhaseOutcome {
				accepted = r.Operation == name && r.Outcome == "OK"
			}
		}
		if !accepted {
			t.Errorf("no OK outcome record of the accepting call naming %s: %+v", name, byResource[operationsCollection])
		}
	})
}
