package seedconformance

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/nacl/box"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const emulatorName = "emulator"

// emuHub is the embedded emulator (upstream/emulator, what --dev serves)
// holding the fake's organization, repositories and the tests'
// environments, with the fake's test hooks: it logs the requests it
// receives, and reads or changes what GitHub holds through the emulator's
// Go hooks or its own REST routes (requests it does not log).
type emuHub struct {
	t      *testing.T
	srv    *emulator.Server
	prefix string
	legacy bool
	noDate bool

	mu  sync.Mutex
	log []request
}

// testEnvironments are the environments the tests use: the emulator
// answers 404 for a scope of an environment that does not exist.
func testEnvironments() []string {
	return append(envNames(), "prod", "Stage")
}

func newEmuHub(t *testing.T, o setup) hub {
	srv := emulator.New(emulator.Options{Token: token, LegacyRoutes: o.legacy})
	// The emulator numbers repositories from 1296269 up: repositories of
	// another organization fill the ids between the seeds' two.
	if id := srv.AddRepo(org, "Hello-World", false); id != helloWorldID {
		t.Fatalf("Hello-World is %d", id)
	}
	for id := int64(helloWorldID + 1); id < otherID; id++ {
		srv.AddRepo("filler-org", fmt.Sprint("filler", id), false)
	}
	if id := srv.AddRepo(org, "other", true); id != otherID {
		t.Fatalf("other is %d", id)
	}
	for _, name := range testEnvironments() {
		srv.AddEnvironment(org, "Hello-World", name)
	}
	h := &emuHub{t: t, srv: srv, legacy: o.legacy, noDate: o.noDate}
	if o.ghes {
		h.prefix = "/api/v3"
	}
	return h
}

// noDateWriter drops the Date header the emulator always sends.
type noDateWriter struct{ http.ResponseWriter }

func (w noDateWriter) WriteHeader(code int) {
	w.Header().Del("Date")
	w.ResponseWriter.WriteHeader(code)
}

func (h *emuHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	wire, err := httputil.DumpRequest(r, true)
	if err != nil {
		h.t.Errorf("emulator: reading the request: %v", err)
	}
	h.mu.Lock()
	h.log = append(h.log, request{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery,
		version: r.Header.Get("X-GitHub-Api-Version"), wire: string(wire)})
	h.mu.Unlock()
	if h.noDate {
		w = noDateWriter{w}
	}
	h.srv.ServeHTTP(w, r)
}

// scopePath is the emulator's scope path (REST path prefix) of the fake's
// scope key: the environment escaped once.
func scopePath(key string) string {
	if before, env, ok := strings.Cut(key, "/environments/"); ok {
		return before + "/environments/" + url.PathEscape(env)
	}
	return key
}

// do sends an unlogged request to the emulator at the scope's path plus
// rest, and decodes a JSON answer into out (when not nil).
func (h *emuHub) do(method, key, rest string, body any, out any) int {
	h.t.Helper()
	var rd bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			h.t.Fatal(err)
		}
		rd.Reset(b)
	}
	r := httptest.NewRequest(method, "https://github.example"+h.prefix+"/"+scopePath(key)+rest, &rd)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("X-GitHub-Api-Version", "2026-03-10")
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, r)
	if out != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			h.t.Fatalf("emulator: %s %s: %v", method, r.URL, err)
		}
	}
	return rec.Code
}

func (h *emuHub) secret(key, name string) (secret, bool) {
	h.t.Helper()
	plain, err := h.srv.Open(scopePath(key), name)
	if err != nil {
		return secret{}, false
	}
	s := secret{name: name, value: string(plain)}
	if strings.HasPrefix(key, "orgs/") {
		var got struct{ Visibility string }
		if code := h.do(http.MethodGet, key, "/secrets/"+name, nil, &got); code != http.StatusOK {
			h.t.Fatalf("emulator: GET %s secret %s: %d", key, name, code)
		}
		s.visibility = got.Visibility
		if s.selected, err = h.srv.SelectedRepositoryIDs(scopePath(key), name); err != nil {
			h.t.Fatal(err)
		}
	}
	return s, true
}

func (h *emuHub) names(key string) []string {
	h.t.Helper()
	var out []string
	for page := 1; ; page++ {
		var got struct {
			TotalCount int `json:"total_count"`
			Secrets    []struct{ Name string }
		}
		if code := h.do(http.MethodGet, key, fmt.Sprintf("/secrets?per_page=100&page=%d", page), nil, &got); code != http.StatusOK {
			return out
		}
		for _, s := range got.Secrets {
			out = append(out, s.Name)
		}
		if len(got.Secrets) == 0 || len(out) >= got.TotalCount {
			return out
		}
	}
}

func (h *emuHub) scopeKeys() []string {
	var keys []string
	for _, r := range h.requests(0) {
		if key, ok := scopeKeyOfPath(h.prefix, r.method, r.path); ok && !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// changeBehindBack PUTs value sealed with the scope's key, keeping an
// organization secret's visibility and selection.
func (h *emuHub) changeBehindBack(key, name, value string) {
	h.t.Helper()
	var pk struct {
		KeyID string `json:"key_id"`
		Key   string
	}
	if code := h.do(http.MethodGet, key, "/secrets/public-key", nil, &pk); code != http.StatusOK {
		h.t.Fatalf("emulator: public key of %s: %d", key, code)
	}
	raw, err := base64.StdEncoding.DecodeString(pk.Key)
	if err != nil || len(raw) != 32 {
		h.t.Fatalf("emulator: public key %q: %v", pk.Key, err)
	}
	sealed, err := box.SealAnonymous(nil, []byte(value), (*[32]byte)(raw), rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	body := map[string]any{"encrypted_value": base64.StdEncoding.EncodeToString(sealed), "key_id": pk.KeyID}
	if s, ok := h.secret(key, name); ok && s.visibility != "" {
		body["visibility"] = s.visibility
		if s.visibility == "selected" {
			body["selected_repository_ids"] = s.selected
		}
	}
	if code := h.do(http.MethodPut, key, "/secrets/"+name, body, nil); code != http.StatusNoContent {
		h.t.Fatalf("emulator: changing %s in %s: %d", name, key, code)
	}
}

func (h *emuHub) requests(n int) []request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log[n:])
}

func (h *emuHub) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.log)
}
