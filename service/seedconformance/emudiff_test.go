package seedconformance

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// The choices FuzzEmulatorAgainstFake draws a request from: each field of
// an op is an index into one of these (taken modulo its length).
var (
	diffMethods = []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch}
	// The seeds' route templates ({s} is the scope prefix of the kind).
	diffTemplates = []struct {
		kind int // 0 organization, 1 repository, 2 environment
		rest string
	}{
		{0, "/secrets"}, {0, "/secrets/public-key"}, {0, "/secrets/{name}"},
		{0, "/secrets/{name}/repositories"}, {0, "/secrets/{name}/repositories/{id}"},
		{1, "/secrets"}, {1, "/secrets/public-key"}, {1, "/secrets/{name}"}, {1, "/organization-secrets"},
		{2, "/secrets"}, {2, "/secrets/public-key"}, {2, "/secrets/{name}"},
	}
	diffOrgs  = []string{"octo-org", "OCTO-ORG", "octo%2Dorg", "nope-org", ""}
	diffRepos = []string{"Hello-World", "hello-world", "other", "OTHER", "nope", "Hello%2DWorld", "filler1296270"}
	diffApps  = []string{"actions", "agents", "Actions", "environments", "secrets"}
	// Secret names; index len is the op's own fuzzed name, escaped.
	diffNames = []string{"FOO", "BAR", "foo", "Foo_1", "1X", "GITHUB_X", "github_token", "A-B", "A%2FB",
		"public-key", "repositories", "secrets", "%zz"}
	// Environment names, escaped as they go in the path.
	diffEnvs = []string{"prod", "Prod", "Stage", "stage", "nonexistent", "a%20b", "prod%2Feu", "prod/eu",
		"100%25", "%C3%BC", "q%3Fx", "h%23x", "."}
	diffIDs      = []string{"1296269", "1296280", "1296270", "0", "-1", "abc", "01296269", "99999999999999999999", "1e3"}
	diffExtras   = []string{"", "", "/extra", "/", "//x"}
	diffPages    = []string{"", "1", "2", "0", "-1", "abc", "100", "99999999999"}
	diffPerPages = []string{"", "1", "2", "0", "100", "101", "abc", "-5"}
	diffVersions = []string{"", "right", "2022-11-28", "2026-03-10", "1999-01-01"}
	diffAccepts  = []string{"", "application/vnd.github+json", "text/html"}
)

// Body kinds, and the choices of each JSON field.
const (
	bodyNone = iota
	bodyJSON
	bodyRaw
	bodyNull
	bodyArray
	bodyTrailing // the JSON object followed by garbage
	bodyKinds
)

const (
	evMissing = iota
	evValid
	evGarbage  // base64 that opens under no key
	evNotB64   // not base64
	evNumber   // a JSON number
	evNull     // JSON null
	evEmpty    // ""
	evOtherKey // a sealed box for another key
	evKinds
)

const (
	kidMissing = iota
	kidRight
	kidWrong
	kidNumber
	kidNull
	kidKinds
)

var (
	diffVisibilities = []string{"", `"all"`, `"private"`, `"selected"`, `"ALL"`, `7`, `null`}
	diffSelected     = []string{"", `null`, `[1296269]`, `[1296269,1296280]`, `["1296269"]`, `[1296270]`, `[]`, `"x"`, `[1.5]`, `[0]`}
)

// diffOp is one request of a sequence, as indices into the choices.
type diffOp struct {
	method, tmpl, org, owner, repo, app, name, env, id, extra, page, perPage uint8
	body, ev, kid, vis, sel, unknown, version, accept, auth                  uint8
	nameRaw, bodyRaw                                                         string
}

// diffSeq is what one fuzz input decodes to.
type diffSeq struct {
	ghes bool
	ops  []diffOp
}

// fields lists an op's byte fields in their encoding order.
func (o *diffOp) fields() []*uint8 {
	return []*uint8{&o.method, &o.tmpl, &o.org, &o.owner, &o.repo, &o.app, &o.name, &o.env, &o.id, &o.extra,
		&o.page, &o.perPage, &o.body, &o.ev, &o.kid, &o.vis, &o.sel, &o.unknown, &o.version, &o.accept, &o.auth}
}

// byteReader hands out an input's bytes, zeros once they run out.
type byteReader struct{ b []byte }

func (r *byteReader) next() uint8 {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) str() string {
	n := min(int(r.next()), len(r.b))
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func decodeDiffSeq(data []byte) diffSeq {
	r := &byteReader{b: data}
	head := r.next()
	seq := diffSeq{ghes: head&1 != 0}
	for range 1 + int(head>>1)%4 {
		var o diffOp
		for _, f := range o.fields() {
			*f = r.next()
		}
		o.nameRaw, o.bodyRaw = r.str(), r.str()
		seq.ops = append(seq.ops, o)
	}
	return seq
}

func encodeDiffSeq(seq diffSeq) []byte {
	head := uint8(len(seq.ops)-1) << 1
	if seq.ghes {
		head |= 1
	}
	out := []byte{head}
	for _, o := range seq.ops {
		for _, f := range o.fields() {
			out = append(out, *f)
		}
		out = append(out, uint8(len(o.nameRaw)))
		out = append(out, o.nameRaw...)
		out = append(out, uint8(len(o.bodyRaw)))
		out = append(out, o.bodyRaw...)
	}
	return out
}

func pick[T any](s []T, i uint8) T { return s[int(i)%len(s)] }

// diffReq is an op made concrete: the request's path (escaped, below the
// prefix), the scope prefix it names and what it is.
type diffReq struct {
	op      diffOp
	method  string
	path    string // escaped, with query
	scope   string // escaped scope prefix: "/orgs/o/actions", "/repos/o/r/environments/e"
	kind    int
	app     string // "actions" for environments
	rest    string // the template's rest
	name    string // the secret name, unescaped ("" when none)
	env     string // the environment name, unescaped
	version string
	accept  string
}

func makeDiffReq(seq diffSeq, o diffOp) (diffReq, bool) {
	t := pick(diffTemplates, o.tmpl)
	req := diffReq{op: o, method: pick(diffMethods, o.method), kind: t.kind, rest: t.rest}
	app := pick(diffApps, o.app)
	switch t.kind {
	case 0:
		req.scope = "/orgs/" + pick(diffOrgs, o.org) + "/" + app
		req.app = app
	case 1:
		req.scope = "/repos/" + pick(diffOrgs, o.owner) + "/" + pick(diffRepos, o.repo) + "/" + app
		req.app = app
	default:
		env := pick(diffEnvs, o.env)
		req.scope = "/repos/" + pick(diffOrgs, o.owner) + "/" + pick(diffRepos, o.repo) + "/environments/" + env
		req.app = "actions"
		req.env, _ = url.PathUnescape(env)
	}
	name := url.PathEscape(o.nameRaw)
	if int(o.name)%(len(diffNames)+1) < len(diffNames) {
		name = diffNames[int(o.name)%(len(diffNames)+1)]
	}
	p := req.scope + strings.ReplaceAll(strings.ReplaceAll(t.rest, "{name}", name), "{id}", pick(diffIDs, o.id)) + pick(diffExtras, o.extra)
	switch {
	case strings.Contains(t.rest, "{name}"):
		req.name, _ = url.PathUnescape(name)
	case t.rest == "/secrets/public-key" && req.method != http.MethodGet:
		req.name = "public-key" // the secret route's {name}
	}
	q := url.Values{}
	if v := pick(diffPages, o.page); v != "" {
		q.Set("page", v)
	}
	if v := pick(diffPerPages, o.perPage); v != "" {
		q.Set("per_page", v)
	}
	req.path = p
	if len(q) > 0 {
		req.path += "?" + q.Encode()
	}
	if _, err := url.ParseRequestURI(req.path); err != nil {
		return req, false // no client sends it
	}
	req.version = pick(diffVersions, o.version)
	if req.version == "right" {
		req.version = pageVersion(seq.ghes, req.app)
	}
	req.accept = pick(diffAccepts, o.accept)
	return req, true
}

// pageVersion is the one API version the route's seed page gives: 003's
// curl examples send 2022-11-28 (github.com Actions), 001's and 000's
// 2026-03-10 (Agents; GHES 3.21).
func pageVersion(ghes bool, app string) string {
	if ghes || app == "agents" {
		return "2026-03-10"
	}
	return "2022-11-28"
}

// body builds the request body for one side: valid values are sealed for
// that side's key of the scope (pk, when it has one).
func (req diffReq) body(pk *diffKey) (string, bool) {
	o := req.op
	switch int(o.body) % bodyKinds {
	case bodyNone:
		return "", false
	case bodyRaw:
		return o.bodyRaw, true
	case bodyNull:
		return "null", true
	case bodyArray:
		return "[]", true
	}
	var fields []string
	switch int(o.ev) % evKinds {
	case evValid:
		fields = append(fields, `"encrypted_value":`+quote(pk.seal("value-"+o.bodyRaw)))
	case evGarbage:
		fields = append(fields, `"encrypted_value":"c2VjcmV0"`)
	case evNotB64:
		fields = append(fields, `"encrypted_value":"not base64!"`)
	case evNumber:
		fields = append(fields, `"encrypted_value":5`)
	case evNull:
		fields = append(fields, `"encrypted_value":null`)
	case evEmpty:
		fields = append(fields, `"encrypted_value":""`)
	case evOtherKey:
		other := newDiffKey()
		fields = append(fields, `"encrypted_value":`+quote(other.seal("v")))
	}
	switch int(o.kid) % kidKinds {
	case kidRight:
		fields = append(fields, `"key_id":`+quote(pk.id))
	case kidWrong:
		fields = append(fields, `"key_id":"000"`)
	case kidNumber:
		fields = append(fields, `"key_id":1`)
	case kidNull:
		fields = append(fields, `"key_id":null`)
	}
	if v := pick(diffVisibilities, o.vis); v != "" {
		fields = append(fields, `"visibility":`+v)
	}
	if v := pick(diffSelected, o.sel); v != "" {
		fields = append(fields, `"selected_repository_ids":`+v)
	}
	if o.unknown%2 == 1 {
		fields = append(fields, `"unknown_field":{"x":1}`)
	}
	b := "{" + strings.Join(fields, ",") + "}"
	if int(o.body)%bodyKinds == bodyTrailing {
		b += " x"
	}
	return b, true
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// diffKey is a scope's public key as one side gives it.
type diffKey struct {
	id  string
	pub *[32]byte
}

func newDiffKey() *diffKey {
	pub, _, err := box.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &diffKey{id: "none", pub: pub}
}

func (k *diffKey) seal(v string) string {
	sealed, err := box.SealAnonymous(nil, []byte(v), k.pub, rand.Reader)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sealed)
}

// publicKey asks h for the public key of req's scope, with the right token
// and version; a random key when h has none.
func publicKey(h http.Handler, prefix string, req diffReq, ghes bool) *diffKey {
	r := httptest.NewRequest(http.MethodGet, "https://github.example"+prefix+req.scope+"/secrets/public-key", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("X-GitHub-Api-Version", pageVersion(ghes, req.app))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var pk struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &pk) != nil {
		return newDiffKey()
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		return newDiffKey()
	}
	return &diffKey{id: pk.KeyID, pub: (*[32]byte)(raw)}
}

// send sends req to h and returns the answer and the body sent.
func (req diffReq) send(h http.Handler, prefix string, ghes bool) (*httptest.ResponseRecorder, string) {
	var pk *diffKey
	if int(req.op.body)%bodyKinds == bodyJSON || int(req.op.body)%bodyKinds == bodyTrailing {
		pk = publicKey(h, prefix, req, ghes)
	}
	body, hasBody := req.body(pk)
	var rd *strings.Reader
	if hasBody {
		rd = strings.NewReader(body)
	}
	var r *http.Request
	if rd != nil {
		r = httptest.NewRequest(req.method, "https://github.example"+prefix+req.path, rd)
	} else {
		r = httptest.NewRequest(req.method, "https://github.example"+prefix+req.path, nil)
	}
	switch req.op.auth % 4 {
	case 1:
		// none
	case 2:
		r.Header.Set("Authorization", "Bearer ghp_wrong")
	default:
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if req.version != "" {
		r.Header.Set("X-GitHub-Api-Version", req.version)
	}
	if req.accept != "" {
		r.Header.Set("Accept", req.accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec, body
}

// shape is what the seeds document of a 200 answer, compared between the
// two sides: names upper-cased (README: secret names "are stored
// upper-case"; the fake keeps them as sent), sorted when the page holds the
// whole list (the emulator lists by name, the fake in creation order, and
// the seeds' examples in neither).
func shape(body []byte, whole bool) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	var parts []string
	if v, ok := m["total_count"]; ok {
		parts = append(parts, fmt.Sprintf("total_count=%v", v))
	}
	item := func(it map[string]any) string {
		s := fmt.Sprintf("%v", it["name"])
		if id, ok := it["id"]; ok {
			s = fmt.Sprintf("%v/%v", id, it["name"])
		}
		s = strings.ToUpper(s)
		if v, ok := it["visibility"]; ok {
			s += " visibility=" + fmt.Sprint(v)
		}
		if _, ok := it["selected_repositories_url"]; ok {
			s += " +selected_url"
		}
		return s
	}
	for _, list := range []string{"secrets", "repositories"} {
		v, ok := m[list]
		if !ok {
			continue
		}
		arr, ok := v.([]any)
		if !ok {
			return "", fmt.Errorf("%s is not an array", list)
		}
		var items []string
		for _, e := range arr {
			it, ok := e.(map[string]any)
			if !ok {
				return "", fmt.Errorf("%s holds a %T", list, e)
			}
			items = append(items, item(it))
		}
		if whole {
			slices.Sort(items)
			parts = append(parts, list+"=["+strings.Join(items, ", ")+"]")
		} else {
			parts = append(parts, fmt.Sprintf("len(%s)=%d", list, len(items)))
		}
	}
	if _, ok := m["key"]; ok {
		k, _ := m["key"].(string)
		raw, err := base64.StdEncoding.DecodeString(k)
		parts = append(parts, fmt.Sprintf("key_id is string=%v, key is 32 bytes=%v", isString(m["key_id"]), err == nil && len(raw) == 32))
	}
	if _, ok := m["name"]; ok {
		parts = append(parts, item(m))
	}
	return strings.Join(parts, "; "), nil
}

func isString(v any) bool { _, ok := v.(string); return ok }

// upperName reports whether name is kept as sent by both sides: the
// emulator stores names upper-case (README: names "are stored
// upper-case"), the fake as sent.
func upperName(name string) bool { return name == strings.ToUpper(name) }

// testEnvironment reports whether env is exactly one of the environments
// the emulator holds (the fake holds every environment).
func testEnvironment(env string) bool { return slices.Contains(testEnvironments(), env) }

// validName applies GitHub's secret name rules as the README gives them:
// "secret names hold letters, digits and _, ..., do not start with a digit
// or with GITHUB_".
func validName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' || strings.HasPrefix(strings.ToUpper(name), "GITHUB_") {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool {
		return !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}

// onPurpose says why the emulator's answer emu may differ from the fake's
// answer fake to req on purpose, "" when it may not. It repeats the
// differences the scenarios list (emu_test.go, envcase_test.go,
// envnames_test.go, selection_test.go, versions_test.go) and nothing else.
// sent is the request's body.
func onPurpose(seq diffSeq, req diffReq, before []diffReq, sent string, fake, emu int) string {
	// Spellings that GitHub folds and the fake keeps apart, in this request
	// or an earlier one (whose answers may then have put the two sides'
	// secrets apart).
	envFolded, nameFolded := false, false
	for _, r := range append(slices.Clone(before), req) {
		nameFolded = nameFolded || r.name != "" && !upperName(r.name)
		for _, b := range before {
			envFolded = envFolded || r.kind == 2 && b.kind == 2 && r.env != b.env && strings.EqualFold(r.env, b.env)
		}
	}
	switch {
	case envFolded:
		return "the emulator folds the case of environment names (TestEnvironmentSpellingUnchanged)"
	case nameFolded:
		return "the emulator stores secret names upper-case (README: names \"are stored upper-case\")"

	case req.kind == 2 && !testEnvironment(req.env) && emu == http.StatusNotFound:
		return "the emulator has no environment " + quote(req.env) + " (TestUnknownEnvironment)"
	case req.kind == 2 && !testEnvironment(req.env):
		return "the emulator folds the case of environment names (TestEnvironmentSpellingUnchanged)"
	case req.name != "" && !validName(req.name) && emu == http.StatusUnprocessableEntity && req.method == http.MethodPut:
		return "the emulator applies GitHub's secret name rules (README: names hold letters, digits and _, ...)"
	case req.version != pageVersion(seq.ghes, req.app) && emu == http.StatusBadRequest:
		return "the emulator refuses an API version the route's page does not give (README: Agents \"only under this version\", GHES 3.21 \"gives only that version\")"
	case req.method == http.MethodPut && req.rest == "/secrets/{name}/repositories" && emu == http.StatusConflict &&
		(fake == http.StatusNoContent || fake == http.StatusUnprocessableEntity && setsUnknownID(sent)):
		// The emulator looks at the visibility before the ids, as Add
		// does; the fake, which has no such check, refuses an id it does
		// not know.
		return "the emulator answers Set on a secret not \"selected\" 409, the fake 204, or 422 for an id it does not know (TestSetSelectionNotSelected)"
	}
	return ""
}

// undecided says why the emulator's answer emu may differ from the
// fake's answer fake to a request with body sent where neither the seeds
// (which document no error status but 409) nor the README say what GitHub
// answers: these differences are reported, not settled, and the fuzz test
// skips the input. "" when none applies.
func undecided(req diffReq, sent string, fake, emu int) string {
	var obj map[string]any
	_ = json.Unmarshal([]byte(sent), &obj)
	orgOnly := obj["visibility"] != nil || obj["selected_repository_ids"] != nil
	switch {
	case req.kind != 0 && req.method == http.MethodPut && emu == http.StatusUnprocessableEntity && orgOnly:
		return "undecided: visibility or selected_repository_ids in the body of a repository or environment secret, which the seeds do not list there (003:830/834, 003:1147/1151): the fake ignores them as any field it does not know, the emulator 422 (it ignores other unknown fields)"
	case strings.HasSuffix(req.rest, "{id}") && emu == http.StatusNotFound && !positiveDecimal(pick(diffIDs, req.op.id)):
		return "undecided: a repository_id that is an integer but no positive one (0, -1): the fake takes it as an id (422 adding, 204 removing), the emulator does not route it (404); the seeds type it integer (003:464, 003:522) and say no more"
	}
	obj = nil
	switch {
	case fake == http.StatusBadRequest && emu == http.StatusUnprocessableEntity && json.Unmarshal([]byte(sent), &obj) == nil && obj != nil:
		return "undecided: a body field of another JSON type than the seeds give (a number for a string, strings or fractions for ids): the fake 400 (its JSON decoder fails), the emulator 422"
	case emu == http.StatusBadRequest && fake != http.StatusBadRequest && (json.Unmarshal([]byte(sent), &obj) != nil || obj == nil):
		return "undecided: a body that is not one JSON object (null, an object followed by more): the fake reads null as {} and stops after the first value, the emulator 400"
	}
	return ""
}

// setsUnknownID reports whether sent is a well-formed body of Set selected
// repositories naming an id of no repository the fake holds.
func setsUnknownID(sent string) bool {
	var body struct {
		IDs []int64 `json:"selected_repository_ids"`
	}
	if json.Unmarshal([]byte(sent), &body) != nil {
		return false
	}
	return slices.ContainsFunc(body.IDs, func(id int64) bool { return !found(withID(id)) })
}

func positiveDecimal(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) && strings.Trim(s, "0") != ""
}

// FuzzEmulatorAgainstFake sends a short sequence of raw REST requests,
// built from the seeds' route templates with fuzzed segments, queries,
// headers and bodies, to a new fake and a new emulator holding the same
// organization, repositories and environments, and requires the same
// status for every request and, for a 200, the same shape of what the
// seeds document (names, total_count, visibility, selected repositories),
// except where onPurpose says the emulator differs on purpose. After such
// a difference the two may hold different secrets, so the rest of the
// sequence is not compared.
func FuzzEmulatorAgainstFake(f *testing.F) {
	for _, seq := range diffSeeds() {
		f.Add(encodeDiffSeq(seq))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seq := decodeDiffSeq(data)
		prefix := ""
		if seq.ghes {
			prefix = "/api/v3"
		}
		fake := &github{t: t, noDate: true, token: token, scopes: map[string]*scope{}, prefix: prefix, lenient: true}
		emu := newEmuHub(t, setup{ghes: seq.ghes})
		// The fake has every environment of every repository: give the
		// emulator other's too.
		for _, name := range testEnvironments() {
			emu.(*emuHub).srv.AddEnvironment(org, "other", name)
		}
		var trail []string
		var done []diffReq // the requests sent before
		for _, o := range seq.ops {
			req, ok := makeDiffReq(seq, o)
			if !ok {
				continue
			}
			fr, sent := req.send(fake, prefix, seq.ghes)
			er, _ := req.send(emu, prefix, seq.ghes)
			trail = append(trail, fmt.Sprintf("%s %s%s (version %q, body %.80q): fake %d, emulator %d", req.method, prefix, req.path, req.version, sent, fr.Code, er.Code))
			if fr.Code != er.Code {
				if why := onPurpose(seq, req, done, sent, fr.Code, er.Code); why != "" {
					return
				}
				if why := undecided(req, sent, fr.Code, er.Code); why != "" {
					t.Skipf("%s\n%s", strings.Join(trail, "\n"), why)
				}
				t.Fatalf("statuses differ:\n%s\nfake: %s\nemulator: %s", strings.Join(trail, "\n"), fr.Body, er.Body)
			}
			done = append(done, req)
			if fr.Code != http.StatusOK {
				continue
			}
			q, _ := url.ParseQuery(strings.SplitN(req.path+"?", "?", 2)[1])
			whole := q.Get("page") == "" && q.Get("per_page") == ""
			fs, ferr := shape(fr.Body.Bytes(), whole)
			es, eerr := shape(er.Body.Bytes(), whole)
			if ferr != nil || eerr != nil {
				t.Fatalf("%s\nfake: %v %s\nemulator: %v %s", strings.Join(trail, "\n"), ferr, fr.Body, eerr, er.Body)
			}
			if fs != es {
				if why := onPurpose(seq, req, done, sent, fr.Code, er.Code); why != "" {
					return
				}
				t.Fatalf("answers differ:\n%s\nfake:     %s\nemulator: %s", strings.Join(trail, "\n"), fs, es)
			}
		}
	})
}

// diffSeeds are near-valid sequences for every seed operation: a valid PUT
// of the scope's secret, then the operation, on github.com and GHES.
func diffSeeds() []diffSeq {
	put := func(tmpl, vis, sel uint8) diffOp {
		return diffOp{method: 1, tmpl: tmpl, body: bodyJSON, ev: evValid, kid: kidRight, vis: vis, sel: sel, version: 1, accept: 1}
	}
	op := func(method, tmpl uint8) diffOp { return diffOp{method: method, tmpl: tmpl, version: 1, accept: 1} }
	var seqs []diffSeq
	for _, ghes := range []bool{false, true} {
		for _, app := range []uint8{0, 1} {
			orgPut := put(2, 3, 3)
			orgPut.app = app
			orgOps := []diffOp{op(0, 0), op(0, 1), op(0, 2), op(2, 2), op(0, 3), op(1, 4), op(2, 4)}
			set := op(1, 3)
			set.body, set.sel = bodyJSON, 3
			orgOps = append(orgOps, set)
			for _, o := range orgOps {
				o.app = app
				seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{orgPut, o}})
			}
			for _, vis := range []uint8{1, 2} {
				p := put(2, vis, 0)
				p.app = app
				shared := op(0, 8)
				shared.app, shared.repo = app, 2
				seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{p, shared}})
			}
			repoPut := put(7, 0, 0)
			repoPut.app = app
			for _, o := range []diffOp{op(0, 5), op(0, 6), op(0, 7), op(2, 7), op(0, 8)} {
				o.app = app
				seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{repoPut, o}})
			}
		}
		envPut := put(11, 0, 0)
		for _, o := range []diffOp{op(0, 9), op(0, 10), op(0, 11), op(2, 11)} {
			seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{envPut, o}})
		}
		// A value-less PUT that updates an organization secret's settings.
		upd := put(2, 2, 0)
		upd.ev, upd.kid = evMissing, kidMissing
		seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{put(2, 1, 0), upd, op(0, 2)}})
		// Set on a secret not "selected", naming an id of no repository:
		// the emulator's 409 comes before it looks at the ids.
		unknown := op(1, 3)
		unknown.body, unknown.sel = bodyJSON, 5
		seqs = append(seqs, diffSeq{ghes: ghes, ops: []diffOp{put(2, 1, 0), unknown}})
	}
	return seqs
}
