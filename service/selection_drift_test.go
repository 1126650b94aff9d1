package service

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// An organization secret's selection changed straight at GitHub (its
// updated_at does not move) is no longer what the broker recorded: a put,
// a batch, a sync or a sync's operation asking for the recorded selection
// writes it again, reports drift, and DetectDrift lists the secret.
func TestSelectionChangedOutsideIsWritten(t *testing.T) {
	const scope = "orgs/octo-org/actions"
	for _, via := range []string{"put", "batch", "sync", "sync async"} {
		t.Run(via, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				const name = scope + "/secrets/DEPLOY"
				a, b := h.repoID(t, "hello-world"), h.repoID(t, "docs")
				if _, err := h.broker.PutSecret(ctx, orgPut(name, "v1", "selected", a)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				// Unchanged while GitHub holds the recorded selection.
				if r, err := h.broker.PutSecret(ctx, orgPut(name, "v1", "selected", a)); err != nil || !r.GetUnchanged() {
					t.Fatalf("put of the recorded selection: %v, %v; want unchanged", r, err)
				}
				if err := h.client.SetSelectedRepositories(ctx, mustScope(t, scope), "DEPLOY", []int64{b}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Second)
				dd, err := h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: scope})
				if err != nil {
					t.Fatal(err)
				}
				if len(dd.GetDrifted()) != 1 || dd.GetDrifted()[0].GetSecret().GetName() != name {
					t.Errorf("DetectDrift drifted = %v; want %s", dd.GetDrifted(), name)
				}
				var unchanged, drift bool
				switch via {
				case "put":
					r, err := h.broker.PutSecret(ctx, orgPut(name, "v1", "selected", a))
					if err != nil {
						t.Fatal(err)
					}
					unchanged, drift = r.GetUnchanged(), r.GetDrift()
				case "batch":
					r, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{
						Requests: []*secretbrokerv1.PutSecretRequest{orgPut(name, "v1", "selected", a)}})
					if err != nil {
						t.Fatal(err)
					}
					unchanged, drift = r.GetResults()[0].GetUnchanged(), r.GetResults()[0].GetDrift()
				case "sync", "sync async":
					req := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Visibility: "selected", SelectedRepositoryIds: []int64{a},
						Secrets: map[string]string{"DEPLOY": "v1"}, Async: via == "sync async"}
					r, err := h.broker.SyncSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					results := r.GetResults()
					if via == "sync async" {
						results = waitOp(ctx, t, h.broker, r.GetOperation().GetName(), 0).GetResponse().GetSyncResults()
					}
					unchanged = results[0].GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED
					drift = results[0].GetDrift()
				}
				got, _ := h.emu.SelectedRepositoryIDs(scope, "DEPLOY")
				if unchanged || !drift || !slices.Equal(got, []int64{a}) {
					t.Errorf("%s of selection [%d] after GitHub's became [%d]: unchanged=%v drift=%v; GitHub holds %v, want [%d], written, with drift",
						via, a, b, unchanged, drift, got, a)
				}
			})
		})
	}
}
