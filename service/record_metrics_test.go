package service

import (
	"strings"
	"testing"
	"testing/synctest"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestDriftAndUnchangedMetrics: secretbroker_drift_detected_total and
// secretbroker_unchanged_skipped_total count by RPC, for a put, a batch
// and a sync.
func TestDriftAndUnchangedMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		reader := sdkmetric.NewManualReader()
		s := New(h.client, Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Logger: newTestLogger(h.logs)})
		ctx := t.Context()
		put := plain(repoScope+"/secrets/COUNTED", plantedSecret)
		batch := &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/BATCHED", plantedSecret)}}
		sync := syncReq(stagingEnv, "", map[string]string{"SYNCED": plantedSecret})
		for round := range 3 {
			if round == 2 {
				for _, sec := range []string{repoScope + "/secrets/COUNTED", repoScope + "/secrets/BATCHED", stagingEnv + "/secrets/SYNCED"} {
					behindBack(t, h, sec)
				}
			}
			if _, err := s.PutSecret(ctx, put); err != nil {
				t.Fatal(err)
			}
			if _, err := s.BatchPutSecrets(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SyncSecrets(ctx, sync); err != nil {
				t.Fatal(err)
			}
		}
		got := metricstest.Read(t, reader)
		for _, rpc := range []string{"PutSecret", "BatchPutSecrets", "SyncSecrets"} {
			if v := got["secretbroker_unchanged_skipped_total{rpc="+rpc+"}"]; v != 1 {
				t.Errorf("%s: %v unchanged, want 1", rpc, v)
			}
			if v := got["secretbroker_drift_detected_total{rpc="+rpc+"}"]; v != 1 {
				t.Errorf("%s: %v drifts, want 1", rpc, v)
			}
		}
		for k := range got {
			if strings.Contains(k, "COUNTED") || strings.Contains(k, plantedSecret) {
				t.Errorf("series %s names a secret or a value", k)
			}
		}
	})
}
