package service

import (
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// An async sync's operation agrees with its plan on a secret whose record
// is of an earlier secret of the name (deleted and created again by
// another tool since team-a wrote it): team-b's write is an UPDATE, not a
// CONFLICT naming team-a, also as the operation's first item of the
// scope, which has no listing at hand before it reads one. A secret
// team-a still owns stays a CONFLICT (written with force).
func TestAsyncSyncAgreesWithPlanOnRecreatedSecret(t *testing.T) {
	tests := []struct {
		name      string
		recreated bool
		force     bool
		want      string
		wantValue string
	}{
		{name: "recreated", recreated: true, want: "UPDATE OK", wantValue: plantedSecret + "-b"},
		{name: "recreated, force", recreated: true, force: true, want: "UPDATE OK", wantValue: plantedSecret + "-b"},
		{name: "team-a's", want: "CONFLICT FAILED_PRECONDITION", wantValue: plantedSecret},
		{name: "team-a's, force", force: true, want: "CONFLICT OK", wantValue: plantedSecret + "-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"X": plantedSecret})); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				if tt.recreated {
					// Another tool (its own state) deletes X and creates
					// it again.
					st2, _ := state.NewMemory(state.Options{})
					other := newHarnessWith(t, h.client, h.logs, Options{State: st2})
					if _, err := other.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/X"}); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
					if _, err := other.broker.PutSecret(ctx, plain(repoScope+"/secrets/X", plantedSecret)); err != nil {
						t.Fatal(err)
					}
				}
				req := syncReq(repoScope, "team-b", map[string]string{"X": plantedSecret + "-b"})
				req.Force = tt.force
				req.DryRun = true
				plan, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				req.DryRun, req.Async = false, true
				run, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				results := waitOp(ctx, t, h.broker, run.GetOperation().GetName(), time.Minute).GetResponse().GetSyncResults()
				got := pruneResults(t, results)["X"]
				if got != tt.want {
					t.Errorf("X in the operation: %s, want %s (the dry run planned %v)", got, tt.want, planOf(t, plan)["X"])
				}
				if v, err := h.emu.Open(repoScope, "X"); err != nil || string(v) != tt.wantValue {
					t.Errorf("GitHub holds %q, %v; want %q", v, err, tt.wantValue)
				}
			})
		})
	}
}

// An operation's first write item of a scope, with no listing at hand
// yet, of a secret another owner wrote (and that GitHub has not made
// again since) is a CONFLICT once the listing is read: nothing is
// written.
func TestExecutorConflictBeforeListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		closeOps(t, h.server)
		ctx := t.Context()
		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"X": plantedSecret})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		h.emu.ResetCounts()
		x := h.server.NewExecutor(state.KindSyncSecrets, "team-b", false)
		r := x.Execute(ctx, state.PendingItem{Name: repoScope + "/secrets/X", Value: []byte(plantedSecret + "-b")})
		if r.Code != codes.FailedPrecondition || r.Action != "conflict" || puts(h) != 0 {
			t.Errorf("team-b's item over team-a's secret: %+v, %d PUTs; want a conflict, nothing written", r, puts(h))
		}
		mustHold(t, h, "X", plantedSecret)
	})
}

// An async sync's results name the recorded owner of CONFLICT and
// FOREIGN items, as a sync's answer does: the plan's (FOREIGN, a CONFLICT
// refused without force) and the operation's items' (a CONFLICT written
// with force), also once the operation is read back from the store.
func TestAsyncSyncResultsNameRecordedOwner(t *testing.T) {
	for _, force := range []bool{false, true} {
		t.Run(map[bool]string{true: "force", false: "plain"}[force], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret, "B": plantedSecret})); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				req := syncReq(repoScope, "team-b", map[string]string{"B": plantedSecret + "-b"})
				req.Force = force
				want := map[string]string{}
				resp, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range resp.GetResults() {
					want[r.GetName()] = r.GetAction().String() + " " + r.GetRecordedOwner()
				}
				if len(want) != 2 {
					t.Fatalf("sync results %v", resp.GetResults())
				}
				// The same again, async, after team-a wrote both once more
				// (taking B back).
				again := syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret + "-2", "B": plantedSecret + "-2"})
				again.Force = true
				if _, err := h.broker.SyncSecrets(ctx, again); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				req.Async = true
				run, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				op := waitOp(ctx, t, h.broker, run.GetOperation().GetName(), time.Minute)
				got := map[string]string{}
				for _, r := range op.GetResponse().GetSyncResults() {
					got[r.GetName()] = r.GetAction().String() + " " + r.GetRecordedOwner()
				}
				for name, w := range want {
					if got[name] != w {
						t.Errorf("%s: async result %q, want %q as the sync answered", name, got[name], w)
					}
				}
			})
		})
	}
}
