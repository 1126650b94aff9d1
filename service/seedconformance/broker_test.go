package seedconformance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
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

// transport serves an upstream (the fake or the emulator) in memory, in the
// caller's goroutine and so in its synctest bubble. The request goes
// through its wire form (Write, then ReadRequest) so the upstream sees what
// a server would: the request line's escaping, the headers, the body.
// Unlike a net/http server it adds no Date header.
//
// It holds the upstream to the package's premise: an answer carries no
// header but Content-Type and Date (no ETag, x-ratelimit-*, Link,
// Retry-After), except those the upstream adds on purpose (extra: the
// emulator's, see upstreams).
type transport struct {
	t     *testing.T
	name  string
	extra []string
	gh    http.Handler
	trace *trace
}

// trace is the answers an upstream gave, one "METHOD path status" each;
// a 304 is written as the 200 it stands for (only the emulator sends
// ETag, and so only it is sent conditional requests).
type trace struct {
	mu    sync.Mutex
	lines []string
}

func (tr *trace) add(method, path string, status int) {
	if status == http.StatusNotModified {
		status = http.StatusOK
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.lines = append(tr.lines, fmt.Sprintf("%s %s %d", method, path, status))
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.lines)
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
	tr.gh.ServeHTTP(rec, served)
	res := rec.Result()
	for h := range res.Header {
		if h != "Content-Type" && h != "Date" && !slices.Contains(tr.extra, h) {
			tr.t.Errorf("the %s answered with a %s header", tr.name, h)
		}
	}
	tr.trace.add(r.Method, r.URL.EscapedPath(), res.StatusCode)
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
	noDate bool // GitHub answers without a Date header
	// differs says why the emulator's answers differ from the fake's on
	// purpose; "" when they must be the same (run compares them).
	differs string
}

// hub is a GitHub a test runs against, in memory, with the test hooks the
// tests read it through. Keys name scopes as the fake keys them (repoScope,
// envScope, orgScope).
type hub interface {
	http.Handler
	// secret returns the secret name of the scope key, if any.
	secret(key, name string) (secret, bool)
	// names returns the names of the scope key's secrets, in listing order.
	names(key string) []string
	// scopeKeys returns the keys of the scopes requests have named, sorted.
	scopeKeys() []string
	// changeBehindBack sets an existing secret's value as a person would
	// at GitHub: updated_at moves to now.
	changeBehindBack(key, name, value string)
	// requests returns the requests received since the n-th (0 for all).
	requests(n int) []request
	// mark returns how many requests GitHub has received.
	mark() int
}

// upstreamCase is a GitHub the seedconformance scenarios run against. The
// seeds-only fake is the reference; the embedded emulator (what --dev
// users test against) must answer as it does, but for what it adds on
// purpose: extra are those headers, and emulator cases say where else it
// differs.
type upstreamCase struct {
	name  string
	extra []string // headers it adds on purpose, beyond Content-Type and Date
	new   func(t *testing.T, o setup) hub
}

// The upstreams every scenario runs against.
func upstreams() []upstreamCase {
	return []upstreamCase{
		{name: "fake", new: func(t *testing.T, o setup) hub {
			gh := &github{t: t, noDate: o.noDate, token: token, scopes: map[string]*scope{}}
			if o.ghes {
				gh.prefix = "/api/v3"
			}
			return gh
		}},
		// The emulator adds GitHub's request id to every answer, a weak
		// ETag and Cache-Control to public keys (conditional requests),
		// and Link to pages of a list: GitHub's own headers, which the
		// seeds do not show.
		{name: emulatorName, extra: []string{"X-Github-Request-Id", "Etag", "Cache-Control", "Link"}, new: newEmuHub},
	}
}

type env struct {
	trace  *trace
	up     upstreamCase
	gh     hub
	prefix string // "" (github.com) or "/api/v3" (GHES)
	srv    *service.Server
	logs   *lockedBuffer
}

// emulator reports whether e's GitHub is the emulator.
func (e *env) emulator() bool { return e.up.name == emulatorName }

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
// client whose HTTP client reaches a new up through transport. At
// cleanup it fails t if a planted value reached the logs.
func newEnv(t *testing.T, up upstreamCase, o setup) *env {
	t.Helper()
	inBubble(t)
	prefix := ""
	if o.ghes {
		prefix = "/api/v3"
	}
	gh := up.new(t, o)
	tr := &trace{}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := upstream.New(upstream.Config{
		BaseURL:      "https://github.example" + prefix,
		Token:        upstream.Token(token),
		LegacyRoutes: o.legacy,
		HTTPClient:   &http.Client{Transport: transport{t: t, name: up.name, extra: up.extra, gh: gh, trace: tr}},
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
	return &env{trace: tr, up: up, gh: gh, prefix: prefix, srv: service.New(client, service.Options{Logger: logger}), logs: logs}
}

// run runs f against every upstream, each in a synctest bubble with a new
// env. Unless o.differs, every upstream must then have given the fake's
// answers: the same statuses to the same requests.
func run(t *testing.T, o setup, f func(t *testing.T, e *env)) {
	t.Helper()
	var traces [][]string
	for _, up := range upstreams() {
		t.Run(up.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, up, o)
				f(t, e)
				traces = append(traces, e.trace.get())
			})
		})
	}
	if o.differs != "" || t.Failed() {
		return
	}
	for i, up := range upstreams()[1:] {
		if only, fake := unmatched(traces[i+1], traces[0]); len(only)+len(fake) != 0 {
			t.Errorf("answers of the %s only:\n%s\nof the fake only:\n%s", up.name, strings.Join(only, "\n"), strings.Join(fake, "\n"))
		}
	}
}

// unmatched returns the lines of a that b lacks and those of b that a
// lacks, as multisets: the order of requests may differ (a sync writes in
// no set order).
func unmatched(a, b []string) (onlyA, onlyB []string) {
	n := map[string]int{}
	for _, l := range a {
		n[l]++
	}
	for _, l := range b {
		n[l]--
	}
	for _, l := range a {
		if n[l] > 0 {
			onlyA = append(onlyA, l)
			n[l]--
		}
	}
	for _, l := range b {
		if n[l] < 0 {
			onlyB = append(onlyB, l)
			n[l]++
		}
	}
	return onlyA, onlyB
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
