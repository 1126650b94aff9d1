package emulator_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	org      = "octo-org"
	orgActs  = "orgs/octo-org/actions"
	orgAgent = "orgs/octo-org/agents"
	repoActs = "repos/octo-org/hello-world/actions"
	repoAgnt = "repos/octo-org/hello-world/agents"
	envProd  = "repos/octo-org/hello-world/environments/prod%2Feu"
	envStage = "repos/octo-org/hello-world/environments/staging"
	vAgents  = "2026-03-10"
	vActions = "2022-11-28"
)

// env is one emulator behind a real loopback listener (newEnv) or served
// in memory inside a synctest bubble (newMemEnv).
type env struct {
	t      *testing.T
	emu    *emulator.Server
	srv    *httptest.Server // nil in memory
	url    string           // the server's root URL
	client *http.Client     // reaches url
	demo   emulator.Demo
}

func newEnv(t *testing.T, opts emulator.Options) *env {
	t.Helper()
	e := &env{t: t}
	e.emu = emulator.New(opts)
	e.demo = e.emu.SeedDemo()
	e.srv = httptest.NewServer(e.emu)
	t.Cleanup(e.srv.Close)
	e.url, e.client = e.srv.URL, e.srv.Client()
	return e
}

func (e *env) repoID(name string) int64 {
	for _, r := range e.demo.Repos {
		if r.Name == name {
			return r.ID
		}
	}
	e.t.Fatalf("no demo repo %s", name)
	return 0
}

// result is one HTTP answer.
type result struct {
	status int
	header http.Header
	body   []byte
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

func (r result) message(t *testing.T) string {
	t.Helper()
	var m struct {
		Message string `json:"message"`
	}
	r.json(t, &m)
	return m.Message
}

// versionFor picks the API version a well-behaved client sends: Agents
// secrets' 2026-03-10, GitHub Enterprise Server 3.21's (under /api/v3)
// 2026-03-10, else github.com's 2022-11-28 for Actions.
func versionFor(path string) string {
	if strings.Contains(path, "/agents/") || strings.HasSuffix(path, "/agents") || strings.HasPrefix(path, "/api/v3/") {
		return vAgents
	}
	return vActions
}

// do sends one request; path is relative to the server root. body is sent
// as is when it is a string, and as JSON otherwise.
func (e *env) do(method, path string, body any, headers ...string) result {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", versionFor(path))
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) want(r result, status int) result {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

type pubKey struct {
	KeyID string `json:"key_id"`
	Key   string `json:"key"`
}

// key fetches a scope's public key; scope is a REST path prefix.
func (e *env) key(scope string) pubKey {
	e.t.Helper()
	var k pubKey
	e.want(e.do("GET", "/"+scope+"/secrets/public-key", nil), 200).json(e.t, &k)
	return k
}

func seal(t *testing.T, k pubKey, plain []byte) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(k.Key)
	if err != nil || len(raw) != 32 {
		t.Fatalf("public key %q: %v", k.Key, err)
	}
	out, err := box.SealAnonymous(nil, plain, (*[32]byte)(raw), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

// put seals value under the scope's current key and PUTs it with extra
// body fields.
func (e *env) put(scope, name, value string, extra map[string]any) result {
	e.t.Helper()
	k := e.key(scope)
	body := map[string]any{"encrypted_value": seal(e.t, k, []byte(value)), "key_id": k.KeyID}
	for f, v := range extra {
		body[f] = v
	}
	return e.do("PUT", "/"+scope+"/secrets/"+name, body)
}

type secretJSON struct {
	Name                    string `json:"name"`
	CreatedAt               string `json:"created_at"`
	UpdatedAt               string `json:"updated_at"`
	Visibility              string `json:"visibility"`
	SelectedRepositoriesURL string `json:"selected_repositories_url"`
}

type secretList struct {
	TotalCount int          `json:"total_count"`
	Secrets    []secretJSON `json:"secrets"`
}

type repoJSON struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	FullName string `json:"full_name"`
	Private  bool   `json:"private"`
	Owner    struct {
		Login string `json:"login"`
	} `json:"owner"`
}

type repoList struct {
	TotalCount   int        `json:"total_count"`
	Repositories []repoJSON `json:"repositories"`
}

func orgBody(vis string, ids ...int64) map[string]any {
	b := map[string]any{"visibility": vis}
	if ids != nil {
		b["selected_repository_ids"] = ids
	}
	return b
}

func TestSeedDemo(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	want := emulator.Demo{Org: "octo-org", Repos: []emulator.DemoRepo{
		{Name: "hello-world", ID: 1296269, Environments: []string{"staging", "prod/eu"}},
		{Name: "secret-sauce", ID: 1296270, Private: true},
		{Name: "docs", ID: 1296271},
	}}
	if fmt.Sprint(e.demo) != fmt.Sprint(want) {
		t.Fatalf("SeedDemo = %+v, want %+v", e.demo, want)
	}
	if again := e.emu.SeedDemo(); fmt.Sprint(again) != fmt.Sprint(want) {
		t.Fatalf("second SeedDemo = %+v", again)
	}
	if id := e.emu.AddRepo("other-org", "x", true); id != 1296272 {
		t.Fatalf("next id %d", id)
	}
}

func TestGetRepository(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	for _, path := range []string{"/repos/octo-org/secret-sauce", "/repos/Octo-Org/SECRET-SAUCE"} {
		var r repoJSON
		e.want(e.do("GET", path, nil), 200).json(t, &r)
		if r.ID != e.repoID("secret-sauce") || r.Name != "secret-sauce" || r.FullName != "octo-org/secret-sauce" || !r.Private || r.Owner.Login != org {
			t.Errorf("%s: %+v", path, r)
		}
	}
	e.want(e.do("GET", "/repos/octo-org/nope", nil), 404)
	e.want(e.do("GET", "/repos/nope/hello-world", nil), 404)
	e.want(e.do("DELETE", "/repos/octo-org/docs", nil), 404)

	// The answer has an ETag; a request conditional on it is answered 304
	// (whatever the name's case), one on another repository's is not.
	etag := e.want(e.do("GET", "/repos/octo-org/secret-sauce", nil), 200).header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	e.want(e.do("GET", "/repos/Octo-Org/SECRET-SAUCE", nil, "If-None-Match", etag), 304)
	if other := e.want(e.do("GET", "/repos/octo-org/docs", nil), 200).header.Get("ETag"); other == etag {
		t.Errorf("two repositories share ETag %s", etag)
	}
	e.want(e.do("GET", "/repos/octo-org/docs", nil, "If-None-Match", etag), 200)
}

func TestPublicKey(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	digits := regexp.MustCompile(`^[0-9]+$`)
	seen := map[string]string{}
	for _, scope := range []string{orgActs, orgAgent, repoActs, repoAgnt, envProd, envStage, "repos/octo-org/docs/actions"} {
		t.Run(scope, func(t *testing.T) {
			r := e.want(e.do("GET", "/"+scope+"/secrets/public-key", nil), 200)
			var k pubKey
			r.json(t, &k)
			if !digits.MatchString(k.KeyID) {
				t.Errorf("key_id %q is not decimal digits", k.KeyID)
			}
			if raw, err := base64.StdEncoding.DecodeString(k.Key); err != nil || len(raw) != 32 {
				t.Errorf("key %q: %d bytes, %v", k.Key, len(raw), err)
			}
			if prev, dup := seen[k.KeyID]; dup {
				t.Errorf("key_id %s of %s already used by %s", k.KeyID, scope, prev)
			}
			seen[k.KeyID] = scope
			if k2 := e.key(scope); k2 != k {
				t.Errorf("key changed between requests: %+v then %+v", k, k2)
			}
			etag := r.header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			nm := e.want(e.do("GET", "/"+scope+"/secrets/public-key", nil, "If-None-Match", etag), 304)
			if len(nm.body) != 0 || nm.header.Get("ETag") != etag {
				t.Errorf("304: body %q, etag %q", nm.body, nm.header.Get("ETag"))
			}
			e.want(e.do("GET", "/"+scope+"/secrets/public-key", nil, "If-None-Match", `W/"other"`), 200)
			e.emu.RotateKey(scope)
			e.want(e.do("GET", "/"+scope+"/secrets/public-key", nil, "If-None-Match", etag), 200)
		})
	}
}

// scopeCase is a secret scope of the demo data, as a path and as the
// hooks name it.
type scopeCase struct {
	name   string
	path   string // request path prefix
	hook   string // scope for Open
	org    bool
	legacy bool
}

// scopes are the secret scopes of the demo data.
var scopes = []scopeCase{
	{"org actions", orgActs, orgActs, true, false},
	{"org agents", orgAgent, orgAgent, true, false},
	{"repo actions", repoActs, repoActs, false, false},
	{"repo agents", repoAgnt, repoAgnt, false, false},
	{"env prod/eu", envProd, envProd, false, false},
	{"env staging", envStage, envStage, false, false},
	{"legacy env prod/eu", "repositories/1296269/environments/prod%2Feu", envProd, false, true},
	{"org case-insensitive", "orgs/OCTO-ORG/actions", orgActs, true, false},
	{"repo case-insensitive", "repos/Octo-Org/Hello-World/actions", repoActs, false, false},
	{"api/v3 prefix", "api/v3/" + repoActs, repoActs, false, false},
}

func TestSecretLifecycle(t *testing.T) {
	for _, sc := range scopes {
		t.Run(sc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testSecretLifecycle(t, sc) })
		})
	}
}

// testSecretLifecycle runs inside a synctest bubble: created_at and
// updated_at are exactly the fake times of the PUTs, in whole seconds
// (truncated, not rounded) and UTC.
func testSecretLifecycle(t *testing.T, sc scopeCase) {
	e := newMemEnv(t, emulator.Options{LegacyRoutes: sc.legacy})
	t0 := time.Now()
	var extra map[string]any
	if sc.org {
		extra = orgBody("all")
	}
	e.want(e.do("GET", "/"+sc.path+"/secrets/MY_TOKEN", nil), 404)
	e.want(e.do("DELETE", "/"+sc.path+"/secrets/MY_TOKEN", nil), 404)

	time.Sleep(4*time.Second + 600*time.Millisecond)
	r := e.want(e.put(sc.path, "my_Token", "hunter2", extra), 201)
	if strings.TrimSpace(string(r.body)) != "{}" {
		t.Errorf("201 body %q, want {}", r.body)
	}
	if got, err := e.emu.Open(sc.hook, "MY_TOKEN"); err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	created := t0.Add(4 * time.Second).UTC().Format(time.RFC3339)
	var s secretJSON
	e.want(e.do("GET", "/"+sc.path+"/secrets/my_token", nil), 200).json(t, &s)
	if s.Name != "MY_TOKEN" || s.CreatedAt != created || s.UpdatedAt != created {
		t.Errorf("GET = %+v, want created_at and updated_at %s", s, created)
	}
	if sc.org && s.Visibility != "all" {
		t.Errorf("visibility %q", s.Visibility)
	}
	if !sc.org && strings.Contains(string(e.do("GET", "/"+sc.path+"/secrets/MY_TOKEN", nil).body), "visibility") {
		t.Errorf("visibility on a non-org secret")
	}

	time.Sleep(time.Hour)
	r = e.want(e.put(sc.path, "MY_TOKEN", "hunter3", extra), 204)
	if len(r.body) != 0 {
		t.Errorf("204 body %q", r.body)
	}
	if got, _ := e.emu.Open(sc.hook, "my_token"); string(got) != "hunter3" {
		t.Fatalf("Open after update = %q", got)
	}
	e.want(e.do("GET", "/"+sc.path+"/secrets/MY_TOKEN", nil), 200).json(t, &s)
	if updated := t0.Add(time.Hour + 4*time.Second).UTC().Format(time.RFC3339); s.CreatedAt != created || s.UpdatedAt != updated {
		t.Errorf("after update: %+v, want created_at %s and updated_at %s", s, created, updated)
	}

	var l secretList
	e.want(e.do("GET", "/"+sc.path+"/secrets", nil), 200).json(t, &l)
	if l.TotalCount != 1 || len(l.Secrets) != 1 || l.Secrets[0].Name != "MY_TOKEN" {
		t.Errorf("list = %+v", l)
	}

	e.want(e.do("DELETE", "/"+sc.path+"/secrets/my_token", nil), 204)
	e.want(e.do("DELETE", "/"+sc.path+"/secrets/MY_TOKEN", nil), 404)
	e.want(e.do("GET", "/"+sc.path+"/secrets/MY_TOKEN", nil), 404)
	if _, err := e.emu.Open(sc.hook, "MY_TOKEN"); err == nil {
		t.Error("Open after delete succeeded")
	}
	e.want(e.do("GET", "/"+sc.path+"/secrets", nil), 200).json(t, &l)
	if l.TotalCount != 0 || l.Secrets == nil || len(l.Secrets) != 0 {
		t.Errorf("list after delete = %+v (%s)", l, e.do("GET", "/"+sc.path+"/secrets", nil).body)
	}
}

func TestScopesAreSeparate(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	e.want(e.put(orgActs, "X", "org-actions", orgBody("all")), 201)
	e.want(e.put(orgAgent, "X", "org-agents", orgBody("all")), 201)
	e.want(e.put(repoActs, "X", "repo-actions", nil), 201)
	e.want(e.put(envProd, "X", "env-prod", nil), 201)
	for scope, want := range map[string]string{orgActs: "org-actions", orgAgent: "org-agents", repoActs: "repo-actions", envProd: "env-prod"} {
		if got, err := e.emu.Open(scope, "x"); err != nil || string(got) != want {
			t.Errorf("Open(%s) = %q, %v", scope, got, err)
		}
	}
	if _, err := e.emu.Open(repoAgnt, "X"); err == nil {
		t.Error("agents repo scope has X")
	}
	if _, err := e.emu.Open(envStage, "X"); err == nil {
		t.Error("staging has X")
	}
	// A key of one scope does not open in another.
	k := e.key(repoActs)
	body := map[string]any{"encrypted_value": seal(t, k, []byte("v")), "key_id": e.key(repoAgnt).KeyID}
	e.want(e.do("PUT", "/"+repoAgnt+"/secrets/Y", body), 422)
}

func TestNotFound(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	for _, path := range []string{
		"/orgs/nope/actions/secrets",
		"/orgs/nope/actions/secrets/public-key",
		"/orgs/octo-org/other/secrets",
		"/repos/octo-org/nope/actions/secrets",
		"/repos/nope/hello-world/actions/secrets",
		"/repos/octo-org/hello-world/environments/nope/secrets",
		"/repos/octo-org/hello-world/environments/prod/eu/secrets",
		"/repos/octo-org/docs/environments/staging/secrets/public-key",
		"/repos/octo-org/hello-world/actions/secrets/NOPE",
		"/repos/octo-org/hello-world/actions/organization-secrets/x",
		"/repos/nope/nope/actions/organization-secrets",
		"/orgs/octo-org/actions/secrets/NOPE/repositories",
		"/orgs/octo-org/actions/secrets/NOPE/repositories/x",
		"/orgs//actions/secrets",
		"/orgs/octo-org/actions/secrets/",
		"/nope",
		"/",
	} {
		r := e.want(e.do("GET", path, nil), 404)
		var m struct {
			Message string `json:"message"`
			Doc     string `json:"documentation_url"`
		}
		r.json(t, &m)
		if m.Message != "Not Found" || m.Doc == "" {
			t.Errorf("%s: %s", path, r.body)
		}
	}
	e.want(e.do("POST", "/"+orgActs+"/secrets", "{}"), 404)
	e.want(e.do("PUT", "/"+orgActs+"/secrets/public-key", "{}"), 422) // a PUT names a secret; "public-key" is not a valid name
	e.want(e.do("DELETE", "/"+orgActs+"/secrets/public-key", nil), 404)
	e.want(e.do("PUT", "/orgs/nope/actions/secrets/X", "{}"), 404)
	e.want(e.do("PUT", "/"+orgActs+"/secrets/NOPE/repositories", `{"selected_repository_ids":[]}`), 404)
	e.want(e.do("PUT", "/"+orgActs+"/secrets/NOPE/repositories/1296269", nil), 404)
	e.want(e.do("DELETE", "/"+orgActs+"/secrets/NOPE/repositories/1296269", nil), 404)
}

func TestRotateKey(t *testing.T) {
	for _, sc := range scopes[:7] {
		t.Run(sc.name, func(t *testing.T) {
			e := newEnv(t, emulator.Options{LegacyRoutes: sc.legacy})
			var extra map[string]any
			if sc.org {
				extra = orgBody("private")
			}
			old := e.key(sc.path)
			e.want(e.put(sc.path, "BEFORE", "old-value", extra), 201)

			id := e.emu.RotateKey(sc.hook)
			if id == "" || id == old.KeyID {
				t.Fatalf("RotateKey = %q (old %q)", id, old.KeyID)
			}
			cur := e.key(sc.path)
			if cur.KeyID != id || cur.Key == old.Key {
				t.Fatalf("after rotation the key is %+v, old %+v, RotateKey said %s", cur, old, id)
			}
			// The old key_id, with a value sealed under the old key, is refused.
			body := map[string]any{"encrypted_value": seal(t, old, []byte("x")), "key_id": old.KeyID}
			mergeInto(body, extra)
			r := e.want(e.do("PUT", "/"+sc.path+"/secrets/AFTER", body), 422)
			if !strings.Contains(r.message(t), "key_id") {
				t.Errorf("message %q does not mention key_id", r.message(t))
			}
			// The new key_id with a value sealed under the old key is refused.
			body["key_id"] = cur.KeyID
			e.want(e.do("PUT", "/"+sc.path+"/secrets/AFTER", body), 422)
			// Sealed again under the new key, it is accepted.
			e.want(e.put(sc.path, "AFTER", "new-value", extra), 201)
			for name, want := range map[string]string{"BEFORE": "old-value", "AFTER": "new-value"} {
				if got, err := e.emu.Open(sc.hook, name); err != nil || string(got) != want {
					t.Errorf("Open(%s) = %q, %v", name, got, err)
				}
			}
		})
	}
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}

func TestHooksRejectBadScopes(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	for _, scope := range []string{"", "orgs/octo-org", "orgs/octo-org/other", "repos/octo-org/hello-world", "repos/a/b/environments", "x/y/z", "orgs/%zz/actions"} {
		if id := e.emu.RotateKey(scope); id != "" {
			t.Errorf("RotateKey(%q) = %q", scope, id)
		}
		if _, err := e.emu.Open(scope, "X"); err == nil {
			t.Errorf("Open(%q) succeeded", scope)
		}
		if _, err := e.emu.SelectedRepositoryIDs(scope, "X"); err == nil {
			t.Errorf("SelectedRepositoryIDs(%q) succeeded", scope)
		}
	}
	// Hooks take names in any case, and a leading slash.
	e.want(e.put(envProd, "A", "v", nil), 201)
	if got, err := e.emu.Open("/repos/OCTO-ORG/Hello-World/environments/PROD%2FEU", "a"); err != nil || string(got) != "v" {
		t.Errorf("Open = %q, %v", got, err)
	}
}

func TestPutValidation(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	other := e.emu.AddRepo("other-org", "elsewhere", false)
	orgKey, repoKey := e.key(orgActs), e.key(repoActs)
	good := func(k pubKey) string { return seal(t, k, []byte("value")) }
	big := func(k pubKey, n int) string { return seal(t, k, bytes.Repeat([]byte{'a'}, n)) }

	tests := []struct {
		name    string
		scope   string
		secret  string
		body    any
		status  int
		message string // substring of the message
	}{
		{"org ok all", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "all"}, 201, ""},
		{"org ok selected", orgActs, "B", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": []int64{1296269, 1296271}}, 201, ""},
		{"org ok selected none", orgActs, "D", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected"}, 201, ""},
		{"org ok null ids", orgActs, "E", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "all", "selected_repository_ids": nil}, 201, ""},
		{"repo ok 48 KB exactly", repoActs, "BIG", map[string]any{"encrypted_value": big(repoKey, 49152), "key_id": repoKey.KeyID}, 201, ""},
		{"repo ok empty value", repoActs, "EMPTY", map[string]any{"encrypted_value": big(repoKey, 0), "key_id": repoKey.KeyID}, 201, ""},

		{"name with dash", repoActs, "A-B", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID}, 422, "name"},
		{"name starting with digit", repoActs, "1A", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID}, 422, "name"},
		{"name GITHUB_ prefix", repoActs, "github_token", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID}, 422, "GITHUB_"},
		{"name with escaped space", repoActs, "A%20B", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID}, 422, "name"},
		{"name with unicode", repoActs, "%C3%A9T%C3%A9", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID}, 422, "name"},
		{"key_id missing", repoActs, "A", map[string]any{"encrypted_value": good(repoKey)}, 422, "key_id"},
		{"key_id number", repoActs, "A", map[string]any{"encrypted_value": good(repoKey), "key_id": 12}, 422, "key_id"},
		{"key_id other scope", repoActs, "A", map[string]any{"encrypted_value": good(repoKey), "key_id": orgKey.KeyID}, 422, "key_id"},
		{"key_id unknown", repoActs, "A", map[string]any{"encrypted_value": good(repoKey), "key_id": "1"}, 422, "key_id"},
		{"value missing", repoActs, "A", map[string]any{"key_id": repoKey.KeyID}, 422, "encrypted_value"},
		{"value not a string", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": 5}, 422, "encrypted_value"},
		{"value empty", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": ""}, 422, "base64"},
		{"value url base64", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": strings.NewReplacer("+", "-", "/", "_").Replace(good(repoKey)) + "-_"}, 422, "base64"},
		{"value unpadded", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": "YWJj" + "YQ"}, 422, "base64"},
		{"value with newline", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": good(repoKey)[:8] + "\n" + good(repoKey)[8:]}, 422, "base64"},
		{"value not sealed", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": "c2VjcmV0"}, 422, "sealed"},
		{"value sealed for other key", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": good(orgKey)}, 422, "sealed"},
		{"value too large", repoActs, "A", map[string]any{"key_id": repoKey.KeyID, "encrypted_value": big(repoKey, 49153)}, 422, "48 KB"},
		{"org visibility missing", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID}, 422, "visibility"},
		{"org visibility bad", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "public"}, 422, "visibility"},
		{"org visibility not a string", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": true}, 422, "visibility"},
		{"org ids with all", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "all", "selected_repository_ids": []int64{1296269}}, 422, "selected_repository_ids"},
		{"org ids with private", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "private", "selected_repository_ids": []int64{}}, 422, "selected_repository_ids"},
		{"org id of other org", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": []int64{1296269, other}}, 422, "not a repository"},
		{"org id unknown", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": []int64{99}}, 422, "not a repository"},
		{"org ids not an array", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": 1296269}, 422, "selected_repository_ids"},
		{"org ids with junk", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": []any{1296269.5}}, 422, "selected_repository_ids"},
		{"org ids as strings", orgActs, "A", map[string]any{"encrypted_value": good(orgKey), "key_id": orgKey.KeyID, "visibility": "selected", "selected_repository_ids": []string{"1296269"}}, 422, "integers"},
		{"repo visibility", repoActs, "A", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID, "visibility": "all"}, 422, "visibility"},
		{"repo ids", repoActs, "A", map[string]any{"encrypted_value": good(repoKey), "key_id": repoKey.KeyID, "selected_repository_ids": []int64{}}, 422, "selected_repository_ids"},

		{"invalid JSON", repoActs, "A", `{"encrypted_value":`, 400, "Problems parsing JSON"},
		{"JSON array", repoActs, "A", `[]`, 400, "Problems parsing JSON"},
		{"JSON null", repoActs, "A", `null`, 400, "Problems parsing JSON"},
		{"trailing garbage", repoActs, "A", `{} {}`, 400, "Problems parsing JSON"},
		{"empty body", repoActs, "A", ``, 400, "Problems parsing JSON"},
		{"body over 1 MiB", repoActs, "A", `{"x":"` + strings.Repeat("a", 1<<20) + `"}`, 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("PUT", "/"+tt.scope+"/secrets/"+tt.secret, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.message != "" && !strings.Contains(r.message(t), tt.message) {
				t.Errorf("message %q does not contain %q", r.message(t), tt.message)
			}
			if r.status >= 400 && strings.Contains(string(r.body), "value") && strings.Contains(string(r.body), "aaaa") {
				t.Errorf("error echoes the body: %.100s", r.body)
			}
		})
	}
	if ids, err := e.emu.SelectedRepositoryIDs(orgActs, "b"); err != nil || !slices.Equal(ids, []int64{1296269, 1296271}) {
		t.Errorf("selected of B = %v, %v", ids, err)
	}
	if v, err := e.emu.Open(repoActs, "BIG"); err != nil || len(v) != 49152 {
		t.Errorf("BIG: %d bytes, %v", len(v), err)
	}
	// Nothing was stored by the refused requests.
	var l secretList
	e.want(e.do("GET", "/"+repoActs+"/secrets", nil), 200).json(t, &l)
	if l.TotalCount != 2 {
		t.Errorf("repo secrets: %+v", l)
	}
}

func TestSelectedRepositoriesURL(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	e.want(e.put(orgAgent, "S", "v", orgBody("selected", e.repoID("docs"))), 201)
	e.want(e.put(orgAgent, "P", "v", orgBody("private")), 201)
	var l secretList
	e.want(e.do("GET", "/"+orgAgent+"/secrets", nil), 200).json(t, &l)
	if l.TotalCount != 2 || l.Secrets[0].Name != "P" || l.Secrets[1].Name != "S" {
		t.Fatalf("list %+v", l)
	}
	if l.Secrets[0].Visibility != "private" || l.Secrets[0].SelectedRepositoriesURL != "" {
		t.Errorf("P = %+v", l.Secrets[0])
	}
	want := e.srv.URL + "/orgs/octo-org/agents/secrets/S/repositories"
	if l.Secrets[1].Visibility != "selected" || l.Secrets[1].SelectedRepositoriesURL != want {
		t.Errorf("S = %+v, want url %s", l.Secrets[1], want)
	}
	// The URL works.
	var rl repoList
	e.want(e.do("GET", strings.TrimPrefix(want, e.srv.URL), nil), 200).json(t, &rl)
	if rl.TotalCount != 1 || rl.Repositories[0].ID != e.repoID("docs") || rl.Repositories[0].FullName != "octo-org/docs" || rl.Repositories[0].Owner.Login != org {
		t.Errorf("repositories %+v", rl)
	}
	// Under /api/v3 the URL keeps the prefix.
	e.want(e.put("api/v3/"+orgActs, "S", "v", orgBody("selected", e.repoID("docs"))), 201)
	var s secretJSON
	e.want(e.do("GET", "/api/v3/"+orgActs+"/secrets/S", nil), 200).json(t, &s)
	if s.SelectedRepositoriesURL != e.srv.URL+"/api/v3/orgs/octo-org/actions/secrets/S/repositories" {
		t.Errorf("url under /api/v3: %s", s.SelectedRepositoriesURL)
	}
}

func TestSelectedRepositories(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	hello, sauce, docs := e.repoID("hello-world"), e.repoID("secret-sauce"), e.repoID("docs")
	other := e.emu.AddRepo("other-org", "elsewhere", false)
	e.want(e.put(orgActs, "SEL", "v", orgBody("selected", hello)), 201)
	e.want(e.put(orgActs, "ALL", "v", orgBody("all")), 201)
	base := "/" + orgActs + "/secrets/"
	selected := func() []int64 {
		t.Helper()
		ids, err := e.emu.SelectedRepositoryIDs(orgActs, "SEL")
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		after  []int64
	}{
		{"set", "PUT", base + "SEL/repositories", map[string]any{"selected_repository_ids": []int64{docs, sauce}}, 204, []int64{sauce, docs}},
		{"set dup", "PUT", base + "sel/repositories", map[string]any{"selected_repository_ids": []int64{docs, docs}}, 204, []int64{docs}},
		{"set unknown id", "PUT", base + "SEL/repositories", map[string]any{"selected_repository_ids": []int64{docs, 42}}, 422, []int64{docs}},
		{"set other org's repo", "PUT", base + "SEL/repositories", map[string]any{"selected_repository_ids": []int64{other}}, 422, []int64{docs}},
		{"set missing ids", "PUT", base + "SEL/repositories", map[string]any{}, 422, []int64{docs}},
		{"set bad JSON", "PUT", base + "SEL/repositories", "{", 400, []int64{docs}},
		{"set empty", "PUT", base + "SEL/repositories", map[string]any{"selected_repository_ids": []int64{}}, 204, []int64{}},
		{"add", "PUT", base + "SEL/repositories/" + fmt.Sprint(hello), nil, 204, []int64{hello}},
		{"add again", "PUT", base + "SEL/repositories/" + fmt.Sprint(hello), nil, 204, []int64{hello}},
		{"add second", "PUT", base + "SEL/repositories/" + fmt.Sprint(sauce), nil, 204, []int64{hello, sauce}},
		{"add unknown", "PUT", base + "SEL/repositories/42", nil, 422, []int64{hello, sauce}},
		{"add other org's repo", "PUT", base + "SEL/repositories/" + fmt.Sprint(other), nil, 422, []int64{hello, sauce}},
		{"add not an id", "PUT", base + "SEL/repositories/abc", nil, 404, []int64{hello, sauce}},
		{"remove", "DELETE", base + "SEL/repositories/" + fmt.Sprint(hello), nil, 204, []int64{sauce}},
		{"remove absent", "DELETE", base + "SEL/repositories/" + fmt.Sprint(hello), nil, 204, []int64{sauce}},
		{"remove unknown", "DELETE", base + "SEL/repositories/42", nil, 204, []int64{sauce}},
		{"set on all", "PUT", base + "ALL/repositories", map[string]any{"selected_repository_ids": []int64{docs}}, 409, []int64{sauce}},
		{"add on all", "PUT", base + "ALL/repositories/" + fmt.Sprint(docs), nil, 409, []int64{sauce}},
		{"remove on all", "DELETE", base + "ALL/repositories/" + fmt.Sprint(docs), nil, 409, []int64{sauce}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if r.status >= 400 && r.message(t) == "" {
				t.Errorf("no message: %s", r.body)
			}
			if got := selected(); !slices.Equal(got, tt.after) {
				t.Errorf("selected = %v, want %v", got, tt.after)
			}
		})
	}
	var rl repoList
	e.want(e.do("GET", base+"ALL/repositories", nil), 200).json(t, &rl)
	if rl.TotalCount != 0 || rl.Repositories == nil {
		t.Errorf("repositories of ALL: %+v", rl)
	}
	if ids, err := e.emu.SelectedRepositoryIDs(orgActs, "ALL"); err != nil || len(ids) != 0 {
		t.Errorf("SelectedRepositoryIDs(ALL) = %v, %v", ids, err)
	}
}

// GitHub replaces the selected repositories on every create-or-update: an
// update that leaves selected_repository_ids out clears them.
func TestUpdateWithoutIDsClearsSelected(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	hello, docs := e.repoID("hello-world"), e.repoID("docs")
	e.want(e.put(orgActs, "TOKEN", "v1", orgBody("selected", hello, docs)), 201)
	if ids, _ := e.emu.SelectedRepositoryIDs(orgActs, "TOKEN"); !slices.Equal(ids, []int64{hello, docs}) {
		t.Fatalf("selected %v", ids)
	}
	e.want(e.put(orgActs, "TOKEN", "v2", orgBody("selected")), 204)
	if ids, _ := e.emu.SelectedRepositoryIDs(orgActs, "TOKEN"); len(ids) != 0 {
		t.Errorf("after a value update without ids, selected = %v, want none", ids)
	}
	e.want(e.put(orgActs, "TOKEN", "v3", orgBody("selected", docs)), 204)
	if ids, _ := e.emu.SelectedRepositoryIDs(orgActs, "TOKEN"); !slices.Equal(ids, []int64{docs}) {
		t.Errorf("selected %v", ids)
	}
	// Switching to all drops them too.
	e.want(e.put(orgActs, "TOKEN", "v4", orgBody("all")), 204)
	if ids, _ := e.emu.SelectedRepositoryIDs(orgActs, "TOKEN"); len(ids) != 0 {
		t.Errorf("selected %v", ids)
	}
	if v, _ := e.emu.Open(orgActs, "TOKEN"); string(v) != "v4" {
		t.Errorf("value %q", v)
	}
}

func TestOrganizationSecretsOfRepository(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	hello, sauce := e.repoID("hello-world"), e.repoID("secret-sauce")
	for _, app := range []string{orgActs, orgAgent} {
		e.want(e.put(app, "ALL", "v", orgBody("all")), 201)
		e.want(e.put(app, "PRIV", "v", orgBody("private")), 201)
		e.want(e.put(app, "SEL_HELLO", "v", orgBody("selected", hello)), 201)
		e.want(e.put(app, "SEL_SAUCE", "v", orgBody("selected", sauce)), 201)
		e.want(e.put(app, "SEL_NONE", "v", orgBody("selected")), 201)
	}
	e.want(e.put(orgAgent, "AGENTS_ONLY", "v", orgBody("all")), 201)
	e.want(e.put(repoActs, "REPO_OWN", "v", nil), 201)

	tests := []struct {
		repo, app string
		want      []string
	}{
		{"hello-world", "actions", []string{"ALL", "SEL_HELLO"}},
		{"secret-sauce", "actions", []string{"ALL", "PRIV", "SEL_SAUCE"}},
		{"docs", "actions", []string{"ALL"}},
		{"Hello-World", "agents", []string{"AGENTS_ONLY", "ALL", "SEL_HELLO"}},
		{"secret-sauce", "agents", []string{"AGENTS_ONLY", "ALL", "PRIV", "SEL_SAUCE"}},
	}
	for _, tt := range tests {
		t.Run(tt.repo+"/"+tt.app, func(t *testing.T) {
			var l secretList
			e.want(e.do("GET", "/repos/octo-org/"+tt.repo+"/"+tt.app+"/organization-secrets", nil), 200).json(t, &l)
			var names []string
			for _, s := range l.Secrets {
				names = append(names, s.Name)
				if s.CreatedAt == "" || s.UpdatedAt == "" {
					t.Errorf("timestamps missing: %+v", s)
				}
			}
			if l.TotalCount != len(tt.want) || !slices.Equal(names, tt.want) {
				t.Errorf("got %d %v, want %v", l.TotalCount, names, tt.want)
			}
		})
	}
	// Paginated like the other lists.
	r := e.want(e.do("GET", "/repos/octo-org/secret-sauce/actions/organization-secrets?per_page=2", nil), 200)
	var l secretList
	r.json(t, &l)
	if l.TotalCount != 3 || len(l.Secrets) != 2 || !strings.Contains(r.header.Get("Link"), `rel="next"`) {
		t.Errorf("page 1 of 2: %+v, Link %q", l, r.header.Get("Link"))
	}
}

// parseLink reads a Link header into rel -> URL.
func parseLink(t *testing.T, h string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if h == "" {
		return out
	}
	re := regexp.MustCompile(`^<([^>]+)>; rel="([a-z]+)"$`)
	for part := range strings.SplitSeq(h, ", ") {
		m := re.FindStringSubmatch(part)
		if m == nil {
			t.Fatalf("bad Link part %q in %q", part, h)
		}
		out[m[2]] = m[1]
	}
	return out
}

func TestPagination(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	var names []string
	for i := range 7 {
		name := fmt.Sprintf("S%02d", 7-i) // created out of order; listed by name
		names = append(names, name)
		e.want(e.put(envProd, name, "v", nil), 201)
	}
	slices.Sort(names)

	url := e.srv.URL + "/" + envProd + "/secrets?per_page=3"
	var got []string
	pages := 0
	for url != "" {
		pages++
		if pages > 5 {
			t.Fatal("too many pages")
		}
		r := e.want(e.do("GET", strings.TrimPrefix(url, e.srv.URL), nil), 200)
		var l secretList
		r.json(t, &l)
		if l.TotalCount != 7 {
			t.Errorf("total_count %d", l.TotalCount)
		}
		for _, s := range l.Secrets {
			got = append(got, s.Name)
		}
		links := parseLink(t, r.header.Get("Link"))
		for rel, u := range links {
			if !strings.HasPrefix(u, e.srv.URL+"/repos/octo-org/hello-world/environments/prod%2Feu/secrets?") || !strings.Contains(u, "per_page=3") {
				t.Errorf("page %d: %s link %q", pages, rel, u)
			}
		}
		switch pages {
		case 1:
			if len(links) != 2 || !strings.Contains(links["next"], "page=2") || !strings.Contains(links["last"], "page=3") {
				t.Errorf("page 1 links %v", links)
			}
		case 2:
			if len(links) != 4 || !strings.Contains(links["next"], "page=3") || !strings.Contains(links["last"], "page=3") ||
				!strings.Contains(links["prev"], "page=1") || !strings.Contains(links["first"], "page=1") {
				t.Errorf("page 2 links %v", links)
			}
		case 3:
			if len(links) != 2 || !strings.Contains(links["prev"], "page=2") || !strings.Contains(links["first"], "page=1") {
				t.Errorf("page 3 links %v", links)
			}
			if len(l.Secrets) != 1 {
				t.Errorf("page 3 has %d secrets", len(l.Secrets))
			}
		}
		url = links["next"]
	}
	if pages != 3 || !slices.Equal(got, names) {
		t.Errorf("%d pages: %v, want %v", pages, got, names)
	}

	tests := []struct {
		query string
		n     int
		link  bool
	}{
		{"", 7, false}, // default 30 per page
		{"?per_page=100", 7, false},
		{"?per_page=1000", 7, false}, // capped at 100
		{"?per_page=0", 7, false},    // default
		{"?per_page=x&page=y", 7, false},
		{"?page=9&per_page=3", 0, true}, // past the end: empty, prev/first
		{"?page=2&per_page=5", 2, true},
	}
	for _, tt := range tests {
		r := e.want(e.do("GET", "/"+envProd+"/secrets"+tt.query, nil), 200)
		var l secretList
		r.json(t, &l)
		if len(l.Secrets) != tt.n || l.TotalCount != 7 || (r.header.Get("Link") != "") != tt.link {
			t.Errorf("%q: %d secrets, total %d, Link %q", tt.query, len(l.Secrets), l.TotalCount, r.header.Get("Link"))
		}
	}

	// 120 secrets: per_page is capped at 100.
	big := newEnv(t, emulator.Options{})
	for i := range 120 {
		big.want(big.put(repoAgnt, fmt.Sprintf("K%03d", i), "v", nil), 201)
	}
	r := big.want(big.do("GET", "/"+repoAgnt+"/secrets?per_page=500", nil), 200)
	var l secretList
	r.json(t, &l)
	if len(l.Secrets) != 100 || l.TotalCount != 120 || !strings.Contains(parseLink(t, r.header.Get("Link"))["last"], "page=2") {
		t.Errorf("per_page=500: %d secrets, Link %q", len(l.Secrets), r.header.Get("Link"))
	}
}

func TestSelectedRepositoriesPagination(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	var ids []int64
	for i := range 5 {
		ids = append(ids, e.emu.AddRepo(org, fmt.Sprintf("r%d", i), i%2 == 0))
	}
	e.want(e.put(orgActs, "S", "v", orgBody("selected", ids...)), 201)
	var got []int64
	path := "/" + orgActs + "/secrets/S/repositories?per_page=2"
	for pages := 1; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more than 3 pages")
		}
		r := e.want(e.do("GET", path, nil), 200)
		var rl repoList
		r.json(t, &rl)
		if rl.TotalCount != 5 {
			t.Errorf("total %d", rl.TotalCount)
		}
		for _, repo := range rl.Repositories {
			got = append(got, repo.ID)
		}
		path = strings.TrimPrefix(parseLink(t, r.header.Get("Link"))["next"], e.srv.URL)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("got %v, want %v", got, ids)
	}
}

func TestLegacyRoutes(t *testing.T) {
	current := []string{
		"GET /" + envProd + "/secrets",
		"GET /" + envProd + "/secrets/public-key",
		"GET /" + envProd + "/secrets/X",
		"PUT /" + envProd + "/secrets/X",
		"DELETE /" + envProd + "/secrets/X",
	}
	legacy := []string{
		"GET /repositories/1296269/environments/prod%2Feu/secrets",
		"GET /repositories/1296269/environments/prod%2Feu/secrets/public-key",
		"GET /repositories/1296269/environments/prod%2Feu/secrets/X",
		"PUT /repositories/1296269/environments/prod%2Feu/secrets/X",
		"DELETE /repositories/1296269/environments/prod%2Feu/secrets/X",
	}
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("legacy=", on), func(t *testing.T) {
			e := newEnv(t, emulator.Options{LegacyRoutes: on})
			served, refused := current, legacy
			if on {
				served, refused = legacy, current
			}
			for _, rt := range refused {
				method, path, _ := strings.Cut(rt, " ")
				e.want(e.do(method, path, "{}"), 404)
			}
			prefix := strings.TrimSuffix(strings.TrimPrefix(served[0], "GET /"), "/secrets")
			e.want(e.put(prefix, "X", "v", nil), 201)
			if v, err := e.emu.Open(envProd, "X"); err != nil || string(v) != "v" {
				t.Fatalf("Open = %q, %v", v, err)
			}
			e.want(e.do("GET", "/"+prefix+"/secrets/x", nil), 200)
			e.want(e.do("GET", "/"+prefix+"/secrets", nil), 200)
			e.want(e.do("DELETE", "/"+prefix+"/secrets/X", nil), 204)
			// Repository and organization routes are the same either way.
			e.want(e.put(repoActs, "R", "v", nil), 201)
			e.want(e.put(orgActs, "O", "v", orgBody("all")), 201)
		})
	}
	e := newEnv(t, emulator.Options{LegacyRoutes: true})
	e.want(e.do("GET", "/repositories/999/environments/prod%2Feu/secrets", nil), 404)
	e.want(e.do("GET", "/repositories/1296270/environments/prod%2Feu/secrets", nil), 404)
	e.want(e.do("GET", "/repositories/abc/environments/prod%2Feu/secrets", nil), 404)
	e.want(e.do("GET", "/repositories/1296269/environments/PROD%2FEU/secrets", nil), 200)
	// Counted under their own templates even when refused.
	e.do("GET", "/"+envProd+"/secrets", nil)
	if n := e.emu.Count(emulator.RouteListEnvSecrets); n != 1 {
		t.Errorf("Count(RouteListEnvSecrets) = %d", n)
	}
}

func TestEnvironmentEscaping(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	e.emu.AddEnvironment(org, "hello-world", "a b")
	e.emu.AddEnvironment(org, "docs", "100%")
	e.want(e.put("repos/octo-org/hello-world/environments/prod%2Feu", "A", "slash", nil), 201)
	e.want(e.put("repos/octo-org/hello-world/environments/a%20b", "A", "space", nil), 201)
	e.want(e.put("repos/octo-org/docs/environments/100%25", "A", "percent", nil), 201)
	for scope, want := range map[string]string{
		"repos/octo-org/hello-world/environments/prod%2Feu": "slash",
		"repos/octo-org/hello-world/environments/prod%2feu": "slash",
		"repos/octo-org/hello-world/environments/a%20b":     "space",
		"repos/octo-org/docs/environments/100%25":           "percent",
	} {
		if v, err := e.emu.Open(scope, "A"); err != nil || string(v) != want {
			t.Errorf("Open(%s) = %q, %v", scope, v, err)
		}
	}
	// Unescaped, "prod/eu" is two segments and matches nothing.
	e.want(e.do("GET", "/repos/octo-org/hello-world/environments/prod/eu/secrets/A", nil), 404)
	// Escaped twice, it is the environment "prod%2Feu", which does not exist.
	e.want(e.do("GET", "/repos/octo-org/hello-world/environments/prod%252Feu/secrets/A", nil), 404)
	// AddEnvironment creates a missing repository.
	e.emu.AddEnvironment("new-org", "new-repo", "dev")
	e.want(e.do("GET", "/repos/new-org/new-repo/environments/dev/secrets", nil), 200)
	e.want(e.do("GET", "/repos/new-org/new-repo", nil), 200)
}

func TestAPIVersion(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	legacy := newEnv(t, emulator.Options{LegacyRoutes: true})
	tests := []struct {
		path    string
		version string // "" sends none
		status  int
		legacy  bool // ask the old GitHub Enterprise Server
	}{
		{"/" + orgAgent + "/secrets", vAgents, 200, false},
		{"/" + orgAgent + "/secrets", "", 400, false},
		{"/" + orgAgent + "/secrets", vActions, 400, false},
		{"/" + orgAgent + "/secrets/public-key", "2099-01-01", 400, false},
		{"/" + repoAgnt + "/secrets", vActions, 400, false},
		{"/" + repoAgnt + "/secrets", vAgents, 200, false},
		{"/repos/octo-org/hello-world/agents/organization-secrets", "", 400, false},
		{"/repos/octo-org/hello-world/agents/organization-secrets", vAgents, 200, false},
		{"/" + orgActs + "/secrets", "", 200, false},
		{"/" + orgActs + "/secrets", vActions, 200, false},
		{"/" + orgActs + "/secrets", vAgents, 200, false},
		{"/" + orgActs + "/secrets", "2021-01-01", 400, false},
		{"/" + repoActs + "/secrets/public-key", "", 200, false},
		{"/" + envProd + "/secrets", vAgents, 200, false},
		{"/" + envProd + "/secrets", "junk", 400, false},
		{"/repos/octo-org/docs", "", 200, false},
		// GitHub Enterprise Server 3.21 documents 2026-03-10 only.
		{"/api/v3/" + orgActs + "/secrets", vAgents, 200, false},
		{"/api/v3/" + orgActs + "/secrets", "", 200, false},
		{"/api/v3/" + orgActs + "/secrets", vActions, 400, false},
		{"/api/v3/" + envProd + "/secrets/public-key", vActions, 400, false},
		{"/api/v3/repos/octo-org/docs", vActions, 400, false},
		{"/api/v3/repos/octo-org/docs", vAgents, 200, false},
		// The old one's reference has no API versions: it ignores them.
		{"/api/v3/" + orgActs + "/secrets", vActions, 200, true},
		{"/api/v3/" + orgActs + "/secrets", vAgents, 200, true},
		{"/api/v3/" + orgActs + "/secrets", "", 200, true},
		{"/api/v3/repositories/1296269/environments/prod%2Feu/secrets", vActions, 200, true},
	}
	for _, tt := range tests {
		env := e
		if tt.legacy {
			env = legacy
		}
		r := env.do("GET", tt.path, nil, "X-GitHub-Api-Version", tt.version)
		if r.status != tt.status {
			t.Errorf("%s with version %q (legacy %v): %d, want %d: %s", tt.path, tt.version, tt.legacy, r.status, tt.status, r.body)
		}
		if r.status == 400 && r.message(t) != "Unsupported API version" {
			t.Errorf("message %q", r.message(t))
		}
	}
}

// Routes GitHub's reference pages do not give a flavour of GitHub are not
// found there: Agents secrets on GitHub Enterprise Server (under /api/v3),
// a repository's organization secrets on the old GitHub Enterprise Server.
func TestRoutesOfEachGitHub(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	legacy := newEnv(t, emulator.Options{LegacyRoutes: true})
	tests := []struct {
		name   string
		env    *env
		path   string
		status int
	}{
		{"github.com: org agents", e, "/" + orgAgent + "/secrets", 200},
		{"github.com: repo agents", e, "/" + repoAgnt + "/secrets/public-key", 200},
		{"github.com: repo organization secrets", e, "/repos/octo-org/hello-world/actions/organization-secrets", 200},
		{"GHES: org agents", e, "/api/v3/" + orgAgent + "/secrets", 404},
		{"GHES: repo agents", e, "/api/v3/" + repoAgnt + "/secrets/public-key", 404},
		{"GHES: agents organization secrets", e, "/api/v3/repos/octo-org/hello-world/agents/organization-secrets", 404},
		{"GHES: repo organization secrets", e, "/api/v3/repos/octo-org/hello-world/actions/organization-secrets", 200},
		{"old GHES: repo organization secrets", legacy, "/api/v3/repos/octo-org/hello-world/actions/organization-secrets", 404},
		{"old GHES: repo organization secrets, no prefix", legacy, "/repos/octo-org/hello-world/actions/organization-secrets", 404},
		{"old GHES: repo secrets", legacy, "/api/v3/" + repoActs + "/secrets", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.env.do("GET", tt.path, nil)
			if r.status != tt.status {
				t.Errorf("GET %s: %d, want %d: %s", tt.path, r.status, tt.status, r.body)
			}
			if r.status == 404 && r.message(t) != "Not Found" {
				t.Errorf("message %q", r.message(t))
			}
		})
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, emulator.Options{Token: "s3cr3t"})
	tests := []struct {
		auth   string
		status int
	}{
		{"", 401},
		{"Bearer wrong", 401},
		{"Bearer ", 401},
		{"Basic czNjcjN0", 401},
		{"s3cr3t", 401},
		{"Bearer s3cr3t", 200},
		{"bearer s3cr3t", 200},
	}
	for _, tt := range tests {
		r := e.do("GET", "/"+orgActs+"/secrets", nil, "Authorization", tt.auth)
		if r.status != tt.status {
			t.Errorf("Authorization %q: %d, want %d", tt.auth, r.status, tt.status)
		}
		if r.status == 401 && r.message(t) != "Bad credentials" {
			t.Errorf("401 message %q", r.message(t))
		}
	}
	// Unknown paths are not revealed without a token either.
	e.want(e.do("GET", "/nope", nil), 401)
	e.want(e.do("GET", "/nope", nil, "Authorization", "Bearer s3cr3t"), 404)
	// Without a configured token anything goes.
	open := newEnv(t, emulator.Options{})
	open.want(open.do("GET", "/"+orgActs+"/secrets", nil, "Authorization", "Bearer whatever"), 200)
}

// TestRateLimitRoute: GET /rate_limit answers GitHub's shape to the right
// token only, also under /api/v3, and does not use the primary quota.
func TestRateLimitRoute(t *testing.T) {
	e := newEnv(t, emulator.Options{Token: "tok", Limits: emulator.Limits{PrimaryPerHour: 10}})
	e.want(e.do("GET", "/rate_limit", nil), 401)
	if r := e.do("GET", "/rate_limit", nil, "Authorization", "Bearer wrong"); r.status != 401 || r.message(t) != "Bad credentials" {
		t.Errorf("wrong token: %d %q, want 401 Bad credentials", r.status, r.message(t))
	}
	// The public key read uses one request of the quota; /rate_limit none.
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", "Bearer tok"), 200)
	for _, path := range []string{"/rate_limit", "/api/v3/rate_limit"} {
		var got struct {
			Resources map[string]struct {
				Limit, Used, Remaining int
				Reset                  int64
			} `json:"resources"`
			Rate struct {
				Limit, Used, Remaining int
				Reset                  int64
			} `json:"rate"`
		}
		e.want(e.do("GET", path, nil, "Authorization", "Bearer tok"), 200).json(t, &got)
		core, ok := got.Resources["core"]
		if !ok || core.Limit != 10 || core.Used != 1 || core.Remaining != 9 || core.Reset == 0 {
			t.Errorf("GET %s: resources.core = %+v (present %v), want limit 10, used 1, remaining 9, a reset", path, core, ok)
		}
		if got.Rate != core {
			t.Errorf("GET %s: rate = %+v, want the core resource %+v", path, got.Rate, core)
		}
	}
	// Without limits it shows github.com's quota, unused.
	open := newEnv(t, emulator.Options{})
	var got struct {
		Rate struct{ Limit, Remaining int } `json:"rate"`
	}
	open.want(open.do("GET", "/rate_limit", nil), 200).json(t, &got)
	if got.Rate.Limit != 5000 || got.Rate.Remaining != 5000 {
		t.Errorf("without limits: rate = %+v, want 5000 of 5000", got.Rate)
	}
}

func TestCountsAndHeaders(t *testing.T) {
	e := newEnv(t, emulator.Options{Token: "tok"})
	auth := []string{"Authorization", "Bearer tok", "User-Agent", "secretbroker-test/1"}
	e.do("GET", "/"+orgActs+"/secrets/public-key", nil, auth...)
	e.do("GET", "/"+orgAgent+"/secrets/public-key", nil, auth...)
	e.do("GET", "/"+orgActs+"/secrets/public-key", nil) // 401, still counted
	e.do("GET", "/"+envProd+"/secrets/public-key", nil, auth...)
	k := pubKey{}
	e.want(e.do("GET", "/"+envProd+"/secrets/public-key", nil, auth...), 200).json(t, &k)
	e.want(e.do("PUT", "/"+envProd+"/secrets/X", map[string]any{"encrypted_value": seal(t, k, []byte("v")), "key_id": k.KeyID}, auth...), 201)
	e.do("GET", "/nope", nil, auth...)

	want := map[string]int{
		emulator.RouteGetOrgPublicKey: 3,
		emulator.RouteGetEnvPublicKey: 2,
		emulator.RoutePutEnvSecret:    1,
		emulator.RouteListOrgSecrets:  0,
		"GET /nope":                   0,
	}
	for route, n := range want {
		if got := e.emu.Count(route); got != n {
			t.Errorf("Count(%q) = %d, want %d", route, got, n)
		}
	}
	if got := e.emu.TotalRequests(); got != 7 {
		t.Errorf("TotalRequests = %d, want 7", got)
	}
	h := e.emu.LastRequestHeader(emulator.RoutePutEnvSecret)
	if h.Get("Authorization") != "" {
		t.Error("LastRequestHeader kept Authorization")
	}
	if h.Get("User-Agent") != "secretbroker-test/1" || h.Get("X-GitHub-Api-Version") != vActions {
		t.Errorf("LastRequestHeader = %v", h)
	}
	// The copy is the caller's.
	h.Set("User-Agent", "changed")
	if e.emu.LastRequestHeader(emulator.RoutePutEnvSecret).Get("User-Agent") != "secretbroker-test/1" {
		t.Error("LastRequestHeader returned shared state")
	}
	if e.emu.LastRequestHeader(emulator.RouteDeleteOrgSecret) != nil {
		t.Error("header for a route never requested")
	}
	if e.emu.LastRequestHeader(emulator.RouteGetOrgPublicKey).Get("X-GitHub-Api-Version") != vActions {
		t.Error("last org public key request was the actions one")
	}

	e.emu.ResetCounts()
	if e.emu.Count(emulator.RouteGetOrgPublicKey) != 0 || e.emu.TotalRequests() != 0 {
		t.Error("ResetCounts did not reset")
	}
	e.do("GET", "/"+orgActs+"/secrets/public-key", nil, auth...)
	if e.emu.Count(emulator.RouteGetOrgPublicKey) != 1 || e.emu.TotalRequests() != 1 {
		t.Error("counting after reset")
	}
}

// Every route template is reachable and counted under its constant.
func TestRouteConstants(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	legacy := newEnv(t, emulator.Options{LegacyRoutes: true})
	tests := []struct {
		e      *env
		route  string
		method string
		path   string
		status int
	}{
		{e, emulator.RouteListOrgSecrets, "GET", "/" + orgActs + "/secrets", 200},
		{e, emulator.RouteGetOrgPublicKey, "GET", "/" + orgAgent + "/secrets/public-key", 200},
		{e, emulator.RouteGetOrgSecret, "GET", "/" + orgActs + "/secrets/X", 404},
		{e, emulator.RoutePutOrgSecret, "PUT", "/" + orgActs + "/secrets/X", 400},
		{e, emulator.RouteDeleteOrgSecret, "DELETE", "/" + orgActs + "/secrets/X", 404},
		{e, emulator.RouteListSelectedRepos, "GET", "/" + orgActs + "/secrets/X/repositories", 404},
		{e, emulator.RouteSetSelectedRepos, "PUT", "/" + orgActs + "/secrets/X/repositories", 404},
		{e, emulator.RouteAddSelectedRepo, "PUT", "/" + orgActs + "/secrets/X/repositories/1", 404},
		{e, emulator.RouteRemoveSelectedRepo, "DELETE", "/" + orgAgent + "/secrets/X/repositories/1", 404},
		{e, emulator.RouteListRepoOrgSecrets, "GET", "/repos/octo-org/docs/actions/organization-secrets", 200},
		{e, emulator.RouteListRepoSecrets, "GET", "/" + repoAgnt + "/secrets", 200},
		{e, emulator.RouteGetRepoPublicKey, "GET", "/" + repoActs + "/secrets/public-key", 200},
		{e, emulator.RouteGetRepoSecret, "GET", "/" + repoActs + "/secrets/X", 404},
		{e, emulator.RoutePutRepoSecret, "PUT", "/" + repoActs + "/secrets/X", 400},
		{e, emulator.RouteDeleteRepoSecret, "DELETE", "/" + repoActs + "/secrets/X", 404},
		{e, emulator.RouteListEnvSecrets, "GET", "/" + envStage + "/secrets", 200},
		{e, emulator.RouteGetEnvPublicKey, "GET", "/" + envStage + "/secrets/public-key", 200},
		{e, emulator.RouteGetEnvSecret, "GET", "/" + envStage + "/secrets/X", 404},
		{e, emulator.RoutePutEnvSecret, "PUT", "/" + envStage + "/secrets/X", 400},
		{e, emulator.RouteDeleteEnvSecret, "DELETE", "/" + envStage + "/secrets/X", 404},
		{legacy, emulator.RouteListLegacyEnvSecrets, "GET", "/repositories/1296269/environments/staging/secrets", 200},
		{legacy, emulator.RouteGetLegacyEnvPublicKey, "GET", "/repositories/1296269/environments/staging/secrets/public-key", 200},
		{legacy, emulator.RouteGetLegacyEnvSecret, "GET", "/repositories/1296269/environments/staging/secrets/X", 404},
		{legacy, emulator.RoutePutLegacyEnvSecret, "PUT", "/repositories/1296269/environments/staging/secrets/X", 400},
		{legacy, emulator.RouteDeleteLegacyEnvSecret, "DELETE", "/repositories/1296269/environments/staging/secrets/X", 404},
		{e, emulator.RouteGetRepo, "GET", "/repos/octo-org/docs", 200},
		{e, emulator.RouteGetRateLimit, "GET", "/rate_limit", 200},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			before := tt.e.emu.Count(tt.route)
			tt.e.want(tt.e.do(tt.method, tt.path, ""), tt.status)
			if got := tt.e.emu.Count(tt.route); got != before+1 {
				t.Errorf("Count = %d, want %d", got, before+1)
			}
			if !strings.HasPrefix(tt.route, tt.method+" /") {
				t.Errorf("route %q does not start with its method", tt.route)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, emulator.Options{Token: "tok"})
	auth := []string{"Authorization", "Bearer tok"}
	e.emu.InjectFault(emulator.Fault{
		Route:  emulator.RouteGetRepoPublicKey,
		Status: 503,
		Body:   `{"message":"Service Unavailable"}`,
		Header: http.Header{"Retry-After": {"7"}},
		Times:  2,
	})
	e.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: 403, Header: http.Header{"X-Ratelimit-Remaining": {"0"}}})

	// Other routes are unaffected.
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, auth...), 200)
	for i := range 2 {
		r := e.want(e.do("GET", "/"+repoActs+"/secrets/public-key", nil), 503) // before auth
		if r.header.Get("Retry-After") != "7" || r.message(t) != "Service Unavailable" {
			t.Errorf("fault %d: %v %s", i, r.header, r.body)
		}
	}
	var k pubKey
	e.want(e.do("GET", "/"+repoActs+"/secrets/public-key", nil, auth...), 200).json(t, &k)
	if e.emu.Count(emulator.RouteGetRepoPublicKey) != 3 {
		t.Errorf("faulted requests are counted: %d", e.emu.Count(emulator.RouteGetRepoPublicKey))
	}

	body := map[string]any{"encrypted_value": seal(t, k, []byte("v")), "key_id": k.KeyID}
	r := e.want(e.do("PUT", "/"+repoActs+"/secrets/X", body, auth...), 403) // Times 0 means once
	if r.header.Get("X-Ratelimit-Remaining") != "0" || r.message(t) != "Forbidden" {
		t.Errorf("default fault body: %v %s", r.header, r.body)
	}
	e.want(e.do("PUT", "/"+repoActs+"/secrets/X", body, auth...), 201)
	if _, err := e.emu.Open(repoActs, "X"); err != nil {
		t.Error(err)
	}

	// "" matches every route, and unmatched paths; faults queue in order.
	e.emu.InjectFault(emulator.Fault{Status: 502, Times: 2})
	e.emu.InjectFault(emulator.Fault{Route: emulator.RouteListOrgSecrets, Status: 500})
	e.want(e.do("GET", "/nope", nil, auth...), 502)
	e.want(e.do("GET", "/"+orgActs+"/secrets", nil, auth...), 502)
	e.want(e.do("GET", "/"+orgActs+"/secrets", nil, auth...), 500)
	e.want(e.do("GET", "/"+orgActs+"/secrets", nil, auth...), 200)

	// A zero status is a 500.
	e.emu.InjectFault(emulator.Fault{})
	e.want(e.do("GET", "/"+orgActs+"/secrets", nil, auth...), 500)
	e.want(e.do("GET", "/"+orgActs+"/secrets", nil, auth...), 200)
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 10 {
				scope := []string{orgActs, repoActs, envProd, repoAgnt}[(i+j)%4]
				var extra map[string]any
				if strings.HasPrefix(scope, "orgs/") {
					extra = orgBody("all")
				}
				r := e.put(scope, fmt.Sprintf("S_%d_%d", i, j), "v", extra)
				if r.status != 201 {
					t.Errorf("PUT: %d %s", r.status, r.body)
				}
				e.do("GET", "/"+scope+"/secrets", nil)
				if j == 5 {
					e.emu.RotateKey(orgAgent)
				}
				e.emu.Count(emulator.RoutePutOrgSecret)
				e.emu.LastRequestHeader(emulator.RoutePutOrgSecret)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, scope := range []string{orgActs, repoActs, envProd, repoAgnt} {
		var l secretList
		e.want(e.do("GET", "/"+scope+"/secrets?per_page=100", nil), 200).json(t, &l)
		total += l.TotalCount
	}
	if total != 80 {
		t.Errorf("%d secrets, want 80", total)
	}
}

// created_at and updated_at come from time.Now: in a bubble, exactly the
// fake time of the PUT. The logger gets a line per request, never a value.
func TestTimestampsAndLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		e := newMemEnv(t, emulator.Options{Logger: newTestLogger(&logs)})
		t0 := time.Now()
		e.want(e.put(repoActs, "X", "do-not-log-me", nil), 201)
		time.Sleep(90*time.Minute + 500*time.Millisecond)
		e.want(e.put(repoActs, "X", "do-not-log-me-either", nil), 204)
		var s secretJSON
		e.want(e.do("GET", "/"+repoActs+"/secrets/X", nil), 200).json(t, &s)
		wantCreated := t0.UTC().Format(time.RFC3339)
		wantUpdated := t0.Add(90 * time.Minute).UTC().Format(time.RFC3339) // whole seconds
		if s.CreatedAt != wantCreated || s.UpdatedAt != wantUpdated {
			t.Errorf("created_at %s updated_at %s, want %s and %s", s.CreatedAt, s.UpdatedAt, wantCreated, wantUpdated)
		}
		if !strings.Contains(logs.String(), "route") {
			t.Errorf("nothing logged: %q", logs.String())
		}
		if strings.Contains(logs.String(), "do-not-log-me") {
			t.Error("value logged")
		}
	})
}

// The request line carries the W3C traceparent a client sent, and only
// one of traceparent's form.
func TestLoggerTraceparent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		for _, tc := range []struct{ sent, want string }{
			{tp, "traceparent=" + tp},
			{"00-<script>-x", ""},
			{"", ""},
		} {
			var logs bytes.Buffer
			e := newMemEnv(t, emulator.Options{Logger: newTestLogger(&logs)})
			e.want(e.do("GET", "/"+repoActs+"/secrets", nil, "traceparent", tc.sent), 200)
			line := logs.String()
			if !strings.Contains(line, "emulator request") {
				t.Fatalf("no request line: %q", line)
			}
			if got := strings.Contains(line, "traceparent="); got != (tc.want != "") || !strings.Contains(line, tc.want) {
				t.Errorf("traceparent %q: line %q, want %q", tc.sent, line, tc.want)
			}
		}
	})
}
