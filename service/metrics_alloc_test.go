package service

import (
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// newBareMetrics returns the service's metrics on a manual reader.
func newBareMetrics(t testing.TB) (*metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), newKeyCache(nil, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// Every verb and decision is counted under its labels through the
// precomputed sets, and a verb without one still is.
func TestDecisionLabels(t *testing.T) {
	m, reader := newBareMetrics(t)
	ctx := t.Context()
	m.decision(ctx, verbWrite, true, true)
	m.decision(ctx, verbWrite, true, true)
	m.decision(ctx, verbRead, false, true)
	m.decision(ctx, verbDelete, false, false)
	m.decision(ctx, verbManage, true, true)
	m.decision(ctx, "other", true, true)
	got := metricstest.Read(t, reader)
	for series, want := range map[string]float64{
		"secretbroker_authz_decisions_total{decision=allow,verb=" + verbWrite + "}":            2,
		"secretbroker_authz_decisions_total{decision=deny,verb=" + verbRead + "}":              1,
		"secretbroker_authz_decisions_total{decision=unauthenticated,verb=" + verbDelete + "}": 1,
		"secretbroker_authz_decisions_total{decision=allow,verb=" + verbManage + "}":           1,
		"secretbroker_authz_decisions_total{decision=allow,verb=other}":                        1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v (all: %v)", series, got[series], want, got)
		}
	}
}

// A key cache hit and an authorization decision, counted on every call,
// allocate nothing (without the caller label).
func TestPerCallMetricsAllocateNothing(t *testing.T) {
	m, _ := newBareMetrics(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"keyLookup", func() { m.keyLookup(ctx, keyHit) }},
		{"decision", func() { m.decision(ctx, verbWrite, true, true) }},
	} {
		if n := testing.AllocsPerRun(100, tc.call); n != 0 {
			t.Errorf("%s allocates %v times a call, want 0", tc.name, n)
		}
	}
}

func BenchmarkPerCallMetrics(b *testing.B) {
	m, _ := newBareMetrics(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		m.keyLookup(ctx, keyHit)
		m.decision(ctx, verbWrite, true, true)
	}
}
