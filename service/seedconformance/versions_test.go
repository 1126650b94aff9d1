package seedconformance

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestAPIVersions writes, reads and lists a secret of each scope and
// checks every request's path prefix and X-GitHub-Api-Version: github.com's
// Actions pages say 2022-11-28, its Agents page 2026-03-10; GHES 3.21's
// page (base /api/v3, Actions only) says 2026-03-10.
func TestAPIVersions(t *testing.T) {
	for _, c := range []struct {
		name    string
		ghes    bool
		parent  string
		version string
	}{
		{name: "github.com repo actions", parent: "repos/octo-org/hello-world/actions", version: "2022-11-28"},
		{name: "github.com environment", parent: "repos/octo-org/hello-world/environments/prod", version: "2022-11-28"},
		{name: "github.com org actions", parent: "orgs/octo-org/actions", version: "2022-11-28"},
		{name: "github.com repo agents", parent: "repos/octo-org/hello-world/agents", version: "2026-03-10"},
		{name: "github.com org agents", parent: "orgs/octo-org/agents", version: "2026-03-10"},
		{name: "GHES repo actions", ghes: true, parent: "repos/octo-org/hello-world/actions", version: "2026-03-10"},
		{name: "GHES environment", ghes: true, parent: "repos/octo-org/hello-world/environments/prod", version: "2026-03-10"},
		{name: "GHES org actions", ghes: true, parent: "orgs/octo-org/actions", version: "2026-03-10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			run(t, setup{ghes: c.ghes}, func(t *testing.T, e *env) {
				ctx := context.Background()
				e.put(t, c.parent+"/secrets/X", "v", orgVisibility(c.parent))
				if _, err := e.srv.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: c.parent + "/secrets/X"}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: c.parent}); err != nil {
					t.Fatal(err)
				}
				reqs := e.gh.requests(0)
				if len(reqs) < 3 {
					t.Fatalf("requests: %v", reqs)
				}
				for _, r := range reqs {
					if !strings.HasPrefix(r.path, e.prefix+"/"+c.parent) || r.version != c.version {
						t.Errorf("%v, want under %s/%s with version %s", r, e.prefix, c.parent, c.version)
					}
				}
			})
		})
	}
}

// TestGHESWithoutAgents: GHES 3.21's reference has no Agents secrets, so
// the broker refuses them with FAILED_PRECONDITION and sends nothing.
func TestGHESWithoutAgents(t *testing.T) {
	for _, parent := range []string{"repos/octo-org/hello-world/agents", "orgs/octo-org/agents"} {
		t.Run(parent, func(t *testing.T) {
			run(t, setup{ghes: true}, func(t *testing.T, e *env) {
				ctx := context.Background()
				_, err := e.srv.PutSecret(ctx, putReq(parent+"/secrets/X", planted, orgVisibility(parent)))
				wantCode(t, err, codes.FailedPrecondition)
				_, err = e.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: parent})
				wantCode(t, err, codes.FailedPrecondition)
				if reqs := e.gh.requests(0); len(reqs) != 0 {
					t.Errorf("sent %v", reqs)
				}
			})
		})
	}
}

// orgVisibility is "all" for an organization scope's parent, else "".
func orgVisibility(parent string) string {
	if strings.HasPrefix(parent, "orgs/") {
		return "all"
	}
	return ""
}
