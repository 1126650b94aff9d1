package service

import (
	"slices"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// repoScopeUpper is repoScope spelled in other cases: GitHub's owner and
// repository names are not case sensitive, so it is the same scope.
const repoScopeUpper = "repos/Octo-Org/Hello-World/actions"

// TestSyncPruneAcrossSpellings: an owner's prune under another spelling
// of the scope deletes the secret the owner's sync wrote (one GitHub
// secret, one record; before, the prune saw no record and left it as
// foreign). TestSyncOwnersConflict checks the conflict across spellings.
func TestSyncPruneAcrossSpellings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		if _, err := h.broker.SyncSecrets(t.Context(), syncReq(repoScopeUpper, "team-a", map[string]string{"PRUNED": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		prune := syncReq(repoScope, "team-a", nil)
		prune.Prune = true
		resp, err := h.broker.SyncSecrets(t.Context(), prune)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "prune under another spelling", resp, map[string]string{"PRUNED": "DELETE OK"})
		if n := deletes(h); n != 1 {
			t.Errorf("%d DELETEs, want 1", n)
		}
	})
}

// TestDetectDriftAcrossSpellings: a secret written under one spelling of
// its scope and deleted behind the broker's back is missing when drift is
// detected under another, named as that call spelled the scope.
func TestDetectDriftAcrossSpellings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		if _, err := h.broker.PutSecret(ctx, plain(repoScopeUpper+"/secrets/GONE", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		if err := h.client.DeleteSecret(ctx, mustScope(t, repoScope), "GONE"); err != nil {
			t.Fatal(err)
		}
		for _, parent := range []string{repoScope, repoScopeUpper} {
			resp, err := h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: parent})
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{parent + "/secrets/GONE"}; !slices.Equal(resp.GetMissing(), want) {
				t.Errorf("DetectDrift(%s): missing %v, want %v", parent, resp.GetMissing(), want)
			}
		}
	})
}
