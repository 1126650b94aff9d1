package emulator

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// capture is a ResponseWriter that keeps the request the router handed
// over.
type capture struct {
	*httptest.ResponseRecorder
	r *http.Request
}

// captureRouter is a router whose every route only records the request.
func captureRouter() http.Handler {
	return newRouter(func(w http.ResponseWriter, r *http.Request) { w.(*capture).r = r })
}

// route sends req through rt and returns the request the route got. It
// fails when the router answered by itself.
func route(t *testing.T, rt http.Handler, req *http.Request) *http.Request {
	t.Helper()
	c := &capture{ResponseRecorder: httptest.NewRecorder()}
	rt.ServeHTTP(c, req)
	if c.r == nil || c.Code != http.StatusOK || c.Body.Len() != 0 || len(c.Header()) != 0 {
		t.Fatalf("%s %s: the router answered %d %v %q itself", req.Method, req.URL, c.Code, c.Header(), c.Body)
	}
	return c.r
}

// buildPath renders a valid match back into an escaped path, escaping
// each parameter once.
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

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		want         match // Route "" when no template matches
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
		{"GET", "/repos/o/r/environments/100%25/secrets/X", match{Route: RouteGetEnvSecret, App: "actions", Owner: "o", Repo: "r", Env: "100%", Secret: "X"}, true},
		{"GET", "/repositories/7/environments/prod%2Feu/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", RepoID: 7, Env: "prod/eu"}, true},
		// The two overlapping templates: "environments" is not an app.
		{"GET", "/repos/o/r/environments/secrets/secrets", match{Route: RouteListEnvSecrets, App: "actions", Owner: "o", Repo: "r", Env: "secrets"}, true},
		{"GET", "/repos/o/r/actions/secrets/secrets", match{Route: RouteGetRepoSecret, App: "actions", Owner: "o", Repo: "r", Secret: "secrets"}, true},
		// The literal segment wins over {secret_name}, escaped or not.
		{"GET", "/orgs/o/actions/secrets/public%2Dkey", match{Route: RouteGetOrgPublicKey, App: "actions", Org: "o"}, true},
		// A GET template serves HEAD.
		{"HEAD", "/orgs/o/actions/secrets", match{Route: RouteListOrgSecrets, App: "actions", Org: "o"}, true},

		// Routed and counted, but not found: {app} and {repository_id}
		// hold what GitHub does not route.
		{"GET", "/orgs/o/other/secrets", match{Route: RouteListOrgSecrets, App: "other", Org: "o"}, false},
		{"GET", "/repos/o/r/environments/secrets/public-key", match{Route: RouteGetRepoPublicKey, App: "environments", Owner: "o", Repo: "r"}, false},
		{"GET", "/repositories/-7/environments/e/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", Env: "e"}, false},
		{"GET", "/repositories/+7/environments/e/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", Env: "e"}, false},
		{"GET", "/repositories/0/environments/e/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", Env: "e"}, false},
		{"GET", "/repositories/99999999999999999999/environments/e/secrets", match{Route: RouteListLegacyEnvSecrets, App: "actions", Env: "e"}, false},
		{"PUT", "/orgs/o/actions/secrets/S/repositories/1e3", match{Route: RouteAddSelectedRepo, App: "actions", Org: "o", Secret: "S"}, false},

		// No template.
		{"GET", "/repos/o/r/environments/prod/eu/secrets", match{}, false},
		{"GET", "/repos/o/r/environments/%2F/secrets", match{}, false}, // a lone "/" is a trailing slash to ServeMux
		{"GET", "/orgs/o/actions/secrets/S/repositories/1", match{}, false},
		{"POST", "/orgs/o/actions/secrets", match{}, false},
		{"PUT", "/orgs/o/actions/secrets", match{}, false},
		{"GET", "/orgs/o/actions/secrets/", match{}, false},
		{"GET", "//orgs/o/actions/secrets", match{}, false},
		{"GET", "/orgs//actions/secrets", match{}, false},
		{"GET", "/orgs/o/./actions/secrets", match{}, false},
		{"PUT", "/orgs/o/x/../actions/secrets/X", match{}, false},
		{"GET", "/repos/o/r/environments/e/secrets/a/b", match{}, false},
		{"GET", "/repos/o/r/actions/organization-secrets/x", match{}, false},
		{"PUT", "/repos/o/r/actions/organization-secrets", match{}, false},
		{"GET", "/", match{}, false},
		{"OPTIONS", "*", match{}, false},
	}
	rt := captureRouter()
	for _, tt := range tests {
		got, ok := matchOf(route(t, rt, httptest.NewRequest(tt.method, tt.path, nil)))
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s %s = %+v, %v; want %+v, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
		}
		if back := buildPath(got); ok && !slices.Equal(unescapeSegments(back), unescapeSegments(tt.path)) {
			t.Errorf("buildPath = %q, want %q", back, tt.path)
		}
	}
}

// unescapeSegments unescapes each segment of an escaped path as ServeMux
// does, keeping a badly escaped one as it is.
func unescapeSegments(esc string) []string {
	segs := strings.Split(esc, "/")
	for i, s := range segs {
		if u, err := url.PathUnescape(s); err == nil {
			segs[i] = u
		}
	}
	return segs
}

// FuzzRoute checks the router: it never panics and never answers by
// itself, and a routed request's template with its path values escaped
// again gives back the path, segment for segment, which routes the same.
func FuzzRoute(f *testing.F) {
	for _, seed := range []struct{ method, path string }{
		{"GET", "/orgs/octo-org/actions/secrets"},
		{"GET", "/orgs/octo-org/agents/secrets/public-key"},
		{"GET", "/orgs/octo-org/agents/secrets/public%2dkey"},
		{"PUT", "/orgs/octo-org/actions/secrets/TOKEN"},
		{"PUT", "/orgs/octo-org/actions/secrets/TOKEN/repositories"},
		{"DELETE", "/orgs/octo-org/actions/secrets/TOKEN/repositories/1296269"},
		{"GET", "/repos/octo-org/hello-world"},
		{"HEAD", "/repos/octo-org/hello-world/agents/organization-secrets"},
		{"DELETE", "/repos/octo-org/hello-world/actions/secrets/X"},
		{"GET", "/repos/octo-org/hello-world/environments/prod%2Feu/secrets/public-key"},
		{"GET", "/repos/o/r/environments/secrets/secrets"},
		{"PUT", "/repos/o/r/environments/%E2%82%AC%25/secrets/X"},
		{"GET", "/repositories/1296269/environments/prod%2Feu/secrets"},
		{"GET", "/repositories/1296269/environments/prod%2/secrets"},
		{"GET", "/repos/o/r/environments//secrets"},
		{"GET", "/repos/o/r/environments/%2F/secrets"},
		{"GET", "/repos/o/r/environments/../secrets"},
		{"PATCH", "/orgs/o/actions/secrets/X"},
		{"CONNECT", "/orgs/o/actions/secrets"},
	} {
		f.Add(seed.method, seed.path)
	}
	rt := captureRouter()
	f.Fuzz(func(t *testing.T, method, path string) {
		req, err := http.NewRequest(method, "http://github.example"+path, nil)
		if err != nil {
			return
		}
		method = req.Method // "" is GET
		got := route(t, rt, req)
		if got.Pattern == "" || got.Pattern == unrouted {
			return
		}
		pm, tmpl, _ := strings.Cut(got.Pattern, " ")
		if pm != method && (pm != http.MethodGet || method != http.MethodHead) {
			t.Fatalf("%s %s routed to %q", method, path, got.Pattern)
		}
		segs := strings.Split(tmpl, "/")
		values := map[string]string{}
		for i, seg := range segs {
			if name, ok := strings.CutPrefix(seg, "{"); ok {
				name = strings.TrimSuffix(name, "}")
				values[name] = got.PathValue(name)
				if v := values[name]; v == "." || v == ".." {
					// Sent escaped (%2E), it routes; PathEscape keeps a dot
					// as it is, and a dot segment resolves away. No client
					// sends one (upstream's validSegment refuses it).
					return
				}
				segs[i] = url.PathEscape(values[name])
			}
		}
		esc, back := got.URL.EscapedPath(), strings.Join(segs, "/")
		if !slices.Equal(unescapeSegments(esc), unescapeSegments(back)) {
			t.Fatalf("%s %s: %q rebuilt as %q", method, path, esc, back)
		}
		again := route(t, rt, httptest.NewRequest(method, back, nil))
		if again.Pattern != got.Pattern {
			t.Fatalf("%s %s: %q rebuilt as %q routes to %q, not %q", method, path, esc, back, again.Pattern, got.Pattern)
		}
		for name, v := range values {
			if again.PathValue(name) != v {
				t.Fatalf("%s %s: {%s} is %q, and %q once rebuilt as %q", method, path, name, v, again.PathValue(name), back)
			}
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
		"orgs/%4F/actions",
		"repos/o/r/environments/a%2Fb%2F..",
		"repos/o/r/environments",
		"repos/o/r/environments/e/x",
		"orgs/o/actions/",
		"repos/%E2%84%AA/r/agents",
		"repos/o/r/Actions",
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
		// The key, read apart from parseScope: one of the three shapes,
		// each name one escaped, non-empty, lower-case segment; and a
		// name's case never makes another scope (GitHub's names, ASCII,
		// are case-insensitive).
		segs := strings.Split(key, "/")
		shape := len(segs) == 3 && segs[0] == "orgs" && (segs[2] == "actions" || segs[2] == "agents") ||
			len(segs) == 4 && segs[0] == "repos" && (segs[3] == "actions" || segs[3] == "agents") ||
			len(segs) == 5 && segs[0] == "repos" && segs[3] == "environments"
		if !shape {
			t.Fatalf("%q -> key %q of no known shape", scope, key)
		}
		names := []int{1, 2, 4}
		if segs[0] == "orgs" {
			names = []int{1}
		} else if len(segs) == 4 {
			names = []int{1, 2}
		}
		upper := slices.Clone(segs)
		for _, i := range names {
			u, err := url.PathUnescape(segs[i])
			if err != nil || u == "" || url.PathEscape(u) != segs[i] || strings.ToLower(u) != u {
				t.Fatalf("%q -> key %q: segment %q", scope, key, segs[i])
			}
			upper[i] = url.PathEscape(strings.Map(func(r rune) rune {
				if 'a' <= r && r <= 'z' {
					return r - 'a' + 'A'
				}
				return r
			}, u))
		}
		if k, ok := parseScope(strings.Join(upper, "/")); !ok || k != key {
			t.Fatalf("%q -> key %q, upper-cased %q -> %q, %v", scope, key, strings.Join(upper, "/"), k, ok)
		}
	})
}
