package service

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestLegacyRecordAfterSelectionChange: a legacy record under one
// spelling is not the one a selection change under another spelling
// distrusts (it locks and distrusts the key's); a later put under the
// first spelling that asks for the old selection must write it, not be
// answered unchanged from the legacy record's fingerprints.
func TestLegacyRecordAfterSelectionChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st := newHarnessWithStore(t)
		ctx := t.Context()
		const a = "orgs/Octo-Org/actions/secrets/SELECTED"
		const b = "orgs/octo-org/actions/secrets/SELECTED"
		put := orgPut(a, plantedSecret, "selected", 1296269)
		if _, err := h.broker.PutSecret(ctx, put); err != nil {
			t.Fatal(err)
		}
		moveToLegacy(t, st, a) // as an earlier version left it
		time.Sleep(time.Minute)
		if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: b, SelectedRepositoryIds: []int64{1296271}}); err != nil {
			t.Fatal(err)
		}
		resp, err := h.broker.PutSecret(ctx, put)
		if err != nil {
			t.Fatal(err)
		}
		ids := h.selection(t, "SELECTED")
		if resp.GetUnchanged() || !slices.Equal(ids, []int64{1296269}) {
			t.Errorf("put after selection change under other spelling: unchanged=%v, GitHub selection %v, want written and [1296269]", resp.GetUnchanged(), ids)
		}
	})
}

// TestPruneSparesSecretCreatedAfterRecord: a record that outlived its
// secret (a legacy record, left by a delete under another spelling) must
// not make the owner's prune delete the secret another writer created
// since under that name: GitHub's created_at is after the record's write.
func TestPruneSparesSecretCreatedAfterRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st := newHarnessWithStore(t)
		ctx := t.Context()
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-a", map[string]string{"X": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		moveToLegacy(t, st, repoScopeUpper+"/secrets/X")
		if _, err := h.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/X"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		// Someone else (another tool, no record here) creates X.
		st2, _ := state.NewMemory(state.Options{})
		other := newHarnessWith(t, h.client, h.logs, Options{State: st2})
		if _, err := other.broker.PutSecret(ctx, plain(repoScope+"/secrets/X", plantedSecret+"-other")); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		prune := syncReq(repoScopeUpper, "team-a", nil)
		prune.Prune = true
		prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{} // confirmed: nothing
		resp, err := h.broker.SyncSecrets(ctx, prune)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a's prune", resp, map[string]string{"X": "FOREIGN OK"})
		if deletes(h) != 0 {
			t.Errorf("team-a's prune deleted a secret it did not write (%d DELETEs after the first)", deletes(h))
		}
	})
}

// TestSyncRunAgreesWithPlanOnRecreatedSecret: a record older than the
// listed secret's creation gives its owner nothing when the sync's items
// run, as when it was planned: another owner's sync of the secret, which
// another writer created after a delete the broker never saw, plans
// UPDATE and runs UPDATE, not CONFLICT (found by a review: the dry run
// and the run disagreed).
func TestSyncRunAgreesWithPlanOnRecreatedSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"X": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		// Another tool (its own state) deletes X and creates it again.
		st2, _ := state.NewMemory(state.Options{})
		other := newHarnessWith(t, h.client, h.logs, Options{State: st2})
		if _, err := other.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/X"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		if _, err := other.broker.PutSecret(ctx, plain(repoScope+"/secrets/X", plantedSecret+"-other")); err != nil {
			t.Fatal(err)
		}
		dry := syncReq(repoScope, "team-b", map[string]string{"X": plantedSecret + "-b"})
		dry.DryRun = true
		plan, err := h.broker.SyncSecrets(ctx, dry)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b's dry run", plan, map[string]string{"X": "UPDATE OK"})
		run, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-b", map[string]string{"X": plantedSecret + "-b"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b's sync", run, map[string]string{"X": "UPDATE OK"})
	})
}

// TestEnvironmentSpellingsShareRecords: GitHub matches environment names
// without case, so two spellings of one environment are one secret: one
// record and one write lock. A put under one spelling after a write of
// another value under the other must not be answered unchanged, and
// another owner's sync under the other spelling is a conflict.
func TestEnvironmentSpellingsShareRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		const up = "repos/octo-org/hello-world/environments/Staging/secrets/E"
		const low = stagingEnv + "/secrets/E"
		if _, err := h.broker.PutSecret(ctx, plain(up, plantedSecret+"-1")); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.PutSecret(ctx, plain(low, plantedSecret+"-2")); err != nil {
			t.Fatal(err)
		}
		resp, err := h.broker.PutSecret(ctx, plain(up, plantedSecret+"-1"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := h.emu.Open(stagingEnv, "E")
		if resp.GetUnchanged() && string(got) != plantedSecret+"-1" {
			t.Errorf("answered unchanged while GitHub holds the other spelling's value")
		}
		// Ownership across the spellings.
		if _, err := h.broker.SyncSecrets(ctx, syncReq("repos/octo-org/hello-world/environments/Staging", "team-a", map[string]string{"S": plantedSecret + "-a"})); err != nil {
			t.Fatal(err)
		}
		r2, err := h.broker.SyncSecrets(ctx, syncReq(stagingEnv, "team-b", map[string]string{"S": plantedSecret + "-b"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b over team-a, env other case", r2, map[string]string{"E": "FOREIGN OK", "S": "CONFLICT FAILED_PRECONDITION"})
	})
}

// putFailing is a store whose PutRecord fails while on (a Redis at
// maxmemory with noeviction refuses HSET but serves HDEL and HGET).
type putFailing struct {
	state.Store
	on bool
}

func (p *putFailing) PutRecord(ctx context.Context, r state.Record) error {
	if p.on {
		return errors.New("OOM command not allowed when used memory > 'maxmemory'")
	}
	return p.Store.PutRecord(ctx, r)
}

// TestLegacyRecordAdoptionFails: when a legacy record cannot be moved to
// the key (the store refuses writes), the selection change that took the
// lock distrusts only the key, and the legacy record stays; its
// fingerprints must still not make a later put be answered unchanged.
func TestLegacyRecordAdoptionFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, _ := state.NewMemory(state.Options{})
		st := &putFailing{Store: mem}
		h := newHarness(t, harnessOpts{state: st})
		ctx := t.Context()
		const a = "orgs/Octo-Org/actions/secrets/SELECTED"
		put := orgPut(a, plantedSecret, "selected", 1296269)
		if _, err := h.broker.PutSecret(ctx, put); err != nil {
			t.Fatal(err)
		}
		moveToLegacy(t, mem, a)
		time.Sleep(time.Minute)
		st.on = true
		if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: a, SelectedRepositoryIds: []int64{1296271}}); err != nil {
			t.Fatal(err)
		}
		st.on = false
		resp, err := h.broker.PutSecret(ctx, put)
		if err != nil {
			t.Fatal(err)
		}
		ids := h.selection(t, "SELECTED")
		if resp.GetUnchanged() || !slices.Equal(ids, []int64{1296269}) {
			t.Errorf("unchanged=%v, GitHub selection %v, want written and [1296269]", resp.GetUnchanged(), ids)
		}
	})
}

func TestPredates(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		rec     state.Record
		created time.Time
		want    bool
	}{
		{"exact updated_at, created before", state.Record{UpdatedAt: t0}, t0.Add(-time.Hour), false},
		{"exact updated_at, created then (the broker created it)", state.Record{UpdatedAt: t0}, t0, false},
		{"exact updated_at, created after", state.Record{UpdatedAt: t0}, t0.Add(time.Second), true},
		{"range, created at its end", state.Record{UpdatedAt: t0, UpdatedAtLatest: t0.Add(2 * time.Second)}, t0.Add(2 * time.Second), false},
		{"range, created after its end", state.Record{UpdatedAt: t0, UpdatedAtLatest: t0.Add(2 * time.Second)}, t0.Add(3 * time.Second), true},
		{"no updated_at (distrusted)", state.Record{Owner: "team-a", WrittenAt: t0}, t0.Add(time.Hour), false},
		{"no created_at listed", state.Record{UpdatedAt: t0}, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := predates(&tt.rec, upstream.Secret{CreatedAt: tt.created}); got != tt.want {
				t.Errorf("predates = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPruneDropsGoneLegacyRecord: a prune drops the owner's legacy record
// of a secret gone from GitHub (the record listed, without fingerprints,
// is compared with the stored one as listed).
func TestPruneDropsGoneLegacyRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, st := newHarnessWithStore(t)
		ctx := t.Context()
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScopeUpper, "team-a", map[string]string{"X": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		legacy := repoScopeUpper + "/secrets/X"
		moveToLegacy(t, st, legacy)
		time.Sleep(time.Minute)
		st2, _ := state.NewMemory(state.Options{})
		other := newHarnessWith(t, h.client, h.logs, Options{State: st2})
		if _, err := other.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/X"}); err != nil {
			t.Fatal(err)
		}
		prune := syncReq(repoScopeUpper, "team-a", nil)
		prune.Prune = true
		prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{} // X is gone already
		if _, err := h.broker.SyncSecrets(ctx, prune); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetRecord(ctx, legacy); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("legacy record of a gone secret survived the owner's prune: err=%v", err)
		}
	})
}
