package seedconformance

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// TestFakePutValueRequired pins which PUTs of a secret the fake takes
// without encrypted_value and key_id: the seeds mark both Required for
// environment secrets (003:1147/1151), Agents secrets (001:215/219,
// 001:852/856) and every scope of GHES 3.21 (000:218/222, 000:835/839),
// but not for github.com's Actions organization and repository secrets
// (003:215/219, 003:830/834). There a PUT without them updates an
// existing secret's other settings (204) and keeps its value. One without
// the other, and a value-less PUT of a secret that does not exist, are
// ambiguous in the seeds: the fake keeps answering them 422.
func TestFakePutValueRequired(t *testing.T) {
	for _, c := range []struct {
		name, prefix, path, body string
		create                   bool // create the secret first, with a value
		want                     int
	}{
		{"github.com repository, existing", "", "/repos/octo-org/Hello-World/actions/secrets/S", `{}`, true, http.StatusNoContent},
		{"github.com organization, existing", "", "/orgs/octo-org/actions/secrets/S", `{"visibility":"private"}`, true, http.StatusNoContent},
		{"github.com repository, new", "", "/repos/octo-org/Hello-World/actions/secrets/S", `{}`, false, http.StatusUnprocessableEntity},
		{"github.com repository, key_id only", "", "/repos/octo-org/Hello-World/actions/secrets/S", `{"key_id":"100"}`, true, http.StatusUnprocessableEntity},
		{"github.com environment", "", "/repos/octo-org/Hello-World/environments/prod/secrets/S", `{}`, true, http.StatusUnprocessableEntity},
		{"github.com agents repository", "", "/repos/octo-org/Hello-World/agents/secrets/S", `{}`, true, http.StatusUnprocessableEntity},
		{"github.com agents organization", "", "/orgs/octo-org/agents/secrets/S", `{"visibility":"all"}`, true, http.StatusUnprocessableEntity},
		{"GHES repository", "/api/v3", "/repos/octo-org/Hello-World/actions/secrets/S", `{}`, true, http.StatusUnprocessableEntity},
		{"GHES organization", "/api/v3", "/orgs/octo-org/actions/secrets/S", `{"visibility":"all"}`, true, http.StatusUnprocessableEntity},
	} {
		t.Run(c.name, func(t *testing.T) {
			gh := &github{t: t, prefix: c.prefix, token: token, scopes: map[string]*scope{}}
			srv := httptest.NewServer(gh)
			defer srv.Close()
			send := func(body string) int {
				t.Helper()
				req, err := http.NewRequest(http.MethodPut, srv.URL+c.prefix+c.path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			key, _ := scopeKeyOfPath(c.prefix, http.MethodPut, c.prefix+c.path)
			if c.create {
				gh.mu.Lock()
				sc := gh.scopeOf(paramsOf(t, c.prefix, c.path))
				gh.mu.Unlock()
				sealed, err := box.SealAnonymous(nil, []byte("kept"), sc.pub, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				vis := ""
				if sc.org {
					vis = `,"visibility":"all"`
				}
				if got := send(`{"encrypted_value":"` + base64.StdEncoding.EncodeToString(sealed) + `","key_id":"` + sc.keyID + `"` + vis + `}`); got != http.StatusCreated {
					t.Fatalf("creating: %d, want 201", got)
				}
			}
			if got := send(c.body); got != c.want {
				t.Fatalf("PUT %s %s: %d, want %d", c.path, c.body, got, c.want)
			}
			if s, ok := gh.secret(key, "S"); c.create && (!ok || s.value != "kept") {
				t.Errorf("after the PUT the secret is %+v (found %v), want its value kept", s, ok)
			}
		})
	}
}

// paramsOf matches a path (below prefix) against the fake's routes.
func paramsOf(t *testing.T, prefix, path string) params {
	t.Helper()
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, rt := range (&github{}).routes() {
		if p, ok := match(rt.pattern, segs); ok && rt.method == http.MethodPut {
			if _, ok := seedScopeKey(prefix, p); ok {
				return p
			}
		}
	}
	t.Fatalf("no route for %s", path)
	return nil
}
