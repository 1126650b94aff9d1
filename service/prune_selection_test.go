package service

import (
	"maps"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// A prune leaves alone an organization secret its owner wrote whose
// selected repositories someone then changed straight at GitHub (through
// the selection routes, which leave updated_at as it was): that is a
// change made by hand, which DetectDrift reports as drift, and a prune
// must not throw it away. The item is DELETE with drift and
// FAILED_PRECONDITION in a dry run's plan and in a run, sync or async;
// with force the secret is deleted, still reported with drift.
func TestPruneLeavesSelectionChangedAtGitHub(t *testing.T) {
	const scope = "orgs/octo-org/actions"
	for _, mode := range []string{"dry run", "sync", "async"} {
		for _, force := range []bool{false, true} {
			t.Run(mode+map[bool]string{true: " force", false: ""}[force], func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					h := newHarness(t, harnessOpts{})
					closeOps(t, h.server)
					ctx := t.Context()
					a, b := h.repoID(t, "hello-world"), h.repoID(t, "docs")
					first := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
						SelectedRepositoryIds: []int64{a}, Secrets: map[string]string{"A": plantedSecret, "B": plantedSecret, "C": plantedSecret}}
					if _, err := h.broker.SyncSecrets(ctx, first); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
					// Someone gives B to another repository, straight at
					// GitHub.
					if err := h.client.SetSelectedRepositories(ctx, mustScope(t, scope), "B", []int64{a, b}); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Minute)
					dd, err := h.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: scope})
					if err != nil {
						t.Fatal(err)
					}
					if len(dd.GetDrifted()) != 1 || dd.GetDrifted()[0].GetSecret().GetName() != scope+"/secrets/B" {
						t.Fatalf("DetectDrift drifted = %v; want B", dd.GetDrifted())
					}

					prune := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
						SelectedRepositoryIds: []int64{a}, Secrets: map[string]string{"A": plantedSecret}, Prune: true, Force: force,
						DryRun: mode == "dry run", Async: mode == "async"}
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
						want["A"] = "UPDATE OK"
						want["B"] = "DELETE OK drift"
					}
					if got := pruneResults(t, results); !maps.Equal(got, want) {
						t.Errorf("results %v, want %v", got, want)
					}
					got, err := h.emu.SelectedRepositoryIDs(scope, "B")
					switch {
					case mode == "dry run" || !force:
						slices.Sort(got)
						if err != nil || !slices.Equal(got, []int64{a, b}) {
							t.Errorf("B, its selection changed at GitHub, selects %v, %v; want it left as changed", got, err)
						}
					case err == nil:
						t.Errorf("B was not deleted with force")
					}
				})
			})
		}
	}
}

// The delete of a prune reads the organization secret's settings again
// under its lock: a selection changed straight at GitHub after the plan
// (while earlier deletes waited for their turn) leaves the secret alone
// too, sync or async.
func TestPruneLeavesSelectionChangedAfterThePlan(t *testing.T) {
	const scope = "orgs/octo-org/actions"
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{true: "async", false: "sync"}[async], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				a, b := h.repoID(t, "hello-world"), h.repoID(t, "docs")
				all := map[string]string{"A": plantedSecret, "B": plantedSecret, "C": plantedSecret, "D": plantedSecret, "E": plantedSecret}
				first := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Secrets: all}
				if _, err := h.broker.SyncSecrets(ctx, first); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				prune := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Prune: true, Async: async,
					ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{SecretNames: slices.Collect(maps.Keys(all))}}
				done := syncInBackground(ctx, h, prune)
				time.Sleep(100 * time.Millisecond) // planned, first delete in flight
				if err := h.client.SetSelectedRepositories(ctx, mustScope(t, scope), "E", []int64{a, b}); err != nil {
					t.Fatal(err)
				}
				ans := <-done
				if ans.err != nil {
					t.Fatal(ans.err)
				}
				results := ans.resp.GetResults()
				if async {
					results = waitOp(ctx, t, h.broker, ans.resp.GetOperation().GetName(), time.Minute).GetResponse().GetSyncResults()
				}
				want := map[string]string{"A": "DELETE OK", "B": "DELETE OK", "C": "DELETE OK", "D": "DELETE OK", "E": "DELETE FAILED_PRECONDITION drift"}
				if got := pruneResults(t, results); !maps.Equal(got, want) {
					t.Errorf("results %v, want %v", got, want)
				}
				got, err := h.emu.SelectedRepositoryIDs(scope, "E")
				slices.Sort(got)
				if err != nil || !slices.Equal(got, []int64{a, b}) {
					t.Errorf("E, its selection changed at GitHub after the plan, selects %v, %v; want it left as changed", got, err)
				}
			})
		})
	}
}

// A prune's delete of a "selected" organization secret whose selection
// GitHub does not list (here a 404, as for a secret gone meanwhile) cannot
// tell whether it was changed at GitHub: the secret is left alone and the
// item is UNAVAILABLE (never DELETE OK, as a 404 of the DELETE itself
// would be), and its record kept; with force it is deleted.
func TestPruneLeavesSelectionItCannotRead(t *testing.T) {
	const scope = "orgs/octo-org/actions"
	for _, force := range []bool{false, true} {
		t.Run(map[bool]string{true: "force", false: "plain"}[force], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, st := newHarnessWithStore(t)
				closeOps(t, h.server)
				ctx := t.Context()
				a := h.repoID(t, "hello-world")
				first := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Secrets: map[string]string{"B": plantedSecret}}
				if _, err := h.broker.SyncSecrets(ctx, first); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
				// Every read of B's selection fails: the plan's and the
				// delete's.
				h.emu.InjectFault(emulator.Fault{Route: emulator.RouteListSelectedRepos, Status: 404, Times: 100})
				prune := &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
					SelectedRepositoryIds: []int64{a}, Prune: true, Force: force,
					ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"B"}}}
				resp, err := h.broker.SyncSecrets(ctx, prune)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{"B": "DELETE UNAVAILABLE"}
				if force {
					want = map[string]string{"B": "DELETE OK"}
				}
				if got := pruneResults(t, resp.GetResults()); !maps.Equal(got, want) {
					t.Errorf("results %v, want %v", got, want)
				}
				_, openErr := h.emu.Open(scope, "B")
				_, recErr := st.GetRecord(ctx, scope+"/secrets/B")
				if force != (openErr != nil) || force != (recErr != nil) {
					t.Errorf("B at GitHub: %v; its record: %v; want both kept without force, both gone with it", openErr, recErr)
				}
			})
		})
	}
}
