package upstream

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

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
	cpu := "secretbroker_pacer_cpu_time_used_seconds{credential=token}" // the in-memory server answers at once
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
		{"success", []string{"201"}, map[string]float64{req("201"): 1, dur: 1, queue: 0, cpu: 0, points: 5, wait("none"): 1}, 1},
		{"server errors", []string{"502", "503", "201"}, map[string]float64{
			req("502"): 1, req("503"): 1, req("201"): 1, dur: 3, retry("server_error"): 2, queue: 0, cpu: 0, points: 15}, 3},
		{"secondary rate limit", []string{"429", "204"}, map[string]float64{
			req("429"): 1, req("204"): 1, dur: 2, retry("rate_limit"): 1, queue: 0, cpu: 0,
			points:       5, // the 429's points left the window during the 60 s pause
			wait("none"): 1, wait("secondary_pause"): 1, pauses: 1}, 2},
		{"dropped connection", []string{"drop", "201"}, map[string]float64{
			req("transport_error"): 1, req("201"): 1, dur: 2, retry("transport"): 1, queue: 0, cpu: 0, points: 10}, 2},
		{"not retried", []string{"422"}, map[string]float64{req("422"): 1, dur: 1, queue: 0, cpu: 0, points: 5, wait("none"): 1}, 1},
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
// reported, per resource, with a bounded resource label. In fake time,
// with the window's reset ahead (TestRateLimitGaugesAfterReset: after it).
func TestRateLimitMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resource := "core"
		resetAt := time.Now().Add(30 * time.Minute).Unix()
		srv := newMemServer(func(_ int, _ arrival, w *memWriter, _ *http.Request) {
			w.Header().Set("X-Ratelimit-Remaining", "4321")
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(resetAt, 10))
			w.Header().Set("X-Ratelimit-Resource", resource)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, secretJSON)
		})
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		c := memClientWith(t, srv, Config{MeterProvider: mp})
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
			"secretbroker_upstream_ratelimit_reset_timestamp_seconds{credential=token,resource=core}":                   float64(resetAt),
			"secretbroker_upstream_ratelimit_remaining{credential=token,resource=other}":                                4321,
			"secretbroker_upstream_ratelimit_reset_timestamp_seconds{credential=token,resource=other}":                  float64(resetAt),
			"secretbroker_upstream_requests_total{method=GET,route=/orgs/{org}/{app}/secrets/{secret_name},status=200}": 2,
		} {
			if got[k] != v {
				t.Errorf("%s = %v, want %v (have %v)", k, got[k], v, got)
			}
		}
	})
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

// TestCPUTimeUsedMetric: the response time counted against the CPU-time
// budget: a request in flight counts at least what it is expected to
// take (before any answer, the first reserve, 10 s), a completed one its
// response time, until a minute after its answer.
func TestCPUTimeUsedMetric(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			<-gate
			defaultAnswer(w, r)
		})
		reader := sdkmetric.NewManualReader()
		p := DefaultPacing()
		c := memClientWith(t, s, Config{Pacing: &p, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
		const cpu = "secretbroker_pacer_cpu_time_used_seconds{credential=token}"
		var wg sync.WaitGroup
		var err error
		wg.Go(func() { _, err = c.GetSecret(t.Context(), repActions, "S") })
		synctest.Wait()
		if got := metricstest.Read(t, reader)[cpu]; got != pace.FirstReserve.Seconds() {
			t.Errorf("%s = %v with the first request in flight, want %v", cpu, got, pace.FirstReserve.Seconds())
		}
		time.Sleep(1500 * time.Millisecond)
		close(gate)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got := metricstest.Read(t, reader)[cpu]; got != 1.5 {
			t.Errorf("%s = %v after a request of 1.5 s, want 1.5", cpu, got)
		}
		time.Sleep(time.Minute)
		if got := metricstest.Read(t, reader)[cpu]; got != 0 {
			t.Errorf("%s = %v a minute later, want 0", cpu, got)
		}
	})
}

// TestRateLimitGaugesAfterReset: once GitHub's reset time of a window has
// passed, the remaining and reset gauges of that window are no longer
// reported (the broker does not know the new window's figures until an
// answer tells it), at collection, without a request; a window whose
// reset is ahead, or unknown, is reported as GitHub last gave it. In fake
// time.
func TestRateLimitGaugesAfterReset(t *testing.T) {
	const (
		remaining = "secretbroker_upstream_ratelimit_remaining{credential=token,resource=core}"
		reset     = "secretbroker_upstream_ratelimit_reset_timestamp_seconds{credential=token,resource=core}"
	)
	for _, tc := range []struct {
		name      string
		resetIn   time.Duration // 0: no x-ratelimit-reset
		wait      time.Duration // after the answer, before the collection
		wantShown bool
	}{
		{"window current", 30 * time.Second, 29 * time.Second, true},
		{"reset passed", 30 * time.Second, 31 * time.Second, false},
		{"reset reached", 30 * time.Second, 30 * time.Second, false},
		{"used up, reset passed", 10 * time.Second, time.Minute, false},
		{"no reset told", 0, 2 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// The bubble's clock starts on a whole second, as GitHub's
				// reset is.
				start := time.Now()
				left := "4321"
				if tc.name == "used up, reset passed" {
					left = "0"
				}
				srv := newMemServer(func(_ int, _ arrival, w *memWriter, _ *http.Request) {
					w.Header().Set("X-Ratelimit-Remaining", left)
					w.Header().Set("X-Ratelimit-Resource", "core")
					if tc.resetIn > 0 {
						w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(start.Add(tc.resetIn).Unix(), 10))
					}
					w.Header().Set("Content-Type", "application/json")
					_, _ = io.WriteString(w, secretJSON)
				})
				reader := sdkmetric.NewManualReader()
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				c := memClientWith(t, srv, Config{MeterProvider: mp})
				if _, err := c.GetSecret(t.Context(), orgActions, "S"); err != nil {
					t.Fatal(err)
				}
				wantLeft, _ := strconv.Atoi(left)
				if got := metricstest.Read(t, reader); got[remaining] != float64(wantLeft) {
					t.Fatalf("at the answer: %s = %v, want %d (have %v)", remaining, got[remaining], wantLeft, got)
				}
				time.Sleep(tc.wait)
				got := metricstest.Read(t, reader)
				_, shown := got[remaining]
				_, resetShown := got[reset]
				if shown != tc.wantShown || (tc.resetIn > 0 && resetShown != tc.wantShown) {
					t.Errorf("%v after the answer: remaining shown %v (%v), reset shown %v (%v); want shown: %v",
						tc.wait, shown, got[remaining], resetShown, got[reset], tc.wantShown)
				}
				if tc.wantShown && got[remaining] != float64(wantLeft) {
					t.Errorf("%s = %v, want %d", remaining, got[remaining], wantLeft)
				}
				// The next answer reports its window again.
				if !tc.wantShown {
					start = time.Now()
					if _, err := c.GetSecret(t.Context(), orgActions, "S"); err != nil {
						t.Fatal(err)
					}
					if got := metricstest.Read(t, reader); got[remaining] != float64(wantLeft) || got[reset] != float64(start.Add(tc.resetIn).Unix()) {
						t.Errorf("after the next answer: %s = %v, %s = %v; want %d and the new reset", remaining, got[remaining], reset, got[reset], wantLeft)
					}
				}
			})
		})
	}
}
