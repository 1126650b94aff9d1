package service

import (
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/upstream"
)

func TestParseParent(t *testing.T) {
	tests := []struct {
		in      string
		want    upstream.Scope
		wantErr string
	}{
		{in: "orgs/acme/actions", want: upstream.Scope{App: upstream.Actions, Org: "acme"}},
		{in: "orgs/acme/agents", want: upstream.Scope{App: upstream.Agents, Org: "acme"}},
		{in: "repos/acme/api.v2/actions", want: upstream.Scope{App: upstream.Actions, Owner: "acme", Repo: "api.v2"}},
		{in: "repos/acme/api/agents", want: upstream.Scope{App: upstream.Agents, Owner: "acme", Repo: "api"}},
		{in: "repos/octo-org/hello-world/environments/prod%2Feu", want: upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world", Environment: "prod/eu"}},
		{in: "repos/o/r/environments/my%20env", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "my env"}},
		{in: "repos/o/r/environments/prod%252Feu", want: upstream.Scope{App: upstream.Actions, Owner: "o", Repo: "r", Environment: "prod%2Feu"}},
		{in: "", wantErr: "parent: is required"},
		{in: "orgs/acme", wantErr: "is not a scope"},
		{in: "orgs/acme/packages", wantErr: `app "packages" is not "actions" or "agents"`},
		{in: "orgs//actions", wantErr: "organization name must be 1 to 39"},
		{in: "orgs/ac me/actions", wantErr: "may hold only letters, digits and hyphens"},
		{in: "repos/acme/../actions", wantErr: "repository name must be"},
		{in: "repos/acme/a$b/actions", wantErr: "repository name \"a$b\""},
		{in: "repos/acme/api/environments/prod/eu", wantErr: "environments hold Actions secrets only"},
		{in: "repos/acme/api/environments/%zz", wantErr: "not validly URL-escaped"},
		{in: "repos/acme/api/environments/", wantErr: "environment name must be 1 to 255"},
		{in: "repos/acme/api/environments/a%0Ab", wantErr: "control characters"},
		{in: "users/acme/actions", wantErr: "is not a scope"},
		{in: "orgs/acme/actions/", wantErr: "is not a scope"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseParent("parent", tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseParent(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseParent(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("parseParent(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			// The resource name round-trips through the scope's REST path.
			if back, err := parseParent("parent", scopeName(got)); err != nil || back != got {
				t.Fatalf("round trip of %q via %q = %+v, %v", tt.in, scopeName(got), back, err)
			}
		})
	}
}

func TestEnvironmentEscapedOnce(t *testing.T) {
	s, err := parseParent("parent", "repos/octo-org/hello-world/environments/prod%2Feu")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Path(), "repos/octo-org/hello-world/environments/prod%2Feu"; got != want {
		t.Fatalf("Path() = %q, want %q", got, want)
	}
}

func TestParseSecretName(t *testing.T) {
	tests := []struct {
		in       string
		wantName string
		wantErr  string
	}{
		{in: "orgs/acme/actions/secrets/deploy_token", wantName: "DEPLOY_TOKEN"},
		{in: "repos/acme/api/agents/secrets/_X1", wantName: "_X1"},
		{in: "repos/o/r/environments/prod%2Feu/secrets/DB", wantName: "DB"},
		{in: "orgs/acme/actions/secrets/", wantErr: "secret name is required"},
		{in: "orgs/acme/actions/secrets/1ABC", wantErr: "must not start with a digit"},
		{in: "orgs/acme/actions/secrets/github_token", wantErr: "must not start with GITHUB_"},
		{in: "orgs/acme/actions/secrets/GitHub_X", wantErr: "must not start with GITHUB_"},
		{in: "orgs/acme/actions/secrets/A-B", wantErr: "may hold only letters, digits and \"_\""},
		{in: "orgs/acme/actions/secrets/ÄB", wantErr: "may hold only letters"},
		{in: "orgs/acme/actions/TOKEN", wantErr: "is not a secret"},
		{in: "orgs/acme/actions/secrets/A/B", wantErr: "may hold only letters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, name, err := parseSecretName("name", tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "name: ") {
					t.Fatalf("error %q does not name the field", err)
				}
				return
			}
			if err != nil || name != tt.wantName {
				t.Fatalf("parseSecretName(%q) = %q, %v; want %q", tt.in, name, err, tt.wantName)
			}
		})
	}
}

func FuzzParseSecretName(f *testing.F) {
	for _, s := range []string{
		"orgs/acme/actions/secrets/TOKEN",
		"repos/o/r/environments/prod%2Feu/secrets/X",
		"repos/o/r/agents/secrets/A_1",
		"repos/o/r/environments/%/secrets/X",
		"orgs/a/actions/secrets/secrets/secrets/X",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		scope, name, err := parseSecretName("name", in)
		if err != nil {
			return
		}
		// Whatever parses formats back to a name that parses to the same.
		scope2, name2, err := parseSecretName("name", secretResourceName(scope, name))
		if err != nil || scope2 != scope || name2 != name {
			t.Fatalf("%q parsed to %+v %q, which reparsed to %+v %q, %v", in, scope, name, scope2, name2, err)
		}
		if name != strings.ToUpper(name) {
			t.Fatalf("name %q is not upper-cased", name)
		}
	})
}
