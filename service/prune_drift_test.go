package service

import (
	"maps"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// pruneResults lists each result as "ACTION CODE" plus " drift" when the
// result says so.
func pruneResults(t *testing.T, results []*secretbrokerv1.SyncSecretsResult) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range results {
		_, name, _ := strings.Cut(r.GetName(), "/secrets/")
		out[name] = strings.TrimPrefix(r.GetAction().String(), "SYNC_ACTION_") + " " + r.GetCode().String()
		if r.GetDrift() {
			out[name] += " drift"
		}
		if strings.Contains(r.GetMessage(), plantedSecret) {
			t.Errorf("%s: the message holds a value: %q", name, r.GetMessage())
		}
	}
	return out
}

// A prune leaves alone a secret its owner wrote that someone then changed
// straight at GitHub (another updated_at than the owner's write left):
// deleting it would throw that change away. The item is DELETE with drift
// and FAILED_PRECONDITION, in the plan of a dry run and in a run, sync or
// async; with force the secret is deleted, still reported with drift.
func TestPruneLeavesSecretChangedAtGitHub(t *testing.T) {
	for _, mode := range []string{"dry run", "sync", "async"} {
		for _, force := range []bool{false, true} {
			t.Run(mode+map[bool]string{true: " force", false: ""}[force], func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					h, _ := newHarnessWithStore(t)
					closeOps(t, h.server)
					ctx := t.Context()
					if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret, "B": plantedSecret, "C": plantedSecret})); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
					// Someone changes B straight at GitHub (another tool
					// with its own records).
					if _, err := otherTool(t, h).broker.PutSecret(ctx, plain(repoScope+"/secrets/B", plantedSecret+"-by-hand")); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)

					prune := syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret})
					prune.Prune, prune.Force = true, force
					prune.DryRun, prune.Async = mode == "dry run", mode == "async"
					resp, err := h.broker.SyncSecrets(ctx, prune)
					if err != nil {
						t.Fatal(err)
					}
					results := resp.GetResults()
					if mode == "async" {
						results = waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), time.Minute).GetResponse().GetSyncResults()
					}
					want := map[string]string{"A": "UNCHANGED OK", "B": "DELETE FAILED_PRECONDITION drift", "C": "DELETE OK"}
					if force {
						want["A"] = "UPDATE OK" // force writes
						want["B"] = "DELETE OK drift"
					}
					if got := pruneResults(t, results); !maps.Equal(got, want) {
						t.Errorf("results %v, want %v", got, want)
					}
					got, err := h.emu.Open(repoScope, "B")
					switch {
					case mode == "dry run" || !force:
						if err != nil || string(got) != plantedSecret+"-by-hand" {
							t.Errorf("B, changed at GitHub, is %q, %v; want it left as changed", got, err)
						}
					case err == nil:
						t.Errorf("B was not deleted with force")
					}
					if _, err := h.emu.Open(repoScope, "C"); (err == nil) != (mode == "dry run") {
						t.Errorf("C (unchanged since team-a's write): open err = %v in a %s", err, mode)
					}
				})
			})
		}
	}
}

// TestSyncExpectedDeletes: a pruning sync told which secrets its caller
// expects it to delete (the deletes of a dry run it confirmed) runs only
// when its plan deletes exactly those: otherwise it is ABORTED and changes
// nothing, no write either, sync or async.
func TestSyncExpectedDeletes(t *testing.T) {
	tests := []struct {
		name     string
		expected []string // nil: not set
		prune    bool
		async    bool
		want     codes.Code
		wantMsg  string
	}{
		{name: "as planned", expected: []string{"B", "c"}, prune: true, want: codes.OK},
		{name: "as planned, async", expected: []string{"C", "B"}, prune: true, async: true, want: codes.OK},
		{name: "one more to delete", expected: []string{"B"}, prune: true, want: codes.Aborted, wantMsg: "it would also delete C"},
		{name: "one more to delete, async", expected: []string{"B"}, prune: true, async: true, want: codes.Aborted, wantMsg: "it would also delete C"},
		{name: "one less to delete", expected: []string{"B", "C", "D"}, prune: true, want: codes.Aborted, wantMsg: "it would not delete D"},
		{name: "nothing expected", expected: []string{}, prune: true, want: codes.Aborted, wantMsg: "it would also delete B, C"},
		{name: "not set", prune: true, want: codes.OK},
		{name: "without prune", expected: []string{"B"}, want: codes.InvalidArgument, wantMsg: "expected_deletes: applies with prune only"},
		{name: "a bad name", expected: []string{"B-C"}, prune: true, want: codes.InvalidArgument, wantMsg: "expected_deletes.secret_names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := newHarnessWithStore(t)
				closeOps(t, h.server)
				ctx := t.Context()
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret, "B": plantedSecret, "C": plantedSecret})); err != nil {
					t.Fatal(err)
				}
				h.emu.ResetCounts()
				req := syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret + "-new"})
				req.Prune, req.Async = tt.prune, tt.async
				if tt.expected != nil {
					req.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: tt.expected}
				}
				resp, err := h.broker.SyncSecrets(ctx, req)
				if status.Code(err) != tt.want || !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
					t.Fatalf("sync = %v, want %v with %q", err, tt.want, tt.wantMsg)
				}
				if err != nil {
					if n := puts(h) + deletes(h); n != 0 {
						t.Errorf("%d writes and deletes for a refused sync, want 0", n)
					}
					for _, n := range []string{"B", "C"} {
						if _, err := h.emu.Open(repoScope, n); err != nil {
							t.Errorf("%s was deleted by a refused sync: %v", n, err)
						}
					}
					return
				}
				if tt.async {
					waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), time.Minute)
				}
				if n := deletes(h); tt.prune && n != 2 {
					t.Errorf("%d deletes, want 2", n)
				}
			})
		})
	}
}
