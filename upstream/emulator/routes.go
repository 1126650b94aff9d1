package emulator

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Route templates, as Count, InjectFault and LastRequestHeader name them:
// the method, a space and GitHub's path template. {app} stands for both
// "actions" and "agents", so one template counts both apps.
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
)

// The apps GitHub keeps secrets for, as they appear in paths.
const (
	appActions = "actions"
	appAgents  = "agents"
)

// match is a request path matched against a route template, with the path
// parameters unescaped.
type match struct {
	Route      string
	App        string // "actions" or "agents"; "actions" for environments
	Org        string // organization routes
	Owner      string // repository and environment routes
	Repo       string // repository and environment routes
	RepoID     int64  // legacy environment routes: {repository_id}
	Env        string // environment routes, unescaped ("prod/eu")
	Secret     string // {secret_name}, as sent
	SelectedID int64  // .../repositories/{repository_id}
}

// isEnv reports whether m is an environment route, current or legacy.
func (m match) isEnv() bool { return m.Env != "" }

// isLegacy reports whether m is a legacy environment route.
func (m match) isLegacy() bool { return m.RepoID != 0 }

// parsePath matches a request's method and escaped path (without any
// /api/v3 prefix) against the route templates. Each path segment is
// unescaped on its own, so an environment called "prod/eu" arrives as the
// single segment "prod%2Feu". Empty segments, bad escapes and unknown
// methods do not match.
func parsePath(method, escapedPath string) (match, bool) {
	var m match
	if !strings.HasPrefix(escapedPath, "/") {
		return m, false
	}
	raw := strings.Split(escapedPath[1:], "/")
	if len(raw) > 8 {
		return m, false
	}
	segs := make([]string, len(raw))
	for i, r := range raw {
		s, err := url.PathUnescape(r)
		if err != nil || s == "" {
			return m, false
		}
		segs[i] = s
	}
	switch segs[0] {
	case "orgs":
		// orgs/{org}/{app}/secrets/...
		if len(segs) < 4 || !isApp(segs[2]) || segs[3] != "secrets" {
			return m, false
		}
		m.Org, m.App = segs[1], segs[2]
		return m.orgRoute(method, segs[4:])
	case "repos":
		if len(segs) < 3 {
			return m, false
		}
		m.Owner, m.Repo = segs[1], segs[2]
		if len(segs) == 3 {
			if method != http.MethodGet {
				return m, false
			}
			m.Route = RouteGetRepo
			return m, true
		}
		switch {
		case segs[3] == "environments":
			// repos/{owner}/{repo}/environments/{env}/secrets/...
			if len(segs) < 6 || segs[5] != "secrets" {
				return m, false
			}
			m.App, m.Env = appActions, segs[4]
			return m.secretsRoute(method, segs[6:], routesOf("env"))
		case isApp(segs[3]):
			m.App = segs[3]
			if len(segs) == 5 && segs[4] == "organization-secrets" {
				if method != http.MethodGet {
					return m, false
				}
				m.Route = RouteListRepoOrgSecrets
				return m, true
			}
			if len(segs) < 5 || segs[4] != "secrets" {
				return m, false
			}
			return m.secretsRoute(method, segs[5:], routesOf("repo"))
		}
		return m, false
	case "repositories":
		// repositories/{repository_id}/environments/{env}/secrets/...
		if len(segs) < 5 || segs[2] != "environments" || segs[4] != "secrets" {
			return m, false
		}
		id, ok := parseID(segs[1])
		if !ok {
			return m, false
		}
		m.RepoID, m.App, m.Env = id, appActions, segs[3]
		return m.secretsRoute(method, segs[5:], routesOf("legacy"))
	}
	return m, false
}

// secretRoutes are the five templates of a secrets collection: list,
// public key, get, put, delete.
type secretRoutes struct{ list, key, get, put, del string }

func routesOf(kind string) secretRoutes {
	switch kind {
	case "org":
		return secretRoutes{RouteListOrgSecrets, RouteGetOrgPublicKey, RouteGetOrgSecret, RoutePutOrgSecret, RouteDeleteOrgSecret}
	case "repo":
		return secretRoutes{RouteListRepoSecrets, RouteGetRepoPublicKey, RouteGetRepoSecret, RoutePutRepoSecret, RouteDeleteRepoSecret}
	case "env":
		return secretRoutes{RouteListEnvSecrets, RouteGetEnvPublicKey, RouteGetEnvSecret, RoutePutEnvSecret, RouteDeleteEnvSecret}
	default:
		return secretRoutes{RouteListLegacyEnvSecrets, RouteGetLegacyEnvPublicKey, RouteGetLegacyEnvSecret, RoutePutLegacyEnvSecret, RouteDeleteLegacyEnvSecret}
	}
}

// secretsRoute matches what follows ".../secrets".
func (m match) secretsRoute(method string, rest []string, rt secretRoutes) (match, bool) {
	switch len(rest) {
	case 0:
		if method == http.MethodGet {
			m.Route = rt.list
			return m, true
		}
	case 1:
		m.Secret = rest[0]
		switch method {
		case http.MethodGet:
			if rest[0] == "public-key" {
				m.Secret = ""
				m.Route = rt.key
			} else {
				m.Route = rt.get
			}
			return m, true
		case http.MethodPut:
			m.Route = rt.put
			return m, true
		case http.MethodDelete:
			m.Route = rt.del
			return m, true
		}
	}
	return m, false
}

// orgRoute matches what follows "orgs/{org}/{app}/secrets".
func (m match) orgRoute(method string, rest []string) (match, bool) {
	if len(rest) <= 1 {
		return m.secretsRoute(method, rest, routesOf("org"))
	}
	if rest[1] != "repositories" {
		return m, false
	}
	m.Secret = rest[0]
	switch len(rest) {
	case 2:
		switch method {
		case http.MethodGet:
			m.Route = RouteListSelectedRepos
			return m, true
		case http.MethodPut:
			m.Route = RouteSetSelectedRepos
			return m, true
		}
	case 3:
		id, ok := parseID(rest[2])
		if !ok {
			return m, false
		}
		m.SelectedID = id
		switch method {
		case http.MethodPut:
			m.Route = RouteAddSelectedRepo
			return m, true
		case http.MethodDelete:
			m.Route = RouteRemoveSelectedRepo
			return m, true
		}
	}
	return m, false
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
