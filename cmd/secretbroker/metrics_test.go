package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// scrape GETs /metrics on the admin listener and parses it.
func (b *broker) scrape(t *testing.T) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := b.http.Get("http://" + b.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics Content-Type %q, want Prometheus' text format", ct)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams, string(raw)
}

// scrapeAfterCall scrapes /metrics once the server has recorded the
// duration of the gRPC call that rpcLabels name. grpc-go's server records
// it (otelgrpc, at the call's End) after it has sent the answer, so a
// scrape right after the call may come first: it scrapes again until the
// series is there, a bounded number of times, with no sleep (each scrape
// is a round trip of its own). The caller's checks report a series that
// never came.
func (b *broker) scrapeAfterCall(t *testing.T, rpcLabels map[string]string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	fams, raw := b.scrape(t)
	for range 200 {
		if _, ok := metricValue(fams, "rpc_server_call_duration_seconds", rpcLabels); ok {
			break
		}
		fams, raw = b.scrape(t)
	}
	return fams, raw
}

// metricValue sums the series of family name whose labels include want:
// counter and gauge values, histogram counts. found is false when no
// series matches.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, found bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, w := range want {
			if labels[k] != w {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, found
}

// TestMetrics: after a write, a batch of writes, a denied write and a
// gateway call, /metrics on the admin listener carries every series of
// the contract, with exact values where they are known, and neither the
// planted value nor the planted tokens. Retries, which the emulator does
// not provoke, are checked in upstream's tests.
func TestMetrics(t *testing.T) {
	const (
		plantedValue = "PLANTED-metrics-value-9f3e"
		plantedGH    = "ghp_PLANTEDmetricsGitHubToken0001"
	)
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	cfg := securedConfig(t, "--callers-file="+callers)
	cfg.UpstreamToken = plantedGH // unused in --dev, but must not leak either
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	dep := withBearer(t.Context(), deployerToken)

	const staging = "repos/octo-org/hello-world/environments/staging/secrets/"
	put := func(name string) *secretbrokerv1.PutSecretRequest {
		return &secretbrokerv1.PutSecretRequest{Name: staging + name, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedValue}}
	}
	if _, err := svc.PutSecret(dep, put("METRICS_ONE")); err != nil {
		t.Fatalf("PutSecret: %v", err)
	}
	const items = 3
	batch := &secretbrokerv1.BatchPutSecretsRequest{}
	for i := range items {
		batch.Requests = append(batch.Requests, put(fmt.Sprintf("METRICS_BATCH_%d", i)))
	}
	resp, err := svc.BatchPutSecrets(dep, batch)
	if err != nil {
		t.Fatalf("BatchPutSecrets: %v", err)
	}
	for i, r := range resp.GetResults() {
		if r.GetCode() != code.Code_OK {
			t.Fatalf("batch item %d: %v %s", i, r.GetCode(), r.GetMessage())
		}
	}
	denied := &secretbrokerv1.PutSecretRequest{Name: prodSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedValue}}
	if _, err := svc.PutSecret(dep, denied); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("PutSecret in prod: %v, want PermissionDenied", err)
	}
	if code, body := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+staging+"METRICS_ONE", deployerToken, ""); code != http.StatusOK {
		t.Fatalf("gateway GetSecret: %d %s", code, body)
	}

	deniedPut := map[string]string{"rpc_method": "secretbroker.v1.SecretService/PutSecret", "rpc_response_status_code": "PERMISSION_DENIED"}
	fams, raw := b.scrapeAfterCall(t, deniedPut)
	const putRoute = "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
	tests := []struct {
		name   string
		labels map[string]string
		min    float64 // the value is at least min
		exact  bool    // and exactly min
	}{
		{"rpc_server_call_duration_seconds", map[string]string{"rpc_method": "secretbroker.v1.SecretService/PutSecret", "rpc_response_status_code": "OK"}, 1, true},
		{"rpc_server_call_duration_seconds", deniedPut, 1, true},
		{"http_server_request_duration_seconds", map[string]string{"http_request_method": "GET", "http_response_status_code": "200"}, 1, true},
		{"secretbroker_upstream_requests_total", map[string]string{"route": putRoute, "method": "PUT", "status": "201"}, 1 + items, false},
		{"secretbroker_upstream_request_duration_seconds", map[string]string{"route": putRoute, "method": "PUT"}, 1 + items, false},
		{"secretbroker_upstream_ratelimit_remaining", map[string]string{"credential": "token", "resource": "core"}, 1, false},
		{"secretbroker_upstream_ratelimit_reset_timestamp_seconds", map[string]string{"credential": "token", "resource": "core"}, 1e9, false},
		{"secretbroker_pacer_queue_depth", map[string]string{"credential": "token"}, 0, true},
		{"secretbroker_key_cache_lookups_total", map[string]string{"result": "miss"}, 1, true},
		{"secretbroker_key_cache_lookups_total", map[string]string{"result": "hit"}, 1, false},
		{"secretbroker_key_cache_entries", nil, 1, true},
		{"secretbroker_batch_items_total", map[string]string{"rpc": "BatchPutSecrets", "code": "OK"}, items, true},
		{"secretbroker_batch_size", map[string]string{"rpc": "BatchPutSecrets"}, 1, true},
		{"secretbroker_authz_decisions_total", map[string]string{"verb": "write", "decision": "allow"}, 1 + items, false},
		{"secretbroker_authz_decisions_total", map[string]string{"verb": "write", "decision": "deny"}, 1, false},
		{"secretbroker_audit_write_failures_total", nil, 0, true},
		{"secretbroker_build_info", map[string]string{"version": buildVersion()}, 1, true},
	}
	for _, tt := range tests {
		v, found := metricValue(fams, tt.name, tt.labels)
		switch {
		case !found:
			t.Errorf("%s%v: no such series", tt.name, tt.labels)
		case tt.exact && v != tt.min:
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, v, tt.min)
		case v < tt.min:
			t.Errorf("%s%v = %v, want at least %v", tt.name, tt.labels, v, tt.min)
		}
	}
	if f := fams["secretbroker_batch_size"]; f != nil && f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("secretbroker_batch_size is a %v, want a histogram", f.GetType())
	}
	for _, planted := range []string{plantedValue, plantedGH, deployerToken, "METRICS_ONE", "METRICS_BATCH_"} {
		if strings.Contains(raw, planted) {
			t.Errorf("the scrape holds %q", planted)
		}
	}
	// Without --metrics-caller-label no series names a caller.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "caller" {
					t.Errorf("%s has a caller label without --metrics-caller-label", name)
				}
			}
		}
	}
	// Routes are templates: no concrete path of the calls above.
	if strings.Contains(raw, "octo-org") || strings.Contains(raw, "hello-world") {
		t.Errorf("the scrape holds a concrete path:\n%s", raw)
	}
}

// TestGatewayMetricsIgnoreHost: the gateway's http_server_* series name
// the listener as server_address and server_port, whatever Host header a
// caller sends, so that callers cannot add series (each new one costs
// memory, and past the SDK's cardinality limit every new series, a
// legitimate one too, is folded into an overflow series).
func TestGatewayMetricsIgnoreHost(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	b := startBroker(t, securedConfig(t, "--callers-file="+callers))
	hosts := []string{"", "planted-host-one.example", "planted-host-two.example:4444", "[2001:db8::7]:5555"}
	for _, host := range hosts {
		req, err := http.NewRequest(http.MethodGet, "http://"+b.httpAddr+"/v1/repos/octo-org/hello-world/actions/secrets/public-key", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Authorization", "Bearer "+deployerToken)
		resp, err := b.http.Do(req)
		if err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	wantHost, wantPort, err := net.SplitHostPort(b.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	fams, raw := b.scrape(t)
	for _, name := range []string{"http_server_request_duration_seconds", "http_server_request_body_size_bytes", "http_server_response_body_size_bytes"} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s: no such family", name)
			continue
		}
		var calls uint64
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["server_address"] != wantHost || labels["server_port"] != wantPort {
				t.Errorf("%s series with server_address %q, server_port %q; want the listener's %q, %q",
					name, labels["server_address"], labels["server_port"], wantHost, wantPort)
			}
			calls += m.GetHistogram().GetSampleCount()
		}
		if calls != uint64(len(hosts)) {
			t.Errorf("%s counts %d requests, want %d", name, calls, len(hosts))
		}
	}
	for _, planted := range []string{"planted-host", "2001:db8"} {
		if strings.Contains(raw, planted) {
			t.Errorf("the scrape holds %q, from a caller's Host header", planted)
		}
	}
	// The ports only in labels, but the listener's own: the scrape's
	// numbers (that port, sums, timestamps) may hold the digits by chance.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v != wantPort && (strings.Contains(v, "4444") || strings.Contains(v, "5555")) {
					t.Errorf("%s series with %s=%q, from a caller's Host header", name, l.GetName(), v)
				}
			}
		}
	}
}
