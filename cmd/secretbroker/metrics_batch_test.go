package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// githubTally wraps the emulator: it counts the answers GitHub gave, by
// method and status, and rotates the scope's key when the rotateAt-th PUT
// arrives (before the emulator handles it).
type githubTally struct {
	emu      *emulator.Server
	scope    string
	rotateAt int

	mu       sync.Mutex
	puts     int
	answers  map[string]int // "METHOD STATUS" -> count
	requests int
	points   int // what the requests cost against the secondary limit
}

func (g *githubTally) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if r.Method == http.MethodPut {
		g.puts++
		if g.puts == g.rotateAt {
			g.emu.RotateKey(g.scope)
		}
	}
	g.mu.Unlock()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	g.emu.ServeHTTP(rec, r)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answers[fmt.Sprint(r.Method, " ", rec.status)]++
	g.requests++
	if r.Method == http.MethodGet {
		g.points++
	} else {
		g.points += 5
	}
}

func (g *githubTally) answered(method string, status int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.answers[fmt.Sprint(method, " ", status)]
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// TestMetricsAfterBatch is the metrics "Done when" test of issue 9: the
// broker runs as in production against the emulator; a batch of writes
// to one environment meets a 502 (retried), a secondary rate limit with
// Retry-After (a pause, retried) and a key rotation midway (the writes
// sealed with the old key get 422, the key is revalidated once and they
// are sealed again). /metrics on the admin listener then holds each
// series of the issue with the values GitHub's side counted: exact where
// the run decides them, checked against the emulator's own tally where
// timing decides how many (the 422s), bounded where only the clock does.
// --metrics-caller-label is on: the batch's series name the caller.
func TestMetricsAfterBatch(t *testing.T) {
	const (
		token  = "ghp_PLANTEDbatchMetricsTOKEN0123456789abc"
		value  = "PLANTED-batch-metrics-value-71c2"
		scope  = "repos/octo-org/hello-world/environments/staging"
		items  = 6
		caller = "token:deployer"
	)
	start := time.Now()
	emu := emulator.New(emulator.Options{Token: token, Limits: emulator.GitHubLimits()})
	emu.SeedDemo()
	emu.InjectFault(emulator.Fault{Route: emulator.RoutePutEnvSecret, Status: http.StatusBadGateway})
	emu.InjectFault(emulator.Fault{Route: emulator.RoutePutEnvSecret, Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"1"}}, Body: `{"message":"You have exceeded a secondary rate limit."}`})
	gh := &githubTally{emu: emu, scope: scope, rotateAt: 4, answers: map[string]int{}}
	hs := httptest.NewServer(gh)
	t.Cleanup(hs.Close)

	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + hs.URL, "--upstream-token-file=" + writeFile(t, "token", token),
		"--upstream-write-interval=100ms", "--callers-file=" + callers,
		"--policy-file=" + writeFile(t, "policy.yaml", accessPolicy), "--metrics-caller-label",
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	// The credential check (GET /rate_limit) is done before the batch,
	// so that every request is answered when /metrics is read.
	if !b.logs.waitFor("GitHub credential verified", 1, 30*time.Second) {
		t.Fatal("the credential was not verified")
	}

	batch := &secretbrokerv1.BatchPutSecretsRequest{}
	for i := range items {
		batch.Requests = append(batch.Requests, &secretbrokerv1.PutSecretRequest{
			Name: fmt.Sprintf("%s/secrets/BATCH_METRICS_%d", scope, i), Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value}})
	}
	resp, err := secretbrokerv1.NewSecretServiceClient(b.conn).BatchPutSecrets(withBearer(t.Context(), deployerToken), batch)
	if err != nil {
		t.Fatalf("BatchPutSecrets: %v", err)
	}
	for i, r := range resp.GetResults() {
		if r.GetCode() != code.Code_OK {
			t.Fatalf("batch item %d: %v %s", i, r.GetCode(), r.GetMessage())
		}
		if got, err := emu.Open(scope, fmt.Sprint("BATCH_METRICS_", i)); err != nil || string(got) != value {
			t.Fatalf("item %d: GitHub holds a value that does not open to the one sent (%v)", i, err)
		}
	}
	stale := gh.answered(http.MethodPut, http.StatusUnprocessableEntity)
	if stale < 1 {
		t.Fatalf("no write met the rotated key (%v)", gh.answers)
	}

	fams, raw := b.scrapeAfterCall(t, map[string]string{"rpc_method": "secretbroker.v1.SecretService/BatchPutSecrets"})
	const (
		putRoute = "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"
		keyRoute = "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"
		cred     = "token"
	)
	gh.mu.Lock()
	requests, points, puts := gh.requests, gh.points, gh.puts
	t.Logf("GitHub answered %v", gh.answers)
	gh.mu.Unlock()
	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	exact := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		// One count per attempt: every item created once, the 502, the
		// 429 and the 422s each on its own status.
		{"secretbroker_upstream_requests_total", l("route", putRoute, "method", "PUT", "status", "201"), items},
		{"secretbroker_upstream_requests_total", l("route", putRoute, "method", "PUT", "status", "502"), 1},
		{"secretbroker_upstream_requests_total", l("route", putRoute, "method", "PUT", "status", "429"), 1},
		{"secretbroker_upstream_requests_total", l("route", putRoute, "method", "PUT", "status", "422"), float64(stale)},
		// The key: fetched once for the batch, revalidated once after the rotation.
		{"secretbroker_upstream_requests_total", l("route", keyRoute, "method", "GET", "status", "200"), 2},
		{"secretbroker_upstream_requests_total", l("route", "/rate_limit", "method", "GET", "status", "200"), 1},
		{"secretbroker_upstream_requests_total", nil, float64(requests)},
		{"secretbroker_upstream_request_duration_seconds", l("route", putRoute, "method", "PUT"), float64(puts)},
		{"secretbroker_upstream_request_duration_seconds", nil, float64(requests)},
		// The 422s are not the client's retries: the service seals again.
		{"secretbroker_upstream_retries_total", l("route", putRoute, "cause", "server_error"), 1},
		{"secretbroker_upstream_retries_total", l("route", putRoute, "cause", "rate_limit"), 1},
		{"secretbroker_upstream_retries_total", nil, 2},
		{"secretbroker_pacer_queue_depth", l("credential", cred), 0},
		// Every request completed within the last minute, none in flight.
		{"secretbroker_pacer_points_used", l("credential", cred), float64(points)},
		// One wait sample per admission, that is per request GitHub saw.
		{"secretbroker_pacer_wait_seconds", l("credential", cred), float64(requests)},
		{"secretbroker_pacer_pauses_total", l("credential", cred, "kind", "secondary"), 1},
		{"secretbroker_pacer_pauses_total", nil, 1},
		{"secretbroker_key_cache_lookups_total", l("result", "miss"), 1},
		{"secretbroker_key_cache_lookups_total", l("result", "rotation"), 1},
		{"secretbroker_key_cache_entries", nil, 1},
		{"secretbroker_batch_items_total", l("rpc", "BatchPutSecrets", "code", "OK", "caller", caller), items},
		{"secretbroker_batch_items_total", nil, items},
		{"secretbroker_batch_size", l("rpc", "BatchPutSecrets"), 1},
		{"secretbroker_authz_decisions_total", l("verb", "write", "decision", "allow", "caller", caller), items},
		{"secretbroker_authz_decisions_total", nil, items},
		{"secretbroker_audit_write_failures_total", nil, 0},
		{"secretbroker_build_info", l("version", buildVersion()), 1},
		{"rpc_server_call_duration_seconds", l("rpc_method", "secretbroker.v1.SecretService/BatchPutSecrets", "rpc_response_status_code", "OK"), 1},
	}
	for _, tt := range exact {
		v, found := metricValue(fams, tt.name, tt.labels)
		switch {
		case !found:
			t.Errorf("%s%v: no such series", tt.name, tt.labels)
		case v != tt.want:
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, v, tt.want)
		}
	}
	// The GitHub side's own count, for the record of what the run was.
	if got := emu.Count(emulator.RoutePutEnvSecret); got != puts {
		t.Errorf("the emulator counted %d PUTs, the tally %d", got, puts)
	}
	if want := items + 2 + stale; puts != want {
		t.Errorf("%d PUTs, want %d: one per item, the 502's and the 429's retries, one per 422", puts, want)
	}

	// Every wait reason is one of the contract's.
	reasons := map[string]bool{"none": true, "in_flight": true, "spacing": true, "points": true,
		"primary": true, "secondary_pause": true, "backoff": true}
	waits := map[string]uint64{}
	for _, m := range fams["secretbroker_pacer_wait_seconds"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "reason" {
				waits[lp.GetValue()] += m.GetHistogram().GetSampleCount()
				if !reasons[lp.GetValue()] {
					t.Errorf("pacer wait reason %q is not in the contract", lp.GetValue())
				}
			}
		}
	}
	t.Logf("pacer waits by reason: %v", waits)
	// The credential check went at once; the batch's writes, started
	// together, queue behind the write slot (and the pause). Which reason
	// held each longest depends on when its goroutine ran; the pacer's
	// tests pin the reasons down with a fake clock.
	if waits["none"] < 1 {
		t.Errorf("no request admitted at once: %v", waits)
	}
	if waited := float64(requests) - float64(waits["none"]); waited < 1 {
		t.Errorf("no request waited in the pacer: %v", waits)
	}
	if f := fams["secretbroker_pacer_wait_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("secretbroker_pacer_wait_seconds is a %v, want a histogram", f.GetType())
	}
	// GitHub's last rate-limit report: the quota less what the run used;
	// the reset within the emulator's hour.
	if v, found := metricValue(fams, "secretbroker_upstream_ratelimit_remaining", l("credential", cred, "resource", "core")); !found || v < float64(5000-requests) || v >= 5000 {
		t.Errorf("secretbroker_upstream_ratelimit_remaining = %v (found %v), want between %d and 4999", v, found, 5000-requests)
	}
	if v, _ := metricValue(fams, "secretbroker_upstream_ratelimit_reset_timestamp_seconds", l("credential", cred, "resource", "core")); v < float64(start.Unix()) || v > float64(time.Now().Add(time.Hour+time.Second).Unix()) {
		t.Errorf("secretbroker_upstream_ratelimit_reset_timestamp_seconds = %v, want within the hour from the start", v)
	}
	for _, planted := range []string{value, token, deployerToken, "BATCH_METRICS", "octo-org", "staging"} {
		if strings.Contains(raw, planted) {
			t.Errorf("the scrape holds %q", planted)
		}
	}
}

// TestMetricsCallerLabelFlag: --metrics-caller-label and its variable set
// Config.MetricsCallerLabel; it is off by default.
func TestMetricsCallerLabelFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--metrics-caller-label"}, nil, true},
		{"flag false", []string{"--metrics-caller-label=false"}, map[string]string{"SECRETBROKER_METRICS_CALLER_LABEL": "true"}, false},
		{"environment", nil, map[string]string{"SECRETBROKER_METRICS_CALLER_LABEL": "true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig(append([]string{"--dev"}, tc.args...), envMap(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MetricsCallerLabel != tc.want {
				t.Errorf("MetricsCallerLabel = %v, want %v", cfg.MetricsCallerLabel, tc.want)
			}
		})
	}
}
