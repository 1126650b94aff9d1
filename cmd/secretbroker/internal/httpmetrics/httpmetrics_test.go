package httpmetrics

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// httpMetricsRequest is one request of TestHTTPMetricsAsOtelhttp and how
// its handler answers it.
type httpMetricsRequest struct {
	method, target, body, proto string
	tls                         bool
	// answer writes the answer; it reads the whole body first.
	answer func(w http.ResponseWriter)
}

// The HTTP metrics without otelhttp (the gateway's when no span is
// recorded) are otelhttp's: for the same requests, the same instruments (name, unit,
// description, scope, buckets) with the same data points, attributes,
// counts and body sizes. Only the durations differ.
func TestHTTPMetricsAsOtelhttp(t *testing.T) {
	writes := func(code int, body string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			if code != 0 {
				w.WriteHeader(code)
			}
			if body != "" {
				_, _ = io.WriteString(w, body)
			}
		}
	}
	requests := []httpMetricsRequest{
		{method: "GET", target: "/v1/repos/o/r/actions/secrets/public-key", answer: writes(0, `{"key_id":"1","key":"k"}`)},
		{method: "GET", target: "/v1/repos/o/r/actions/secrets/public-key", answer: writes(0, `{"key_id":"1","key":"k"}`)},
		{method: "PUT", target: "/v1/repos/o/r/actions/secrets/A", body: `{"value":"PLANTED"}`, answer: writes(http.StatusCreated, "{}")},
		{method: "DELETE", target: "/v1/repos/o/r/actions/secrets/A", answer: writes(http.StatusNoContent, "")},
		{method: "GET", target: "/nowhere", answer: writes(http.StatusNotFound, `{"code":5}`)},
		{method: "GET", target: "/v1/empty", answer: writes(0, "")},
		{method: "PROPFIND", target: "/v1/x", answer: writes(http.StatusMethodNotAllowed, "")},
		{method: "get", target: "/v1/x", answer: writes(0, "ok")},
		{method: "POST", target: "/v1/x", body: strings.Repeat("b", 3000), proto: "HTTP/1.0", answer: writes(http.StatusTooManyRequests, "slow down")},
		{method: "GET", target: "/v1/x", tls: true, answer: writes(0, "ok")},
		{method: "GET", target: "/v1/x", answer: func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints) // informational: not the answer's status
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, "later")
		}},
		{method: "GET", target: "/v1/x", answer: func(w http.ResponseWriter) {
			w.(http.Flusher).Flush() // flushing first answers 200
			_, _ = io.WriteString(w, "flushed")
		}},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests[r.Context().Value(requestIndex{}).(int)].answer(w)
	})
	// (The gateway's server name is its listener's address, which always
	// has a port; TestHTTPMetricsPortlessServerName is the other case.)
	for _, server := range []string{"127.0.0.1:18080", "localhost:80", "[::1]:443"} {
		t.Run(server, func(t *testing.T) {
			serve := func(h http.Handler) {
				for i, rq := range requests {
					var body io.Reader
					if rq.body != "" {
						body = strings.NewReader(rq.body)
					}
					r := httptest.NewRequestWithContext(context.WithValue(t.Context(), requestIndex{}, i), rq.method, rq.target, body)
					if rq.proto != "" {
						r.Proto, r.ProtoMajor, r.ProtoMinor = rq.proto, 1, 0
					}
					if rq.tls {
						r.TLS = &tls.ConnectionState{}
					}
					h.ServeHTTP(httptest.NewRecorder(), r)
				}
			}
			want := collectHTTPMetrics(t, func(mp *sdkmetric.MeterProvider) {
				serve(otelhttp.NewHandler(handler, "gateway", otelhttp.WithMeterProvider(mp),
					otelhttp.WithTracerProvider(tracenoop.NewTracerProvider()), otelhttp.WithServerName(server)))
			})
			got := collectHTTPMetrics(t, func(mp *sdkmetric.MeterProvider) {
				serve(New(handler, mp, propagation.TraceContext{}, server))
			})
			if len(want.ScopeMetrics) != 1 || len(got.ScopeMetrics) != 1 {
				t.Fatalf("scopes: otelhttp %d, ours %d; want 1 each", len(want.ScopeMetrics), len(got.ScopeMetrics))
			}
			if w, g := want.ScopeMetrics[0].Scope, got.ScopeMetrics[0].Scope; w != g {
				t.Errorf("scope %+v, otelhttp's %+v", g, w)
			}
			wm, gm := want.ScopeMetrics[0].Metrics, got.ScopeMetrics[0].Metrics
			if len(wm) != 3 || len(gm) != len(wm) {
				t.Fatalf("%d instruments, otelhttp %d (want 3)", len(gm), len(wm))
			}
			for i := range wm {
				compareHistograms(t, wm[i], gm[i])
			}
		})
	}
}

// A server name without a port gives no server.port, whatever port the
// caller's Host header names (otelhttp would take that one): no series of
// the caller's choosing.
func TestHTTPMetricsPortlessServerName(t *testing.T) {
	rm := collectHTTPMetrics(t, func(mp *sdkmetric.MeterProvider) {
		h := New(http.NotFoundHandler(), mp, propagation.TraceContext{}, "gateway")
		r := httptest.NewRequest(http.MethodGet, "http://example.com:8443/v1/x", nil)
		h.ServeHTTP(httptest.NewRecorder(), r)
	})
	if len(rm.ScopeMetrics) != 1 || len(rm.ScopeMetrics[0].Metrics) != 3 {
		t.Fatalf("recorded %+v, want three instruments", rm.ScopeMetrics)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		h, ok := m.Data.(metricdata.Histogram[int64])
		if !ok {
			continue // the duration: the same attributes
		}
		if len(h.DataPoints) != 1 {
			t.Fatalf("%s: %d series, want 1", m.Name, len(h.DataPoints))
		}
		attrs := h.DataPoints[0].Attributes
		if v, ok := attrs.Value("server.address"); !ok || v.AsString() != "gateway" {
			t.Errorf("%s: server.address %v, want the server name", m.Name, v)
		}
		if v, ok := attrs.Value("server.port"); ok {
			t.Errorf("%s: server.port %v from the caller's Host header", m.Name, v)
		}
	}
}

// requestIndex is the context key of a request's index in
// TestHTTPMetricsAsOtelhttp.
type requestIndex struct{}

// collectHTTPMetrics runs serve with a meter provider of its own and
// returns what it recorded, its metrics ordered by name.
func collectHTTPMetrics(t *testing.T, serve func(*sdkmetric.MeterProvider)) metricdata.ResourceMetrics {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	serve(mp)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		slices.SortFunc(sm.Metrics, func(a, b metricdata.Metrics) int { return strings.Compare(a.Name, b.Name) })
	}
	return rm
}

// compareHistograms reports where got differs from otelhttp's want, but
// in the sums and extremes of durations, which are the run's own.
func compareHistograms(t *testing.T, want, got metricdata.Metrics) {
	t.Helper()
	if got.Name != want.Name || got.Unit != want.Unit || got.Description != want.Description {
		t.Errorf("instrument %s (%s, %q), otelhttp's %s (%s, %q)", got.Name, got.Unit, got.Description, want.Name, want.Unit, want.Description)
		return
	}
	type point struct {
		attrs  string
		count  uint64
		bounds []float64
		sum    float64
	}
	points := func(data metricdata.Aggregation) []point {
		var out []point
		add := func(attrs attribute.Set, count uint64, bounds []float64, sum float64) {
			if strings.HasSuffix(want.Name, ".duration") {
				sum = 0
			}
			out = append(out, point{attrs.Encoded(attribute.DefaultEncoder()), count, bounds, sum})
		}
		switch h := data.(type) {
		case metricdata.Histogram[int64]:
			for _, dp := range h.DataPoints {
				add(dp.Attributes, dp.Count, dp.Bounds, float64(dp.Sum))
			}
		case metricdata.Histogram[float64]:
			for _, dp := range h.DataPoints {
				add(dp.Attributes, dp.Count, dp.Bounds, dp.Sum)
			}
		default:
			t.Fatalf("%s is a %T, want a histogram", want.Name, data)
		}
		slices.SortFunc(out, func(a, b point) int { return strings.Compare(a.attrs, b.attrs) })
		return out
	}
	w, g := points(want.Data), points(got.Data)
	if len(w) < 8 {
		t.Fatalf("%s: otelhttp recorded %d series, want the table's variety", want.Name, len(w))
	}
	if len(g) != len(w) {
		t.Errorf("%s: %d series, otelhttp %d:\n got %v\nwant %v", want.Name, len(g), len(w), g, w)
		return
	}
	for i := range w {
		if g[i].attrs != w[i].attrs || g[i].count != w[i].count || g[i].sum != w[i].sum || !slices.Equal(g[i].bounds, w[i].bounds) {
			t.Errorf("%s: series %+v, otelhttp's %+v", want.Name, g[i], w[i])
		}
	}
}

// Past httpSeriesCap a series' attribute set is built for its request and
// not kept; below it, it is built once.
func TestHTTPMetricsSeriesCap(t *testing.T) {
	m := newHTTPServerMetrics(http.NotFoundHandler(), sdkmetric.NewMeterProvider(), propagation.TraceContext{}, "127.0.0.1:8080")
	kept := httpSeries{method: "GET", status: 200, proto: "HTTP/1.1"}
	first := m.recordOptions(kept)
	if again := m.recordOptions(kept); &again[0] != &first[0] {
		t.Error("a series below the cap was built again")
	}
	m.count.Store(httpSeriesCap)
	past := httpSeries{method: "PUT", status: 201, proto: "HTTP/1.1"}
	opts := m.recordOptions(past)
	if _, ok := m.series.Load(past); ok {
		t.Error("a series past the cap was kept")
	}
	if len(opts) != 1 {
		t.Fatalf("%d options, want 1", len(opts))
	}
	want := attribute.NewSet(m.attributes(past)...)
	cfg := metric.NewRecordConfig(opts)
	if got := cfg.Attributes(); !got.Equals(&want) {
		t.Errorf("attributes %v, want %v", got.ToSlice(), want.ToSlice())
	}
}
