package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// request is what a handler needs of one HTTP request.
type request struct {
	m    match
	r    *http.Request
	body []byte
	base string // absolute URL of the API root, for Link and *_url fields
	path string // escaped path below base
	ghes bool   // the request came under /api/v3
}

// response is a complete answer, built under the lock and written after it
// is released.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (resp *response) write(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	if len(resp.body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	if _, ok := h["Date"]; !ok {
		// GitHub dates every answer; net/http's server would too, but
		// the emulator also answers in memory, without one.
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

func jsonResponse(status int, v any) *response {
	b, err := json.Marshal(v)
	if err != nil {
		return errorResponse(http.StatusInternalServerError, "encoding the response: "+err.Error())
	}
	return &response{status: status, header: http.Header{}, body: b}
}

func noContent() *response {
	return &response{status: http.StatusNoContent, header: http.Header{}}
}

// errorBody is GitHub's error object.
type errorBody struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
	Status           string `json:"status"`
}

func errorResponse(status int, msg string) *response {
	return jsonResponse(status, errorBody{Message: msg, DocumentationURL: docsURL, Status: strconv.Itoa(status)})
}

func notFound() *response { return errorResponse(http.StatusNotFound, "Not Found") }

func invalid(format string, args ...any) *response {
	return errorResponse(http.StatusUnprocessableEntity, fmt.Sprintf(format, args...))
}

func faultResponse(f *Fault) *response {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	resp := &response{status: status, header: f.Header.Clone(), body: []byte(f.Body)}
	if resp.header == nil {
		resp.header = http.Header{}
	}
	if f.Body == "" && status >= 400 {
		resp = errorResponse(status, http.StatusText(status))
		for k, v := range f.Header {
			resp.header[k] = slices.Clone(v)
		}
	}
	return resp
}

// scope is a resolved scope: the organization, repository or environment
// exists.
type scope struct {
	kind scopeKind
	app  string
	key  string
	org  *org  // orgScope
	repo *repo // repoScope, envScope
	env  string
}

// resolve finds the scope a matched route addresses. Callers hold s.mu.
func (s *Server) resolve(m match) (*scope, bool) {
	switch {
	case m.Org != "":
		o := s.orgs[strings.ToLower(m.Org)]
		if o == nil {
			return nil, false
		}
		return &scope{kind: orgScope, app: m.App, org: o, key: scopeKey(orgScope, m.App, o.login, "", "", "")}, true
	case m.isEnv():
		r := s.repos[m.RepoID]
		if !m.isLegacy() {
			r = s.findRepo(m.Owner, m.Repo)
		}
		if r == nil {
			return nil, false
		}
		env, ok := r.envs[strings.ToLower(m.Env)]
		if !ok {
			return nil, false
		}
		return &scope{kind: envScope, app: appActions, repo: r, env: env,
			key: scopeKey(envScope, appActions, "", r.org.login, r.name, env)}, true
	default:
		r := s.findRepo(m.Owner, m.Repo)
		if r == nil {
			return nil, false
		}
		return &scope{kind: repoScope, app: m.App, repo: r, key: scopeKey(repoScope, m.App, "", r.org.login, r.name, "")}, true
	}
}

// handle answers a request that passed authentication and the version and
// route checks. Callers hold s.mu.
func (s *Server) handle(req *request) *response {
	m := req.m
	if m.Route == RouteGetRepo {
		r := s.findRepo(m.Owner, m.Repo)
		if r == nil {
			return notFound()
		}
		return conditional(req, jsonResponse(http.StatusOK, repoObject(r)))
	}
	if m.Route == RouteGetRateLimit {
		return s.rateLimit(s.limitsFor(s.limitKey(req.r)))
	}
	if m.Route == RouteListRepoOrgSecrets {
		return s.listRepoOrgSecrets(req)
	}
	sc, ok := s.resolve(m)
	if !ok {
		return notFound()
	}
	switch m.Route {
	case RouteListOrgSecrets, RouteListRepoSecrets, RouteListEnvSecrets, RouteListLegacyEnvSecrets:
		return s.listSecrets(req, sc)
	case RouteGetOrgPublicKey, RouteGetRepoPublicKey, RouteGetEnvPublicKey, RouteGetLegacyEnvPublicKey:
		return s.publicKey(req, sc)
	case RouteGetOrgSecret, RouteGetRepoSecret, RouteGetEnvSecret, RouteGetLegacyEnvSecret:
		sec := s.secrets[sc.key][strings.ToUpper(m.Secret)]
		if sec == nil {
			return notFound()
		}
		return jsonResponse(http.StatusOK, secretObject(req, sc, sec))
	case RoutePutOrgSecret, RoutePutRepoSecret, RoutePutEnvSecret, RoutePutLegacyEnvSecret:
		return s.putSecret(req, sc)
	case RouteDeleteOrgSecret, RouteDeleteRepoSecret, RouteDeleteEnvSecret, RouteDeleteLegacyEnvSecret:
		name := strings.ToUpper(m.Secret)
		if s.secrets[sc.key][name] == nil {
			return notFound()
		}
		delete(s.secrets[sc.key], name)
		return noContent()
	case RouteListSelectedRepos, RouteSetSelectedRepos, RouteAddSelectedRepo, RouteRemoveSelectedRepo:
		sec := s.secrets[sc.key][strings.ToUpper(m.Secret)]
		if sec == nil {
			return notFound()
		}
		return s.selectedRepos(req, sc, sec)
	}
	return notFound()
}

// secretJSON is a secret as GitHub lists it; it never carries a value.
type secretJSON struct {
	Name                    string `json:"name"`
	CreatedAt               string `json:"created_at"`
	UpdatedAt               string `json:"updated_at"`
	Visibility              string `json:"visibility,omitempty"`
	SelectedRepositoriesURL string `json:"selected_repositories_url,omitempty"`
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func secretObject(req *request, sc *scope, sec *secret) secretJSON {
	j := secretJSON{Name: sec.name, CreatedAt: timestamp(sec.created), UpdatedAt: timestamp(sec.updated)}
	if sc.kind == orgScope {
		j.Visibility = sec.visibility
		if sec.visibility == "selected" {
			j.SelectedRepositoriesURL = req.base + "/orgs/" + url.PathEscape(sc.org.login) + "/" + sc.app +
				"/secrets/" + url.PathEscape(sec.name) + "/repositories"
		}
	}
	return j
}

type secretList struct {
	TotalCount int          `json:"total_count"`
	Secrets    []secretJSON `json:"secrets"`
}

// sortedSecrets returns a scope's secrets in name order.
func (s *Server) sortedSecrets(key string) []*secret {
	var out []*secret
	for _, sec := range s.secrets[key] {
		out = append(out, sec)
	}
	slices.SortFunc(out, func(a, b *secret) int { return strings.Compare(a.name, b.name) })
	return out
}

func (s *Server) listSecrets(req *request, sc *scope) *response {
	all := s.sortedSecrets(sc.key)
	header, lo, hi := req.paginate(len(all))
	list := secretList{TotalCount: len(all), Secrets: []secretJSON{}}
	for _, sec := range all[lo:hi] {
		list.Secrets = append(list.Secrets, secretObject(req, sc, sec))
	}
	resp := jsonResponse(http.StatusOK, list)
	mergeHeader(resp.header, header)
	return resp
}

// listRepoOrgSecrets lists the organization secrets shared with a
// repository: visibility all, private when the repository is private, or
// selected with the repository among the selected.
func (s *Server) listRepoOrgSecrets(req *request) *response {
	r := s.findRepo(req.m.Owner, req.m.Repo)
	if r == nil {
		return notFound()
	}
	var shared []*secret
	for _, sec := range s.sortedSecrets(scopeKey(orgScope, req.m.App, r.org.login, "", "", "")) {
		if sec.visibility == "all" || (sec.visibility == "private" && r.private) || (sec.visibility == "selected" && sec.selected[r.id]) {
			shared = append(shared, sec)
		}
	}
	header, lo, hi := req.paginate(len(shared))
	list := secretList{TotalCount: len(shared), Secrets: []secretJSON{}}
	for _, sec := range shared[lo:hi] {
		list.Secrets = append(list.Secrets, secretJSON{Name: sec.name, CreatedAt: timestamp(sec.created), UpdatedAt: timestamp(sec.updated)})
	}
	resp := jsonResponse(http.StatusOK, list)
	mergeHeader(resp.header, header)
	return resp
}

type publicKeyJSON struct {
	KeyID string `json:"key_id"`
	Key   string `json:"key"`
}

func (s *Server) publicKey(req *request, sc *scope) *response {
	kp := s.keysFor(sc.key).current
	return conditional(req, jsonResponse(http.StatusOK, publicKeyJSON{KeyID: kp.id, Key: base64.StdEncoding.EncodeToString(kp.pub[:])}))
}

// conditional gives a 200 answer a weak ETag of its body and the
// Cache-Control GitHub sends with it, and makes it a 304 when the request's
// If-None-Match matches that ETag.
func conditional(req *request, resp *response) *response {
	if resp.status != http.StatusOK {
		return resp
	}
	sum := sha256.Sum256(resp.body)
	etag := `W/"` + hex.EncodeToString(sum[:]) + `"`
	resp.header.Set("ETag", etag)
	resp.header.Set("Cache-Control", "private, max-age=60, s-maxage=60")
	if etagMatches(req.r.Header.Values("If-None-Match"), etag) {
		return &response{status: http.StatusNotModified, header: resp.header}
	}
	return resp
}

// etagMatches applies If-None-Match's weak comparison.
func etagMatches(values []string, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == want {
				return true
			}
		}
	}
	return false
}

// valueRequired reports whether a PUT of a secret in sc must carry
// encrypted_value and key_id, as the reference pages of the GitHub the
// server plays mark them (ghes: the request came under /api/v3):
//   - Required for environment secrets everywhere (github.com 003:1147/1151,
//     GitHub Enterprise Server 3.21 000:1154/1158, the older release's legacy
//     routes 004:1042/1046), for Agents secrets (001:215/219, 001:852/856),
//     and for every scope of GitHub Enterprise Server 3.21 (000:218/222,
//     000:835/839);
//   - optional for Actions organization and repository secrets on
//     github.com (003:215/219, 003:830/834) and on the older GitHub
//     Enterprise Server, Options.LegacyRoutes (004:233/237, 004:737/741,
//     002's organization PUT).
func (s *Server) valueRequired(req *request, sc *scope) bool {
	switch {
	case sc.kind == envScope, sc.app == appAgents:
		return true
	case req.ghes && !s.opts.LegacyRoutes:
		return true
	}
	return false
}

// stringIDsAllowed reports whether a PUT of an organization secret in sc
// may send selected_repository_ids as strings of digits: only on the older
// GitHub Enterprise Server (Options.LegacyRoutes), whose Actions reference
// (002:149) types them array[string] and gives ["1296269", "1296280"] as
// the example. Everywhere else they are integers (003:229, 001:229,
// 000:232, 004:247), and Set selected repositories takes integers even
// there (002:259).
func (s *Server) stringIDsAllowed(sc *scope) bool {
	return s.opts.LegacyRoutes && sc.kind == orgScope && sc.app == appActions
}

// putSecret creates or updates a secret.
//
// Where encrypted_value and key_id are optional (see valueRequired), they
// go together: one without the other is refused. A PUT without them
// updates an existing secret's other settings (visibility and selected
// repositories; for a repository secret nothing but updated_at) and keeps
// its value; for a secret that does not exist it is refused with 422, the
// emulator's reading of "Creates or updates ... a secret with an encrypted
// value" (003:181, 003:792): without a value there is nothing to create.
func (s *Server) putSecret(req *request, sc *scope) *response {
	name := req.m.Secret
	if !validSecretName(name) {
		return invalid("Invalid secret name %q: secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_), must not start with a number and must not start with the GITHUB_ prefix", name)
	}
	fields, ok := decodeObject(req.body)
	if !ok {
		return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
	}
	keyID, keyPresent, ok := stringField(fields, "key_id")
	if keyPresent && !ok {
		return invalid("key_id must be a string")
	}
	value, valuePresent, ok := stringField(fields, "encrypted_value")
	if valuePresent && !ok {
		return invalid("encrypted_value must be a string")
	}
	switch {
	case !keyPresent && (valuePresent || s.valueRequired(req, sc)):
		return invalid("key_id is required")
	case !valuePresent && (keyPresent || s.valueRequired(req, sc)):
		return invalid("encrypted_value is required")
	case valuePresent && !validBase64(value):
		return invalid("encrypted_value must be standard base64 (pattern ^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$)")
	}

	var visibility string
	var selected []int64
	if sc.kind == orgScope {
		v, present, ok := stringField(fields, "visibility")
		switch {
		case !present:
			return invalid("visibility is required for organization secrets: one of all, private, selected")
		case !ok || (v != "all" && v != "private" && v != "selected"):
			return invalid("visibility must be one of all, private, selected")
		}
		visibility = v
		if raw, present := field(fields, "selected_repository_ids"); present {
			if visibility != "selected" {
				return invalid("selected_repository_ids can only be given when visibility is selected")
			}
			ids, err := parseIDs(raw, s.stringIDsAllowed(sc))
			if err != nil {
				return invalid("selected_repository_ids: %v", err)
			}
			if resp := s.checkOrgRepos(sc.org, ids); resp != nil {
				return resp
			}
			selected = ids
		}
	} else {
		if _, present := field(fields, "visibility"); present {
			return invalid("visibility is only valid for organization secrets")
		}
		if _, present := field(fields, "selected_repository_ids"); present {
			return invalid("selected_repository_ids is only valid for organization secrets")
		}
	}

	sec := s.secrets[sc.key][strings.ToUpper(name)]
	var sealed []byte
	kp := s.keysFor(sc.key).current
	if valuePresent {
		if keyID != kp.id {
			return invalid("key_id %q is not the current key of this scope (the current key_id is %q); get the public key again and re-encrypt", keyID, kp.id)
		}
		var err error
		sealed, err = base64.StdEncoding.DecodeString(value)
		if err != nil {
			return invalid("encrypted_value is not valid base64")
		}
		plain, ok := box.OpenAnonymous(nil, sealed, kp.pub, kp.priv)
		if !ok {
			return invalid("encrypted_value does not open as a sealed box under key %s; encrypt it with the public key of key_id %s", kp.id, kp.id)
		}
		size := len(plain)
		clear(plain)
		if size > maxSecretBytes {
			return invalid("the secret value is %d bytes; secrets can be at most 48 KB (%d bytes)", size, maxSecretBytes)
		}
	} else if sec == nil {
		return invalid("encrypted_value and key_id are required to create the secret %s: there is no value to store", strings.ToUpper(name))
	}

	now := time.Now().UTC().Truncate(time.Second)
	if s.secrets[sc.key] == nil {
		s.secrets[sc.key] = map[string]*secret{}
	}
	created := sec == nil
	if created {
		sec = &secret{name: strings.ToUpper(name), created: now}
		s.secrets[sc.key][sec.name] = sec
	}
	sec.updated = now
	if valuePresent {
		sec.sealed = sealed
		sec.keyID = kp.id
	}
	sec.visibility = visibility
	// Like GitHub, an update replaces the selected repositories with what
	// the body sends: leaving selected_repository_ids out clears them.
	sec.selected = map[int64]bool{}
	for _, id := range selected {
		sec.selected[id] = true
	}
	if created {
		return &response{status: http.StatusCreated, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, body: []byte("{}")}
	}
	return noContent()
}

// checkOrgRepos answers 422 unless every id is a repository of o.
func (s *Server) checkOrgRepos(o *org, ids []int64) *response {
	for _, id := range ids {
		if r := s.repos[id]; r == nil || r.org != o {
			return invalid("repository %d is not a repository of the organization %s", id, o.login)
		}
	}
	return nil
}

type ownerJSON struct {
	Login string `json:"login"`
	Type  string `json:"type"`
}

type repoJSON struct {
	ID       int64     `json:"id"`
	Name     string    `json:"name"`
	FullName string    `json:"full_name"`
	Private  bool      `json:"private"`
	Owner    ownerJSON `json:"owner"`
}

func repoObject(r *repo) repoJSON {
	return repoJSON{ID: r.id, Name: r.name, FullName: r.fullName(), Private: r.private,
		Owner: ownerJSON{Login: r.org.login, Type: "Organization"}}
}

type repoList struct {
	TotalCount   int        `json:"total_count"`
	Repositories []repoJSON `json:"repositories"`
}

// selectedRepos serves the four selected-repository routes of an existing
// organization secret.
func (s *Server) selectedRepos(req *request, sc *scope, sec *secret) *response {
	switch req.m.Route {
	case RouteListSelectedRepos:
		ids := sec.selectedIDs()
		header, lo, hi := req.paginate(len(ids))
		list := repoList{TotalCount: len(ids), Repositories: []repoJSON{}}
		for _, id := range ids[lo:hi] {
			if r := s.repos[id]; r != nil {
				list.Repositories = append(list.Repositories, repoObject(r))
			}
		}
		resp := jsonResponse(http.StatusOK, list)
		mergeHeader(resp.header, header)
		return resp
	case RouteSetSelectedRepos:
		fields, ok := decodeObject(req.body)
		if !ok {
			return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
		}
		raw, present := field(fields, "selected_repository_ids")
		if !present {
			return invalid("selected_repository_ids is required")
		}
		ids, err := parseIDs(raw, false)
		if err != nil {
			return invalid("selected_repository_ids: %v", err)
		}
		// The reference documents 409 for Add and Remove only (Set lists
		// just 204), but Set's body parameter says "You can only provide a
		// list of repository ids when the visibility is set to selected"
		// (003:410, 002:261); the emulator reads that as the same conflict
		// Add and Remove answer.
		if sec.visibility != "selected" {
			return notSelected(sec)
		}
		if resp := s.checkOrgRepos(sc.org, ids); resp != nil {
			return resp
		}
		sec.selected = map[int64]bool{}
		for _, id := range ids {
			sec.selected[id] = true
		}
		return noContent()
	case RouteAddSelectedRepo:
		if sec.visibility != "selected" {
			return notSelected(sec)
		}
		if resp := s.checkOrgRepos(sc.org, []int64{req.m.SelectedID}); resp != nil {
			return resp
		}
		sec.selected[req.m.SelectedID] = true
		return noContent()
	default: // RouteRemoveSelectedRepo
		if sec.visibility != "selected" {
			return notSelected(sec)
		}
		delete(sec.selected, req.m.SelectedID)
		return noContent()
	}
}

func notSelected(sec *secret) *response {
	return errorResponse(http.StatusConflict, fmt.Sprintf("The visibility of secret %s is %q; selected repositories can only be managed when the visibility is \"selected\"", sec.name, sec.visibility))
}

// paginate reads page and per_page (defaults 1 and 30, per_page at most
// 100) and returns the Link header for a list of total items and the bounds
// of the requested page.
func (req *request) paginate(total int) (header http.Header, lo, hi int) {
	q := req.r.URL.Query()
	page, per := 1, 30
	if v, err := strconv.Atoi(q.Get("page")); err == nil && v >= 1 {
		page = v
	}
	if v, err := strconv.Atoi(q.Get("per_page")); err == nil && v >= 1 {
		per = min(v, 100)
	}
	last := max(1, (total+per-1)/per)
	lo = min(total, (min(page, last+1)-1)*per)
	hi = min(total, lo+per)

	link := func(p int, rel string) string {
		q.Set("page", strconv.Itoa(p))
		return "<" + req.base + req.path + "?" + q.Encode() + `>; rel="` + rel + `"`
	}
	var links []string
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"))
	}
	header = http.Header{}
	if len(links) > 0 {
		header.Set("Link", strings.Join(links, ", "))
	}
	return header, lo, hi
}

func mergeHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// validSecretName applies GitHub's rules: only [A-Za-z0-9_], not starting
// with a digit, not starting with GITHUB_ (in any case).
func validSecretName(name string) bool {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return !strings.HasPrefix(strings.ToUpper(name), "GITHUB_")
}

// validBase64 matches the pattern GitHub's schema gives encrypted_value:
// ^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$
func validBase64(s string) bool {
	n := len(s)
	if n == 0 || n%4 != 0 {
		return false
	}
	alpha := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
	}
	for i := 0; i < n-2; i++ {
		if !alpha(s[i]) {
			return false
		}
	}
	switch {
	case s[n-2] == '=':
		return s[n-1] == '='
	default:
		return alpha(s[n-2]) && (alpha(s[n-1]) || s[n-1] == '=')
	}
}

// decodeObject parses a request body that must be one JSON object.
func decodeObject(body []byte) (map[string]json.RawMessage, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, false
	}
	return fields, true
}

// field returns a field's raw value; a JSON null counts as absent.
func field(fields map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := fields[name]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil, false
	}
	return raw, true
}

// stringField returns a field that must be a JSON string.
func stringField(fields map[string]json.RawMessage, name string) (v string, present, ok bool) {
	raw, present := field(fields, name)
	if !present {
		return "", false, false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, false
	}
	return v, true, true
}

// parseIDs reads an array of repository ids: JSON integers, or, when
// allowStrings is set, also strings of digits (see stringIDsAllowed).
func parseIDs(raw json.RawMessage, allowStrings bool) ([]int64, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("must be an array of repository ids")
	}
	ids := make([]int64, 0, len(elems))
	for _, e := range elems {
		e = bytes.TrimSpace(e)
		digits := string(e)
		var str string
		if json.Unmarshal(e, &str) == nil {
			if !allowStrings {
				return nil, fmt.Errorf("%s is not a repository id: ids are integers, not strings", e)
			}
			digits = str
		}
		id, ok := parseID(digits)
		if !ok {
			return nil, fmt.Errorf("%s is not a repository id", e)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// rateLimitJSON is one resource's quota as GET /rate_limit shows it.
type rateLimitJSON struct {
	Limit     int   `json:"limit"`
	Used      int   `json:"used"`
	Remaining int   `json:"remaining"`
	Reset     int64 `json:"reset"`
}

// rateLimit answers GET /rate_limit in GitHub's shape, reduced to the core
// resource: {"resources":{"core":{...}},"rate":{...}}, where rate repeats
// core. With Limits.PrimaryPerHour it shows the primary quota; without it
// github.com's 5,000 requests an hour, unused. Callers hold s.mu.
func (s *Server) rateLimit(st *limitState) *response {
	core := rateLimitJSON{Limit: defaultRateLimitShown, Remaining: defaultRateLimitShown, Reset: time.Now().Add(primaryWindow).Unix()}
	if limit := s.opts.Limits.PrimaryPerHour; limit > 0 {
		remaining := max(limit-st.primaryUsed, 0)
		core = rateLimitJSON{Limit: limit, Used: limit - remaining, Remaining: remaining, Reset: st.primaryEnd.Unix()}
	}
	return jsonResponse(http.StatusOK, map[string]any{
		"resources": map[string]rateLimitJSON{rateLimitResource: core},
		"rate":      core,
	})
}
