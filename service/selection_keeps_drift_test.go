package service

import (
	"maps"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// A selection change made through the broker (SetSelectedRepositories,
// Add or Remove) leaves the secret's value and updated_at as they were,
// so the record still tells a change of the value made at GitHub after
// it: DetectDrift lists the secret and a prune leaves it alone (DELETE
// with drift, FAILED_PRECONDITION), rather than deleting a change made by
// hand. Without such a change, the broker's own selection change is no
// drift: the prune deletes the secret.
func TestSelectionChangeKeepsValueDrift(t *testing.T) {
	const scope = "orgs/octo-org/actions"
	for _, byHand := range []bool{false, true} {
		t.Run(map[bool]string{true: "value changed by hand", false: "no other change"}[byHand], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				a, b := h.repoID(t, "hello-world"), h.repoID(t, "docs")
				first := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Secrets: map[string]string{"S": plantedSecret}}
				if _, err := h.broker.SyncSecrets(ctx, first); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				if _, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: scope + "/secrets/S", RepositoryId: b}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				if byHand {
					if _, err := otherTool(t, h).broker.PutSecret(ctx, orgPut(scope+"/secrets/S", plantedSecret+"-by-hand", "selected", a, b)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
				}
				dd, err := h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: scope})
				if err != nil {
					t.Fatal(err)
				}
				if drifted := len(dd.GetDrifted()) == 1 && dd.GetDrifted()[0].GetSecret().GetName() == scope+"/secrets/S"; drifted != byHand || len(dd.GetDrifted()) > 1 {
					t.Errorf("DetectDrift drifted = %v; want S listed: %v", dd.GetDrifted(), byHand)
				}
				prune := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Prune: true,
					ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{}}
				if !byHand { // drifted, S is refused by the plan, not deleted
					prune.ExpectedDeletes.SecretNames = []string{"S"}
				}
				resp, err := h.broker.SyncSecrets(ctx, prune)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"S": "DELETE OK"}
				if byHand {
					want["S"] = "DELETE FAILED_PRECONDITION drift"
				}
				if got := pruneResults(t, resp.GetResults()); !maps.Equal(got, want) {
					t.Errorf("prune: %v, want %v", got, want)
				}
				if _, err := h.emu.Open(scope, "S"); (err == nil) != byHand {
					t.Errorf("S at GitHub after the prune: %v", err)
				}
			})
		})
	}
}

// After a selection change made through the broker, a put that keeps the
// secret's settings (no visibility) is judged by its value, and one that
// names the selection the broker wrote before the change is written; a
// selection change during which another replica wrote the secret leaves
// the record distrusted whole, so that even the put keeping the settings
// is written.
func TestSelectionChangeClearsOnlySettings(t *testing.T) {
	const name = "orgs/octo-org/actions/secrets/SELECTED"
	for _, alone := range []bool{true, false} {
		t.Run(map[bool]string{true: "alone", false: "another replica wrote"}[alone], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mem, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				st := &trackingStore{Store: mem, beginAlone: true, endAlone: true}
				h := newHarness(t, harnessOpts{state: st})
				ctx := t.Context()
				put := orgPut(name, plantedSecret, "selected", 1296269)
				if _, err := h.broker.PutSecret(ctx, put); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute) // past the put's range of updated_at
				st.mu.Lock()
				st.endAlone = alone
				st.mu.Unlock()
				if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{1296271}}); err != nil {
					t.Fatal(err)
				}
				st.mu.Lock()
				st.endAlone = true
				st.mu.Unlock()
				keep := plain(name, plantedSecret)
				resp, err := h.broker.PutSecret(ctx, keep)
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetUnchanged() != alone {
					t.Errorf("put keeping the settings after the selection change: unchanged %v, want %v", resp.GetUnchanged(), alone)
				}
				if resp, err := h.broker.PutSecret(ctx, put); err != nil || resp.GetUnchanged() {
					t.Errorf("put of the selection before the change: %v, %v; want written", resp, err)
				}
				if ids, _ := h.emu.SelectedRepositoryIDs("orgs/octo-org/actions", "SELECTED"); len(ids) != 1 || ids[0] != 1296269 {
					t.Errorf("GitHub selects %v, want [1296269]", ids)
				}
			})
		})
	}
}
