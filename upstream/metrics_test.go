package upstream

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream/metricstest"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// TestAttemptMetrics: one requests_total and one duration sample per
// attempt, by route template, method and status; one retries_total per
// retry, by cause; the pacer's queue depth, points used, waits (one per
// attempt: the first goes at once, a retry after a rate limit waits for
// the pause; other retries wait for the write spacing or not, as their
// random backoff falls) and pauses.
func TestAttemptMetrics(t *testing.T) {
	const route = "/repos/{owner}/{repo}/{app}/secrets/{secret_name}"
	req := func(status string) string {
		return "secretbroker_upstream_requests_total{method=PUT,route=" + route + ",status=" + status + "}"
	}
	retry := func(cause string) string {
		return "secretbroker_upstream_retries_total{cause=" + cause + ",route=" + route + "}"
	}
	dur := "secretbroker_upstream_request_duration_seconds{method=PUT,route=" + route + "}"
	queue := "secretbroker_pacer_queue_depth{credential=token}"
	points := "secretbroker_pacer_points_used{credential=token}"
	wait := func(reason string) string {
		return "secretbroker_pacer_wait_seconds{credential=token,reason=" + reason + "}"
	}
	const waitPrefix = "secretbroker_pacer_wait_seconds{"
	pauses := "secretbroker_pacer_pauses_total{credential=token,kind=secondary}"
	for _, tc := range []struct {
		name  string
		steps []string
		want  map[string]float64
		waits float64 // samples of secretbroker_pacer_wait_seconds, all reasons
	}{
		{"success", []string{"201"}, map[string]float64{req("201"): 1, dur: 1, queue: 0, points: 5, wait("none"): 1}, 1},
		{"server errors", []string{"502", "503", "201"}, map[string]float64{
			req("502"): 1, req("503"): 1, req("201"): 1, dur: 3, retry("server_error"): 2, queue: 0, points: 15}, 3},
		{"secondary rate limit", []string{"429", "204"}, map[string]float64{
			req("429"): 1, req("204"): 1, dur: 2, retry("rate_limit"): 1, queue: 0,
			points:       5, // the 429's points left the window during the 60 s pause
			wait("none"): 1, wait("secondary_pause"): 1, pauses: 1}, 2},
		{"dropped connection", []string{"drop", "201"}, map[string]float64{
			req("transport_error"): 1, req("201"): 1, dur: 2, retry("transport"): 1, queue: 0, points: 10}, 2},
		{"not retried", []string{"422"}, map[string]float64{req("422"): 1, dur: 1, queue: 0, points: 5, wait("none"): 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reader := sdkmetric.NewManualReader()
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				p := retryPacing()
				c := memClientWith(t, newMemServer(scripted(tc.steps...)), Config{Pacing: &p, MeterProvider: mp})
				_, _ = c.PutSecret(t.Context(), repActions, "PLANTED_NAME", testPut)
				got := metricstest.Read(t, reader)
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("%s = %v, want %v", k, got[k], v)
					}
				}
				waits := 0.0
				for k := range got {
					if strings.HasPrefix(k, waitPrefix) {
						waits += got[k]
					} else if _, ok := tc.want[k]; !ok {
						t.Errorf("unexpected series %s = %v", k, got[k])
					}
					for _, leak := range []string{"PLANTED_NAME", "acme", string(testToken), testPut.EncryptedValue} {
						if strings.Contains(k, leak) {
							t.Errorf("series %s holds %q", k, leak)
						}
					}
				}
				if waits != tc.waits {
					t.Errorf("%d pacer waits recorded, want %v, one per attempt", int(waits), tc.waits)
				}
			})
		})
	}
}

// TestRateLimitMetrics: the gauges keep the last rate limits GitHub
// reported, per resource, with a bounded resource label.
func TestRateLimitMetrics(t *testing.T) {
	resource := "core"
	f := newFake(t, func(*http.Request) reply {
		return reply{Status: http.StatusOK, Body: secretJSON, Header: map[string]string{
			"X-Ratelimit-Remaining": "4321", "X-Ratelimit-Reset": "1700000000", "X-Ratelimit-Resource": resource}}
	})
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c := newClient(t, Config{BaseURL: f.URL, MeterProvider: mp})
	if _, err := c.GetSecret(t.Context(), orgActions, "S"); err != nil {
		t.Fatal(err)
	}
	resource = "Not a <label> " + strings.Repeat("x", 100)
	if _, err := c.GetSecret(t.Context(), orgActions, "S"); err != nil {
		t.Fatal(err)
	}
	got := metricstest.Read(t, reader)
	for k, v := range map[string]float64{
		"secretbroker_upstream_ratelimit_remaining{credential=token,resource=core}":                                 4321,
		"secretbroker_upstream_ratelimit_reset_timestamp_seconds{credential=token,resource=core}":                   1700000000,
		"secretbroker_upstream_ratelimit_remaining{credential=token,resource=other}":                                4321,
		"secretbroker_upstream_ratelimit_reset_timestamp_seconds{credential=token,resource=other}":                  1700000000,
		"secretbroker_upstream_requests_total{method=GET,route=/orgs/{org}/{app}/secrets/{secret_name},status=200}": 2,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (have %v)", k, got[k], v, got)
		}
	}
}

func TestResourceLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "unknown"},
		{"core", "core"},
		{"code_scanning_upload", "code_scanning_upload"},
		{"graphql", "graphql"},
		{"Core", "other"},
		{"core/../x", "other"},
		{strings.Repeat("a", 41), "other"},
	} {
		if got := resourceLabel(tc.in); got != tc.want {
			t.Errorf("resourceLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestResourceLabelsBounded: past maxResources distinct resources, new
// ones are kept as "other".
func TestResourceLabelsBounded(t *testing.T) {
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxResources + 5 {
		m.rateLimit(Credential, paceRateLimit(fmt.Sprintf("r%d", i), i))
	}
	if len(m.limits[Credential]) != maxResources+1 {
		t.Errorf("%d resources kept, want %d", len(m.limits[Credential]), maxResources+1)
	}
	if got := m.limits[Credential]["other"].remaining; got != maxResources+4 {
		t.Errorf("other = %d, want the last one reported, %d", got, maxResources+4)
	}
}

func paceRateLimit(resource string, remaining int) pace.RateLimit {
	return pace.RateLimit{Status: http.StatusOK, Remaining: remaining, Used: -1, Resource: resource}
}

// TestPacerQueueDepthMetric: the gauge reads the pacer's queue as it is
// when collected.
func TestPacerQueueDepthMetric(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			if n == 0 {
				<-gate
			}
			defaultAnswer(w, r)
		})
		reader := sdkmetric.NewManualReader()
		p := DefaultPacing()
		c := memClientWith(t, s, Config{Pacing: &p, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
		const queue = "secretbroker_pacer_queue_depth{credential=token}"
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() { _, errs[i] = c.PutSecret(t.Context(), repActions, fmt.Sprint("S", i), testPut) })
		}
		waitQueued(t, c, 3) // one in flight
		if got := metricstest.Read(t, reader)[queue]; got != 3 {
			t.Errorf("%s = %v with 3 queued, want 3", queue, got)
		}
		close(gate)
		wg.Wait()
		noErrors(t, errs)
		if got := metricstest.Read(t, reader)[queue]; got != 0 {
			t.Errorf("%s = %v once drained, want 0", queue, got)
		}
	})
}
