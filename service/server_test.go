package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// Planted values: tests prove they reach no log line or error message.
const (
	testToken     = "ghp_PLANTEDtoken0123456789abcdefghijklmn"
	plantedSecret = "PLANTED-plaintext-Zebra-4711"
)

// syncBuffer is a bytes.Buffer safe for concurrent log writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	emu    *emulator.Server
	demo   emulator.Demo
	broker secretbrokerv1.SecretServiceClient
	logs   *syncBuffer
	// upstream is the in-memory transport to the emulator: requests sent
	// through it reach emu and are recorded.
	upstream *emulatorTransport
	client   *upstream.Client // nil when a test built its own Upstream
	// server is the service the broker talks to.
	server *Server
}

type harnessOpts struct {
	legacy bool
	// limits are the emulator's rate limits; default none.
	limits emulator.Limits
	// pacing is the upstream client's; default upstream.DefaultPacing().
	pacing *upstream.Pacing
	// wrap, when set, wraps the upstream client the service talks to.
	wrap func(Upstream) Upstream
	// keyTTL is the service's; default DefaultKeyTTL.
	keyTTL time.Duration
	// authz and audit are the service's Options.Authorizer and Audit.
	authz Authorizer
	audit *audit.Log
	// state is the service's Options.State; default a new memory store.
	state state.Store
	// ops is the service's Options.Operations.
	ops OperationOptions
	// meters is the service's Options.MeterProvider.
	meters metric.MeterProvider
}

// emulatorURL is the base URL the upstream client is given; requests never
// leave the process (see emulatorTransport).
const emulatorURL = "https://github.example"

// newHarness builds, inside the calling test's synctest bubble: gRPC
// client → bufconn → gRPC server → service → upstream client →
// in-memory transport → emulator. Nothing listens on a socket, so every
// wait (the pacer's write spacing, pauses, backoffs, the emulator's
// latency) is on the bubble's fake clock: exact, and instant in wall time.
// Everything is shut down by t's cleanups, inside the bubble.
func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	mustBeInBubble(t)
	logs := &syncBuffer{}
	logger := newTestLogger(logs)

	emu := emulator.New(emulator.Options{Token: testToken, LegacyRoutes: o.legacy, Logger: logger, Limits: o.limits})
	demo := emu.SeedDemo()
	tr := newEmulatorTransport(emu)
	client, err := upstream.New(upstream.Config{
		BaseURL:      emulatorURL,
		Token:        upstream.Token(testToken),
		LegacyRoutes: o.legacy,
		HTTPClient:   &http.Client{Transport: tr},
		Pacing:       o.pacing,
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	var up Upstream = client
	if o.wrap != nil {
		up = o.wrap(client)
	}
	h := newHarnessWith(t, up, logs, Options{Logger: logger, KeyTTL: o.keyTTL, Authorizer: o.authz, Audit: o.audit, State: o.state, Operations: o.ops, MeterProvider: o.meters})
	h.emu, h.demo, h.upstream, h.client = emu, demo, tr, client
	return h
}

// mustBeInBubble fails the test unless it runs inside synctest.Test: the
// harness runs on the bubble's fake time, and outside a bubble its
// default write spacing would cost a second of wall time per write.
func mustBeInBubble(t *testing.T) {
	t.Helper()
	defer func() {
		if recover() != nil {
			t.Fatal("build the harness inside synctest.Test")
		}
	}()
	synctest.Wait() // panics outside a bubble
}

// testCallerKey is the gRPC metadata key with which a test names its
// caller; the harness's server hands it to the pacer (cmd does the same
// with the caller's address).
const testCallerKey = "test-caller"

func callerFromMetadata(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if c := md.Get(testCallerKey); len(c) == 1 {
			ctx = identity.WithCaller(upstream.WithCaller(ctx, c[0]), c[0])
		}
	}
	return handler(ctx, req)
}

// as returns ctx carrying the caller's name for the harness's server.
func as(ctx context.Context, caller string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, testCallerKey, caller)
}

// newHarnessWith serves New(up, opts) over gRPC on an in-memory listener
// (bufconn) and returns a harness whose broker is a client of it. At
// cleanup it checks that no planted value reached logs.
func newHarnessWith(t *testing.T, up Upstream, logs *syncBuffer, opts Options) *harness {
	t.Helper()
	mustBeInBubble(t)
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.UnaryInterceptor(callerFromMetadata))
	srv := New(up, opts)
	secretbrokerv1.RegisterSecretServiceServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Cleanup(func() {
		for _, planted := range []string{testToken, plantedSecret} {
			if strings.Contains(logs.String(), planted) {
				t.Errorf("a planted value reached the logs:\n%s", logs.String())
			}
		}
	})
	return &harness{broker: secretbrokerv1.NewSecretServiceClient(conn), logs: logs, server: srv}
}

// upstreamCall is one request the upstream client sent to the emulator.
type upstreamCall struct {
	at     time.Duration // when it was sent, from the transport's start
	method string
	path   string
	status int // 0 when the emulator dropped the connection
}

// emulatorTransport serves requests in memory with the emulator's handler,
// so that the upstream client and the emulator share the test's synctest
// bubble (a loopback socket never blocks durably), and records each
// request with the bubble's time. A connection the emulator drops (its
// Drop and DropAfter faults) is the error a dropped connection gives.
type emulatorTransport struct {
	h     http.Handler
	start time.Time

	mu   sync.Mutex
	sent []upstreamCall
}

func newEmulatorTransport(h http.Handler) *emulatorTransport {
	return &emulatorTransport{h: h, start: time.Now()}
}

func (tr *emulatorTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	call := upstreamCall{at: time.Since(tr.start), method: r.Method, path: r.URL.Path}
	defer func() {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, io.ErrUnexpectedEOF
		} else {
			call.status = resp.StatusCode
		}
		tr.mu.Lock()
		tr.sent = append(tr.sent, call)
		tr.mu.Unlock()
	}()
	rec := httptest.NewRecorder()
	tr.h.ServeHTTP(rec, r)
	res := rec.Result()
	if _, ok := res.Header["Date"]; !ok {
		// As net/http's server dates every answer (GitHub's does too).
		res.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	return res, nil
}

// calls returns the requests sent so far whose method is method ("" for
// all), in the order they were sent.
func (tr *emulatorTransport) calls(method string) []upstreamCall {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []upstreamCall
	for _, c := range tr.sent {
		if method == "" || c.method == method {
			out = append(out, c)
		}
	}
	return out
}

// times returns when each of calls was sent.
func times(calls []upstreamCall) []time.Duration {
	out := make([]time.Duration, len(calls))
	for i, c := range calls {
		out[i] = c.at
	}
	return out
}

func (h *harness) repoID(t *testing.T, name string) int64 {
	t.Helper()
	for _, r := range h.demo.Repos {
		if r.Name == name {
			return r.ID
		}
	}
	t.Fatalf("demo has no repository %q", name)
	return 0
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code = %v (%v), want %v", got, err, code)
	}
}

// noLeak fails when a planted value is in an error message.
func noLeak(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, planted := range []string{testToken, plantedSecret} {
		if strings.Contains(err.Error(), planted) {
			t.Fatalf("error message leaks a planted value: %v", err)
		}
	}
}

var allScopes = []struct {
	parent     string
	visibility string
}{
	{parent: "orgs/octo-org/actions", visibility: "all"},
	{parent: "orgs/octo-org/agents", visibility: "private"},
	{parent: "repos/octo-org/hello-world/actions"},
	{parent: "repos/octo-org/hello-world/agents"},
	{parent: "repos/octo-org/hello-world/environments/prod%2Feu"},
	{parent: "repos/octo-org/hello-world/environments/staging"},
}

func TestSecretLifecycleEveryScope(t *testing.T) {
	for _, sc := range allScopes {
		t.Run(sc.parent, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				ctx := t.Context()
				name := sc.parent + "/secrets/deploy_token"
				resp, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}, Visibility: sc.visibility,
				})
				if err != nil {
					t.Fatalf("PutSecret: %v", err)
				}
				if !resp.GetCreated() || resp.GetName() != sc.parent+"/secrets/DEPLOY_TOKEN" || resp.GetKeyId() == "" {
					t.Fatalf("PutSecret = %+v", resp)
				}
				got, err := h.emu.Open(sc.parent, "DEPLOY_TOKEN")
				if err != nil || string(got) != plantedSecret {
					t.Fatalf("stored value does not open to the plaintext sent (err %v)", err)
				}

				resp, err = h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "second"},
				})
				if err != nil || resp.GetCreated() {
					t.Fatalf("update: %+v, %v", resp, err)
				}
				if got, _ := h.emu.Open(sc.parent, "DEPLOY_TOKEN"); string(got) != "second" {
					t.Fatalf("updated value opens to %q", got)
				}

				sec, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
				if err != nil {
					t.Fatalf("GetSecret: %v", err)
				}
				if sec.GetSecretId() != "DEPLOY_TOKEN" || sec.GetName() != sc.parent+"/secrets/DEPLOY_TOKEN" ||
					sec.GetCreatedAt() == nil || sec.GetVisibility() != sc.visibility {
					t.Fatalf("GetSecret = %+v", sec)
				}

				list, err := h.broker.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: sc.parent})
				if err != nil || list.GetTotalCount() != 1 || list.GetSecrets()[0].GetSecretId() != "DEPLOY_TOKEN" {
					t.Fatalf("ListSecrets = %+v, %v", list, err)
				}

				if _, err := h.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: name}); err != nil {
					t.Fatalf("DeleteSecret: %v", err)
				}
				_, err = h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name})
				wantCode(t, err, codes.NotFound)
			})
		})
	}
}

func TestThousandPutsOneKeyFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The writes take 1,000 s: a key TTL longer than that, so that the
		// one fetch is all. GitHub's hourly content-creation limit (500
		// writes) is off here: it would hold the 501st write an hour (see
		// upstream/pace); the limit of 80 a minute never binds at 1 s.
		pacing := upstream.DefaultPacing()
		pacing.WritesPerHour = 0
		h := newHarness(t, harnessOpts{keyTTL: time.Hour, pacing: &pacing})
		ctx := t.Context()
		const n = 1000
		var g errgroup.Group
		g.SetLimit(32) // many concurrent cold misses, merged into one fetch
		for i := range n {
			g.Go(func() error {
				_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name:    fmt.Sprintf("repos/octo-org/hello-world/actions/secrets/S%04d", i),
					Payload: &secretbrokerv1.PutSecretRequest_Value{Value: fmt.Sprintf("value-%d", i)},
				})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := h.emu.Count(emulator.RouteGetRepoPublicKey); got != 1 {
			t.Errorf("key fetches = %d, want 1", got)
		}
		if got := h.emu.Count(emulator.RoutePutRepoSecret); got != n {
			t.Errorf("PUTs = %d, want %d", got, n)
		}
		// The writes went one at a time, exactly a second apart (the
		// default WriteInterval), from the start.
		for i, at := range times(h.upstream.calls(http.MethodPut)) {
			if want := time.Duration(i) * time.Second; at != want {
				t.Fatalf("PUT %d was sent at %v, want %v", i, at, want)
			}
		}
		for _, i := range []int{0, 499, 999} {
			got, err := h.emu.Open("repos/octo-org/hello-world/actions", fmt.Sprintf("S%04d", i))
			if err != nil || string(got) != fmt.Sprintf("value-%d", i) {
				t.Errorf("secret %d opens to %q, %v", i, got, err)
			}
		}
	})
}

func TestRotatedKeyIsPickedUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		const parent = "orgs/octo-org/actions"
		put := func(v string) *secretbrokerv1.PutSecretResponse {
			t.Helper()
			resp, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
				Name: parent + "/secrets/ROTATING", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: v}, Visibility: "all",
			})
			if err != nil {
				t.Fatalf("PutSecret: %v", err)
			}
			return resp
		}
		first := put("before")
		newID := h.emu.RotateKey(parent)
		second := put("after")
		if second.GetKeyId() != newID || first.GetKeyId() == newID {
			t.Fatalf("key ids: first %q, second %q, rotated to %q", first.GetKeyId(), second.GetKeyId(), newID)
		}
		if got, err := h.emu.Open(parent, "ROTATING"); err != nil || string(got) != "after" {
			t.Fatalf("after rotation the value opens to %q, %v", got, err)
		}
		if got := h.emu.Count(emulator.RouteGetOrgPublicKey); got != 2 {
			t.Errorf("key fetches = %d, want 2 (one per key)", got)
		}
		if got := h.emu.Count(emulator.RoutePutOrgSecret); got != 3 {
			t.Errorf("PUTs = %d, want 3 (ok, rejected by rotation, retried)", got)
		}
		// The public key the broker hands out is the new one.
		pk, err := h.broker.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
		if err != nil || pk.GetKeyId() != newID {
			t.Fatalf("GetPublicKey = %+v, %v; want key %q", pk, err, newID)
		}
	})
}

func TestBadInputSendsNothingUpstream(t *testing.T) {
	val := func(v string) *secretbrokerv1.PutSecretRequest_Value {
		return &secretbrokerv1.PutSecretRequest_Value{Value: v}
	}
	sealed := &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: base64.StdEncoding.EncodeToString(make([]byte, 64))}
	tests := []struct {
		name    string
		call    func(context.Context, secretbrokerv1.SecretServiceClient) error
		wantMsg string
	}{
		{"digit first", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/1X", Payload: val(plantedSecret)}), "name: "},
		{"GITHUB_ prefix", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/github_x", Payload: val(plantedSecret)}), "GITHUB_"},
		{"hyphen", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/A-B", Payload: val(plantedSecret)}), "letters, digits"},
		{"too large", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/BIG", Payload: val(strings.Repeat("x", 48*1024+1))}), "value: "},
		{"no value", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/X"}), "value: "},
		{"empty value", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/X", Payload: val("")}), "value: "},
		{"bad visibility", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: val(plantedSecret), Visibility: "public"}), "visibility: "},
		{"ids without selected", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: val(plantedSecret), Visibility: "all", SelectedRepositoryIds: []int64{1}}), "selected_repository_ids: "},
		{"visibility on repo", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/actions/secrets/X", Payload: val(plantedSecret), Visibility: "all"}), "visibility: "},
		{"negative repo id", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: val(plantedSecret), Visibility: "selected", SelectedRepositoryIds: []int64{-4}}), "selected_repository_ids: "},
		{"agents environment", putCall(&secretbrokerv1.PutSecretRequest{Name: "repos/octo-org/hello-world/environments/staging/agents/secrets/X", Payload: val(plantedSecret)}), "name: "},
		{"unknown app", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/packages/secrets/X", Payload: val(plantedSecret)}), "app \"packages\""},
		{"sealed without key_id", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: sealed, Visibility: "all"}), "key_id: "},
		{"sealed not base64", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: "%%%"}, KeyId: "1", Visibility: "all"}), "encrypted_value: "},
		{"key_id with plaintext", putCall(&secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/actions/secrets/X", Payload: val(plantedSecret), KeyId: "1", Visibility: "all"}), "key_id: "},
		{"get bad name", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: "orgs/octo-org/actions/secrets/GITHUB_TOKEN"})
			return err
		}, "GITHUB_"},
		{"list bad parent", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: "orgs/octo-org"})
			return err
		}, "parent: "},
		{"list bad page token", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: "orgs/octo-org/actions", PageToken: "nope"})
			return err
		}, "page_token: "},
		{"public key bad parent", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "repos/octo-org/hello-world/environments/a/agents"})
			return err
		}, "parent: "},
		{"selected repos on repo secret", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.ListSelectedRepositories(ctx, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: "repos/octo-org/hello-world/actions/secrets/X"})
			return err
		}, "organization secrets only"},
		{"add repo id zero", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: "orgs/octo-org/actions/secrets/X"})
			return err
		}, "repository_id: "},
		{"org secrets of an org", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "orgs/octo-org/actions"})
			return err
		}, "parent: "},
		{"delete env with slash unescaped", func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
			_, err := b.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: "repos/octo-org/hello-world/environments/prod/eu/secrets/X"})
			return err
		}, "name: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				err := tt.call(t.Context(), h.broker)
				wantCode(t, err, codes.InvalidArgument)
				noLeak(t, err)
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q does not contain %q", msg, tt.wantMsg)
				}
				if n := h.emu.TotalRequests(); n != 0 {
					t.Errorf("%d requests reached GitHub", n)
				}
			})
		})
	}
}

func putCall(req *secretbrokerv1.PutSecretRequest) func(context.Context, secretbrokerv1.SecretServiceClient) error {
	return func(ctx context.Context, b secretbrokerv1.SecretServiceClient) error {
		_, err := b.PutSecret(ctx, req)
		return err
	}
}

func TestValueOnlyUpdateKeepsSelectedRepositories(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		const parent = "orgs/octo-org/actions"
		ids := []int64{h.repoID(t, "hello-world"), h.repoID(t, "secret-sauce")}
		slices.Sort(ids)
		if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
			Name: parent + "/secrets/SHARED", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v1"},
			Visibility: "selected", SelectedRepositoryIds: ids,
		}); err != nil {
			t.Fatal(err)
		}
		for _, req := range []*secretbrokerv1.PutSecretRequest{
			{Name: parent + "/secrets/SHARED", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v2"}},
			{Name: parent + "/secrets/SHARED", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v3"}, Visibility: "selected"},
		} {
			if _, err := h.broker.PutSecret(ctx, req); err != nil {
				t.Fatal(err)
			}
			got, err := h.emu.SelectedRepositoryIDs(parent, "SHARED")
			slices.Sort(got)
			if err != nil || !slices.Equal(got, ids) {
				t.Fatalf("after a value-only update the selection is %v, %v; want %v", got, err, ids)
			}
			if v, _ := h.emu.Open(parent, "SHARED"); string(v) != req.GetValue() {
				t.Fatalf("value opens to %q, want %q", v, req.GetValue())
			}
		}
		sec, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: parent + "/secrets/SHARED"})
		if err != nil || sec.GetVisibility() != "selected" {
			t.Fatalf("GetSecret = %+v, %v", sec, err)
		}

		// Creating an organization secret needs a visibility.
		_, err = h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
			Name: parent + "/secrets/NEW_ONE", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"},
		})
		wantCode(t, err, codes.InvalidArgument)
		if h.emu.Count(emulator.RoutePutOrgSecret) != 3 {
			t.Errorf("PUTs = %d, want 3: a create without visibility must not be sent", h.emu.Count(emulator.RoutePutOrgSecret))
		}
	})
}

func TestSelectedRepositoryOperations(t *testing.T) {
	for _, app := range []string{"actions", "agents"} {
		t.Run(app, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				ctx := t.Context()
				name := "orgs/octo-org/" + app + "/secrets/SEL"
				hello, sauce, docs := h.repoID(t, "hello-world"), h.repoID(t, "secret-sauce"), h.repoID(t, "docs")
				if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name: name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}, Visibility: "selected", SelectedRepositoryIds: []int64{hello},
				}); err != nil {
					t.Fatal(err)
				}
				if _, err := h.broker.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: name, SelectedRepositoryIds: []int64{hello, sauce}}); err != nil {
					t.Fatal(err)
				}
				if _, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: name, RepositoryId: docs}); err != nil {
					t.Fatal(err)
				}
				if _, err := h.broker.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: name, RepositoryId: hello}); err != nil {
					t.Fatal(err)
				}
				// Page through the selection one repository at a time.
				var got []int64
				req := &secretbrokerv1.ListSelectedRepositoriesRequest{Name: name, PageSize: 1}
				for range 5 {
					resp, err := h.broker.ListSelectedRepositories(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					if resp.GetTotalCount() != 2 {
						t.Fatalf("total_count = %d, want 2", resp.GetTotalCount())
					}
					for _, r := range resp.GetRepositories() {
						got = append(got, r.GetId())
					}
					if resp.GetNextPageToken() == "" {
						break
					}
					req.PageToken = resp.GetNextPageToken()
				}
				slices.Sort(got)
				want := []int64{sauce, docs}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("selection = %v, want %v", got, want)
				}
				// The private repository sees the secret among its org secrets.
				shared, err := h.broker.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "repos/octo-org/secret-sauce/" + app})
				if err != nil || shared.GetTotalCount() != 1 || shared.GetSecrets()[0].GetName() != name {
					t.Fatalf("ListRepositoryOrganizationSecrets = %+v, %v", shared, err)
				}

				// Adding to a secret whose visibility is not "selected" is a conflict.
				all := "orgs/octo-org/" + app + "/secrets/EVERYONE"
				if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
					Name: all, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}, Visibility: "all",
				}); err != nil {
					t.Fatal(err)
				}
				_, err = h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: all, RepositoryId: docs})
				wantCode(t, err, codes.FailedPrecondition)
			})
		})
	}
}

func TestListSecretsPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		const parent = "repos/octo-org/hello-world/environments/prod%2Feu"
		for i := range 5 {
			if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
				Name: fmt.Sprintf("%s/secrets/P%d", parent, i), Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"},
			}); err != nil {
				t.Fatal(err)
			}
		}
		var names []string
		req := &secretbrokerv1.ListSecretsRequest{Parent: parent, PageSize: 2}
		pages := 0
		for {
			resp, err := h.broker.ListSecrets(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, s := range resp.GetSecrets() {
				names = append(names, s.GetSecretId())
			}
			if resp.GetNextPageToken() == "" || pages > 5 {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if pages != 3 || !slices.Equal(names, []string{"P0", "P1", "P2", "P3", "P4"}) {
			t.Fatalf("%d pages, names %v", pages, names)
		}
	})
}

func TestCallerSealedValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		ctx := t.Context()
		const parent = "repos/octo-org/hello-world/agents"
		pk, err := h.broker.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(pk.GetKey())
		if err != nil || len(raw) != 32 {
			t.Fatalf("public key %q: %v", pk.GetKey(), err)
		}
		sealed, err := box.SealAnonymous(nil, []byte(plantedSecret), (*[32]byte)(raw), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		enc := base64.StdEncoding.EncodeToString(sealed)
		resp, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
			Name: parent + "/secrets/SELF_SEALED", Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: enc}, KeyId: pk.GetKeyId(),
		})
		if err != nil || !resp.GetCreated() {
			t.Fatalf("PutSecret = %+v, %v", resp, err)
		}
		if got, err := h.emu.Open(parent, "SELF_SEALED"); err != nil || string(got) != plantedSecret {
			t.Fatalf("stored value does not open to what the caller sealed: %v", err)
		}

		// A key_id that is not the scope's current key is refused before the PUT.
		h.emu.ResetCounts()
		_, err = h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
			Name: parent + "/secrets/SELF_SEALED", Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: enc}, KeyId: "999",
		})
		wantCode(t, err, codes.InvalidArgument)
		if !strings.Contains(status.Convert(err).Message(), "key_id") {
			t.Fatalf("message %q does not name key_id", status.Convert(err).Message())
		}
		if n := h.emu.Count(emulator.RoutePutRepoSecret); n != 0 {
			t.Fatalf("%d PUTs sent with a stale key_id", n)
		}
	})
}

func TestLegacyEnvironmentRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{legacy: true})
		ctx := t.Context()
		const parent = "repos/octo-org/hello-world/environments/prod%2Feu"
		for i, v := range []string{"one", "two"} {
			resp, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
				Name: parent + "/secrets/LEGACY", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: v},
			})
			if err != nil || resp.GetCreated() != (i == 0) {
				t.Fatalf("PutSecret %d = %+v, %v", i, resp, err)
			}
		}
		if got, err := h.emu.Open(parent, "LEGACY"); err != nil || string(got) != "two" {
			t.Fatalf("value opens to %q, %v", got, err)
		}
		sec, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: parent + "/secrets/LEGACY"})
		if err != nil || sec.GetName() != parent+"/secrets/LEGACY" {
			t.Fatalf("GetSecret = %+v, %v", sec, err)
		}
		// Each of the four upstream calls (the key, two PUTs, the read)
		// asked for the repository's current id: the first outright, the
		// others conditionally, answered 304.
		if n := h.emu.Count(emulator.RouteGetRepo); n != 4 {
			t.Errorf("repository id lookups = %d, want 4 (one per upstream call)", n)
		}
		if n := h.emu.Stats().NotModified; n != 3 {
			t.Errorf("%d answers 304, want 3 (every lookup after the first)", n)
		}
		if n := h.emu.Count(emulator.RoutePutLegacyEnvSecret); n != 2 {
			t.Errorf("legacy PUTs = %d, want 2", n)
		}
	})
}

func TestUpstreamErrorsMap(t *testing.T) {
	tests := []struct {
		name   string
		fault  emulator.Fault
		want   codes.Code
		banned string // must not be in the message
	}{
		{"404", emulator.Fault{Status: http.StatusNotFound, Body: `{"message":"Not Found"}`}, codes.NotFound, ""},
		{"409", emulator.Fault{Status: http.StatusConflict, Body: `{"message":"Conflict"}`}, codes.FailedPrecondition, ""},
		{"422", emulator.Fault{Status: http.StatusUnprocessableEntity, Body: `{"message":"Validation Failed"}`}, codes.InvalidArgument, ""},
		{"401", emulator.Fault{Status: http.StatusUnauthorized, Body: `{"message":"Bad credentials"}`}, codes.Unavailable, testToken},
		{"403", emulator.Fault{Status: http.StatusForbidden, Body: `{"message":"Resource not accessible by integration"}`}, codes.PermissionDenied, testToken},
		// Retry-After past the 30 s a shared call of a caller without a
		// deadline gets: refused at once, not waited for.
		{"403 secondary limit", emulator.Fault{Status: http.StatusForbidden, Body: `{"message":"You have exceeded a secondary rate limit."}`, Header: http.Header{"Retry-After": {"60"}}}, codes.ResourceExhausted, ""},
		{"403 primary limit", emulator.Fault{Status: http.StatusForbidden, Body: `{"message":"API rate limit exceeded"}`, Header: http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"4102444800"}}}, codes.ResourceExhausted, ""},
		{"429", emulator.Fault{Status: http.StatusTooManyRequests, Body: `{"message":"slow down"}`, Header: http.Header{"Retry-After": {"5"}}}, codes.ResourceExhausted, ""},
		{"500", emulator.Fault{Status: http.StatusInternalServerError, Body: `oops`}, codes.Unavailable, ""},
		{"502", emulator.Fault{Status: http.StatusBadGateway}, codes.Unavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				tt.fault.Times = 100 // every request of the call, whatever it needs
				h.emu.InjectFault(tt.fault)
				_, err := h.broker.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
					Name: "repos/octo-org/hello-world/actions/secrets/FAULTY", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret},
				})
				wantCode(t, err, tt.want)
				noLeak(t, err)
				// GitHub's 409 says so (the gateway answers it 409); no
				// other answer does.
				if got, want := IsGitHubConflict(status.Convert(err)), tt.fault.Status == http.StatusConflict; got != want {
					t.Errorf("IsGitHubConflict = %v, want %v (%v)", got, want, err)
				}
			})
		})
	}
}

// TestOwnFailedPreconditionIsNotGitHubConflict: the broker's own
// FAILED_PRECONDITION answers carry no GitHub-conflict ErrorInfo (the
// gateway answers them 400).
func TestOwnFailedPreconditionIsNotGitHubConflict(t *testing.T) {
	for _, err := range []error{
		&conflictError{resource: "repos/o/r/actions/secrets/S", owner: "other"},
		&notOwnedError{resource: "repos/o/r/actions/secrets/S"},
		&changedSinceError{resource: "repos/o/r/actions/secrets/S"},
		&upstream.NotInstalledError{Account: "acme"},
		&upstream.NotOfferedError{What: "Agents secrets", Where: "GitHub Enterprise Server"},
	} {
		st := statusOf(err)
		if st.Code() != codes.FailedPrecondition || IsGitHubConflict(st) {
			t.Errorf("%T: %v, IsGitHubConflict %v; want FAILED_PRECONDITION, not GitHub's conflict", err, st, IsGitHubConflict(st))
		}
	}
}

// refusingTransport fails every request the way a host where nothing
// listens does.
type refusingTransport struct{}

func (refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func TestUnreachableUpstreamIsUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &syncBuffer{}
		logger := slog.New(slog.NewJSONHandler(logs, nil))
		// Every attempt is refused; the retries' backoff passes in the
		// bubble's fake time.
		up, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
			HTTPClient: &http.Client{Transport: refusingTransport{}}})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarnessWith(t, up, logs, Options{Logger: logger})
		start := time.Now()
		_, err = h.broker.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
			Name: "orgs/octo-org/actions/secrets/X", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}, Visibility: "all",
		})
		wantCode(t, err, codes.Unavailable)
		noLeak(t, err)
		if !strings.Contains(logs.String(), "request failed") {
			t.Fatalf("the cause was not logged: %s", logs.String())
		}
		// Five attempts, four backoffs drawn below 1 s, 2 s, 4 s and 8 s.
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("the call failed after %v, more than the backoffs of the default pacing add up to", d)
		}
	})
}
