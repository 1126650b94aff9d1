package service

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
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
		prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"PRUNED"}}
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

// newHarnessWithStore is newHarness with a memory state store the test
// can look into.
func newHarnessWithStore(t *testing.T) (*harness, state.Store) {
	t.Helper()
	st, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return newHarness(t, harnessOpts{state: st}), st
}

// moveToLegacy moves the record of secret (spelled with upper-case letters
// in its scope) from its key to the name an earlier version kept it
// under: the secret as spelled.
func moveToLegacy(t *testing.T, st state.Store, secret string) {
	t.Helper()
	scope, name, err := parseSecretName("name", secret)
	if err != nil {
		t.Fatal(err)
	}
	key := secretKey(scope, name)
	if key == secret {
		t.Fatalf("%s is its own key: no legacy name", secret)
	}
	rec, err := st.GetRecord(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	rec.Name = secret
	if err := st.PutRecord(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteRecord(t.Context(), key); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyRecords: a record an earlier version kept under the writer's
// spelling of the scope still serves that spelling: another owner's sync
// under it is a conflict, and drift detection counts the secret as
// managed. The owner's next write moves the record to the secret's key,
// after which every spelling sees it; deleting a secret removes a legacy
// record too.
func TestLegacyRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st := newHarnessWithStore(t)
		ctx := t.Context()
		secret := repoScopeUpper + "/secrets/OLD"
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-a", map[string]string{"OLD": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		moveToLegacy(t, st, secret)

		resp, err := h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-b", map[string]string{"OLD": plantedSecret + "-b"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b over a legacy record", resp, map[string]string{"OLD": "CONFLICT FAILED_PRECONDITION"})
		drift, err := h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: repoScopeUpper})
		if err != nil {
			t.Fatal(err)
		}
		if len(drift.GetUnmanaged()) != 0 {
			t.Errorf("unmanaged %v: the legacy record was not read", drift.GetUnmanaged())
		}

		resp, err = h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-a", map[string]string{"OLD": plantedSecret + "-a2"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a's next write", resp, map[string]string{"OLD": "UPDATE OK"})
		if _, err := st.GetRecord(ctx, secret); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("legacy record after the owner's write: %v, want it moved", err)
		}
		if rec, err := st.GetRecord(ctx, repoScope+"/secrets/OLD"); err != nil || rec.Owner != "team-a" {
			t.Errorf("record under the key: %+v %v, want team-a's", rec, err)
		}
		prune := syncReq(repoScope, "team-a", nil)
		prune.Prune = true
		prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"OLD"}}
		if resp, err = h.broker.SyncSecrets(ctx, prune); err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a's prune, other spelling", resp, map[string]string{"OLD": "DELETE OK"})

		gone := repoScopeUpper + "/secrets/GONE"
		if _, err := h.broker.PutSecret(ctx, plain(gone, plantedSecret)); err != nil {
			t.Fatal(err)
		}
		moveToLegacy(t, st, gone)
		if _, err := h.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: gone}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetRecord(ctx, gone); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("legacy record after DeleteSecret: %v, want it removed", err)
		}
	})
}

// TestUnchangedOnlyUnderTheRecordsEnvironmentSpelling: a secret's record
// is shared by the spellings of its environment (GitHub's docs say
// environment names are not case sensitive; the seeds do not say so). A
// put is judged unchanged only under the spelling the record was written
// with: under another, GitHub might hold another secret, whose updated_at
// can match the record's by chance (same second), and the put is written.
func TestUnchangedOnlyUnderTheRecordsEnvironmentSpelling(t *testing.T) {
	const (
		upper = "repos/octo-org/hello-world/environments/Staging/secrets/TOKEN"
		lower = "repos/octo-org/hello-world/environments/staging/secrets/TOKEN"
	)
	steps := []struct {
		name, value string
		unchanged   bool
	}{
		{upper, plantedSecret + "-1", false},
		{lower, plantedSecret + "-2", false},
		{upper, plantedSecret + "-2", false}, // the record is lower's
		{upper, plantedSecret + "-2", true},  // now it is Staging's
		{lower, plantedSecret + "-2", false},
	}
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		for i, st := range steps {
			resp, err := h.broker.PutSecret(t.Context(), plain(st.name, st.value))
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if resp.GetUnchanged() != st.unchanged {
				t.Errorf("step %d (%s): unchanged = %t, want %t", i, st.name, resp.GetUnchanged(), st.unchanged)
			}
		}
	})
}
