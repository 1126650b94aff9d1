package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// otlpReceiver is a real OTLP/HTTP trace receiver on loopback: it decodes
// each export request (protobuf, gzip or not) and keeps its raw bytes and
// its JSON form.
type otlpReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	raw      bytes.Buffer
	text     strings.Builder
	requests int
	spans    int
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.Error(w, "not an OTLP trace export", http.StatusNotFound)
			return
		}
		raw, err := otlpBody(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, rs := range export.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				n += len(ss.GetSpans())
			}
		}
		r.mu.Lock()
		r.raw.Write(raw)
		r.text.WriteString(protojson.Format(&export))
		r.requests++
		r.spans += n
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// spanText renders everything an exported span holds: names, attributes,
// events and their attributes, links, status and resource.
func spanText(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %v %v %s %s\n", s.Name(), s.Attributes(), s.Status(), s.Resource(), s.InstrumentationScope().Name)
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "  event %s %v\n", e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			fmt.Fprintf(&b, "  link %v\n", l.Attributes)
		}
	}
	return b.String()
}

// TestNeverAValueInTelemetry plants a plaintext value, a GitHub token and a
// caller's bearer token, drives every RPC through gRPC and through the
// JSON gateway with debug logging on, exports the spans to an in-memory
// exporter and, through autoexport from the OTEL_* variables, to a real
// OTLP/HTTP receiver on loopback, scrapes /metrics, and finds none of the
// three in any span, metric sample or log line.
func TestNeverAValueInTelemetry(t *testing.T) {
	const (
		value   = "PLANTED-never-a-value-Wombat-7f3e9c"
		ghToken = "ghp_PLANTEDneverTOKEN0123456789abcdefgh"
		bearer  = "bearer-PLANTED-never-token-51ab"
	)
	var ghLogs syncWriter
	emu, demo, url := githubForTraces(t, ghToken, &ghLogs)
	recv := newOTLPReceiver(t)
	otelEnv := map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT": recv.srv.URL,
		"OTEL_BSP_SCHEDULE_DELAY":     "50",
	}
	for k, v := range otelEnv {
		t.Setenv(k, v) // autoexport reads the process environment
	}
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: tester\n    token_sha256: "+sha256Hex(bearer)+"\n")
	policy := writeFile(t, "policy.yaml", `
rules:
  - callers: ["token:tester"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`)
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + url, "--upstream-token-file=" + tokenFile(t, ghToken), "--upstream-write-interval=10ms",
		"--log-level=debug", "--callers-file=" + callers, "--policy-file=" + policy,
	}, envMap(otelEnv), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TracesExporter != tracesExporterOTLP {
		t.Fatalf("TracesExporter %q, want otlp", cfg.TracesExporter)
	}
	mem := newKeptExporter()
	cfg.spanExporter = mem
	b := startBroker(t, cfg)

	repoIDs := []int64{demo.Repos[0].ID, demo.Repos[1].ID, demo.Repos[2].ID}
	const (
		repoScope = "repos/octo-org/hello-world/actions"
		envScope  = "repos/octo-org/hello-world/environments/staging"
		orgScope  = "orgs/octo-org/actions"
	)

	// Through the gateway: every route, with the bearer token.
	gw := func(method, path, body string, want int) {
		t.Helper()
		code, resp := httpDo(t, b.http, method, "http://"+b.httpAddr+path, bearer, body)
		if code != want {
			t.Errorf("%s %s = %d, want %d: %s", method, path, code, want, resp)
		}
	}
	gw(http.MethodGet, "/v1/"+repoScope+"/secrets/public-key", "", http.StatusOK)
	gw(http.MethodPut, "/v1/"+envScope+"/secrets/GW_ENV", `{"value":"`+value+`"}`, http.StatusCreated)
	gw(http.MethodPut, "/v1/"+orgScope+"/secrets/GW_ORG", fmt.Sprintf(`{"value":%q,"visibility":"selected","selected_repository_ids":[%d]}`, value, repoIDs[0]), http.StatusCreated)
	gw(http.MethodGet, "/v1/"+envScope+"/secrets/GW_ENV", "", http.StatusOK)
	gw(http.MethodGet, "/v1/"+envScope+"/secrets", "", http.StatusOK)
	gw(http.MethodPut, "/v1/"+orgScope+"/secrets/GW_ORG/repositories", fmt.Sprintf(`{"selected_repository_ids":[%d,%d]}`, repoIDs[0], repoIDs[1]), http.StatusNoContent)
	gw(http.MethodPut, fmt.Sprintf("/v1/%s/secrets/GW_ORG/repositories/%d", orgScope, repoIDs[2]), "", http.StatusNoContent)
	gw(http.MethodDelete, fmt.Sprintf("/v1/%s/secrets/GW_ORG/repositories/%d", orgScope, repoIDs[1]), "", http.StatusNoContent)
	gw(http.MethodGet, "/v1/"+orgScope+"/secrets/GW_ORG/repositories", "", http.StatusOK)
	gw(http.MethodGet, "/v1/repos/octo-org/hello-world/actions/organization-secrets", "", http.StatusOK)
	gw(http.MethodPost, "/v1/secrets:batchPut", fmt.Sprintf(`{"requests":[{"name":"%s/secrets/GW_B1","value":%q},{"name":"%s/secrets/GW_B2","value":%q},{"name":"%s/secrets/9BAD","value":%q}]}`,
		repoScope, value, envScope, value, repoScope, value), http.StatusOK)
	gw(http.MethodPost, "/v1/secrets:batchDelete", fmt.Sprintf(`{"names":["%s/secrets/GW_B1","%s/secrets/NEVER_WRITTEN"]}`, repoScope, repoScope), http.StatusOK)
	gw(http.MethodDelete, "/v1/"+envScope+"/secrets/GW_ENV", "", http.StatusNoContent)
	gw(http.MethodPost, "/v1/"+envScope+"/secrets:sync", `{"owner":"tester","secrets":{"GW_SYNC":"`+value+`"}}`, http.StatusOK)
	gw(http.MethodGet, "/v1/"+envScope+"/secrets:detectDrift", "", http.StatusOK)
	gw(http.MethodGet, "/v1/operations", "", http.StatusOK)
	// Refused: no token, and a wrong one that holds the planted token's
	// prefix.
	for _, tok := range []string{"", bearer + "x"} {
		if code, _ := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+repoScope+"/secrets", tok, ""); code != http.StatusUnauthorized {
			t.Errorf("a bearer token of %d bytes: %d, want 401", len(tok), code)
		}
	}

	// Through gRPC: every RPC, with the bearer token.
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+bearer)
	c := secretbrokerv1.NewSecretServiceClient(b.conn)
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	_, err = c.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: envScope})
	check("GetPublicKey", err)
	_, err = c.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: repoScope + "/secrets/RPC_REPO", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}})
	check("PutSecret", err)
	// An update of the organization secret keeps its visibility.
	_, err = c.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: orgScope + "/secrets/GW_ORG", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value + "-2"}})
	check("PutSecret (org)", err)
	_, err = c.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: repoScope + "/secrets/RPC_REPO"})
	check("GetSecret", err)
	_, err = c.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: repoScope})
	check("ListSecrets", err)
	_, err = c.SetSelectedRepositories(ctx, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: orgScope + "/secrets/GW_ORG", SelectedRepositoryIds: repoIDs[:1]})
	check("SetSelectedRepositories", err)
	_, err = c.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: orgScope + "/secrets/GW_ORG", RepositoryId: repoIDs[1]})
	check("AddSelectedRepository", err)
	_, err = c.RemoveSelectedRepository(ctx, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: orgScope + "/secrets/GW_ORG", RepositoryId: repoIDs[0]})
	check("RemoveSelectedRepository", err)
	_, err = c.ListSelectedRepositories(ctx, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: orgScope + "/secrets/GW_ORG"})
	check("ListSelectedRepositories", err)
	_, err = c.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "repos/octo-org/secret-sauce/actions"})
	check("ListRepositoryOrganizationSecrets", err)
	_, err = c.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: repoScope + "/secrets/RPC_B1", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}},
		{Name: envScope + "/secrets/RPC_B2", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}},
		{Name: "not a name", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}},
	}})
	check("BatchPutSecrets", err)
	_, err = c.BatchDeleteSecrets(ctx, &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{repoScope + "/secrets/RPC_B1", envScope + "/secrets/RPC_B2"}})
	check("BatchDeleteSecrets", err)
	_, err = c.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repoScope + "/secrets/RPC_REPO"})
	check("DeleteSecret", err)
	_, err = c.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "tester",
		Secrets: map[string]string{"RPC_SYNC": value}})
	check("SyncSecrets", err)
	_, err = c.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: repoScope})
	check("DetectDrift", err)
	async, err := c.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "tester", Async: true,
		Secrets: map[string]string{"RPC_SYNC": value + "-3", "RPC_SYNC2": value}})
	check("SyncSecrets (async)", err)
	opName := async.GetOperation().GetName()
	_, err = c.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: opName})
	check("GetOperation", err)
	_, err = c.ListOperations(ctx, &secretbrokerv1.ListOperationsRequest{})
	check("ListOperations", err)
	if op, err := c.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: opName, Timeout: durationpb.New(30 * time.Second)}); err != nil || !op.GetDone() {
		t.Errorf("WaitOperation: done %v, %v", op.GetDone(), err)
	}
	_, err = c.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: opName})
	check("CancelOperation", err)

	// The value did reach GitHub, sealed: the planted strings went through
	// the broker.
	if got, err := emu.Open(orgScope, "GW_ORG"); err != nil || string(got) != value+"-2" {
		t.Fatalf("GitHub does not hold the planted value (%v)", err)
	}

	metricsText := scrape(t, b)
	b.stop(t, 15*time.Second) // flushes the spans to both exporters

	spans := mem.GetSpans().Snapshots()
	if len(spans) < 50 {
		t.Fatalf("%d spans in memory: the calls were not traced", len(spans))
	}
	recv.mu.Lock()
	otlpRaw, otlpText, otlpSpans := recv.raw.String(), recv.text.String(), recv.spans
	recv.mu.Unlock()
	if otlpSpans != len(spans) {
		t.Errorf("the OTLP receiver got %d spans, the in-memory exporter %d", otlpSpans, len(spans))
	}
	memText := spanText(spans)
	for _, want := range []string{"key cache lookup", "seal", "github pacer wait", "batch item", "batch summary", "secretbroker.v1.SecretService/BatchPutSecrets"} {
		if !strings.Contains(memText, want) || !strings.Contains(otlpText, want) {
			t.Errorf("the exported spans lack %q", want)
		}
	}
	logs := b.logs.String()
	if n := strings.Count(logs, `"msg":"gRPC call"`); n < 26 {
		t.Errorf("%d per-RPC log lines, want one per call", n)
	}
	// Every method of the service was called (and logged).
	for _, m := range secretbrokerv1.SecretService_ServiceDesc.Methods {
		if !strings.Contains(logs, `"method":"/secretbroker.v1.SecretService/`+m.MethodName+`"`) {
			t.Errorf("no call of %s: the test does not drive every RPC", m.MethodName)
		}
	}
	if !strings.Contains(metricsText, "secretbroker_upstream_requests_total") {
		t.Error("/metrics has no upstream series")
	}
	for _, planted := range []string{value, ghToken, bearer} {
		for where, text := range map[string]string{
			"log lines":        logs,
			"emulator log":     ghLogs.String(),
			"in-memory spans":  memText,
			"OTLP export":      otlpRaw,
			"OTLP export JSON": otlpText,
			"/metrics":         metricsText,
		} {
			if strings.Contains(text, planted) {
				t.Errorf("%s holds the planted %q", where, planted[:16])
			}
		}
	}
}

// scrape returns the admin listener's /metrics.
func scrape(t *testing.T, b *broker) string {
	t.Helper()
	resp, err := b.http.Get("http://" + b.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// otlpBody reads an OTLP/HTTP export request's body, gunzipped when the
// exporter compressed it.
func otlpBody(req *http.Request) ([]byte, error) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			return nil, err
		}
		body = gz
	}
	return io.ReadAll(body)
}
