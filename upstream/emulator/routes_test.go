package emulator

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// buildPath renders a match back into an escaped path, escaping each
// parameter once.
func buildPath(m match) string {
	_, tmpl, _ := strings.Cut(m.Route, " ")
	id := m.SelectedID
	if m.RepoID != 0 {
		id = m.RepoID
	}
	return strings.NewReplacer(
		"{org}", url.PathEscape(m.Org),
		"{app}", url.PathEscape(m.App),
		"{owner}", url.PathEscape(m.Owner),
		"{repo}", url.PathEscape(m.Repo),
		"{environment_name}", url.PathEscape(m.Env),
		"{secret_name}", url.PathEscape(m.Secret),
		"{repository_id}", strconv.FormatInt(id, 10),
	).Replace(tmpl)
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		method, path string
		want         match
		ok           bool
	}{
		{"GET", "/orgs/octo-org/actions/secrets", match{Route: RouteListOrgSecrets, App: "actions", Org: "octo-org"}, true},
		{"GET", "/orgs/o/agents/secrets/public-key", match{Route: RouteGetOrgPublicKey, App: "agents", Org: "o"}, true},
		{"PUT", "/orgs/o/agents/secrets/public-key", match{Route: RoutePutOrgSecret, App: "agents", Org: "o", Secret: "public-key"}, true},
		{"GET", "/orgs/o/actions/secrets/S", match{Route: RouteGetOrgSecret, App: "actions", Org: "o", Secret: "S"}, true},
		{"DELETE", "/orgs/o/actions/secrets/S/repositories/12", match{Route: RouteRemoveSelectedRepo, App: "actions", Org: "o", Secret: "S", SelectedID: 12}, true},
		{"PUT", "/orgs/o/actions/secrets/S/repositories", match{Route: RouteSetSelectedRepos, App: "actions", Org: "o", Secret: "S"}, true},
		{"GET", "/repos/o/r", match{Route: RouteGetRepo, Owner: "o", Repo: "r"}, true},
		{"GET", "/repos/o/r/agents/organization-secrets", match{Route: RouteListRepoOrgSecrets, App: "agents", Owner: "o", Repo: "r"}, true},
		{"DELETE", "/repos/o/r/actions/secrets/S", match{Route: RouteDeleteRepoSecret, App: "actions", Owner: "o", Repo: "r", Secret: "S"}, true},
		{"GET", "/repos/o/r/environments/prod%2Feu/secrets/public-key", match{Route: RouteGetEnvPublicKey, App: "actions", Owner: "o", Repo: "r", Env: "prod/eu"}, true},
		{"PUT", "/repos/o/r/environments/a%20b/secrets/X", match{Route: RoutePutEnvSecret, App: "actions", Owner: "o", Repo: "r", Env: "a b", Secret: "X"}, true},
		{"GET", "/repositories/7/environments/prod%2Feu/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", RepoID: 7, Env: "prod/eu"}, true},

		{"GET", "/repos/o/r/environments/prod/eu/secrets", match{}, false},
		{"GET", "/repos/o/r/environments/%zz/secrets", match{}, false},
		{"GET", "/repositories/-7/environments/e/secrets", match{}, false},
		{"GET", "/repositories/+7/environments/e/secrets", match{}, false},
		{"GET", "/repositories/0/environments/e/secrets", match{}, false},
		{"GET", "/repositories/99999999999999999999/environments/e/secrets", match{}, false},
		{"PUT", "/orgs/o/actions/secrets/S/repositories/1e3", match{}, false},
		{"GET", "/orgs/o/actions/secrets/S/repositories/1", match{}, false},
		{"GET", "/orgs/o/other/secrets", match{}, false},
		{"POST", "/orgs/o/actions/secrets", match{}, false},
		{"PUT", "/orgs/o/actions/secrets", match{}, false},
		{"GET", "/orgs/o/actions/secrets/", match{}, false},
		{"GET", "//orgs/o/actions/secrets", match{}, false},
		{"GET", "orgs/o/actions/secrets", match{}, false},
		{"GET", "/repos/o/r/environments/e/secrets/a/b", match{}, false},
		{"GET", "/repos/o/r/actions/organization-secrets/x", match{}, false},
		{"PUT", "/repos/o/r/actions/organization-secrets", match{}, false},
		{"GET", "", match{}, false},
	}
	for _, tt := range tests {
		got, ok := parsePath(tt.method, tt.path)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parsePath(%s %s) = %+v, %v; want %+v, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
		}
		if ok {
			if back := buildPath(got); back != tt.path {
				t.Errorf("buildPath = %q, want %q", back, tt.path)
			}
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, seed := range []struct{ method, path string }{
		{"GET", "/orgs/octo-org/actions/secrets"},
		{"GET", "/orgs/octo-org/agents/secrets/public-key"},
		{"PUT", "/orgs/octo-org/actions/secrets/TOKEN"},
		{"PUT", "/orgs/octo-org/actions/secrets/TOKEN/repositories"},
		{"DELETE", "/orgs/octo-org/actions/secrets/TOKEN/repositories/1296269"},
		{"GET", "/repos/octo-org/hello-world"},
		{"GET", "/repos/octo-org/hello-world/agents/organization-secrets"},
		{"DELETE", "/repos/octo-org/hello-world/actions/secrets/X"},
		{"GET", "/repos/octo-org/hello-world/environments/prod%2Feu/secrets/public-key"},
		{"PUT", "/repos/o/r/environments/%E2%82%AC%25/secrets/X"},
		{"GET", "/repositories/1296269/environments/prod%2Feu/secrets"},
		{"GET", "/repositories/1296269/environments/prod%2/secrets"},
		{"GET", "/repos/o/r/environments//secrets"},
		{"PATCH", "/orgs/o/actions/secrets/X"},
	} {
		f.Add(seed.method, seed.path)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		m, ok := parsePath(method, path)
		if !ok {
			if m.Route != "" {
				t.Fatalf("no match but route %q", m.Route)
			}
			return
		}
		if !strings.HasPrefix(m.Route, method+" /") {
			t.Fatalf("%s %s matched %q", method, path, m.Route)
		}
		if m.Org == "" && m.Owner == "" && m.RepoID == 0 {
			t.Fatalf("%s %s: no owner in %+v", method, path, m)
		}
		if m.Route != RouteGetRepo && !isApp(m.App) {
			t.Fatalf("%s %s: app %q", method, path, m.App)
		}
		again, ok := parsePath(method, buildPath(m))
		if !ok || again != m {
			t.Fatalf("%s %s: %+v; rebuilt as %s: %+v, %v", method, path, m, buildPath(m), again, ok)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, seed := range []string{
		"orgs/octo-org/actions",
		"/orgs/Octo-Org/agents",
		"repos/octo-org/hello-world/agents",
		"repos/octo-org/hello-world/environments/prod%2Feu",
		"repos/o/r/environments/%C4%B0",
		"repos/o/r/environments/%zz",
		"orgs//actions",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, scope string) {
		key, ok := parseScope(scope)
		if !ok {
			return
		}
		again, ok := parseScope(key)
		if !ok || again != key {
			t.Fatalf("%q -> %q -> %q, %v", scope, key, again, ok)
		}
	})
}
