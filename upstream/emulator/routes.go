package emulator

import (
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Route templates, as Count, InjectFault and LastRequestHeader name them.
// Each is the http.ServeMux pattern its route is registered under, so a
// routed request's r.Pattern is its template: the method, a space and
// GitHub's path template. {app} stands for both "actions" and "agents", so
// one template counts both apps. As with any ServeMux pattern, a GET
// template also serves HEAD.
const (
	// Organization secrets.
	RouteListOrgSecrets     = "GET /orgs/{org}/{app}/secrets"
	RouteGetOrgPublicKey    = "GET /orgs/{org}/{app}/secrets/public-key"
	RouteGetOrgSecret       = "GET /orgs/{org}/{app}/secrets/{secret_name}"
	RoutePutOrgSecret       = "PUT /orgs/{org}/{app}/secrets/{secret_name}"
	RouteDeleteOrgSecret    = "DELETE /orgs/{org}/{app}/secrets/{secret_name}"
	RouteListSelectedRepos  = "GET /orgs/{org}/{app}/secrets/{secret_name}/repositories"
	RouteSetSelectedRepos   = "PUT /orgs/{org}/{app}/secrets/{secret_name}/repositories"
	RouteAddSelectedRepo    = "PUT /orgs/{org}/{app}/secrets/{secret_name}/repositories/{repository_id}"
	RouteRemoveSelectedRepo = "DELETE /orgs/{org}/{app}/secrets/{secret_name}/repositories/{repository_id}"

	// Repository secrets, and the organization secrets shared with a
	// repository.
	RouteListRepoOrgSecrets = "GET /repos/{owner}/{repo}/{app}/organization-secrets"
	RouteListRepoSecrets    = "GET /repos/{owner}/{repo}/{app}/secrets"
	RouteGetRepoPublicKey   = "GET /repos/{owner}/{repo}/{app}/secrets/public-key"
	RouteGetRepoSecret      = "GET /repos/{owner}/{repo}/{app}/secrets/{secret_name}"
	RoutePutRepoSecret      = "PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}"
	RouteDeleteRepoSecret   = "DELETE /repos/{owner}/{repo}/{app}/secrets/{secret_name}"

	// Environment secrets (Actions only), current routes. They answer 404
	// when Options.LegacyRoutes is set.
	RouteListEnvSecrets  = "GET /repos/{owner}/{repo}/environments/{environment_name}/secrets"
	RouteGetEnvPublicKey = "GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"
	RouteGetEnvSecret    = "GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
	RoutePutEnvSecret    = "PUT /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
	RouteDeleteEnvSecret = "DELETE /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"

	// Environment secrets on old GitHub Enterprise Server. They are served
	// only when Options.LegacyRoutes is set, and answer 404 otherwise.
	RouteListLegacyEnvSecrets  = "GET /repositories/{repository_id}/environments/{environment_name}/secrets"
	RouteGetLegacyEnvPublicKey = "GET /repositories/{repository_id}/environments/{environment_name}/secrets/public-key"
	RouteGetLegacyEnvSecret    = "GET /repositories/{repository_id}/environments/{environment_name}/secrets/{secret_name}"
	RoutePutLegacyEnvSecret    = "PUT /repositories/{repository_id}/environments/{environment_name}/secrets/{secret_name}"
	RouteDeleteLegacyEnvSecret = "DELETE /repositories/{repository_id}/environments/{environment_name}/secrets/{secret_name}"

	// RouteGetRepo is "Get a repository".
	RouteGetRepo = "GET /repos/{owner}/{repo}"

	// RouteGetRateLimit is "Get rate limit status for the authenticated
	// user", the cheap call that proves a credential. It does not use the
	// primary quota.
	RouteGetRateLimit = "GET /rate_limit"
)

// The apps GitHub keeps secrets for, as they appear in paths.
const (
	appActions = "actions"
	appAgents  = "agents"
)

// unrouted is the catch-all pattern of the requests no template matches.
const unrouted = "/"

// newRouter returns the handler that hands a request, its path below the
// API root, to h with r.Pattern set to the route template it matched and
// the template's wildcards in r.PathValue, each path segment unescaped
// once: "prod%2Feu" is the environment "prod/eu", "prod/eu" is two
// segments. A request no template matches reaches h too, with r.Pattern
// unrouted or "". ServeMux's own answers (a redirect to the cleaned path,
// 404, 405) never go out: a path with an empty segment, "." or ".." is
// not cleaned but simply matches nothing.
//
// GET .../{app}/secrets/{secret_name} and GET
// .../environments/{environment_name}/secrets overlap (both match
// /repos/o/r/environments/secrets/secrets) and one ServeMux refuses to hold
// both, so the environment routes have a mux of their own that is tried
// first: "environments" is not an app.
func newRouter(h http.HandlerFunc) http.Handler {
	env, rest := http.NewServeMux(), http.NewServeMux()
	for _, p := range []string{RouteListEnvSecrets, RouteGetEnvPublicKey, RouteGetEnvSecret, RoutePutEnvSecret, RouteDeleteEnvSecret} {
		env.HandleFunc(p, h)
	}
	for _, p := range []string{
		RouteListOrgSecrets, RouteGetOrgPublicKey, RouteGetOrgSecret, RoutePutOrgSecret, RouteDeleteOrgSecret,
		RouteListSelectedRepos, RouteSetSelectedRepos, RouteAddSelectedRepo, RouteRemoveSelectedRepo,
		RouteListRepoOrgSecrets, RouteListRepoSecrets, RouteGetRepoPublicKey, RouteGetRepoSecret, RoutePutRepoSecret, RouteDeleteRepoSecret,
		RouteListLegacyEnvSecrets, RouteGetLegacyEnvPublicKey, RouteGetLegacyEnvSecret, RoutePutLegacyEnvSecret, RouteDeleteLegacyEnvSecret,
		RouteGetRepo, RouteGetRateLimit, unrouted,
	} {
		rest.HandleFunc(p, h)
	}
	for _, p := range appRoutes() {
		rest.HandleFunc(p, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !isClean(r.URL.EscapedPath()):
			h(w, r)
		case hasRoute(env, r):
			env.ServeHTTP(w, r)
		default:
			rest.ServeHTTP(w, r)
		}
	})
}

// isClean reports whether ServeMux routes the escaped path p as it is
// rather than redirecting to a cleaned path.
func isClean(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return strings.HasPrefix(p, "/") && c == p
}

func hasRoute(mux *http.ServeMux, r *http.Request) bool {
	_, p := mux.Handler(r)
	return p != ""
}

// match is a routed request's template and wildcards, unescaped.
type match struct {
	Route      string // the template; "" when none matched
	App        string // "actions" or "agents"; "actions" for environments
	Org        string // organization routes
	Owner      string // repository and environment routes
	Repo       string // repository and environment routes
	RepoID     int64  // legacy environment routes: {repository_id}
	Env        string // environment routes, unescaped ("prod/eu")
	Secret     string // {secret_name}
	SelectedID int64  // .../repositories/{repository_id}
}

// isEnv reports whether m is an environment route, current or legacy.
func (m match) isEnv() bool { return m.Env != "" }

// isLegacy reports whether m is a legacy environment route.
func (m match) isLegacy() bool { return m.RepoID != 0 }

// matchOf reads what the router found for r. ok is false when no template
// matched, and when a wildcard holds what GitHub does not route (which it
// answers 404): an {app} other than actions and agents, or a
// {repository_id} that is not a positive decimal id. m.Route is set
// either way when a template matched.
func matchOf(r *http.Request) (m match, ok bool) {
	m = match{Route: r.Pattern, App: r.PathValue("app"), Org: r.PathValue("org"), Owner: r.PathValue("owner"),
		Repo: r.PathValue("repo"), Env: r.PathValue("environment_name"), Secret: r.PathValue("secret_name")}
	if m.Route == unrouted {
		m.Route = ""
	}
	if m.Env != "" {
		m.App = appActions
	}
	if raw := r.PathValue("repository_id"); raw != "" {
		id, ok := parseID(raw)
		if !ok {
			return m, false
		}
		if m.Org != "" {
			m.SelectedID = id
		} else {
			m.RepoID = id
		}
	}
	return m, m.Route == RouteGetRepo || m.Route == RouteGetRateLimit || isAppRoute(m.Route) || (m.Route != "" && isApp(m.App))
}

func isApp(s string) bool { return s == appActions || s == appAgents }

// parseID parses a positive decimal id made of digits only.
func parseID(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// scopeKind tells the three shapes of a scope apart.
type scopeKind int

const (
	orgScope scopeKind = iota + 1
	repoScope
	envScope
)

// scopeKey is the canonical key of a scope in the server's maps: its REST
// path prefix with every name lower-cased (GitHub's names are not case
// sensitive) and escaped once.
func scopeKey(kind scopeKind, app, org, owner, repo, env string) string {
	switch kind {
	case orgScope:
		return "orgs/" + url.PathEscape(strings.ToLower(org)) + "/" + app
	case repoScope:
		return "repos/" + url.PathEscape(strings.ToLower(owner)) + "/" + url.PathEscape(strings.ToLower(repo)) + "/" + app
	default:
		return "repos/" + url.PathEscape(strings.ToLower(owner)) + "/" + url.PathEscape(strings.ToLower(repo)) +
			"/environments/" + url.PathEscape(strings.ToLower(env))
	}
}

// parseScope reads a scope path as the test hooks take it, for example
// "orgs/octo-org/actions" or "repos/o/r/environments/prod%2Feu", and
// returns its canonical key.
func parseScope(scope string) (string, bool) {
	raw := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	segs := make([]string, len(raw))
	for i, r := range raw {
		s, err := url.PathUnescape(r)
		if err != nil || s == "" {
			return "", false
		}
		segs[i] = s
	}
	switch {
	case len(segs) == 3 && segs[0] == "orgs" && isApp(segs[2]):
		return scopeKey(orgScope, segs[2], segs[1], "", "", ""), true
	case len(segs) == 4 && segs[0] == "repos" && isApp(segs[3]):
		return scopeKey(repoScope, segs[3], "", segs[1], segs[2], ""), true
	case len(segs) == 5 && segs[0] == "repos" && segs[3] == "environments":
		return scopeKey(envScope, appActions, "", segs[1], segs[2], segs[4]), true
	}
	return "", false
}
