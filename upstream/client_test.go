package upstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

const testToken = "ghp_TESTtokenTESTtokenTESTtoken0123456789"

// hit is one request as the test server saw it.
type hit struct {
	Method      string
	EscapedPath string
	RequestURI  string
	Query       url.Values
	Header      http.Header
	Body        string
}

// reply is what the test server answers.
type reply struct {
	Status int
	Header map[string]string
	Body   string
}

// fakeGitHub is a loopback server that records every request and answers
// with respond.
type fakeGitHub struct {
	*httptest.Server
	mu      sync.Mutex
	hits    []hit
	respond func(r *http.Request) reply
}

func newFake(t *testing.T, respond func(r *http.Request) reply) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{respond: respond}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.hits = append(f.hits, hit{
			Method:      r.Method,
			EscapedPath: r.URL.EscapedPath(),
			RequestURI:  r.RequestURI,
			Query:       r.URL.Query(),
			Header:      r.Header.Clone(),
			Body:        string(b),
		})
		f.mu.Unlock()
		rep := f.respond(r)
		for k, v := range rep.Header {
			w.Header().Set(k, v)
		}
		if rep.Body != "" && w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		if rep.Status == 0 {
			rep.Status = http.StatusOK
		}
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) Hits() []hit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hit(nil), f.hits...)
}

// count returns how many requests had the escaped path p.
func (f *fakeGitHub) count(p string) int {
	n := 0
	for _, h := range f.Hits() {
		if h.EscapedPath == p {
			n++
		}
	}
	return n
}

func fixed(rep reply) func(*http.Request) reply {
	return func(*http.Request) reply { return rep }
}

// quickPacing is pacing that never waits: no write spacing, no points
// budget, no backoff, no pause. The tests of this file check what the
// client sends and how it reads the answers, on loopback servers and the
// wall clock; pacing and retries are tested in fake time (pacer_test.go,
// retry_test.go).
func quickPacing() *Pacing {
	p := DefaultPacing()
	p.WriteInterval, p.PointsPerMinute = 0, 0
	p.BackoffBase, p.BackoffMax, p.SecondaryPause = 0, 0, 0
	return &p
}

// newClient returns a Client for cfg with the test token and, unless cfg
// has its own, quickPacing.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.Pacing == nil {
		cfg.Pacing = quickPacing()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

var (
	orgActions = Scope{App: Actions, Org: "acme"}
	orgAgents  = Scope{App: Agents, Org: "acme"}
	repActions = Scope{App: Actions, Owner: "acme", Repo: "api"}
	repAgents  = Scope{App: Agents, Owner: "acme", Repo: "api"}
	envActions = Scope{App: Actions, Owner: "acme", Repo: "api", Environment: "prod/eu"}
)

const (
	secretJSON     = `{"name":"GH_TOKEN","created_at":"2019-08-10T14:59:22Z","updated_at":"2020-01-10T14:59:22Z","visibility":"selected","selected_repositories_url":"https://api.github.com/orgs/octo-org/actions/secrets/SUPER_SECRET/repositories"}`
	secretListJSON = `{"total_count":2,"secrets":[{"name":"GH_TOKEN","created_at":"2019-08-10T14:59:22Z","updated_at":"2020-01-10T14:59:22Z"},{"name":"GIST_ID","created_at":"2020-01-10T10:59:22Z","updated_at":"2020-01-11T11:59:22Z"}]}`
	repoListJSON   = `{"total_count":1,"repositories":[{"id":1296269,"name":"Hello-World","full_name":"octocat/Hello-World","private":false}]}`
	// A Link header that names a next page, which the client ignores:
	// total_count decides.
	nextLink = `<https://api.github.com/orgs/acme/actions/secrets?page=3&per_page=50>; rel="next", <https://api.github.com/orgs/acme/actions/secrets?page=9&per_page=50>; rel="last"`
	// secretList101JSON and repoList101JSON are pages of lists of 101.
	secretList101JSON = `{"total_count":101,"secrets":[{"name":"GH_TOKEN","created_at":"2019-08-10T14:59:22Z","updated_at":"2020-01-10T14:59:22Z"},{"name":"GIST_ID","created_at":"2020-01-10T10:59:22Z","updated_at":"2020-01-11T11:59:22Z"}]}`
	repoList101JSON   = `{"total_count":101,"repositories":[{"id":1296269,"name":"Hello-World","full_name":"octocat/Hello-World","private":false}]}`
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

var wantSecret = Secret{
	Name:                    "GH_TOKEN",
	CreatedAt:               mustTime("2019-08-10T14:59:22Z"),
	UpdatedAt:               mustTime("2020-01-10T14:59:22Z"),
	Visibility:              "selected",
	SelectedRepositoriesURL: "https://api.github.com/orgs/octo-org/actions/secrets/SUPER_SECRET/repositories",
}

var wantSecretList = SecretList{TotalCount: 2, Secrets: []Secret{
	{Name: "GH_TOKEN", CreatedAt: mustTime("2019-08-10T14:59:22Z"), UpdatedAt: mustTime("2020-01-10T14:59:22Z")},
	{Name: "GIST_ID", CreatedAt: mustTime("2020-01-10T10:59:22Z"), UpdatedAt: mustTime("2020-01-11T11:59:22Z")},
}}

// methodCase is one client call and the request it must make.
type methodCase struct {
	name   string
	invoke func(ctx context.Context, c *Client) (any, error)
	// The request GitHub must see; path is escaped and relative to the
	// API root.
	method, path, query, version, body string
	reply                              reply
	want                               any
}

// scopeCases returns the calls every scope supports, at the escaped
// prefix p ("/orgs/acme/actions", ...).
func scopeCases(s Scope, p, version string) []methodCase {
	put := PutSecretBody{EncryptedValue: "c2VjcmV0", KeyID: "012345678912345678"}
	putJSON := `{"encrypted_value":"c2VjcmV0","key_id":"012345678912345678"}`
	if s.IsOrg() {
		put.Visibility = "selected"
		put.SelectedRepositoryIDs = []int64{1296269, 1296280}
		putJSON = `{"encrypted_value":"c2VjcmV0","key_id":"012345678912345678","visibility":"selected","selected_repository_ids":[1296269,1296280]}`
	}
	withNext := wantSecretList
	withNext.TotalCount, withNext.HasNext = 101, true
	return []methodCase{{
		name:   "GetPublicKey",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.GetPublicKey(ctx, s) },
		method: "GET", path: p + "/secrets/public-key", version: version,
		reply: reply{Body: `{"key_id":"012345678912345678","key":"2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234"}`, Header: map[string]string{"ETag": `W/"abc"`}},
		want:  PublicKey{KeyID: "012345678912345678", Key: "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234", ETag: `W/"abc"`},
	}, {
		name:   "GetPublicKey/numeric key_id",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.GetPublicKey(ctx, s) },
		method: "GET", path: p + "/secrets/public-key", version: version,
		reply: reply{Body: `{"key_id":568250167242549743,"key":"a2V5"}`},
		want:  PublicKey{KeyID: "568250167242549743", Key: "a2V5"},
	}, {
		name:   "ListSecrets",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.ListSecrets(ctx, s, Page{}) },
		method: "GET", path: p + "/secrets", version: version,
		reply: reply{Body: secretListJSON},
		want:  wantSecretList,
	}, {
		name: "ListSecrets/page",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return c.ListSecrets(ctx, s, Page{Page: 2, PerPage: 50})
		},
		method: "GET", path: p + "/secrets", query: "page=2&per_page=50", version: version,
		reply: reply{Body: secretList101JSON},
		want:  withNext, // 2 × 50 < 101
	}, {
		name:   "ListSecrets/Link ignored",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.ListSecrets(ctx, s, Page{}) },
		method: "GET", path: p + "/secrets", version: version,
		reply: reply{Body: secretListJSON, Header: map[string]string{"Link": nextLink}},
		want:  wantSecretList, // 1 × 30 ≥ 2
	}, {
		name:   "GetSecret",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.GetSecret(ctx, s, "GH_TOKEN") },
		method: "GET", path: p + "/secrets/GH_TOKEN", version: version,
		reply: reply{Body: secretJSON},
		want:  wantSecret,
	}, {
		name:   "GetSecret/escaped name",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.GetSecret(ctx, s, "A B/C?") },
		method: "GET", path: p + "/secrets/A%20B%2FC%3F", version: version,
		reply: reply{Body: secretJSON},
		want:  wantSecret,
	}, {
		name:   "PutSecret/created",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.PutSecret(ctx, s, "GH_TOKEN", put) },
		method: "PUT", path: p + "/secrets/GH_TOKEN", version: version, body: putJSON,
		reply: reply{Status: 201, Body: `{}`},
		want:  true,
	}, {
		name:   "PutSecret/updated",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.PutSecret(ctx, s, "GH_TOKEN", put) },
		method: "PUT", path: p + "/secrets/GH_TOKEN", version: version, body: putJSON,
		reply: reply{Status: 204},
		want:  false,
	}, {
		name: "DeleteSecret",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.DeleteSecret(ctx, s, "GH_TOKEN")
		},
		method: "DELETE", path: p + "/secrets/GH_TOKEN", version: version,
		reply: reply{Status: 204},
	}}
}

// orgCases are the calls only organization scopes support.
func orgCases(s Scope, p, version string) []methodCase {
	return []methodCase{{
		name: "ListSelectedRepositories",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return c.ListSelectedRepositories(ctx, s, "GH_TOKEN", Page{PerPage: 100})
		},
		method: "GET", path: p + "/secrets/GH_TOKEN/repositories", query: "per_page=100", version: version,
		reply: reply{Body: repoList101JSON},
		want: RepositoryList{TotalCount: 101, HasNext: true, Repositories: []Repository{
			{ID: 1296269, Name: "Hello-World", FullName: "octocat/Hello-World"},
		}},
	}, {
		name: "SetSelectedRepositories",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.SetSelectedRepositories(ctx, s, "GH_TOKEN", []int64{64780797, 1296269})
		},
		method: "PUT", path: p + "/secrets/GH_TOKEN/repositories", version: version,
		body:  `{"selected_repository_ids":[64780797,1296269]}`,
		reply: reply{Status: 204},
	}, {
		name: "SetSelectedRepositories/empty",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.SetSelectedRepositories(ctx, s, "GH_TOKEN", nil)
		},
		method: "PUT", path: p + "/secrets/GH_TOKEN/repositories", version: version,
		body:  `{"selected_repository_ids":[]}`,
		reply: reply{Status: 204},
	}, {
		name: "AddSelectedRepository",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.AddSelectedRepository(ctx, s, "GH_TOKEN", 1296269)
		},
		method: "PUT", path: p + "/secrets/GH_TOKEN/repositories/1296269", version: version,
		reply: reply{Status: 204},
	}, {
		name: "RemoveSelectedRepository",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return nil, c.RemoveSelectedRepository(ctx, s, "GH_TOKEN", 1296269)
		},
		method: "DELETE", path: p + "/secrets/GH_TOKEN/repositories/1296269", version: version,
		reply: reply{Status: 204},
	}}
}

// repoCases are the calls only repository scopes support.
func repoCases(s Scope, p, version string) []methodCase {
	withNext := wantSecretList
	withNext.TotalCount, withNext.HasNext = 101, true
	return []methodCase{{
		name: "ListRepositoryOrganizationSecrets",
		invoke: func(ctx context.Context, c *Client) (any, error) {
			return c.ListRepositoryOrganizationSecrets(ctx, s, Page{Page: 3})
		},
		method: "GET", path: p + "/organization-secrets", query: "page=3", version: version,
		reply: reply{Body: secretList101JSON},
		want:  withNext, // 3 × 30 < 101
	}}
}

func allCases() map[string][]methodCase {
	cases := map[string][]methodCase{}
	add := func(scope string, cs ...[]methodCase) {
		for _, c := range cs {
			cases[scope] = append(cases[scope], c...)
		}
	}
	add("org/actions", scopeCases(orgActions, "/orgs/acme/actions", "2022-11-28"), orgCases(orgActions, "/orgs/acme/actions", "2022-11-28"))
	add("org/agents", scopeCases(orgAgents, "/orgs/acme/agents", "2026-03-10"), orgCases(orgAgents, "/orgs/acme/agents", "2026-03-10"))
	add("repo/actions", scopeCases(repActions, "/repos/acme/api/actions", "2022-11-28"), repoCases(repActions, "/repos/acme/api/actions", "2022-11-28"))
	add("repo/agents", scopeCases(repAgents, "/repos/acme/api/agents", "2026-03-10"), repoCases(repAgents, "/repos/acme/api/agents", "2026-03-10"))
	add("environment", scopeCases(envActions, "/repos/acme/api/environments/prod%2Feu", "2022-11-28"))
	add("repository", []methodCase{{
		name:   "GetRepository",
		invoke: func(ctx context.Context, c *Client) (any, error) { return c.GetRepository(ctx, "acme", "api") },
		method: "GET", path: "/repos/acme/api", version: "2022-11-28",
		reply: reply{Body: `{"id":42,"name":"api","full_name":"acme/api","private":true,"owner":{"login":"acme"}}`},
		want:  Repository{ID: 42, Name: "api", FullName: "acme/api", Private: true},
	}})
	return cases
}

// checkRequest compares a recorded request with what tc wants; prefix is
// the base URL's escaped path ("" or "/api/v3").
func checkRequest(t *testing.T, h hit, tc methodCase, prefix string) {
	t.Helper()
	if h.Method != tc.method {
		t.Errorf("method = %s, want %s", h.Method, tc.method)
	}
	if want := prefix + tc.path; h.EscapedPath != want {
		t.Errorf("escaped path = %s, want %s", h.EscapedPath, want)
	}
	wantURI := prefix + tc.path
	if tc.query != "" {
		wantURI += "?" + tc.query
	}
	if h.RequestURI != wantURI {
		t.Errorf("request URI = %s, want %s", h.RequestURI, wantURI)
	}
	wantHeaders := map[string]string{
		"Accept":               "application/vnd.github+json",
		"Authorization":        "Bearer " + testToken,
		"User-Agent":           "secretbroker",
		"X-Github-Api-Version": tc.version,
		"Content-Type":         "",
	}
	if tc.body != "" {
		wantHeaders["Content-Type"] = "application/json"
	}
	for k, want := range wantHeaders {
		if got := h.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if tc.body == "" {
		if h.Body != "" {
			t.Errorf("body = %s, want none", h.Body)
		}
	} else if !jsonEqual(h.Body, tc.body) {
		t.Errorf("body = %s, want %s", h.Body, tc.body)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestMethods(t *testing.T) {
	for _, base := range []struct{ name, suffix, prefix, actions string }{
		{"github.com", "", "", "2022-11-28"},
		{"GHES", "/api/v3/", "/api/v3", "2026-03-10"}, // trailing slash tolerated
	} {
		for scope, cases := range allCases() {
			for _, tc := range cases {
				t.Run(base.name+"/"+scope+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					f := newFake(t, fixed(tc.reply))
					c := newClient(t, Config{BaseURL: f.URL + base.suffix})
					got, err := tc.invoke(t.Context(), c)
					if base.prefix != "" && strings.HasSuffix(scope, "/agents") {
						// GitHub Enterprise Server's reference has no
						// Agents secrets: refused, nothing sent.
						if !isNotOffered(err) || len(f.Hits()) != 0 {
							t.Fatalf("%v after %d requests; want a *NotOfferedError and none", err, len(f.Hits()))
						}
						return
					}
					if err != nil {
						t.Fatalf("error: %v", err)
					}
					if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
						t.Errorf("got %#v\nwant %#v", got, tc.want)
					}
					hits := f.Hits()
					if len(hits) != 1 {
						for _, h := range hits {
							t.Logf("%s %s %s", h.Method, h.RequestURI, h.Header.Get("User-Agent"))
						}
						t.Fatalf("%d requests, want 1", len(hits))
					}
					if tc.version == DefaultAPIVersionActions {
						tc.version = base.actions
					}
					checkRequest(t, hits[0], tc, base.prefix)
				})
			}
		}
	}
}

func TestHeadersConfigured(t *testing.T) {
	f := newFake(t, fixed(reply{Status: 204}))
	c, err := New(Config{
		BaseURL:           f.URL,
		UserAgent:         "broker-test/1.0",
		APIVersionActions: "2099-01-01",
		APIVersionAgents:  "2099-02-02",
		Pacing:            quickPacing(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.DeleteSecret(ctx, orgActions, "X"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSecret(ctx, orgAgents, "X"); err != nil {
		t.Fatal(err)
	}
	hits := f.Hits()
	for i, want := range []string{"2099-01-01", "2099-02-02"} {
		h := hits[i]
		if got := h.Header.Get("X-GitHub-Api-Version"); got != want {
			t.Errorf("request %d: version %q, want %q", i, got, want)
		}
		if got := h.Header.Get("User-Agent"); got != "broker-test/1.0" {
			t.Errorf("request %d: User-Agent %q", i, got)
		}
		if _, ok := h.Header["Authorization"]; ok {
			t.Errorf("request %d: Authorization sent without a token", i)
		}
	}
}

func TestNew(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.base.String(); got != "https://api.github.com" {
		t.Errorf("default base URL %q", got)
	}
	if c.hc.Timeout != 30*time.Second {
		t.Errorf("default timeout %v", c.hc.Timeout)
	}
	if _, ok := c.hc.Transport.(*otelhttp.Transport); !ok {
		t.Errorf("default transport is %T, want *otelhttp.Transport", c.hc.Transport)
	}
	if c.userAgent != "secretbroker" || c.vActions != "2022-11-28" || c.vAgents != "2026-03-10" {
		t.Errorf("defaults: %q %q %q", c.userAgent, c.vActions, c.vAgents)
	}
	// The Actions version follows the GitHub the base URL names, as its
	// reference gives it; one named in Config is kept.
	for _, tt := range []struct {
		base, version, want string
		legacy              bool
	}{
		{"https://api.github.com", "", "2022-11-28", false},
		{"https://ghe.example/api/v3", "", "2026-03-10", false},
		{"https://ghe.example/api/v3/", "", "2026-03-10", false},
		{"https://ghe.example/api/v3", "", "2022-11-28", true},
		{"https://ghe.example/api/v3", "2022-11-28", "2022-11-28", false},
		{"https://api.github.com", "2026-03-10", "2026-03-10", false},
		{"http://127.0.0.1:8080", "", "2022-11-28", false},
	} {
		c, err := New(Config{BaseURL: tt.base, APIVersionActions: tt.version, LegacyRoutes: tt.legacy})
		if err != nil {
			t.Fatal(err)
		}
		if c.vActions != tt.want || c.vAgents != "2026-03-10" {
			t.Errorf("%s (version %q, legacy %v): actions %q, agents %q; want %q, 2026-03-10", tt.base, tt.version, tt.legacy, c.vActions, c.vAgents, tt.want)
		}
	}
	own := &http.Client{}
	if c, _ := New(Config{HTTPClient: own}); c.hc != own {
		t.Error("Config.HTTPClient not used")
	}

	for _, bad := range []string{
		"api.github.com",
		"/api/v3",
		"ftp://github.example/api/v3",
		"https://",
		"https://user:pass@github.example/api/v3",
		"https://ghp_TOKENasUSER@github.example/api/v3",
		"ftp://ghp_TOKENasUSER@github.example/api/v3",
		"https://ghp_TOKENasUSER@github.example/%zz",
		"https://github.example/api/v3?x=1",
		"https://github.example/api/v3#frag",
		"https://github.example/%zz",
		"mailto:octocat@github.com",
	} {
		if _, err := New(Config{BaseURL: bad}); err == nil {
			t.Errorf("New(%q) accepted it", bad)
		} else if strings.Contains(err.Error(), "pass") || strings.Contains(err.Error(), "TOKEN") {
			t.Errorf("New(%q): error shows the credentials: %v", bad, err)
		}
	}
	for _, good := range []string{"http://127.0.0.1:8080", "https://ghe.example/api/v3/", "https://ghe.example/api/v3//"} {
		if _, err := New(Config{BaseURL: good}); err != nil {
			t.Errorf("New(%q): %v", good, err)
		}
	}
}

func TestInvalidArguments(t *testing.T) {
	f := newFake(t, fixed(reply{Status: 204}))
	c := newClient(t, Config{BaseURL: f.URL})
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"no app":      func() error { _, err := c.GetPublicKey(ctx, Scope{Org: "acme"}); return err },
		"unknown app": func() error { _, err := c.GetPublicKey(ctx, Scope{App: "pages", Org: "acme"}); return err },
		"empty scope": func() error { _, err := c.GetPublicKey(ctx, Scope{App: Actions}); return err },
		"org and repo": func() error {
			_, err := c.GetPublicKey(ctx, Scope{App: Actions, Org: "a", Owner: "b", Repo: "c"})
			return err
		},
		"agents environment": func() error {
			_, err := c.GetPublicKey(ctx, Scope{App: Agents, Owner: "a", Repo: "b", Environment: "e"})
			return err
		},
		"dot-dot repo": func() error {
			_, err := c.ListSecrets(ctx, Scope{App: Actions, Owner: "a", Repo: ".."}, Page{})
			return err
		},
		"empty secret name":   func() error { _, err := c.GetSecret(ctx, orgActions, ""); return err },
		"dot secret name":     func() error { return c.DeleteSecret(ctx, orgActions, ".") },
		"negative page":       func() error { _, err := c.ListSecrets(ctx, orgActions, Page{Page: -1}); return err },
		"selected on repo":    func() error { return c.AddSelectedRepository(ctx, repActions, "X", 1) },
		"set on environment":  func() error { return c.SetSelectedRepositories(ctx, envActions, "X", nil) },
		"list selected repo":  func() error { _, err := c.ListSelectedRepositories(ctx, repAgents, "X", Page{}); return err },
		"zero repository id":  func() error { return c.RemoveSelectedRepository(ctx, orgActions, "X", 0) },
		"org-secrets on org":  func() error { _, err := c.ListRepositoryOrganizationSecrets(ctx, orgActions, Page{}); return err },
		"org-secrets on env":  func() error { _, err := c.ListRepositoryOrganizationSecrets(ctx, envActions, Page{}); return err },
		"repository no owner": func() error { _, err := c.GetRepository(ctx, "", "api"); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		} else if errors.As(err, new(*Error)) {
			t.Errorf("%s: %v is an *Error, want a local error", name, err)
		}
	}
	if n := len(f.Hits()); n != 0 {
		t.Errorf("%d requests sent for invalid arguments", n)
	}
}

// legacyFake answers the legacy routes for repository acme/api (id 4242)
// and counts the id lookups.
func legacyFake(t *testing.T) (*fakeGitHub, *atomic.Int32) {
	var lookups atomic.Int32
	return newFake(t, legacyAnswers(&lookups, 0)), &lookups
}

// repoETag is the ETag legacyAnswers gives acme/api's repository.
const repoETag = `W/"r4242"`

// legacyAnswers answers the legacy routes for repository acme/api (id
// 4242), counting the id lookups, each of which takes lookupDelay. The
// repository's answer carries repoETag; a lookup with If-None-Match
// repoETag is answered 304. Owner and repository names are
// case-insensitive, as on GitHub.
func legacyAnswers(lookups *atomic.Int32, lookupDelay time.Duration) func(r *http.Request) reply {
	return func(r *http.Request) reply {
		p := r.URL.EscapedPath()
		switch {
		case strings.EqualFold(p, "/api/v3/repos/acme/api"):
			lookups.Add(1)
			if lookupDelay > 0 {
				time.Sleep(lookupDelay) // fake time: the caller runs in a synctest bubble
			}
			if r.Header.Get("If-None-Match") == repoETag {
				return reply{Status: http.StatusNotModified, Header: map[string]string{"ETag": repoETag}}
			}
			return reply{Body: `{"id":4242,"name":"api","full_name":"acme/api"}`, Header: map[string]string{"ETag": repoETag}}
		case strings.HasPrefix(p, "/api/v3/repositories/4242/environments/prod%2Feu/secrets"):
			switch {
			case strings.HasSuffix(p, "/public-key"):
				return reply{Body: `{"key_id":"k1","key":"a2V5"}`}
			case strings.HasSuffix(p, "/secrets"):
				return reply{Body: secretListJSON}
			case r.Method == http.MethodPut:
				return reply{Status: 201}
			case r.Method == http.MethodDelete:
				return reply{Status: 204}
			}
			return reply{Body: secretJSON}
		}
		return reply{Status: 404, Body: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`}
	}
}

// checkLookup checks that h is the lookup of acme/api's id (in any case),
// conditional on etag ("" for none).
func checkLookup(t *testing.T, h hit, etag string) {
	t.Helper()
	if h.Method != http.MethodGet || !strings.EqualFold(h.EscapedPath, "/api/v3/repos/acme/api") {
		t.Errorf("%s %s, want GET /api/v3/repos/acme/api", h.Method, h.EscapedPath)
	}
	if got := h.Header.Get("If-None-Match"); got != etag {
		t.Errorf("lookup with If-None-Match %q, want %q", got, etag)
	}
}

// Every call for a legacy environment scope first asks GitHub for the
// repository's id: outright the first time, then conditionally on the
// ETag it sent, answered 304 while the repository is the same.
func TestLegacyRoutes(t *testing.T) {
	f, lookups := legacyFake(t)
	c := newClient(t, Config{BaseURL: f.URL + "/api/v3", LegacyRoutes: true})
	ctx := t.Context()

	calls := 0
	for _, tc := range scopeCases(envActions, "/repositories/4242/environments/prod%2Feu", "2022-11-28") {
		if strings.Contains(tc.name, "numeric") {
			continue
		}
		etag := repoETag // every lookup after the first is conditional
		if calls == 0 {
			etag = ""
		}
		calls++
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.Hits())
			if _, err := tc.invoke(ctx, c); err != nil {
				t.Fatal(err)
			}
			hits := f.Hits()[before:]
			if len(hits) != 2 {
				t.Fatalf("%d requests, want 2: the id lookup, then the call", len(hits))
			}
			checkLookup(t, hits[0], etag)
			checkRequest(t, hits[1], methodCase{method: tc.method, path: tc.path, query: tc.query, version: tc.version, body: tc.body}, "/api/v3")
		})
	}
	// Owner and repository names are case-insensitive: the same cache
	// entry, revalidated under the caller's spelling.
	upper := envActions
	upper.Owner, upper.Repo = "ACME", "Api"
	before := len(f.Hits())
	if _, err := c.GetPublicKey(ctx, upper); err != nil {
		t.Errorf("upper-case owner and repo: %v", err)
	}
	if hits := f.Hits()[before:]; len(hits) != 2 {
		t.Errorf("upper-case owner and repo: %d requests, want the conditional lookup and the call", len(hits))
	} else {
		checkLookup(t, hits[0], repoETag)
		if hits[0].EscapedPath != "/api/v3/repos/ACME/Api" {
			t.Errorf("lookup of %s, want the caller's spelling /api/v3/repos/ACME/Api", hits[0].EscapedPath)
		}
	}
	calls++
	if n := lookups.Load(); n != int32(calls) {
		t.Errorf("%d repository lookups for %d calls, want one per call", n, calls)
	}

	// Other Actions scopes keep their routes under LegacyRoutes; the older
	// release's reference has no Agents secrets and no route listing a
	// repository's organization secrets: refused, nothing sent.
	before = len(f.Hits())
	if _, err := c.GetPublicKey(ctx, repAgents); !isNotOffered(err) {
		t.Errorf("Agents key under legacy routes: %v, want a *NotOfferedError", err)
	}
	if _, err := c.ListRepositoryOrganizationSecrets(ctx, repActions, Page{}); !isNotOffered(err) {
		t.Errorf("repository organization secrets under legacy routes: %v, want a *NotOfferedError", err)
	}
	if n := len(f.Hits()) - before; n != 0 {
		t.Errorf("%d requests sent for what the older release has not, want 0", n)
	}
	for _, s := range []Scope{orgActions, repActions} {
		before := len(f.Hits())
		_, _ = c.GetPublicKey(ctx, s)
		if got, want := f.Hits()[before].EscapedPath, "/api/v3/"+s.Path()+"/secrets/public-key"; got != want {
			t.Errorf("%s under legacy routes: %s, want %s", s, got, want)
		}
	}
	if n := lookups.Load(); n != int32(calls) {
		t.Errorf("%d repository lookups after non-environment calls, want %d (none for them)", n, calls)
	}
}

// 64 concurrent calls for one environment, the first arriving while the
// repository id lookup takes a second, make one lookup; every call goes
// once the lookup is done.
func TestLegacyRoutesConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lookups atomic.Int32
		answers := legacyAnswers(&lookups, time.Second)
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			rep := answers(r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(cmp.Or(rep.Status, http.StatusOK))
			_, _ = io.WriteString(w, rep.Body)
		})
		c := memClientWith(t, s, Config{BaseURL: "https://github.example/api/v3", Pacing: quickPacing(), LegacyRoutes: true})
		ctx := t.Context()
		t0 := time.Now()
		errs := runAll(64, envCallMix(ctx, c))
		noErrors(t, errs)
		if n := lookups.Load(); n != 1 {
			t.Errorf("%d repository lookups for 64 concurrent calls, want 1", n)
		}
		arr := s.Arrivals()
		if len(arr) != 65 || arr[0].Path != "/api/v3/repos/acme/api" {
			t.Fatalf("%d requests, the first %s: want the lookup and 64 calls", len(arr), arr[0].Path)
		}
		for _, a := range arr[1:] {
			if got := a.At.Sub(t0); got != time.Second {
				t.Errorf("%s %s went %v after the start, want when the lookup ended, 1s", a.Method, a.Path, got)
			}
		}
	})
}

// A failed lookup caches nothing; a 404 for a missing secret keeps the
// cached id (the next lookup is conditional on its ETag), a 404 for the
// environment forgets it (the next lookup is not).
func TestLegacyLookupFailure(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	var (
		mu      sync.Mutex
		lookups []string // each lookup's If-None-Match
	)
	f := newFake(t, func(r *http.Request) reply {
		if r.URL.Path == "/repos/acme/api" {
			mu.Lock()
			lookups = append(lookups, r.Header.Get("If-None-Match"))
			mu.Unlock()
			switch {
			case fail.Load():
				return reply{Status: 404, Body: `{"message":"Not Found"}`}
			case r.Header.Get("If-None-Match") == `"e7"`:
				return reply{Status: 304, Header: map[string]string{"ETag": `"e7"`}}
			}
			return reply{Body: `{"id":7}`, Header: map[string]string{"ETag": `"e7"`}}
		}
		if r.URL.EscapedPath() == "/repositories/7/environments/prod%2Feu/secrets/public-key" {
			return reply{Body: `{"key_id":"k","key":"a2V5"}`}
		}
		return reply{Status: 404, Body: `{"message":"Not Found"}`}
	})
	c := newClient(t, Config{BaseURL: f.URL, LegacyRoutes: true})
	ctx := t.Context()
	wantLookups := func(what string, want ...string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprintf("%q", lookups) != fmt.Sprintf("%q", want) {
			t.Errorf("%s: lookups with If-None-Match %q, want %q", what, lookups, want)
		}
		lookups = nil
	}

	_, err := c.GetPublicKey(ctx, envActions)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 404 || e.Route != "/repos/{owner}/{repo}" {
		t.Fatalf("lookup failure: %v, want a 404 *Error for /repos/{owner}/{repo}", err)
	}
	wantLookups("a failed lookup", "")
	// A failed lookup is not cached.
	fail.Store(false)
	for range 2 {
		if _, err := c.GetPublicKey(ctx, envActions); err != nil {
			t.Fatal(err)
		}
	}
	wantLookups("after a failed lookup", "", `"e7"`)
	// A missing secret does not drop the cached id ...
	if _, err := c.GetSecret(ctx, envActions, "NOPE"); err == nil {
		t.Fatal("GetSecret of a missing secret: no error")
	}
	if _, err := c.GetPublicKey(ctx, envActions); err != nil {
		t.Fatal(err)
	}
	wantLookups("after a missing secret", `"e7"`, `"e7"`)
	// ... but a 404 for the environment's secrets does: the repository
	// may be new under the old name.
	if _, err := c.ListSecrets(ctx, envActions, Page{}); err == nil {
		t.Fatal("ListSecrets: no error")
	}
	if _, err := c.GetPublicKey(ctx, envActions); err != nil {
		t.Fatal(err)
	}
	wantLookups("after a 404 list", `"e7"`, "")
}

func TestLegacyLookupWaiterCancelled(t *testing.T) {
	release := make(chan struct{})
	var lookups atomic.Int32
	f := newFake(t, func(r *http.Request) reply {
		if r.URL.Path == "/repos/acme/api" {
			lookups.Add(1)
			<-release
			return reply{Body: `{"id":9}`}
		}
		return reply{Body: `{"key_id":"k","key":"a2V5"}`}
	})
	defer close(release)
	c := newClient(t, Config{BaseURL: f.URL, LegacyRoutes: true})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.GetPublicKey(ctx, envActions)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestPathEscaping(t *testing.T) {
	f := newFake(t, fixed(reply{Status: 204}))
	c := newClient(t, Config{BaseURL: f.URL + "/api%2Fv3"})
	ctx := t.Context()
	s := Scope{App: Actions, Owner: "my org", Repo: "a%b", Environment: "prod/eu%2F?#"}
	if err := c.DeleteSecret(ctx, s, "S/1"); err != nil {
		t.Fatal(err)
	}
	h := f.Hits()[0]
	want := "/api%2Fv3/repos/my%20org/a%25b/environments/prod%2Feu%252F%3F%23/secrets/S%2F1"
	if h.EscapedPath != want || h.RequestURI != want {
		t.Errorf("escaped path %s, request URI %s\nwant %s", h.EscapedPath, h.RequestURI, want)
	}
}

func TestTransportErrors(t *testing.T) {
	f := newFake(t, fixed(reply{Status: 204}))
	// One attempt: a retry could reach another test's server on the
	// closed server's port.
	c := newClient(t, Config{BaseURL: f.URL, Pacing: &Pacing{MaxAttempts: 1}})
	f.Close()
	err := c.DeleteSecret(t.Context(), orgActions, "S")
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want a wrapped *url.Error", err)
	}
	if !strings.Contains(err.Error(), "DELETE /orgs/{org}/{app}/secrets/{secret_name}") {
		t.Errorf("err = %v, want the route template", err)
	}
	if errors.As(err, new(*Error)) {
		t.Errorf("transport error is an *Error")
	}

	f2 := newFake(t, fixed(reply{Status: 204}))
	c2 := newClient(t, Config{BaseURL: f2.URL})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c2.GetPublicKey(ctx, orgActions); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v, want context.Canceled", err)
	}
}

func TestResponseDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"not JSON", "<html>"},
		{"too large", `{"key_id":"k","key":"` + strings.Repeat("a", 1<<20) + `"}`},
		{"wrong type", `{"key_id":{"x":1},"key":"a"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, fixed(reply{Body: tc.body}))
			c := newClient(t, Config{BaseURL: f.URL})
			_, err := c.GetPublicKey(t.Context(), orgActions)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), "GET /orgs/{org}/{app}/secrets/public-key") {
				t.Errorf("err = %v, want the route template", err)
			}
		})
	}
}

// A page holding more items than per_page asked for is not GitHub's
// answer: it is an error, so that the callers that read every page of a
// list hold at most per_page items a page, not as many as a MiB holds.
func TestPageOverPerPage(t *testing.T) {
	items := func(n int, item string) string {
		return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
	}
	secrets := func(n int) string {
		return `{"total_count":100000,"secrets":[` + items(n, `{"name":"S"}`) + `]}`
	}
	repos := func(n int) string {
		return `{"total_count":100000,"repositories":[` + items(n, `{"id":1,"name":"r"}`) + `]}`
	}
	list := func(ctx context.Context, c *Client, p Page) (int, error) {
		l, err := c.ListSecrets(ctx, orgActions, p)
		return len(l.Secrets), err
	}
	orgList := func(ctx context.Context, c *Client, p Page) (int, error) {
		l, err := c.ListRepositoryOrganizationSecrets(ctx, repActions, p)
		return len(l.Secrets), err
	}
	selected := func(ctx context.Context, c *Client, p Page) (int, error) {
		l, err := c.ListSelectedRepositories(ctx, orgActions, "S", p)
		return len(l.Repositories), err
	}
	for _, tc := range []struct {
		name   string
		body   string
		call   func(context.Context, *Client, Page) (int, error)
		page   Page
		wantOK bool
	}{
		{"100 of per_page 100", secrets(100), list, Page{PerPage: 100}, true},
		{"101 of per_page 100", secrets(101), list, Page{PerPage: 100}, false},
		{"5000 of per_page 100", secrets(5000), list, Page{PerPage: 100}, false},
		{"30 of the default", secrets(30), list, Page{}, true},
		{"31 of the default", secrets(31), list, Page{}, false},
		{"101 of per_page 500, capped at 100", secrets(101), list, Page{PerPage: 500}, false},
		{"11 of per_page 10, organization secrets", secrets(11), orgList, Page{PerPage: 10}, false},
		{"101 repositories of per_page 100", repos(101), selected, Page{PerPage: 100}, false},
		{"100 repositories of per_page 100", repos(100), selected, Page{PerPage: 100}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, fixed(reply{Body: tc.body}))
			c := newClient(t, Config{BaseURL: f.URL})
			n, err := tc.call(t.Context(), c, tc.page)
			if tc.wantOK {
				if err != nil || n == 0 {
					t.Fatalf("%d items, err %v; want the page", n, err)
				}
				return
			}
			if err == nil || n != 0 || !strings.Contains(err.Error(), "items for a page of at most") {
				t.Fatalf("%d items, err %v; want an error and no items", n, err)
			}
		})
	}
}

func TestOversizedErrorBody(t *testing.T) {
	f := newFake(t, fixed(reply{Status: 500, Body: `{"message":"` + strings.Repeat("x", 2<<20) + `"}`}))
	c := newClient(t, Config{BaseURL: f.URL})
	_, err := c.GetSecret(t.Context(), orgActions, "S")
	var e *Error
	if !errors.As(err, &e) || e.Message != "Internal Server Error" {
		t.Fatalf("err = %v, want a 500 *Error with the status text", err)
	}
}

// TestTokenNeverInErrors plants a token, makes GitHub echo it (and the
// sealed value) in every way it can, and checks that no error shows them.
func TestTokenNeverInErrors(t *testing.T) {
	const token = "ghp_PLANTEDplantedPLANTED0123456789abcdef"
	const sealed = "U0VBTEVEc2VhbGVkU0VBTEVE"
	echo := func(r *http.Request) string {
		b, _ := io.ReadAll(r.Body)
		return r.Header.Get("Authorization") + " " + string(b)
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%v|%+v|%#v|%s|%q", err, err, err, err, err)} {
			if strings.Contains(s, token) || strings.Contains(s, sealed) {
				t.Errorf("error shows a secret: %s", s)
			}
		}
		var e *Error
		if errors.As(err, &e) {
			if s := fmt.Sprintf("%#v", *e); strings.Contains(s, token) || strings.Contains(s, sealed) {
				t.Errorf("*Error fields show a secret: %s", s)
			}
		}
	}
	put := func(ctx context.Context, c *Client, s Scope) error {
		_, err := c.PutSecret(ctx, s, "S", PutSecretBody{EncryptedValue: sealed, KeyID: "k"})
		return err
	}

	for _, status := range []int{400, 401, 403, 404, 409, 422, 429, 500, 503} {
		t.Run(fmt.Sprint("echo ", status), func(t *testing.T) {
			f := newFake(t, func(r *http.Request) reply {
				msg, _ := json.Marshal(map[string]string{"message": "you sent " + echo(r)})
				return reply{Status: status, Body: string(msg)}
			})
			c := newClient(t, Config{BaseURL: f.URL, Token: token})
			check(t, put(t.Context(), c, orgActions))
		})
	}
	t.Run("echo in a bad 2xx body", func(t *testing.T) {
		f := newFake(t, func(r *http.Request) reply { return reply{Body: echo(r)} })
		c := newClient(t, Config{BaseURL: f.URL, Token: token})
		_, err := c.GetPublicKey(t.Context(), orgActions)
		check(t, err)
	})
	t.Run("legacy lookup failure", func(t *testing.T) {
		f := newFake(t, func(r *http.Request) reply {
			msg, _ := json.Marshal(map[string]string{"message": echo(r)})
			return reply{Status: 401, Body: string(msg)}
		})
		c := newClient(t, Config{BaseURL: f.URL, Token: token, LegacyRoutes: true})
		check(t, put(t.Context(), c, envActions))
	})
	t.Run("closed server", func(t *testing.T) {
		f := newFake(t, fixed(reply{}))
		c := newClient(t, Config{BaseURL: f.URL, Token: token, Pacing: &Pacing{MaxAttempts: 1}})
		f.Close()
		check(t, put(t.Context(), c, orgActions))
	})
	t.Run("transport that leaks", func(t *testing.T) {
		leaky := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("dump: %v", r.Header)
		})
		c := newClient(t, Config{BaseURL: "http://127.0.0.1:1", Token: token, HTTPClient: &http.Client{Transport: leaky}})
		check(t, put(t.Context(), c, orgActions))
	})
	t.Run("token with a newline", func(t *testing.T) {
		f := newFake(t, fixed(reply{}))
		c := newClient(t, Config{BaseURL: f.URL, Token: token + "\n"})
		check(t, put(t.Context(), c, orgActions))
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFake(t, fixed(reply{}))
		c := newClient(t, Config{BaseURL: f.URL, Token: token})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		check(t, put(ctx, c, orgActions))
	})
	t.Run("client and config printing", func(t *testing.T) {
		cfg := Config{BaseURL: "https://ghe.example/api/v3", Token: token}
		c := newClient(t, cfg)
		for _, s := range []string{fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg), fmt.Sprintf("%v %+v", c, c)} {
			if strings.Contains(s, token) {
				t.Errorf("printing shows the token: %s", s)
			}
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestSpanName(t *testing.T) {
	var got string
	f := newFake(t, fixed(reply{Status: 204}))
	c := newClient(t, Config{BaseURL: f.URL})
	c.hc = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = spanName("ignored", r)
		return http.DefaultTransport.RoundTrip(r)
	})}
	if err := c.DeleteSecret(t.Context(), envActions, "S"); err != nil {
		t.Fatal(err)
	}
	if want := "github DELETE /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"; got != want {
		t.Errorf("span name %q, want %q", got, want)
	}
	r := httptest.NewRequest("GET", "/x", nil)
	if got := spanName("op", r); got != "github GET" {
		t.Errorf("span name without a route %q", got)
	}
}

func TestHasNext(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     Page
		total int
		want  bool
	}{
		{"empty list", Page{}, 0, false},
		{"empty list, page 2", Page{Page: 2, PerPage: 10}, 0, false},
		{"exactly one page", Page{PerPage: 10}, 10, false},
		{"exactly one default page", Page{}, 30, false},
		{"one more than a page", Page{PerPage: 10}, 11, true},
		{"one more than a default page", Page{}, 31, true},
		{"last page, full", Page{Page: 3, PerPage: 10}, 30, false},
		{"last page, partial", Page{Page: 3, PerPage: 10}, 21, false},
		{"before the last page", Page{Page: 2, PerPage: 10}, 21, true},
		{"past the end", Page{Page: 9, PerPage: 10}, 21, false},
		{"per_page capped at 100", Page{PerPage: 500}, 101, true},
		{"per_page capped at 100, one page", Page{PerPage: 500}, 100, false},
		{"huge page number", Page{Page: math.MaxInt, PerPage: 100}, 1000, false},
	} {
		if got := hasNext(tc.p, tc.total); got != tc.want {
			t.Errorf("%s: hasNext(%+v, %d) = %v, want %v", tc.name, tc.p, tc.total, got, tc.want)
		}
	}
}

// isNotOffered reports whether err is a *NotOfferedError.
func isNotOffered(err error) bool {
	_, ok := errors.AsType[*NotOfferedError](err)
	return ok
}

// envCallMix is call i of a mix of the environment scope's calls: a key
// fetch, a list and a PUT in turn.
func envCallMix(ctx context.Context, c *Client) func(i int) error {
	return func(i int) error {
		var err error
		switch i % 3 {
		case 0:
			_, err = c.GetPublicKey(ctx, envActions)
		case 1:
			_, err = c.ListSecrets(ctx, envActions, Page{})
		default:
			_, err = c.PutSecret(ctx, envActions, "S", PutSecretBody{EncryptedValue: "eA==", KeyID: "k1"})
		}
		return err
	}
}
