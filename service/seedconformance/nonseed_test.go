package seedconformance

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestNonSeedRoutes pins what the broker does where it needs
// GET /repos/{owner}/{repo}, a route in none of the seeds: for legacy
// environment routes (004: /repositories/{repository_id}/environments/...,
// which name the repository by id) and for repositories selected by name.
// No seed route maps an owner and repository name to a repository id, so
// against a GitHub built from the seeds alone these calls cannot succeed:
// each must fail with a clear status after that one GET, and write
// nothing.
//
// The emulator serves GET /repos/{owner}/{repo} on purpose (--dev users
// select repositories by name and reach the legacy routes): against it the
// same calls succeed after the same lookup, and emulator says what GitHub
// then holds.
func TestNonSeedRoutes(t *testing.T) {
	const sel = "orgs/octo-org/actions/secrets/SEL"
	for _, c := range []struct {
		name    string
		legacy  bool
		call    func(ctx context.Context, e *env) error
		code    codes.Code
		message string
		lookup  string // the one request sent after setup (the first, with the emulator)
		// emulator checks what the emulator holds after the call succeeded.
		emulator func(t *testing.T, e *env)
	}{
		{
			name:   "legacy environment put",
			legacy: true,
			call: func(ctx context.Context, e *env) error {
				_, err := e.srv.PutSecret(ctx, putReq("repos/octo-org/hello-world/environments/prod/secrets/X", planted, ""))
				return err
			},
			// The lookup's 404 is the scope's: its repository is not found.
			code:    codes.NotFound,
			message: "the scope repos/octo-org/hello-world/environments/prod (or its public key) was not found on GitHub, or the broker's credentials cannot see it",
			// Legacy routes are the older GHES, whose reference predates
			// API versions: the broker sends 2022-11-28 (README).
			lookup: "GET /api/v3/repos/octo-org/hello-world? v=2022-11-28",
			emulator: func(t *testing.T, e *env) {
				e.holds(t, envScope("hello-world", "prod"), "X", planted, "")
			},
		},
		{
			name: "add a repository by name",
			call: func(ctx context.Context, e *env) error {
				_, err := e.srv.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: sel, Repository: "other"})
				return err
			},
			code:     codes.InvalidArgument,
			message:  `repository: repository "other" was not found in organization "octo-org"`,
			lookup:   "GET /api/v3/repos/octo-org/other? v=2026-03-10",
			emulator: selects(helloWorldID, otherID),
		},
		{
			name: "set repositories by name",
			call: func(ctx context.Context, e *env) error {
				_, err := e.srv.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: sel, SelectedRepositories: []string{"other"}})
				return err
			},
			code:     codes.InvalidArgument,
			message:  `selected_repositories: repository "other" was not found in organization "octo-org"`,
			lookup:   "GET /api/v3/repos/octo-org/other? v=2026-03-10",
			emulator: selects(otherID),
		},
		{
			name: "put with repositories by name",
			call: func(ctx context.Context, e *env) error {
				req := putReq(sel, planted, "selected")
				req.SelectedRepositories = []string{"other"}
				_, err := e.srv.PutSecret(ctx, req)
				return err
			},
			code:    codes.InvalidArgument,
			message: `selected_repositories: repository "other" was not found in organization "octo-org"`,
			lookup:  "GET /api/v3/repos/octo-org/other? v=2026-03-10",
			emulator: func(t *testing.T, e *env) {
				e.holds(t, orgScope("actions"), "SEL", planted, "selected")
				selects(otherID)(t, e)
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			run(t, setup{ghes: true, legacy: c.legacy, differs: "the emulator serves GET /repos/{owner}/{repo}"}, func(t *testing.T, e *env) {
				e.put(t, sel, "v", "selected", helloWorldID)
				n := e.gh.mark()
				err := c.call(context.Background(), e)
				if e.emulator() {
					wantCode(t, err, codes.OK)
					if got := e.gh.requests(n); len(got) == 0 || got[0].String() != c.lookup {
						t.Errorf("requests %q, want %q first", got, c.lookup)
					}
					c.emulator(t, e)
					return
				}
				wantCode(t, err, c.code)
				if got := status.Convert(err).Message(); got != c.message {
					t.Errorf("message %q, want %q", got, c.message)
				}
				var got []string
				for _, r := range e.gh.requests(n) {
					got = append(got, r.String())
				}
				if !slices.Equal(got, []string{c.lookup}) {
					t.Errorf("requests %q, want only %q", got, c.lookup)
				}
				e.holds(t, orgScope("actions"), "SEL", "v", "selected")
				if s := e.selection(orgScope("actions"), "SEL"); !slices.Equal(s, []int64{helloWorldID}) {
					t.Errorf("GitHub selects %v", s)
				}
			})
		})
	}
}

// selects checks GitHub selects exactly ids for actions' SEL.
func selects(ids ...int64) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		t.Helper()
		if s := e.selection(orgScope("actions"), "SEL"); !slices.Equal(s, ids) {
			t.Errorf("GitHub selects %v, want %v", s, ids)
		}
	}
}
