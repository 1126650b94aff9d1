package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/tracelog"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // closed and replaced on every write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return b.buf.Write(p)
}

// waitFor waits until the buffer holds n occurrences of s, woken by each
// write; it gives up after limit, a guard against a hung test only.
func (b *syncBuffer) waitFor(s string, n int, limit time.Duration) bool {
	timeout := time.After(limit)
	for {
		b.mu.Lock()
		if strings.Count(b.buf.String(), s) >= n {
			b.mu.Unlock()
			return true
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		select {
		case <-written:
		case <-timeout:
			return false
		}
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// broker is a running run() for a test.
type broker struct {
	grpcAddr, httpAddr string
	adminAddr          string
	banner             string
	logs               *syncBuffer
	cancel             context.CancelFunc
	done               chan error // receives run's result
	conn               *grpc.ClientConn
	http               *http.Client
}

// startBroker calls run with cfg and waits until it is serving. The
// broker is stopped, and run's result checked, when the test ends unless
// the test stops it itself.
func startBroker(t *testing.T, cfg Config) *broker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &broker{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1), http: &http.Client{Timeout: 30 * time.Second}}
	logger := slog.New(tracelog.NewHandler(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	var banner bytes.Buffer
	ready := make(chan [3]string, 1)
	go func() {
		b.done <- run(ctx, cfg, logger, &banner, func(g, h, a string) { ready <- [3]string{g, h, a} })
	}()
	select {
	case addrs := <-ready:
		b.grpcAddr, b.httpAddr, b.adminAddr = addrs[0], addrs[1], addrs[2]
		b.banner = banner.String() // written before ready was called
	case err := <-b.done:
		cancel()
		t.Fatalf("run returned before it was ready: %v\nlogs:\n%s", err, b.logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("run not ready after 30s")
	}
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	b.conn = conn
	t.Cleanup(func() {
		conn.Close()
		b.stop(t, cfg.ShutdownTimeout+5*time.Second)
		if t.Failed() {
			t.Logf("broker logs:\n%s", b.logs)
		}
	})
	return b
}

// cancelUntilNotServing waits until the service's gRPC health is SERVING
// (it follows /readyz: the credential check may not have passed yet),
// cancels run's context and returns once the health has turned
// NOT_SERVING. It watches the health stream, which reports each change,
// so nothing polls.
func (b *broker) cancelUntilNotServing(t *testing.T) {
	t.Helper()
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel() // an open Watch would hold the graceful stop
	watch, err := healthpb.NewHealthClient(b.conn).Watch(wctx, &healthpb.HealthCheckRequest{Service: "secretbroker.v1.SecretService"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("health before shutdown: %v", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health before shutdown: %v", resp)
		}
	}
	b.cancel()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during shutdown: %v %v, want NOT_SERVING", resp, err)
	}
}

// stop cancels run's context and checks that run returns nil within max.
// Calling it again is harmless.
func (b *broker) stop(t *testing.T, max time.Duration) {
	t.Helper()
	b.cancel()
	if b.done == nil {
		return
	}
	select {
	case err := <-b.done:
		b.done = nil
		if err != nil {
			t.Errorf("run returned %v, want nil", err)
		}
	case <-time.After(max):
		t.Errorf("run did not return within %s of cancellation", max)
	}
}

// do sends a JSON request to the gateway and decodes the JSON answer into
// a map. It returns the status code.
func (b *broker) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+b.httpAddr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if resp.StatusCode == http.StatusNoContent {
		if len(raw) != 0 || resp.Header.Get("Content-Type") != "" {
			t.Fatalf("%s %s: 204 with a body %q or a Content-Type %q", method, path, raw, resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, m
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: status %d, body not a JSON object: %v\n%s", method, path, resp.StatusCode, err, raw)
	}
	return resp.StatusCode, m
}

func devConfig(t *testing.T) Config {
	t.Helper()
	// Writes are paced 10 ms apart rather than 1 s, to keep the tests short.
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-write-interval=10ms"},
		envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRunDev(t *testing.T) {
	b := startBroker(t, devConfig(t))
	ctx := t.Context()

	t.Run("health", func(t *testing.T) {
		hc := healthpb.NewHealthClient(b.conn)
		for _, svc := range []string{"", "secretbroker.v1.SecretService"} {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("Check(%q): %v", svc, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, want SERVING", svc, resp.GetStatus())
			}
		}
		code, m := b.do(t, http.MethodGet, "/healthz", "")
		if code != http.StatusOK || m["status"] != "SERVING" {
			t.Errorf("GET /healthz = %d %v, want 200 SERVING", code, m)
		}
	})

	t.Run("reflection", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.CloseSend()
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		for _, want := range []string{"secretbroker.v1.SecretService", "grpc.health.v1.Health"} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, want %s among them", names, want)
			}
		}
	})

	t.Run("openapi", func(t *testing.T) {
		resp, err := b.http.Get("http://" + b.httpAddr + "/openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("not JSON: %v", err)
		}
		if doc["swagger"] == nil && doc["openapi"] == nil {
			t.Errorf("no swagger/openapi version field: keys %v", slices.Collect(maps.Keys(doc)))
		}
		if paths, _ := doc["paths"].(map[string]any); len(paths) == 0 {
			t.Errorf("no paths")
		}
	})

	t.Run("banner", func(t *testing.T) {
		for _, want := range []string{
			"octo-org", "hello-world", "secret-sauce", "private", "1296269", "prod%2Feu",
			"grpcurl -plaintext " + b.grpcAddr + " list",
			"secretbroker.v1.SecretService/GetPublicKey",
			"secretbroker.v1.SecretService/PutSecret",
			"secretbroker.v1.SecretService/GetSecret",
			"secretbroker.v1.SecretService/ListSecrets",
			"secretbroker.v1.SecretService/DeleteSecret",
			"orgs/octo-org/agents/secrets/",
			`"visibility":"selected","selected_repository_ids":[`,
			"curl -s http://" + b.httpAddr + "/v1/orgs/octo-org/actions/secrets/public-key",
			"curl -s -X PUT http://" + b.httpAddr + "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD",
			"curl -s -X DELETE http://" + b.httpAddr + "/v1/",
			"admin     http://" + b.adminAddr + "   (/healthz, /readyz, /metrics)",
			"No credentials needed",
			"-H 'Content-Type: application/json'",
		} {
			if !strings.Contains(b.banner, want) {
				t.Errorf("banner lacks %q", want)
			}
		}
		if t.Failed() {
			t.Logf("banner:\n%s", b.banner)
		}
	})

	t.Run("gateway", func(t *testing.T) { testGateway(t, b) })

	t.Run("trace context", func(t *testing.T) {
		// A caller's W3C traceparent crosses the gateway and the gRPC
		// connection: the server's access log carries its trace id.
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		req, err := http.NewRequest(http.MethodGet, "http://"+b.httpAddr+"/v1/orgs/octo-org/actions/secrets/TRACED", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		resp, err := b.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		found := false
		for line := range strings.Lines(b.logs.String()) {
			if strings.Contains(line, `"msg":"gRPC call","method":"/secretbroker.v1.SecretService/GetSecret"`) &&
				strings.Contains(line, `"trace_id":"`+traceID+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no GetSecret access log line with trace_id %s", traceID)
		}
	})

	t.Run("grpc", func(t *testing.T) {
		c := secretbrokerv1.NewSecretServiceClient(b.conn)
		name := "repos/octo-org/hello-world/environments/prod%2Feu/secrets/GRPC_SECRET"
		put, err := c.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
			Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "grpc-plaintext-value-42"},
		})
		if err != nil {
			t.Fatalf("PutSecret: %v", err)
		}
		if put.GetName() != name || !put.GetCreated() {
			t.Errorf("PutSecret = %v", put)
		}
		sec, err := c.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
		if err != nil {
			t.Fatalf("GetSecret: %v", err)
		}
		if sec.GetSecretId() != "GRPC_SECRET" {
			t.Errorf("GetSecret = %v", sec)
		}
		_, err = c.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: "orgs/octo-org/actions/secrets/NOPE"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("GetSecret(missing) = %v, want NotFound", err)
		}
	})

	b.stop(t, 10*time.Second)
	logs := b.logs.String()
	for _, secret := range []string{"gw-plaintext-", "grpc-plaintext-value-42"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold a secret value (%q)", secret)
		}
	}
	if !strings.Contains(logs, `"method":"/secretbroker.v1.SecretService/PutSecret"`) {
		t.Errorf("no access log line for PutSecret; gateway calls must pass the interceptors")
	}
}

// testGateway puts and reads secrets through the JSON gateway in every kind
// of scope.
func testGateway(t *testing.T, b *broker) {
	code, key := b.do(t, http.MethodGet, "/v1/orgs/octo-org/actions/secrets/public-key", "")
	if code != http.StatusOK || key["key_id"] == nil || key["key"] == nil {
		t.Fatalf("GET public-key = %d %v, want key_id and key", code, key)
	}

	tests := []struct {
		name     string // resource name, as in the URL
		body     string
		wantName string
		get      map[string]any // expected fields of GetSecret's answer
	}{
		{
			name:     "orgs/octo-org/actions/secrets/DEPLOY_TOKEN",
			body:     `{"value":"gw-plaintext-org","visibility":"selected","selected_repository_ids":[1296270]}`,
			wantName: "orgs/octo-org/actions/secrets/DEPLOY_TOKEN",
			get:      map[string]any{"secret_id": "DEPLOY_TOKEN", "visibility": "selected"},
		},
		{
			name:     "orgs/octo-org/agents/secrets/MODEL_KEY",
			body:     `{"value":"gw-plaintext-org-agents","visibility":"all"}`,
			wantName: "orgs/octo-org/agents/secrets/MODEL_KEY",
			get:      map[string]any{"secret_id": "MODEL_KEY", "visibility": "all"},
		},
		{
			name:     "repos/octo-org/hello-world/actions/secrets/npm_token",
			body:     `{"value":"gw-plaintext-repo"}`,
			wantName: "repos/octo-org/hello-world/actions/secrets/NPM_TOKEN",
			get:      map[string]any{"secret_id": "NPM_TOKEN"},
		},
		{
			name:     "repos/octo-org/hello-world/agents/secrets/MODEL_KEY",
			body:     `{"value":"gw-plaintext-repo-agents"}`,
			wantName: "repos/octo-org/hello-world/agents/secrets/MODEL_KEY",
			get:      map[string]any{"secret_id": "MODEL_KEY"},
		},
		{
			name:     "repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD",
			body:     `{"value":"gw-plaintext-env"}`,
			wantName: "repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD",
			get:      map[string]any{"secret_id": "DB_PASSWORD"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			code, put := b.do(t, http.MethodPut, "/v1/"+tt.name, tt.body)
			if code != http.StatusCreated {
				t.Fatalf("PUT = %d %v", code, put)
			}
			if put["name"] != tt.wantName || put["created"] != true || put["key_id"] == nil {
				t.Errorf("PUT = %v, want name %s, created true, a key_id", put, tt.wantName)
			}
			code, put = b.do(t, http.MethodPut, "/v1/"+tt.name, tt.body)
			if code != http.StatusOK || put["created"] != false {
				t.Errorf("second PUT = %d %v, want 200 and created false", code, put)
			}

			code, got := b.do(t, http.MethodGet, "/v1/"+tt.wantName, "")
			if code != http.StatusOK {
				t.Fatalf("GET = %d %v", code, got)
			}
			if got["name"] != tt.wantName {
				t.Errorf("GET name = %v, want %s", got["name"], tt.wantName)
			}
			for k, v := range tt.get {
				if got[k] != v {
					t.Errorf("GET %s = %v, want %v", k, got[k], v)
				}
			}
			for _, k := range []string{"created_at", "updated_at"} {
				if _, ok := got[k]; !ok {
					t.Errorf("GET lacks snake_case %s: %v", k, got)
				}
			}
			for k := range got {
				if strings.ContainsAny(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
					t.Errorf("GET field %q is not snake_case", k)
				}
			}
			if _, ok := got["value"]; ok {
				t.Errorf("GET returns a value: %v", got)
			}
		})
	}

	t.Run("list environment secrets", func(t *testing.T) {
		code, list := b.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets", "")
		if code != http.StatusOK {
			t.Fatalf("GET list = %d %v", code, list)
		}
		if list["total_count"] == nil {
			t.Errorf("list lacks total_count: %v", list)
		}
		secrets, _ := list["secrets"].([]any)
		var names []string
		for _, s := range secrets {
			m, _ := s.(map[string]any)
			names = append(names, fmt.Sprint(m["name"]))
		}
		if !slices.Contains(names, "repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD") {
			t.Errorf("list names %v, want the DB_PASSWORD secret", names)
		}
	})

	t.Run("escaped slash", func(t *testing.T) {
		code, m := b.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/environments/prod%2Feu/secrets/public-key", "")
		if code != http.StatusOK || m["key_id"] == nil {
			t.Errorf("GET environment public-key = %d %v", code, m)
		}
		code, m = b.do(t, http.MethodPut, "/v1/repos/octo-org/hello-world/environments/prod%2feu/secrets/lower_escape", `{"value":"gw-plaintext-lower"}`)
		if want := "repos/octo-org/hello-world/environments/prod%2Feu/secrets/LOWER_ESCAPE"; code != http.StatusCreated || m["name"] != want {
			t.Errorf("PUT with %%2f = %d %v, want name %s", code, m, want)
		}
		code, m = b.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/environments/prod/eu/secrets/LOWER_ESCAPE", "")
		if code == http.StatusOK {
			t.Errorf("GET with an unescaped slash in the environment = %d %v, want an error", code, m)
		}
		code, m = b.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/environments/staging/secrets", "")
		if code != http.StatusOK {
			t.Errorf("GET staging list = %d %v", code, m)
		}
	})

	t.Run("selected repositories", func(t *testing.T) {
		code, list := b.do(t, http.MethodGet, "/v1/orgs/octo-org/actions/secrets/DEPLOY_TOKEN/repositories", "")
		if code != http.StatusOK {
			t.Fatalf("GET repositories = %d %v", code, list)
		}
		repos, _ := list["repositories"].([]any)
		if len(repos) != 1 {
			t.Fatalf("repositories = %v, want one", list)
		}
		if r, _ := repos[0].(map[string]any); r["id"] != "1296270" || r["full_name"] == nil {
			t.Errorf("repository = %v, want id \"1296270\" (int64 as a string) and full_name", r)
		}
	})

	t.Run("delete", func(t *testing.T) {
		code, m := b.do(t, http.MethodDelete, "/v1/repos/octo-org/hello-world/actions/secrets/NPM_TOKEN", "")
		if code != http.StatusNoContent {
			t.Fatalf("DELETE = %d %v", code, m)
		}
		code, m = b.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/actions/secrets/NPM_TOKEN", "")
		if code != http.StatusNotFound {
			t.Errorf("GET after DELETE = %d %v, want 404", code, m)
		}
	})

	t.Run("unknown field", func(t *testing.T) {
		code, m := b.do(t, http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/X", `{"value":"gw-plaintext-x","bogus":1}`)
		if code != http.StatusBadRequest {
			t.Errorf("PUT with an unknown field = %d %v, want 400", code, m)
		}
	})
}

// fakeGitHub serves one route, an organization's public key, and holds
// each request until release is closed or the request ends; GET
// /rate_limit, the broker's credential check, it answers at once.
type fakeGitHub struct {
	*httptest.Server
	arrived chan struct{} // one send per request
	release chan struct{}
	once    sync.Once
	auth    chan string
}

// unblock lets held and later requests through.
func (f *fakeGitHub) unblock() { f.once.Do(func() { close(f.release) }) }

func newFakeGitHub(t *testing.T) *fakeGitHub {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	f := &fakeGitHub{arrived: make(chan struct{}, 16), release: make(chan struct{}), auth: make(chan string, 16)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/rate_limit" {
			// The broker's credential check at start: answered at once,
			// neither held nor recorded.
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"resources":{"core":{"limit":5000,"used":0,"remaining":5000,"reset":0}},"rate":{"limit":5000,"used":0,"remaining":5000,"reset":0}}`)
			return
		}
		f.auth <- r.Header.Get("Authorization")
		f.arrived <- struct{}{}
		select {
		case <-f.release:
		case <-r.Context().Done():
			return
		}
		if r.URL.Path != "/orgs/acme/actions/secrets/public-key" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"key_id":"568250167242549743","key":%q}`, base64.StdEncoding.EncodeToString(key))
	}))
	t.Cleanup(func() {
		f.unblock()
		f.Close()
	})
	return f
}

func prodConfig(t *testing.T, upstreamURL string, shutdown time.Duration) Config {
	t.Helper()
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--upstream-url=" + upstreamURL, "--shutdown-timeout=" + shutdown.String(), "--log-level=debug",
	}, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestShutdownDrains cancels run while a gateway request waits on GitHub:
// health turns NOT_SERVING, the request completes, run returns nil.
func TestShutdownDrains(t *testing.T) {
	gh := newFakeGitHub(t)
	b := startBroker(t, prodConfig(t, gh.URL, 10*time.Second))

	type result struct {
		code int
		body map[string]any
	}
	res := make(chan result, 1)
	go func() {
		code, m := b.do(t, http.MethodGet, "/v1/orgs/acme/actions/secrets/public-key", "")
		res <- result{code, m}
	}()
	select {
	case <-gh.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached GitHub")
	}
	if got := <-gh.auth; got != "Bearer "+testToken {
		t.Errorf("Authorization sent to GitHub: %d bytes, want the bearer token", len(got))
	}

	b.cancelUntilNotServing(t)
	select {
	case err := <-b.done:
		t.Fatalf("run returned (%v) with a request in flight", err)
	default:
	}

	gh.unblock()
	r := <-res
	if r.code != http.StatusOK || r.body["key_id"] != "568250167242549743" {
		t.Errorf("in-flight request = %d %v, want 200 with the key", r.code, r.body)
	}
	b.stop(t, 5*time.Second)
	if strings.Contains(b.logs.String(), testToken) {
		t.Error("logs hold the GitHub token")
	}
}

// TestShutdownTimeout cancels run while a gRPC call waits on a GitHub that
// never answers: drainMargin before --shutdown-timeout ends, the call is
// told to stop and answers UNAVAILABLE (call again), and run returns
// within the timeout.
func TestShutdownTimeout(t *testing.T) {
	gh := newFakeGitHub(t)
	const timeout = 300 * time.Millisecond
	b := startBroker(t, prodConfig(t, gh.URL, timeout))

	callErr := make(chan error, 1)
	go func() {
		_, err := secretbrokerv1.NewSecretServiceClient(b.conn).GetPublicKey(context.Background(),
			&secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/acme/actions"})
		callErr <- err
	}()
	select {
	case <-gh.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("call never reached GitHub")
	}
	start := time.Now()
	b.stop(t, timeout+3*time.Second)
	if d := time.Since(start); d < timeout-drainMargin(timeout) {
		t.Errorf("run returned after %s, before the drain (%s before the %s timeout), with a call in flight", d, drainMargin(timeout), timeout)
	}
	select {
	case err := <-callErr:
		if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "shutting down") {
			t.Errorf("the drained call answered %v, want UNAVAILABLE: the broker is shutting down", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the drained call never returned")
	}
}

// TestRunListenError checks that a port in use is an error, not a hang.
func TestRunListenError(t *testing.T) {
	b := startBroker(t, devConfig(t))
	cfg := devConfig(t)
	cfg.HTTPAddr = b.httpAddr
	err := run(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP listener") {
		t.Errorf("run on a busy port = %v, want an HTTP listener error", err)
	}
}

func TestGatewayRoutes(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const org = "/v1/orgs/octo-org/agents/secrets/ROUTES"
	steps := []struct {
		method, path, body string
		wantCode           int
		check              func(m map[string]any) bool
	}{
		{http.MethodGet, "/v1/orgs/octo-org/agents/secrets/public-key", "", http.StatusOK,
			func(m map[string]any) bool { return m["key_id"] != nil && m["key"] != nil }},
		{http.MethodGet, "/v1/repos/octo-org/docs/agents/secrets/public-key", "", http.StatusOK,
			func(m map[string]any) bool { return m["key_id"] != nil }},
		{http.MethodPut, org, `{"value":"gw-route-value","visibility":"selected","selected_repository_ids":[1296269]}`, http.StatusCreated,
			func(m map[string]any) bool { return m["created"] == true }},
		{http.MethodPut, org, `{"value":"gw-route-value-2"}`, http.StatusOK,
			func(m map[string]any) bool { return m["created"] == false }},
		{http.MethodPut, org + "/repositories", `{"selected_repository_ids":[1296269,1296270]}`, http.StatusNoContent, nil},
		{http.MethodPut, org + "/repositories/1296271", "", http.StatusNoContent, nil},
		{http.MethodDelete, org + "/repositories/1296269", "", http.StatusNoContent, nil},
		{http.MethodGet, org + "/repositories?page_size=1", "", http.StatusOK,
			func(m map[string]any) bool { return m["total_count"] == 2.0 && m["next_page_token"] != nil }},
		{http.MethodGet, "/v1/repos/octo-org/docs/agents/organization-secrets", "", http.StatusOK,
			func(m map[string]any) bool { return m["total_count"] == 1.0 }},
		{http.MethodGet, "/v1/repos/octo-org/hello-world/agents/organization-secrets", "", http.StatusOK,
			func(m map[string]any) bool { return m["total_count"] == 0.0 }}, // removed above
		{http.MethodGet, "/v1/orgs/octo-org/agents/secrets", "", http.StatusOK,
			func(m map[string]any) bool { return m["total_count"] == 1.0 }},
		{http.MethodGet, org, "", http.StatusOK,
			func(m map[string]any) bool { return m["visibility"] == "selected" && m["created_at"] != nil }},
		{http.MethodPut, "/v1/orgs/octo-org/actions/secrets/EVERYONE", `{"value":"gw-route-value","visibility":"all"}`, http.StatusCreated, nil},
		{http.MethodPut, "/v1/orgs/octo-org/actions/secrets/EVERYONE/repositories/1296271", "", http.StatusConflict, // GitHub's 409: FAILED_PRECONDITION
			func(m map[string]any) bool { return m["code"] == 9.0 }},
		{http.MethodDelete, org, "", http.StatusNoContent, nil},
		{http.MethodGet, org, "", http.StatusNotFound, nil},
		{http.MethodPost, "/v1/secrets:batchPut", `{"requests":[
			{"name":"repos/octo-org/hello-world/actions/secrets/BATCH_A","value":"gw-route-value"},
			{"name":"repos/octo-org/hello-world/environments/prod%2Feu/secrets/BATCH_B","value":"gw-route-value"},
			{"name":"repos/octo-org/hello-world/actions/secrets/9BAD","value":"gw-route-value"}]}`, http.StatusOK,
			func(m map[string]any) bool {
				r, _ := m["results"].([]any)
				return len(r) == 3 && field(r[0], "code") == "OK" && field(r[0], "created") == true &&
					field(r[1], "code") == "OK" && field(r[1], "name") == "repos/octo-org/hello-world/environments/prod%2Feu/secrets/BATCH_B" &&
					field(r[2], "code") == "INVALID_ARGUMENT" && field(r[2], "message") != ""
			}},
		{http.MethodPost, "/v1/secrets:batchDelete", `{"names":[
			"repos/octo-org/hello-world/actions/secrets/BATCH_A",
			"repos/octo-org/hello-world/actions/secrets/NEVER_WRITTEN"]}`, http.StatusOK,
			func(m map[string]any) bool {
				r, _ := m["results"].([]any)
				return len(r) == 2 && field(r[0], "code") == "OK" && field(r[1], "code") == "NOT_FOUND"
			}},
	}
	for _, s := range steps {
		code, m := b.do(t, s.method, s.path, s.body)
		if code != s.wantCode || (s.check != nil && !s.check(m)) {
			t.Errorf("%s %s = %d %v, want %d and the expected body", s.method, s.path, code, m, s.wantCode)
		}
	}
}

// field returns v's key when v is a JSON object.
func field(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}
