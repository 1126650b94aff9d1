package seedconformance

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream"
)

// Planted values: no log line or error may hold them.
const (
	token   = "ghp_PLANTEDseedtoken0123456789abcdefghijk"
	planted = "PLANTED-seed-plaintext-Quokka-2718"
)

// transport serves the fake in memory, in the caller's goroutine and so in
// its synctest bubble. The request goes through its wire form (Write, then
// ReadRequest) so the fake sees what a server would: the request line's
// escaping, the headers, the body. Unlike a net/http server it adds no
// Date header (the fake adds its own unless noDate).
//
// It holds the fake to the package's premise: an answer carries no header
// but Content-Type and Date (no ETag, x-ratelimit-*, Link, Retry-After).
type transport struct {
	t    *testing.T
	fake http.Handler
}

func (tr transport) RoundTrip(r *http.Request) (*http.Response, error) {
	var wire bytes.Buffer
	if err := r.Write(&wire); err != nil {
		return nil, err
	}
	served, err := http.ReadRequest(bufio.NewReader(&wire))
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	tr.fake.ServeHTTP(rec, served)
	res := rec.Result()
	for h := range res.Header {
		if h != "Content-Type" && h != "Date" {
			tr.t.Errorf("the seeds-only fake answered with a %s header", h)
		}
	}
	res.Request = r
	return res, nil
}

// lockedBuffer collects log lines from concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// setup is how a test's GitHub and client differ from github.com's.
type setup struct {
	ghes   bool // served under /api/v3, as GHES 3.21
	legacy bool // the client's LegacyRoutes (environments by repository id)
	noDate bool // the fake answers without a Date header
}

type env struct {
	gh   *github
	srv  *service.Server
	logs *lockedBuffer
}

// inBubble fails t unless it runs inside a synctest bubble: an env's
// sleeps (GitHub's one-second updated_at, for one) must be fake time.
func inBubble(t *testing.T) {
	t.Helper()
	defer func() {
		if recover() != nil {
			t.Fatal("build the env inside synctest.Test")
		}
	}()
	synctest.Wait() // panics outside a bubble
}

// newEnv builds, inside t's synctest bubble, the service on an upstream
// client whose HTTP client reaches a new fake through transport. At
// cleanup it fails t if a planted value reached the logs.
func newEnv(t *testing.T, o setup) *env {
	t.Helper()
	inBubble(t)
	gh := &github{t: t, noDate: o.noDate, token: token, scopes: map[string]*scope{}}
	if o.ghes {
		gh.prefix = "/api/v3"
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := upstream.New(upstream.Config{
		BaseURL:      "https://github.example" + gh.prefix,
		Token:        upstream.Token(token),
		LegacyRoutes: o.legacy,
		HTTPClient:   &http.Client{Transport: transport{t: t, fake: gh}},
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range []string{token, planted} {
			if strings.Contains(logs.String(), p) {
				t.Errorf("a planted value reached the logs:\n%s", logs.String())
			}
		}
	})
	return &env{gh: gh, srv: service.New(client, service.Options{Logger: logger}), logs: logs}
}

// run runs f in a synctest bubble with a new env.
func run(t *testing.T, o setup, f func(t *testing.T, e *env)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) { f(t, newEnv(t, o)) })
}

func putReq(name, value, visibility string, ids ...int64) *secretbrokerv1.PutSecretRequest {
	return &secretbrokerv1.PutSecretRequest{Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value},
		Visibility: visibility, SelectedRepositoryIds: ids}
}

// put calls PutSecret and fails t on an error.
func (e *env) put(t *testing.T, name, value, visibility string, ids ...int64) *secretbrokerv1.PutSecretResponse {
	t.Helper()
	r, err := e.srv.PutSecret(context.Background(), putReq(name, value, visibility, ids...))
	if err != nil {
		t.Fatalf("PutSecret %s: %v", name, err)
	}
	return r
}

// writes returns the PUT and DELETE requests among rs.
func writes(rs []request) []request {
	var out []request
	for _, r := range rs {
		if r.method != http.MethodGet {
			out = append(out, r)
		}
	}
	return out
}

// wantCode fails t unless err has the code, and checks err holds no
// planted value.
func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code = %v (%v), want %v", got, err, code)
	}
	noLeak(t, err)
}

// noLeak fails t if err's message holds a planted value.
func noLeak(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, p := range []string{token, planted} {
		if strings.Contains(err.Error(), p) {
			t.Errorf("a planted value is in the error %q", err)
		}
	}
}
