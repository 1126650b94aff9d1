package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
)

// TestCallDurationBucketsCoverSlowCalls: a call of 90 s (a write waiting
// for GitHub's pacing, a batch, a WaitOperation) and one of 20 minutes (a
// batch of 1,000 writes) fall in finite buckets of
// rpc_server_call_duration_seconds and http_server_request_duration_seconds,
// as otelgrpc and otelhttp record them, so that a quantile over them reads
// their duration, not the 10 s where OpenTelemetry's default buckets end.
func TestCallDurationBucketsCoverSlowCalls(t *testing.T) {
	mp, handler, err := setupMetrics(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(t.Context())
	rpc, err := rpcconv.NewServerCallDuration(mp.Meter(otelgrpc.ScopeName))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := httpconv.NewServerRequestDuration(mp.Meter(otelhttp.ScopeName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []float64{0.002, 90, 20 * 60} {
		rpc.Inst().Record(t.Context(), d)
		gw.Inst().Record(t.Context(), d)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"rpc_server_call_duration_seconds", "http_server_request_duration_seconds"} {
		f := fams[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("%s: %v", name, f)
		}
		counts := map[float64]uint64{}
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			counts[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		for _, want := range []struct {
			le    float64
			count uint64
		}{{0.005, 1}, {10, 1}, {60, 1}, {120, 2}, {1200, 3}} {
			if got, ok := counts[want.le]; !ok || got != want.count {
				t.Errorf("%s{le=%v} = %d (bucket there: %t), want %d", name, want.le, got, ok, want.count)
			}
		}
	}
}
