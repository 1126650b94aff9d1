package service

import (
	"slices"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// repoScopeUpper is repoScope spelled in other cases: GitHub's owner and
// repository names are not case sensitive, so it is the same scope.
const repoScopeUpper = "repos/Octo-Org/Hello-World/actions"

// TestSyncOwnersAcrossSpellings: the broker keeps one record per secret
// whatever the case of its owner and repository names, so a sync under
// one spelling sees the owner a sync under another recorded. Another
// owner's sync is a conflict (before, it saw no record and overwrote
// silently), and the first owner's prune under another spelling deletes
// the secret it wrote.
func TestSyncOwnersAcrossSpellings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		ctx := t.Context()
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-a", map[string]string{"SHARED": plantedSecret + "-a"})); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-b", map[string]string{"SHARED": plantedSecret + "-b"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b, other spelling", resp, map[string]string{"SHARED": "CONFLICT FAILED_PRECONDITION"})
		if r := resp.GetResults()[0]; r.GetRecordedOwner() != "team-a" || r.GetName() != repoScope+"/secrets/SHARED" {
			t.Errorf("conflict result %+v: want team-a named, and the name as team-b spelled it", r)
		}
		if puts(h) != 0 {
			t.Errorf("%d PUTs for a refused conflict", puts(h))
		}
		wantStored(t, h, repoScope+"/secrets/SHARED", plantedSecret+"-a")

		prune := syncReq(repoScope, "team-a", nil)
		prune.Prune = true
		resp, err = h.broker.SyncSecrets(ctx, prune)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a prune, other spelling", resp, map[string]string{"SHARED": "DELETE OK"})
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
