package upstream

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream/metricstest"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// newAttemptMetrics returns metrics on a manual reader.
func newAttemptMetrics(t testing.TB) (*metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// The precomputed attribute sets count each attempt under its route,
// method and status, as building them per call did: answers by status
// code, errors by theirs, no answer as transport_error.
func TestAttemptLabels(t *testing.T) {
	m, reader := newAttemptMetrics(t)
	put := request{method: http.MethodPut, route: "/repos/{owner}/{repo}/actions/secrets/{name}"}
	get := request{method: http.MethodGet, route: "/repos/{owner}/{repo}/actions/secrets/{name}"}
	ok := pace.RateLimit{Status: http.StatusCreated, Remaining: -1, Used: -1}
	for range 3 {
		m.attempt(t.Context(), put, Credential, ok, nil, time.Millisecond)
	}
	m.attempt(t.Context(), get, Credential, pace.RateLimit{Status: http.StatusNotFound, Remaining: -1, Used: -1}, nil, time.Millisecond)
	m.attempt(t.Context(), get, Credential, pace.RateLimit{Remaining: -1, Used: -1}, &Error{StatusCode: 502}, time.Millisecond)
	m.attempt(t.Context(), get, Credential, pace.RateLimit{Remaining: -1, Used: -1}, errors.New("connection reset"), time.Millisecond)
	gone, cancel := context.WithCancel(t.Context())
	cancel() // the caller went away: no answer, and not GitHub's failure
	m.attempt(gone, get, Credential, pace.RateLimit{Remaining: -1, Used: -1}, context.Canceled, time.Millisecond)
	got := metricstest.Read(t, reader)
	const prefix = "secretbroker_upstream_requests_total{method="
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{prefix + "PUT,route=" + put.route + ",status=201}", 3},
		{prefix + "GET,route=" + get.route + ",status=404}", 1},
		{prefix + "GET,route=" + get.route + ",status=502}", 1},
		{prefix + "GET,route=" + get.route + ",status=transport_error}", 1},
		{prefix + "GET,route=" + get.route + ",status=canceled}", 1},
		{"secretbroker_upstream_request_duration_seconds{method=PUT,route=" + put.route + "}", 3},
		{"secretbroker_upstream_request_duration_seconds{method=GET,route=" + get.route + "}", 4},
	} {
		if got[tc.series] != tc.want {
			t.Errorf("%s = %v, want %v", tc.series, got[tc.series], tc.want)
		}
	}
}

// Counting an attempt whose labels were seen before allocates nothing.
func TestAttemptAllocatesNothing(t *testing.T) {
	m, _ := newAttemptMetrics(t)
	r := request{method: http.MethodPut, route: "/repos/{owner}/{repo}/actions/secrets/{name}"}
	rl := pace.RateLimit{Status: http.StatusCreated, Remaining: -1, Used: -1}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { m.attempt(ctx, r, Credential, rl, nil, time.Millisecond) }); n != 0 {
		t.Errorf("attempt allocates %v times a call, want 0", n)
	}
}

func BenchmarkAttempt(b *testing.B) {
	m, _ := newAttemptMetrics(b)
	r := request{method: http.MethodPut, route: "/repos/{owner}/{repo}/actions/secrets/{name}"}
	rl := pace.RateLimit{Status: http.StatusCreated, Remaining: -1, Used: -1}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		m.attempt(ctx, r, Credential, rl, nil, time.Millisecond)
	}
}

// Admitted records each wait under its credential and reason, through
// the precomputed sets for known reasons and built ones for others, and
// allocates nothing for a known reason.
func TestAdmittedLabels(t *testing.T) {
	m, reader := newAttemptMetrics(t)
	o := m.observer(Credential)
	o.Admitted(pace.Request{}, 0, 0)
	o.Admitted(pace.Request{}, time.Second, pace.ReasonSpacing)
	o.Admitted(pace.Request{}, time.Second, pace.ReasonCPU)
	o.Admitted(pace.Request{}, time.Second, pace.ReasonCPU+1)
	got := metricstest.Read(t, reader)
	for _, reason := range []string{"none", "spacing", "cpu_time"} {
		series := "secretbroker_pacer_wait_seconds{credential=" + Credential + ",reason=" + reason + "}"
		want := 1.0
		if reason == "none" {
			want = 2 // 0 and the unknown reason
		}
		if got[series] != want {
			t.Errorf("%s = %v, want %v (all: %v)", series, got[series], want, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { o.Admitted(pace.Request{}, 0, pace.ReasonSpacing) }); n != 0 {
		t.Errorf("Admitted allocates %v times a call, want 0", n)
	}
}

func BenchmarkAdmitted(b *testing.B) {
	m, _ := newAttemptMetrics(b)
	o := m.observer(Credential)
	b.ReportAllocs()
	for b.Loop() {
		o.Admitted(pace.Request{}, 0, 0)
	}
}
