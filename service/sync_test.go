package service

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	actCreate    = secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
	actUpdate    = secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE
	actUnchanged = secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED
	actDrifted   = secretbrokerv1.SyncAction_SYNC_ACTION_DRIFTED
	actDelete    = secretbrokerv1.SyncAction_SYNC_ACTION_DELETE
	actForeign   = secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN
	actConflict  = secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT
)

// deletes is how many secret DELETE requests the emulator served.
func deletes(h *harness) int {
	return h.emu.Count(emulator.RouteDeleteOrgSecret) + h.emu.Count(emulator.RouteDeleteRepoSecret) +
		h.emu.Count(emulator.RouteDeleteEnvSecret)
}

// planOf maps each result's secret name (the last segment) to
// "ACTION CODE".
func planOf(t *testing.T, resp *secretbrokerv1.SyncSecretsResponse) map[string]string {
	t.Helper()
	out := map[string]string{}
	var names []string
	for _, r := range resp.GetResults() {
		_, name, _ := strings.Cut(r.GetName(), "/secrets/")
		names = append(names, name)
		out[name] = strings.TrimPrefix(r.GetAction().String(), "SYNC_ACTION_") + " " + r.GetCode().String()
		if strings.Contains(r.GetMessage(), plantedSecret) {
			t.Errorf("%s: the message holds a value: %q", name, r.GetMessage())
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("results not sorted by name: %v", names)
	}
	return out
}

func wantPlan(t *testing.T, step string, resp *secretbrokerv1.SyncSecretsResponse, want map[string]string) {
	t.Helper()
	if got := planOf(t, resp); !maps.Equal(got, want) {
		t.Errorf("%s: plan %v, want %v", step, got, want)
	}
}

func syncReq(parent, owner string, secrets map[string]string) *secretbrokerv1.SyncSecretsRequest {
	return &secretbrokerv1.SyncSecretsRequest{Parent: parent, Owner: owner, Secrets: secrets}
}

// TestSyncPlanPruneDryRun: a sync creates, then finds everything
// unchanged for one list page; a dry run plans and writes nothing; prune
// deletes only what the owner wrote, and foreign secrets survive.
func TestSyncPlanPruneDryRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var trail syncBuffer
		h := newHarness(t, harnessOpts{state: st, audit: audit.NewWriter(&trail, nil)})
		ctx := t.Context()
		// Foreign secrets: one written by another owner through the
		// broker, one the broker never wrote (its record lost).
		if _, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/OTHERS", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.broker.PutSecret(ctx, plain(repoScope+"/secrets/PERSONS", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		if err := st.DeleteRecord(ctx, repoScope+"/secrets/PERSONS"); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"a": plantedSecret + "-a", "B": plantedSecret + "-b"}

		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", want))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "first sync", resp, map[string]string{"A": "CREATE OK", "B": "CREATE OK", "OTHERS": "FOREIGN OK", "PERSONS": "FOREIGN OK"})
		for _, r := range resp.GetResults() {
			if strings.HasSuffix(r.GetName(), "/OTHERS") && r.GetRecordedOwner() != anonymousOwner {
				t.Errorf("OTHERS recorded owner %q", r.GetRecordedOwner())
			}
			if (r.GetAction() == actCreate) != (r.GetKeyId() != "") {
				t.Errorf("%s: key_id %q", r.GetName(), r.GetKeyId())
			}
		}
		if puts(h) != 2 {
			t.Errorf("%d PUTs, want 2", puts(h))
		}
		wantStored(t, h, repoScope+"/secrets/A", plantedSecret+"-a")
		rec, err := st.GetRecord(ctx, repoScope+"/secrets/A")
		if err != nil || rec.Owner != "team-a" || rec.UpdatedAt.IsZero() {
			t.Fatalf("record of A: %+v %v; want team-a's, read back", rec, err)
		}

		h.emu.ResetCounts()
		resp, err = h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", want))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "second sync", resp, map[string]string{"A": "UNCHANGED OK", "B": "UNCHANGED OK", "OTHERS": "FOREIGN OK", "PERSONS": "FOREIGN OK"})
		if got := h.emu.TotalRequests(); got != 1 || lists(h) != 1 {
			t.Errorf("unchanged sync: %d requests, want one list page", got)
		}

		// Drop B, change A: the dry run plans it, writes nothing.
		next := map[string]string{"A": plantedSecret + "-a2"}
		dry := syncReq(repoScope, "team-a", next)
		dry.Prune, dry.DryRun = true, true
		h.emu.ResetCounts()
		resp, err = h.broker.SyncSecrets(ctx, dry)
		if err != nil {
			t.Fatal(err)
		}
		if !resp.GetDryRun() {
			t.Error("dry_run not set in the answer")
		}
		wantPlan(t, "dry run", resp, map[string]string{"A": "UPDATE OK", "B": "DELETE OK", "OTHERS": "FOREIGN OK", "PERSONS": "FOREIGN OK"})
		if got := h.emu.TotalRequests(); got != 1 || puts(h)+deletes(h) != 0 {
			t.Errorf("dry run: %d requests, %d writes; want one list page and none", got, puts(h)+deletes(h))
		}
		wantStored(t, h, repoScope+"/secrets/A", plantedSecret+"-a")

		run := syncReq(repoScope, "team-a", next)
		run.Prune = true
		resp, err = h.broker.SyncSecrets(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "prune", resp, map[string]string{"A": "UPDATE OK", "B": "DELETE OK", "OTHERS": "FOREIGN OK", "PERSONS": "FOREIGN OK"})
		wantStored(t, h, repoScope+"/secrets/A", plantedSecret+"-a2")
		if _, err := h.emu.Open(repoScope, "B"); err == nil {
			t.Error("B survived the prune")
		}
		for _, n := range []string{"OTHERS", "PERSONS"} {
			wantStored(t, h, repoScope+"/secrets/"+n, plantedSecret)
		}
		if _, err := st.GetRecord(ctx, repoScope+"/secrets/B"); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("B's record after the prune: %v", err)
		}
		if strings.Contains(trail.String(), plantedSecret) {
			t.Fatal("the audit trail holds a value")
		}
		if !strings.Contains(trail.String(), `"rpc":"/secretbroker.v1.SecretService/SyncSecrets"`) {
			t.Error("no audit record of the sync's writes")
		}
	})
}

// TestSyncOwnersConflict: a name another owner wrote is a conflict, refused
// without force; force writes and takes it over, and the first owner then
// sees the conflict in turn and cannot prune it. The first owner's syncs
// spell the scope as repoScope, or in other cases (repoScopeUpper): one
// GitHub secret, one record, so the conflict is the same.
func TestSyncOwnersConflict(t *testing.T) {
	for _, aScope := range []string{repoScope, repoScopeUpper} {
		t.Run(aScope, func(t *testing.T) { testSyncOwnersConflict(t, aScope) })
	}
}

func testSyncOwnersConflict(t *testing.T, aScope string) {
	synctest.Test(t, func(t *testing.T) {
		h, st := newHarnessWithStore(t)
		ctx := t.Context()
		const secret = repoScope + "/secrets/SHARED"
		if _, err := h.broker.SyncSecrets(ctx, syncReq(aScope, "team-a", map[string]string{"SHARED": plantedSecret + "-a"})); err != nil {
			t.Fatal(err)
		}
		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-b", map[string]string{"SHARED": plantedSecret + "-b"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b", resp, map[string]string{"SHARED": "CONFLICT FAILED_PRECONDITION"})
		if r := resp.GetResults()[0]; r.GetRecordedOwner() != "team-a" || !strings.Contains(r.GetMessage(), `"team-a"`) {
			t.Errorf("conflict result %+v: want team-a named", r)
		}
		if puts(h) != 0 {
			t.Errorf("%d PUTs for a refused conflict", puts(h))
		}
		wantStored(t, h, secret, plantedSecret+"-a")

		forced := syncReq(repoScope, "team-b", map[string]string{"SHARED": plantedSecret + "-b"})
		forced.Force = true
		resp, err = h.broker.SyncSecrets(ctx, forced)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-b forced", resp, map[string]string{"SHARED": "CONFLICT OK"})
		wantStored(t, h, secret, plantedSecret+"-b")
		if rec, err := st.GetRecord(ctx, secret); err != nil || rec.Owner != "team-b" {
			t.Fatalf("record %+v %v; want team-b's", rec, err)
		}

		resp, err = h.broker.SyncSecrets(ctx, syncReq(aScope, "team-a", map[string]string{"SHARED": plantedSecret + "-a"}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a again", resp, map[string]string{"SHARED": "CONFLICT FAILED_PRECONDITION"})
		if r := resp.GetResults()[0]; !strings.Contains(r.GetMessage(), `"team-b"`) {
			t.Errorf("conflict message %q does not name team-b", r.GetMessage())
		}
		prune := syncReq(aScope, "team-a", nil)
		prune.Prune = true
		prune.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{} // SHARED is team-b's now
		resp, err = h.broker.SyncSecrets(ctx, prune)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "team-a prune", resp, map[string]string{"SHARED": "FOREIGN OK"})
		wantStored(t, h, secret, plantedSecret+"-b")
	})
}

// TestSyncDriftAndForce: a secret changed behind the broker's back is
// drifted and written again; force writes an unchanged one.
func TestSyncDriftAndForce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		want := map[string]string{"ONE": plantedSecret + "-1", "TWO": plantedSecret + "-2"}
		org := syncReq(orgScope, "", want)
		org.Visibility = "private"
		if _, err := h.broker.SyncSecrets(ctx, org); err != nil {
			t.Fatal(err)
		}
		behindBack(t, h, orgScope+"/secrets/TWO")
		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "after a change behind the back", resp, map[string]string{"ONE": "UNCHANGED OK", "TWO": "DRIFTED OK"})
		if !resp.GetResults()[1].GetDrift() || resp.GetResults()[0].GetDrift() {
			t.Error("drift not reported on TWO alone")
		}
		if puts(h) != 1 {
			t.Errorf("%d PUTs, want 1", puts(h))
		}
		org.Force = true
		h.emu.ResetCounts()
		resp, err = h.broker.SyncSecrets(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "forced", resp, map[string]string{"ONE": "UPDATE OK", "TWO": "UPDATE OK"})
		if puts(h) != 2 {
			t.Errorf("%d PUTs with force, want 2", puts(h))
		}
		// Another visibility is a change too.
		org.Force, org.Visibility = false, "all"
		resp, err = h.broker.SyncSecrets(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "new visibility", resp, map[string]string{"ONE": "UPDATE OK", "TWO": "UPDATE OK"})
	})
}

// TestSyncPolicy: planning needs read on the scope, each write write and
// each prune delete; foreign secrets are listed only when readable.
func TestSyncPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
		admin := as(t.Context(), "token:admin")
		for _, n := range []string{"PAY_OLD", "OTHER"} {
			if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+n, plantedSecret)); err != nil {
				t.Fatal(err)
			}
		}
		pay := as(t.Context(), "token:pay") // read on PAY_* only
		h.emu.ResetCounts()
		resp, err := h.broker.SyncSecrets(pay, syncReq(repoScope, "", map[string]string{"PAY_NEW": plantedSecret}))
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "pay", resp, map[string]string{"PAY_NEW": "CREATE PERMISSION_DENIED", "PAY_OLD": "FOREIGN OK"})
		if puts(h) != 0 {
			t.Errorf("%d PUTs for a denied item", puts(h))
		}
		_, err = h.broker.SyncSecrets(as(t.Context(), "token:staging"), syncReq(repoScope, "", map[string]string{"X": plantedSecret}))
		wantCode(t, err, codes.PermissionDenied)

		// The admin's own secrets, pruned by a caller who may write but
		// not delete them.
		staging := as(t.Context(), "token:staging")
		if _, err := h.broker.SyncSecrets(staging, syncReq(stagingEnv, "ops", map[string]string{"KEEP": plantedSecret, "GO": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		resp, err = h.broker.SyncSecrets(admin, &secretbrokerv1.SyncSecretsRequest{Parent: stagingEnv, Owner: "ops", Prune: true,
			Secrets: map[string]string{"KEEP": plantedSecret}})
		if err != nil {
			t.Fatal(err)
		}
		wantPlan(t, "admin prune", resp, map[string]string{"KEEP": "UNCHANGED OK", "GO": "DELETE OK"})
	})
}

func TestSyncRejects(t *testing.T) {
	big := strings.Repeat("x", maxValueBytes+1)
	many := map[string]string{}
	for i := range maxBatch + 1 {
		many[fmt.Sprintf("S%04d", i)] = "v"
	}
	tests := []struct {
		name string
		req  *secretbrokerv1.SyncSecretsRequest
		want codes.Code
	}{
		{"bad parent", syncReq("repos/octo-org", "", map[string]string{"A": plantedSecret}), codes.InvalidArgument},
		{"bad name", syncReq(repoScope, "", map[string]string{"NO-DASH": plantedSecret}), codes.InvalidArgument},
		{"name with a slash", syncReq(repoScope, "", map[string]string{"A/B": plantedSecret}), codes.InvalidArgument},
		{"two cases of one name", syncReq(repoScope, "", map[string]string{"ab": plantedSecret, "AB": plantedSecret}), codes.InvalidArgument},
		{"empty value", syncReq(repoScope, "", map[string]string{"A": ""}), codes.InvalidArgument},
		{"value too big", syncReq(repoScope, "", map[string]string{"A": big}), codes.InvalidArgument},
		{"organization without visibility", syncReq(orgScope, "", map[string]string{"A": plantedSecret}), codes.InvalidArgument},
		{"visibility on a repository", &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Visibility: "all", Secrets: map[string]string{"A": plantedSecret}}, codes.InvalidArgument},
		{"ids without selected", &secretbrokerv1.SyncSecretsRequest{Parent: orgScope, Visibility: "all", SelectedRepositoryIds: []int64{1}, Secrets: map[string]string{"A": plantedSecret}}, codes.InvalidArgument},
		{"owner with a newline", syncReq(repoScope, "a\nb", map[string]string{"A": plantedSecret}), codes.InvalidArgument},
		{"too many", syncReq(repoScope, "", many), codes.InvalidArgument},
		{"async with a bad parent", &secretbrokerv1.SyncSecretsRequest{Parent: "repos/octo-org", Async: true, Secrets: map[string]string{"A": plantedSecret}}, codes.InvalidArgument},
		{"async with an empty value", &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Async: true, Secrets: map[string]string{"A": ""}}, codes.InvalidArgument},
	}
	if len(many) <= maxBatch {
		t.Fatalf("only %d distinct names", len(many))
	}
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		for _, tt := range tests {
			_, err := h.broker.SyncSecrets(t.Context(), tt.req)
			wantCode(t, err, tt.want)
			if err != nil && strings.Contains(err.Error(), plantedSecret) {
				t.Errorf("%s: the error holds the value: %v", tt.name, err)
			}
		}
		forced := plain(repoScope+"/secrets/B", plantedSecret)
		forced.Force = true
		for _, b := range []struct {
			name  string
			items []*secretbrokerv1.PutSecretRequest
			field string
		}{
			{"caller-sealed value", []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/A", plantedSecret), sealedPut(repoScope+"/secrets/B", "c2VhbGVk", "key")}, "requests[1].encrypted_value"},
			{"force differs", []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/A", plantedSecret), forced}, "requests[1].force"},
			{"a bad name", []*secretbrokerv1.PutSecretRequest{plain("repos/octo-org/secrets/A", plantedSecret)}, "requests[0].name"},
			{"one secret twice", []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/A", plantedSecret), plain(repoScope+"/secrets/a", plantedSecret)}, "requests[1].name"},
		} {
			_, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: b.items})
			wantCode(t, err, codes.InvalidArgument)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, b.field+":") || strings.Contains(msg, plantedSecret) {
				t.Errorf("async batch, %s: message %q, want it to start with %s and hold no value", b.name, msg, b.field)
			}
		}
		if h.emu.TotalRequests() != 0 {
			t.Errorf("%d requests for refused syncs", h.emu.TotalRequests())
		}
	})
}

// TestExecutor drives the per-item function an operation runner calls:
// the same item twice (a resume) writes once; a prune of a secret that
// changed hands, of one already gone with its record (a resume after the
// delete) and of one made again without a record; and a lost value.
func TestExecutor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		s := New(h.client, Options{State: st, Logger: newTestLogger(h.logs)})
		ctx := context.Background()
		item := state.PendingItem{Name: repoScope + "/secrets/RESUMED", Value: []byte(plantedSecret)}

		x := s.NewExecutor(state.KindSyncSecrets, "ops", false)
		r := x.Execute(ctx, item)
		if r.Code != codes.OK || r.Action != "create" || r.Unchanged {
			t.Fatalf("first run: %+v", r)
		}
		x.Finish(ctx)
		x = s.NewExecutor(state.KindSyncSecrets, "ops", false) // a restart
		h.emu.ResetCounts()
		if r = x.Execute(ctx, item); r.Code != codes.OK || !r.Unchanged || r.Action != "unchanged" || puts(h) != 0 {
			t.Fatalf("resumed: %+v, %d PUTs", r, puts(h))
		}
		other := s.NewExecutor(state.KindSyncSecrets, "someone-else", false)
		if r = other.Execute(ctx, state.PendingItem{Name: item.Name, Delete: true}); r.Code != codes.FailedPrecondition || r.Action != "foreign" {
			t.Errorf("another owner's prune: %+v", r)
		}
		if r = other.Execute(ctx, item); r.Code != codes.FailedPrecondition || r.Action != "conflict" {
			t.Errorf("another owner's write: %+v", r)
		}
		batch := s.NewExecutor(state.KindBatchPutSecrets, "someone-else", false)
		if r = batch.Execute(ctx, item); r.Code != codes.OK || !r.Unchanged {
			t.Errorf("a batch ignores owners: %+v", r)
		}
		if r = x.Execute(ctx, state.PendingItem{Name: item.Name, ValueLost: true}); r.Code != codes.InvalidArgument || strings.Contains(r.Message, plantedSecret) {
			t.Errorf("lost value: %+v", r)
		}
		if r = x.Execute(ctx, state.PendingItem{Name: item.Name, Delete: true}); r.Code != codes.OK || r.Action != "delete" {
			t.Fatalf("prune: %+v", r)
		}
		// Deleted already (a resume after the delete, before the result
		// was stored): the record is gone, and so is the secret at
		// GitHub, so the delete is done; no second DELETE is sent.
		h.emu.ResetCounts()
		if r = x.Execute(ctx, state.PendingItem{Name: item.Name, Delete: true}); r.Code != codes.OK || r.Action != "delete" ||
			h.emu.Count(emulator.RouteDeleteRepoSecret) != 0 {
			t.Errorf("second prune: %+v, %d DELETEs", r, h.emu.Count(emulator.RouteDeleteRepoSecret))
		}
		// Made again at GitHub with no record (not through the broker):
		// not the owner's, left alone.
		if _, err := otherTool(t, h).broker.PutSecret(ctx, plain(item.Name, plantedSecret+"-other")); err != nil {
			t.Fatal(err)
		}
		if r = x.Execute(ctx, state.PendingItem{Name: item.Name, Delete: true}); r.Code != codes.FailedPrecondition || r.Action != "foreign" ||
			h.emu.Count(emulator.RouteDeleteRepoSecret) != 0 {
			t.Errorf("prune of a secret made again without a record: %+v, %d DELETEs", r, h.emu.Count(emulator.RouteDeleteRepoSecret))
		}
		if got := SyncActionOf("drifted"); got != actDrifted {
			t.Errorf("SyncActionOf(drifted) = %v", got)
		}
		if got := SyncActionOf("nonsense"); got != secretbrokerv1.SyncAction_SYNC_ACTION_UNSPECIFIED {
			t.Errorf("SyncActionOf(nonsense) = %v", got)
		}
	})
}
