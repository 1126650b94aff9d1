package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// keptExporter is an in-memory span exporter that keeps its spans when the
// broker shuts it down (tracetest's resets on Shutdown), so that a test
// reads them after run has flushed everything.
type keptExporter struct {
	*tracetest.InMemoryExporter
}

func newKeptExporter() keptExporter {
	return keptExporter{tracetest.NewInMemoryExporter()}
}

func (keptExporter) Shutdown(context.Context) error { return nil }

// syncWriter serializes writes to a buffer, for a logger shared by
// goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// githubForTraces is the emulator with github.com's rate limits (so that
// its answers carry the rate-limit headers and a request id) and a known
// token, on loopback, logging its request lines to logs.
func githubForTraces(t *testing.T, token string, logs io.Writer) (*emulator.Server, emulator.Demo, string) {
	t.Helper()
	emu := emulator.New(emulator.Options{
		Token:  token,
		Limits: emulator.GitHubLimits(),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	demo := emu.SeedDemo()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	return emu, demo, hs.URL
}

// tokenFile writes token to a file for --upstream-token-file.
func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// TestTraceOfOneJSONCall is the "Done when" trace: a JSON call with a
// traceparent header makes one trace, under the caller's span, through the
// gateway's server span, the gRPC server span, the service's spans (the
// key cache lookup, the sealing), the pacer's wait (with its reason) and
// the upstream attempt (with its resend count, GitHub's request id and
// the rate limit), and GitHub receives the trace context.
func TestTraceOfOneJSONCall(t *testing.T) {
	const (
		token    = "ghp_PLANTEDtraceTOKEN0123456789abcdefghij"
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
		putRoute = "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
	)
	var ghLogs syncWriter
	_, _, url := githubForTraces(t, token, &ghLogs)
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + url, "--upstream-token-file=" + tokenFile(t, token),
		// Writes 1 s apart: the traced write, sent right after another,
		// waits for the write slot.
		"--upstream-write-interval=1s",
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	exp := newKeptExporter()
	cfg.spanExporter = exp
	b := startBroker(t, cfg)

	// An untraced write to another scope first, so that the traced one
	// waits for the spacing and still misses the key cache.
	if code, m := b.do(t, http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/FIRST", `{"value":"first-value"}`); code != http.StatusCreated {
		t.Fatalf("first PUT = %d %v", code, m)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+b.httpAddr+"/v1/repos/octo-org/hello-world/environments/staging/secrets/TRACED",
		strings.NewReader(`{"value":"traced-value"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("traced PUT = %d, want 201", resp.StatusCode)
	}
	b.stop(t, 10*time.Second) // flushes the spans

	var spans []sdktrace.ReadOnlySpan
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		if s.SpanContext().TraceID().String() == traceID {
			spans = append(spans, s)
			byID[s.SpanContext().SpanID()] = s
		}
	}
	if len(spans) == 0 {
		t.Fatalf("no span in trace %s", traceID)
	}
	// under reports whether s descends from the span named ancestor.
	under := func(s sdktrace.ReadOnlySpan, ancestor sdktrace.ReadOnlySpan) bool {
		for p := s.Parent().SpanID(); p.IsValid(); {
			if p == ancestor.SpanContext().SpanID() {
				return true
			}
			ps, ok := byID[p]
			if !ok {
				return false
			}
			p = ps.Parent().SpanID()
		}
		return false
	}
	find := func(what string, ok func(s sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range spans {
			if ok(s) {
				return s
			}
		}
		var names []string
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Fatalf("no %s span in the trace; it has %q", what, names)
		return nil
	}

	gateway := find("gateway server", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "HTTP PUT" && s.SpanKind() == trace.SpanKindServer
	})
	if got := gateway.Parent().SpanID().String(); got != parentID || !gateway.Parent().IsRemote() {
		t.Errorf("gateway span's parent %s (remote %t), want the caller's %s", got, gateway.Parent().IsRemote(), parentID)
	}
	server := find("gRPC server", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "secretbroker.v1.SecretService/PutSecret" && s.SpanKind() == trace.SpanKindServer
	})
	if !under(server, gateway) {
		t.Error("the gRPC server span is not under the gateway's")
	}
	lookup := find("key cache lookup", func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "key cache lookup" })
	if a := spanAttrs(lookup); a["secretbroker.key_cache.result"].AsString() != "miss" ||
		a["secretbroker.scope"].AsString() != "repos/octo-org/hello-world/environments/staging" || a["secretbroker.key_id"].AsString() == "" {
		t.Errorf("key cache lookup attributes %v, want result miss, the scope and the key id", a)
	}
	seal := find("seal", func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "seal" })
	wait := find("pacer wait of the PUT", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "github pacer wait" && spanAttrs(s)["http.request.method"].AsString() == http.MethodPut
	})
	if a := spanAttrs(wait); a["secretbroker.pacer.reason"].AsString() != "spacing" || a["secretbroker.pacer.wait_ms"].AsInt64() <= 0 ||
		a["http.route"].AsString() != putRoute {
		t.Errorf("pacer wait attributes %v, want reason spacing, a positive wait_ms and the route template", a)
	}
	attempt := find("upstream PUT attempt", func(s sdktrace.ReadOnlySpan) bool {
		return s.Name() == "github PUT "+putRoute && s.SpanKind() == trace.SpanKindClient
	})
	a := spanAttrs(attempt)
	if v, ok := a["http.request.resend_count"]; !ok || v.AsInt64() != 0 {
		t.Errorf("attempt's http.request.resend_count = %v (%t), want 0", v.String(), ok)
	}
	if a["github.request_id"].AsString() == "" {
		t.Errorf("attempt has no github.request_id: %v", a)
	}
	if _, ok := a["github.ratelimit.remaining"]; !ok {
		t.Errorf("attempt has no github.ratelimit.remaining: %v", a)
	}
	if a["github.ratelimit.reset"].AsInt64() < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("attempt's github.ratelimit.reset %v is not a Unix time", a["github.ratelimit.reset"].String())
	}
	for _, s := range []sdktrace.ReadOnlySpan{lookup, seal, wait, attempt} {
		if !under(s, server) {
			t.Errorf("span %q is not under the gRPC server span", s.Name())
		}
	}

	// GitHub (the emulator) logs the traceparent it received, of this
	// trace, on its line for the PUT.
	found := false
	for line := range strings.Lines(ghLogs.String()) {
		if strings.Contains(line, `"method":"PUT"`) && strings.Contains(line, `"traceparent":"00-`+traceID+"-") {
			found = true
		}
	}
	if !found {
		t.Errorf("the emulator logged no PUT with a traceparent of trace %s:\n%s", traceID, ghLogs.String())
	}

	// Every line the broker logged inside the call carries the trace and
	// a span id.
	lines := 0
	for line := range strings.Lines(b.logs.String()) {
		if strings.Contains(line, traceID) {
			lines++
			if !strings.Contains(line, `"span_id":"`) {
				t.Errorf("line of the trace without span_id: %s", line)
			}
		}
	}
	if lines == 0 {
		t.Error("no log line carries the trace id")
	}
}
