package service

import (
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestMetricsCallerLabel: with the opt-in, batch items and decisions carry
// the caller ("none" without one, a long identity cut); without it no
// series has a caller label.
func TestMetricsCallerLabel(t *testing.T) {
	long := "x509:" + strings.Repeat("é", 100) // 205 bytes
	cut := long[:maxCallerLabel-1]             // 127: the 128th byte is inside a rune
	for _, tc := range []struct {
		name string
		on   bool
		want map[string]float64
	}{
		{"off", false, map[string]float64{
			"secretbroker_batch_items_total{code=OK,rpc=BatchPutSecrets}":            2,
			"secretbroker_batch_size{rpc=BatchPutSecrets}":                           1,
			"secretbroker_authz_decisions_total{decision=allow,verb=write}":          2,
			"secretbroker_authz_decisions_total{decision=unauthenticated,verb=read}": 1,
		}},
		{"on", true, map[string]float64{
			"secretbroker_batch_items_total{caller=token:deployer,code=OK,rpc=BatchPutSecrets}":   2,
			"secretbroker_batch_size{rpc=BatchPutSecrets}":                                        1,
			"secretbroker_authz_decisions_total{caller=token:deployer,decision=allow,verb=write}": 1,
			"secretbroker_authz_decisions_total{caller=" + cut + ",decision=allow,verb=write}":    1,
			"secretbroker_authz_decisions_total{caller=none,decision=unauthenticated,verb=read}":  1,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			s := New(nil, Options{
				MeterProvider:      sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
				MetricsCallerLabel: tc.on,
			})
			m := s.metrics
			dep := identity.WithCaller(t.Context(), "token:deployer")
			m.batch(dep, "BatchPutSecrets", 2, map[codes.Code]int{codes.OK: 2})
			m.decision(dep, verbWrite, true, true)
			m.decision(identity.WithCaller(t.Context(), long), verbWrite, true, true)
			m.decision(t.Context(), verbRead, false, false)
			got := metricstest.Read(t, reader)
			delete(got, "secretbroker_key_cache_entries{}")
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("unexpected series %s", k)
				}
				if !tc.on && strings.Contains(k, "caller=") {
					t.Errorf("series %s has a caller label without the opt-in", k)
				}
			}
		})
	}
}
