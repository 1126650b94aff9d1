package seedconformance

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// The fake's one organization and its repositories (ids from the seeds'
// examples). Organization, owner and repository names are compared without
// case ("The name is not case sensitive."); the seeds say no such thing of
// environment or secret names, so the fake keeps those exactly as sent.
const org = "octo-org"

type repo struct {
	id      int64
	name    string
	private bool
}

func repos() []repo {
	return []repo{
		{id: 1296269, name: "Hello-World"},
		{id: 1296280, name: "other", private: true},
	}
}

// Their ids, for tests.
const (
	helloWorldID = 1296269
	otherID      = 1296280
)

// secret is a secret as the fake holds it. value is the plaintext opened
// from the sealed box the broker sent, so tests can check what GitHub holds.
type secret struct {
	name             string
	value            string
	created, updated time.Time
	visibility       string  // organization secrets only
	selected         []int64 // with visibility "selected"
}

// scope is one scope's key pair and secrets, listed in the order they were
// created (the seeds' listing examples are not sorted by name).
type scope struct {
	org       bool
	keyID     string
	pub, priv *[32]byte
	order     []string
	secrets   map[string]*secret
}

// request is one request the fake received.
type request struct {
	method, path, query, version string
	wire                         string // the whole request as sent: headers and body
}

func (r request) String() string { return r.method + " " + r.path + "?" + r.query + " v=" + r.version }

// github is a GitHub written only from the seeds: exactly their routes (with
// prefix "/api/v3", those of the GHES 3.21 page, which has no Agents
// secrets; not the older GHES page's /repositories/{repository_id} routes,
// which the broker reaches only through a route in no seed, see
// TestNonSeedRoutes), their statuses and bodies, and none of the headers the
// emulator adds (ETag, x-ratelimit-*, Link). It answers with a Date, as
// every HTTP server does, unless noDate. Its clock is time.Now: the
// bubble's fake time.
type github struct {
	t      *testing.T
	prefix string // "" (github.com) or "/api/v3" (GHES)
	noDate bool
	token  string
	// lenient answers 422, without failing the test, the values and
	// repository ids that are otherwise a broker bug (FuzzEmulatorAgainstFake
	// sends them on purpose).
	lenient bool

	mu     sync.Mutex
	scopes map[string]*scope // by scopeKey
	log    []request
}

// repoScope, envScope and orgScope name a scope as the fake keys it:
// "repos/octo-org/hello-world/agents",
// "repos/octo-org/hello-world/environments/{env}" (env unescaped),
// "orgs/octo-org/actions".
func repoScope(repoName, app string) string {
	return "repos/" + org + "/" + strings.ToLower(repoName) + "/" + app
}

func envScope(repoName, env string) string {
	return "repos/" + org + "/" + strings.ToLower(repoName) + "/environments/" + env
}

func orgScope(app string) string { return "orgs/" + org + "/" + app }

type params map[string]string

type route struct {
	method, pattern string
	serve           func(w http.ResponseWriter, r *http.Request, sc *scope, p params)
}

// routes are the seeds' routes. {app} is "actions" or "agents".
func (f *github) routes() []route {
	const orgSecrets, repoSecrets, envSecrets = "orgs/{org}/{app}/secrets", "repos/{owner}/{repo}/{app}/secrets", "repos/{owner}/{repo}/environments/{env}/secrets"
	var rs []route
	for _, base := range []string{orgSecrets, repoSecrets, envSecrets} {
		rs = append(rs,
			route{"GET", base, f.list},
			route{"GET", base + "/public-key", f.publicKey},
			route{"GET", base + "/{name}", f.get},
			route{"PUT", base + "/{name}", f.put},
			route{"DELETE", base + "/{name}", f.delete})
	}
	return append(rs,
		route{"GET", orgSecrets + "/{name}/repositories", f.listSelected},
		route{"PUT", orgSecrets + "/{name}/repositories", f.setSelected},
		route{"PUT", orgSecrets + "/{name}/repositories/{id}", f.changeSelected},
		route{"DELETE", orgSecrets + "/{name}/repositories/{id}", f.changeSelected},
		route{"GET", "repos/{owner}/{repo}/{app}/organization-secrets", f.listShared})
}

func (f *github) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wire, err := httputil.DumpRequest(r, true)
	if err != nil {
		f.t.Errorf("fake: reading the request: %v", err)
	}
	path := r.URL.EscapedPath()
	f.log = append(f.log, request{method: r.Method, path: path, query: r.URL.RawQuery,
		version: r.Header.Get("X-GitHub-Api-Version"), wire: string(wire)})
	if !f.noDate {
		w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		answer(w, http.StatusUnauthorized, map[string]string{"message": "Requires authentication"})
		return
	}
	rest, ok := strings.CutPrefix(path, f.prefix+"/")
	if !ok {
		notFound(w)
		return
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if segs[i], err = url.PathUnescape(s); err != nil {
			notFound(w)
			return
		}
	}
	for _, rt := range f.routes() {
		if p, ok := match(rt.pattern, segs); ok && rt.method == r.Method {
			if sc := f.scopeOf(p); sc != nil {
				rt.serve(w, r, sc, p)
				return
			}
		}
	}
	notFound(w)
}

// match matches path segments (unescaped) against a pattern's. An empty
// segment is no parameter: the seeds mark every path parameter Required
// ("secret_name string Required", 003:156; org, owner, repo,
// environment_name and repository_id alike).
func match(pattern string, segs []string) (params, bool) {
	pat := strings.Split(pattern, "/")
	if len(pat) != len(segs) {
		return nil, false
	}
	p := params{}
	for i, s := range pat {
		switch {
		case strings.HasPrefix(s, "{") && segs[i] == "":
			return nil, false
		case strings.HasPrefix(s, "{"):
			p[strings.Trim(s, "{}")] = segs[i]
		case s != segs[i]:
			return nil, false
		}
	}
	return p, true
}

// scopeOf returns the scope a route's parameters name, nil when there is
// none (an unknown organization or repository, an app GHES lacks).
func (f *github) scopeOf(p params) *scope {
	key, ok := seedScopeKey(f.prefix, p)
	if !ok {
		return nil
	}
	if f.scopes[key] == nil {
		pub, priv, err := box.GenerateKey(rand.Reader)
		if err != nil {
			f.t.Errorf("fake: key: %v", err)
			return nil
		}
		f.scopes[key] = &scope{org: p["org"] != "", keyID: strconv.Itoa(100 + len(f.scopes)), pub: pub, priv: priv, secrets: map[string]*secret{}}
	}
	return f.scopes[key]
}

// seedScopeKey returns the key of the scope a route's parameters name
// under prefix, false when there is none (an unknown organization or
// repository, an app GHES lacks).
func seedScopeKey(prefix string, p params) (string, bool) {
	app, ok := p["app"] // environment routes have none: they are Actions'
	if ok && (app != "actions" && app != "agents" || app == "agents" && prefix != "") {
		return "", false
	}
	switch {
	case p["org"] != "":
		if !strings.EqualFold(p["org"], org) {
			return "", false
		}
		return orgScope(app), true
	case !strings.EqualFold(p["owner"], org) || !found(named(p["repo"])):
		return "", false
	case p["env"] != "":
		return envScope(p["repo"], p["env"]), true
	default:
		return repoScope(p["repo"], app), true
	}
}

// scopeKeyOfPath returns the key of the scope a request's escaped path
// names on a GitHub of the seeds under prefix, false when it names none.
func scopeKeyOfPath(prefix, method, path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"/")
	if !ok {
		return "", false
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		segs[i] = u
	}
	for _, rt := range (&github{}).routes() {
		if p, ok := match(rt.pattern, segs); ok && rt.method == method {
			if key, ok := seedScopeKey(prefix, p); ok {
				return key, true
			}
		}
	}
	return "", false
}

func found(is func(repo) bool) bool { _, ok := findRepo(is); return ok }

// findRepo returns the first repository for which is holds.
func findRepo(is func(repo) bool) (repo, bool) {
	for _, r := range repos() {
		if is(r) {
			return r, true
		}
	}
	return repo{}, false
}

// named matches the repository name, without case.
func named(name string) func(repo) bool {
	return func(r repo) bool { return strings.EqualFold(r.name, name) }
}

func withID(id int64) func(repo) bool { return func(r repo) bool { return r.id == id } }

func answer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func notFound(w http.ResponseWriter) {
	answer(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
}

func unprocessable(w http.ResponseWriter, msg string) {
	answer(w, http.StatusUnprocessableEntity, map[string]string{"message": msg})
}

// page cuts the page and per_page query parameters (defaults 1 and 30,
// per_page at most 100) out of n items.
func page(r *http.Request, n int) (lo, hi int) {
	pg, per := 1, 30
	if v, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && v >= 1 {
		pg = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && v >= 1 {
		per = min(v, 100)
	}
	lo = min(n, (pg-1)*per)
	return lo, min(n, lo+per)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *secret) json(sc *scope, p params) map[string]any {
	out := map[string]any{"name": s.name, "created_at": stamp(s.created), "updated_at": stamp(s.updated)}
	if sc.org {
		out["visibility"] = s.visibility
		if s.visibility == "selected" {
			out["selected_repositories_url"] = fmt.Sprintf("https://api.github.com/orgs/%s/%s/secrets/%s/repositories", org, p["app"], s.name)
		}
	}
	return out
}

func (f *github) list(w http.ResponseWriter, r *http.Request, sc *scope, p params) {
	lo, hi := page(r, len(sc.order))
	out := []map[string]any{}
	for _, name := range sc.order[lo:hi] {
		out = append(out, sc.secrets[name].json(sc, p))
	}
	answer(w, http.StatusOK, map[string]any{"total_count": len(sc.order), "secrets": out})
}

func (f *github) publicKey(w http.ResponseWriter, _ *http.Request, sc *scope, _ params) {
	answer(w, http.StatusOK, map[string]string{"key_id": sc.keyID, "key": base64.StdEncoding.EncodeToString(sc.pub[:])})
}

func (f *github) get(w http.ResponseWriter, _ *http.Request, sc *scope, p params) {
	s := sc.secrets[p["name"]]
	if s == nil {
		notFound(w)
		return
	}
	answer(w, http.StatusOK, s.json(sc, p))
}

// put creates (201, no body shown in the seeds) or updates (204) a
// secret. A value that does not open with the scope's key is a broker bug
// in these tests (no key ever rotates): it fails the test.
func (f *github) put(w http.ResponseWriter, r *http.Request, sc *scope, p params) {
	var body struct {
		EncryptedValue *string `json:"encrypted_value"`
		KeyID          *string `json:"key_id"`
		Visibility     string  `json:"visibility"`
		Selected       []int64 `json:"selected_repository_ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		answer(w, http.StatusBadRequest, map[string]string{"message": "Problems parsing JSON"})
		return
	}
	// encrypted_value and key_id are Required on every page but
	// github.com's (003) for Actions organization and repository secrets,
	// where a PUT without both updates an existing secret's other settings
	// and keeps its value (valueOptional). One without the other, or
	// neither for a secret that does not exist, the seeds leave open: 422.
	noValue := body.EncryptedValue == nil && body.KeyID == nil
	if (body.EncryptedValue == nil || body.KeyID == nil) &&
		(!noValue || !f.valueOptional(p) || sc.secrets[p["name"]] == nil) {
		unprocessable(w, "encrypted_value and key_id are required")
		return
	}
	if sc.org && !slices.Contains([]string{"all", "private", "selected"}, body.Visibility) {
		unprocessable(w, "visibility must be all, private or selected")
		return
	}
	if body.Selected != nil && body.Visibility != "selected" {
		unprocessable(w, "selected_repository_ids only with visibility selected")
		return
	}
	var plain []byte
	if !noValue {
		sealed, err := base64.StdEncoding.DecodeString(*body.EncryptedValue)
		var opened bool
		plain, opened = box.OpenAnonymous(nil, sealed, sc.pub, sc.priv)
		if err != nil || !opened || *body.KeyID != sc.keyID {
			if f.lenient {
				unprocessable(w, "bad encrypted_value")
				return
			}
			f.t.Errorf("fake: PUT %s: a value not sealed with key %s (key_id %q)", r.URL.EscapedPath(), sc.keyID, *body.KeyID)
			unprocessable(w, "bad encrypted_value")
			return
		}
	}
	if sc.org && f.lenient && !f.allKnown(body.Selected) {
		unprocessable(w, "unknown repository id")
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	s := sc.secrets[p["name"]]
	created := s == nil
	if created {
		s = &secret{name: p["name"], created: now}
		sc.secrets[s.name] = s
		sc.order = append(sc.order, s.name)
	}
	if !noValue {
		s.value = string(plain)
	}
	s.updated = now
	if sc.org {
		s.visibility, s.selected = body.Visibility, f.knownIDs(body.Selected)
	}
	if created {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// valueOptional reports whether a PUT of a secret the route's parameters
// name may leave out encrypted_value and key_id: only github.com's
// (prefix "") Actions organization and repository secrets (003:215/219,
// 003:830/834); environment secrets (003:1147/1151), Agents secrets
// (001:215/219, 001:852/856) and GHES 3.21 (000:218/222, 000:835/839)
// mark them Required.
func (f *github) valueOptional(p params) bool {
	return f.prefix == "" && p["app"] == "actions" && p["env"] == ""
}

// knownIDs returns ids, failing the test for an id of no repository: the
// tests select known repositories only, so another id is a broker bug.
func (f *github) knownIDs(ids []int64) []int64 {
	for _, id := range ids {
		if _, ok := findRepo(withID(id)); !ok {
			f.t.Errorf("fake: repository id %d is no repository", id)
		}
	}
	return slices.Clone(ids)
}

// allKnown reports whether every id is a repository's.
func (f *github) allKnown(ids []int64) bool {
	return !slices.ContainsFunc(ids, func(id int64) bool { return !found(withID(id)) })
}

func (f *github) delete(w http.ResponseWriter, _ *http.Request, sc *scope, p params) {
	if sc.secrets[p["name"]] == nil {
		notFound(w)
		return
	}
	delete(sc.secrets, p["name"])
	sc.order = slices.DeleteFunc(sc.order, func(n string) bool { return n == p["name"] })
	w.WriteHeader(http.StatusNoContent)
}

func (f *github) listSelected(w http.ResponseWriter, r *http.Request, sc *scope, p params) {
	s := sc.secrets[p["name"]]
	if s == nil {
		notFound(w)
		return
	}
	lo, hi := page(r, len(s.selected))
	out := []map[string]any{}
	for _, id := range s.selected[lo:hi] {
		rp, _ := findRepo(withID(id))
		out = append(out, map[string]any{"id": rp.id, "name": rp.name, "full_name": org + "/" + rp.name,
			"private": rp.private, "owner": map[string]any{"login": org}})
	}
	answer(w, http.StatusOK, map[string]any{"total_count": len(s.selected), "repositories": out})
}

func (f *github) setSelected(w http.ResponseWriter, r *http.Request, sc *scope, p params) {
	s := sc.secrets[p["name"]]
	if s == nil {
		notFound(w)
		return
	}
	var body struct {
		IDs []int64 `json:"selected_repository_ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.IDs == nil {
		unprocessable(w, "selected_repository_ids is required")
		return
	}
	if f.lenient && !f.allKnown(body.IDs) {
		unprocessable(w, "unknown repository id")
		return
	}
	s.selected = f.knownIDs(body.IDs)
	w.WriteHeader(http.StatusNoContent)
}

// changeSelected adds (PUT) or removes (DELETE) one repository: 409 when
// the secret's visibility is not "selected".
func (f *github) changeSelected(w http.ResponseWriter, r *http.Request, sc *scope, p params) {
	s := sc.secrets[p["name"]]
	id, err := strconv.ParseInt(p["id"], 10, 64)
	if s == nil || err != nil {
		notFound(w)
		return
	}
	if s.visibility != "selected" {
		answer(w, http.StatusConflict, map[string]string{"message": "Conflict when visibility type is not set to selected"})
		return
	}
	if r.Method == http.MethodPut && f.lenient && !f.allKnown([]int64{id}) {
		unprocessable(w, "unknown repository id")
		return
	}
	s.selected = slices.DeleteFunc(s.selected, func(x int64) bool { return x == id })
	if r.Method == http.MethodPut {
		s.selected = append(s.selected, f.knownIDs([]int64{id})...)
	}
	w.WriteHeader(http.StatusNoContent)
}

// listShared lists the organization secrets shared with a repository:
// visibility "all", "private" for a private repository, "selected" with
// the repository selected.
func (f *github) listShared(w http.ResponseWriter, r *http.Request, _ *scope, p params) {
	rp, _ := findRepo(named(p["repo"]))
	var shared []*secret
	if osc := f.scopeOf(params{"org": org, "app": p["app"]}); osc != nil {
		for _, name := range osc.order {
			s := osc.secrets[name]
			if s.visibility == "all" || s.visibility == "private" && rp.private || slices.Contains(s.selected, rp.id) {
				shared = append(shared, s)
			}
		}
	}
	lo, hi := page(r, len(shared))
	out := []map[string]any{}
	for _, s := range shared[lo:hi] {
		out = append(out, map[string]any{"name": s.name, "created_at": stamp(s.created), "updated_at": stamp(s.updated)})
	}
	answer(w, http.StatusOK, map[string]any{"total_count": len(shared), "secrets": out})
}

// Test accessors.

// secret returns a copy of the secret name of the scope key, if any.
func (f *github) secret(key, name string) (secret, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sc := f.scopes[key]
	if sc == nil || sc.secrets[name] == nil {
		return secret{}, false
	}
	s := *sc.secrets[name]
	s.selected = slices.Clone(s.selected)
	return s, true
}

// names returns the names of the scope key's secrets, in listing order.
func (f *github) names(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sc := f.scopes[key]; sc != nil {
		return slices.Clone(sc.order)
	}
	return nil
}

// scopeKeys returns the keys of the scopes requests have named.
func (f *github) scopeKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.scopes))
	for k := range f.scopes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// changeBehindBack sets an existing secret's value as a person would at
// GitHub: updated_at moves to now.
func (f *github) changeBehindBack(key, name, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.scopes[key].secrets[name]
	s.value, s.updated = value, time.Now().UTC().Truncate(time.Second)
}

// requests returns the requests received since the n-th (0 for all).
func (f *github) requests(n int) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log[n:])
}

// mark returns how many requests the fake has received.
func (f *github) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.log)
}
