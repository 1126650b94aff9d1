package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// TestMetricsCardinalityLimitFromEnv: the OpenTelemetry SDK keeps at most
// 2,000 series per instrument and folds the rest into one overflow series;
// a GitHub App with thousands of installations in use has a series per
// installation on the per-credential instruments. OTEL_GO_X_CARDINALITY_LIMIT,
// which the README gives for that case, lifts the cap of the broker's
// meter provider.
func TestMetricsCardinalityLimitFromEnv(t *testing.T) {
	const installations = 2500
	for _, tt := range []struct {
		env          string
		wantSeries   int
		wantOverflow bool
	}{
		{"", 2000, true}, // 1,999 series and the overflow one
		{"10000", installations, false},
	} {
		t.Run("limit="+tt.env, func(t *testing.T) {
			t.Setenv("OTEL_GO_X_CARDINALITY_LIMIT", tt.env)
			mp, handler, err := setupMetrics(t.Context(), "")
			if err != nil {
				t.Fatal(err)
			}
			defer mp.Shutdown(t.Context())
			c, err := mp.Meter("cardinality-test").Int64Counter("test_installation_requests")
			if err != nil {
				t.Fatal(err)
			}
			for i := range installations {
				c.Add(t.Context(), 1, metric.WithAttributes(attribute.String("credential", "installation:"+strconv.Itoa(i))))
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			f := fams["test_installation_requests_total"]
			if f == nil {
				t.Fatalf("no test_installation_requests_total in /metrics")
			}
			overflow := false
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "otel_metric_overflow" {
						overflow = true
					}
				}
			}
			if got := len(f.GetMetric()); got != tt.wantSeries || overflow != tt.wantOverflow {
				t.Errorf("%d series, overflow %t; want %d, %t", got, overflow, tt.wantSeries, tt.wantOverflow)
			}
		})
	}
}
