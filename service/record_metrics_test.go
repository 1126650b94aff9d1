package service

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

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

// TestAsyncItemsCountInBatchMetrics: the items of an async batch or sync
// count in secretbroker_batch_items_total and its size in
// secretbroker_batch_size as a synchronous call's do: those that end when
// the operation is accepted (here an unchanged sync item) at once, the
// others as the operation runs them.
func TestAsyncItemsCountInBatchMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		reader := sdkmetric.NewManualReader()
		s := New(h.client, Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Logger: newTestLogger(h.logs)})
		closeOps(t, s)
		ctx := t.Context()
		if _, err := s.PutSecret(ctx, plain(repoScope+"/secrets/A", plantedSecret)); err != nil {
			t.Fatal(err)
		}
		batch := &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			plain(repoScope+"/secrets/BATCHED", plantedSecret),
			plain("repos/octo-org/no-such-repo/actions/secrets/X", plantedSecret),
		}}
		sync := syncReq(repoScope, "", map[string]string{"A": plantedSecret, "B": plantedSecret})
		sync.Async = true
		b, err := s.BatchPutSecrets(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		y, err := s.SyncSecrets(ctx, sync)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range []*secretbrokerv1.Operation{b.GetOperation(), y.GetOperation()} {
			done, err := s.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: op.GetName(), Timeout: durationpb.New(time.Hour)})
			if err != nil || !done.GetDone() {
				t.Fatalf("%s: %v, %v", op.GetName(), done, err)
			}
		}
		// The runner counts the last results after it stored the
		// operation done, which is what WaitOperation sees: let it.
		synctest.Wait()
		got := metricstest.Read(t, reader)
		for k, v := range map[string]float64{
			"secretbroker_batch_items_total{code=OK,rpc=BatchPutSecrets}":        1,
			"secretbroker_batch_items_total{code=NOT_FOUND,rpc=BatchPutSecrets}": 1,
			"secretbroker_batch_items_total{code=OK,rpc=SyncSecrets}":            2,
			"secretbroker_batch_size{rpc=BatchPutSecrets}":                       1,
			"secretbroker_batch_size{rpc=SyncSecrets}":                           1,
			"secretbroker_unchanged_skipped_total{rpc=SyncSecrets}":              1,
		} {
			if got[k] != v {
				t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
	})
}
