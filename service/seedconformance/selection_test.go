package seedconformance

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// selection returns the repositories the fake has selected for an
// organization secret, sorted.
func (e *env) selection(key, name string) []int64 {
	s, _ := e.gh.secret(key, name)
	slices.Sort(s.selected)
	return s.selected
}

// TestOrgSelection sets, removes and adds selected repositories of an
// organization secret, updates it with visibility "selected" and no ids
// (the broker keeps the selection where GitHub would clear it) and with
// another visibility, and adds a repository to a secret whose visibility
// is not "selected" (GitHub's 409).
func TestOrgSelection(t *testing.T) {
	for _, app := range []string{"actions", "agents"} {
		t.Run(app, func(t *testing.T) {
			run(t, setup{}, func(t *testing.T, e *env) {
				ctx := context.Background()
				key, name := orgScope(app), "orgs/octo-org/"+app+"/secrets/SEL"
				e.put(t, name, "v1", "selected", helloWorldID)
				both := []int64{helloWorldID, otherID}
				for _, step := range []struct {
					what string
					do   func() error
					want []int64
				}{
					{"set", func() error {
						_, err := e.srv.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: both})
						return err
					}, both},
					{"remove", func() error {
						_, err := e.srv.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: name, RepositoryId: otherID})
						return err
					}, []int64{helloWorldID}},
					{"add", func() error {
						_, err := e.srv.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, RepositoryId: otherID})
						return err
					}, both},
					{"put with no ids", func() error {
						_, err := e.srv.PutSecret(ctx, putReq(name, "v2", "selected"))
						return err
					}, both},
				} {
					if err := step.do(); err != nil {
						t.Fatalf("%s: %v", step.what, err)
					}
					if got := e.selection(key, "SEL"); !slices.Equal(got, step.want) {
						t.Fatalf("after %s GitHub selects %v, want %v", step.what, got, step.want)
					}
				}
				e.holds(t, key, "SEL", "v2", "selected")

				l, err := e.srv.ListSelectedRepositories(ctx, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: name})
				if err != nil || l.GetTotalCount() != 2 || len(l.GetRepositories()) != 2 {
					t.Fatalf("ListSelectedRepositories = %v, %v", l, err)
				}
				for _, r := range l.GetRepositories() {
					if want, _ := findRepo(withID(r.GetId())); r.GetName() != want.name || r.GetFullName() != org+"/"+want.name || r.GetPrivate() != want.private {
						t.Errorf("ListSelectedRepositories: %v, want %+v", r, want)
					}
				}

				e.put(t, name, "v3", "all")
				e.holds(t, key, "SEL", "v3", "all")
				if got := e.selection(key, "SEL"); len(got) != 0 {
					t.Errorf("visibility all still selects %v", got)
				}
				_, err = e.srv.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, RepositoryId: otherID})
				wantCode(t, err, codes.FailedPrecondition)
			})
		})
	}
}

// TestOrgSelectedUnchanged puts an organization secret with a selection
// twice (the organization spelled in another case): the second put is
// unchanged, and DetectDrift finds nothing. A selection changed at GitHub
// (updated_at does not move) makes the same put a write again.
func TestOrgSelectedUnchanged(t *testing.T) {
	run(t, setup{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		name, key := "orgs/Octo-Org/agents/secrets/SEL", orgScope("agents")
		ids := []int64{otherID, helloWorldID}
		e.put(t, name, "v", "selected", ids...)
		n := e.gh.mark()
		if r := e.put(t, name, "v", "selected", ids...); !r.GetUnchanged() {
			t.Errorf("the same put again: %v, want unchanged", r)
		}
		if w := writes(e.gh.requests(n)); len(w) != 0 {
			t.Errorf("an unchanged put wrote: %v", w)
		}
		d, err := e.srv.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: "orgs/octo-org/agents"})
		if err != nil || len(d.GetDrifted())+len(d.GetUnmanaged())+len(d.GetMissing()) != 0 {
			t.Errorf("DetectDrift = %v, %v", d, err)
		}

		if _, err := e.srv.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{otherID}}); err != nil {
			t.Fatal(err)
		}
		if r := e.put(t, name, "v", "selected", ids...); r.GetUnchanged() {
			t.Errorf("a put restoring the selection: %v, want a write", r)
		}
		if got := e.selection(key, "SEL"); !slices.Equal(got, []int64{helloWorldID, otherID}) {
			t.Errorf("GitHub selects %v", got)
		}
	})
}

// TestRepositoryOrganizationSecrets lists the organization secrets
// shared with each repository: "all", "private" for a private repository,
// "selected" for a selected one.
func TestRepositoryOrganizationSecrets(t *testing.T) {
	for _, app := range []string{"actions", "agents"} {
		t.Run(app, func(t *testing.T) {
			run(t, setup{}, func(t *testing.T, e *env) {
				parent := "orgs/octo-org/" + app
				e.put(t, parent+"/secrets/ALL", "a", "all")
				e.put(t, parent+"/secrets/PRIV", "p", "private")
				e.put(t, parent+"/secrets/SEL", "s", "selected", helloWorldID)
				for _, c := range []struct{ repo, want1, want2 string }{{"hello-world", "ALL", "SEL"}, {"other", "ALL", "PRIV"}} {
					l, err := e.srv.ListRepositoryOrganizationSecrets(context.Background(),
						&secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "repos/octo-org/" + c.repo + "/" + app})
					if err != nil {
						t.Fatalf("%s: %v", c.repo, err)
					}
					var got []string
					for _, s := range l.GetSecrets() {
						got = append(got, s.GetName())
					}
					slices.Sort(got)
					wantNames := []string{parent + "/secrets/" + c.want1, parent + "/secrets/" + c.want2}
					if !slices.Equal(got, wantNames) || l.GetTotalCount() != 2 {
						t.Errorf("%s shares %v (total %d), want %v", c.repo, got, l.GetTotalCount(), wantNames)
					}
				}
			})
		})
	}
}

// TestSetSelectionNotSelected sets the selected repositories of a secret
// whose visibility is "all". The seeds list only 204 for Set (003:415)
// while its body parameter says "You can only provide a list of repository
// ids when the visibility is set to selected" (003:410): the fake answers
// 204, the emulator, on purpose, the 409 the seeds give Add and Remove
// (003:473), which the broker reports as FAILED_PRECONDITION. Either way
// the secret keeps visibility "all".
func TestSetSelectionNotSelected(t *testing.T) {
	run(t, setup{differs: "the emulator answers Set on a secret not \"selected\" 409, the fake 204"}, func(t *testing.T, e *env) {
		name := "orgs/octo-org/actions/secrets/ALL"
		e.put(t, name, "v", "all")
		_, err := e.srv.SetSelectedRepositories(context.Background(),
			&secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{otherID}})
		want := codes.OK
		if e.emulator() {
			want = codes.FailedPrecondition
		}
		wantCode(t, err, want)
		e.holds(t, orgScope("actions"), "ALL", "v", "all")
	})
}
