package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"
)

func TestMetricsExporterFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{env: nil, want: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: ""}, // an endpoint alone pushes traces only
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "none"}, want: ""},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}, want: "otlp"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "console"}, want: "console"},
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, wantErr: true}, // /metrics serves it
		{env: map[string]string{"OTEL_METRICS_EXPORTER": "zipkin"}, wantErr: true},
	} {
		got, err := metricsExporterFromEnv(envMap(tc.env))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("env %v: got %q, %v; want %q (error %v)", tc.env, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestMetricsPushedOverOTLP shows the instruments /metrics serves going
// out over OTLP/HTTP as well, to a receiver on loopback, when
// OTEL_METRICS_EXPORTER=otlp: the meter provider's shutdown flushes them.
func TestMetricsPushedOverOTLP(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" {
			http.Error(w, "not an OTLP metrics export", http.StatusNotFound)
			return
		}
		raw, err := otlpBody(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(raw, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rm := range export.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					names = append(names, m.GetName())
				}
			}
		}
		mu.Unlock()
		out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer srv.Close()

	env := map[string]string{
		"OTEL_METRICS_EXPORTER":       "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	}
	for k, v := range env {
		t.Setenv(k, v) // autoexport reads the process environment
	}
	exporter, err := metricsExporterFromEnv(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	mp, handler, err := setupMetrics(t.Context(), exporter)
	if err != nil {
		t.Fatal(err)
	}
	if err := registerBrokerMetrics(mp, nil); err != nil {
		t.Fatal(err)
	}
	// Prometheus still serves the same series.
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "secretbroker_build_info") {
		t.Errorf("/metrics lacks secretbroker_build_info:\n%s", rec.Body.String())
	}
	if err := mp.Shutdown(t.Context()); err != nil {
		t.Fatalf("shutdown (the final push): %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"secretbroker_build_info", "secretbroker_audit_write_failures_total"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("OTLP receiver got metrics %v, want %s among them", names, want)
		}
	}
}
