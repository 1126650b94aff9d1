package service

import (
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// newMeteredKeyCache returns a key cache over fetch whose metrics go to
// the returned reader.
func newMeteredKeyCache(t *testing.T, fetch keyFetcher, ttl time.Duration) (*keyCache, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	c := newKeyCache(fetch, ttl)
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), c)
	if err != nil {
		t.Fatal(err)
	}
	c.metrics = m
	return c, reader
}

func lookups(result string) string {
	return "secretbroker_key_cache_lookups_total{result=" + result + "}"
}

const entries = "secretbroker_key_cache_entries{}"

// TestKeyCacheMetrics: each lookup counts its result: a miss, hits while
// the key is fresh, a 304, a rotation, a refresh without an ETag.
func TestKeyCacheMetrics(t *testing.T) {
	type step struct {
		wait    time.Duration
		rotate  bool // GitHub rotates the key first
		noETag  bool // the scope whose server sends no ETag
		current bool // revalidate naming a key id that is not the cached one (a hit)
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  map[string]float64
	}{
		{"miss then hits", []step{{}, {}, {}},
			map[string]float64{lookups("miss"): 1, lookups("hit"): 2, entries: 1}},
		{"revalidated with 304", []step{{}, {wait: time.Hour}},
			map[string]float64{lookups("miss"): 1, lookups("revalidated_304"): 1, entries: 1}},
		{"rotation", []step{{}, {wait: time.Hour, rotate: true}},
			map[string]float64{lookups("miss"): 1, lookups("rotation"): 1, entries: 1}},
		{"refreshed without an ETag", []step{{noETag: true}, {wait: time.Hour, noETag: true}},
			map[string]float64{lookups("miss"): 1, lookups("refreshed"): 1, entries: 1}},
		{"revalidate with the current key", []step{{}, {current: true}},
			map[string]float64{lookups("miss"): 1, lookups("hit"): 1, entries: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeKeys(t)
				var fetch keyFetcher = f
				if tc.steps[0].noETag {
					fetch = noETagKeys{f}
				}
				c, reader := newMeteredKeyCache(t, fetch, 30*time.Minute)
				for _, s := range tc.steps {
					time.Sleep(s.wait)
					if s.rotate {
						f.id.Add(1)
					}
					var err error
					if s.current {
						_, err = c.revalidate(t.Context(), testScope, "stale-id")
					} else {
						_, err = c.get(t.Context(), testScope)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				got := metricstest.Read(t, reader)
				for k, v := range tc.want {
					if got[k] != v {
						t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
					}
				}
				for k := range got {
					if _, ok := tc.want[k]; !ok {
						t.Errorf("unexpected series %s", k)
					}
				}
			})
		})
	}
}

// TestKeyCacheEntries: the gauge counts the scopes with a cached key.
func TestKeyCacheEntries(t *testing.T) {
	c, reader := newMeteredKeyCache(t, newFakeKeys(t), time.Hour)
	if got := metricstest.Read(t, reader)[entries]; got != 0 {
		t.Errorf("entries = %v before any lookup, want 0", got)
	}
	for _, s := range []upstream.Scope{testScope, {App: upstream.Agents, Org: "acme"}, {App: upstream.Actions, Owner: "acme", Repo: "api"}} {
		if _, err := c.get(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricstest.Read(t, reader)[entries]; got != 3 {
		t.Errorf("entries = %v, want 3", got)
	}
}

// TestBatchAndDecisionMetrics: a batch counts its size and its items by
// code; a decision by verb and outcome.
func TestBatchAndDecisionMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), newKeyCache(newFakeKeys(t), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	m.batch(ctx, "BatchPutSecrets", 5, map[codes.Code]int{codes.OK: 3, codes.PermissionDenied: 2})
	m.batch(ctx, "BatchDeleteSecrets", 1, map[codes.Code]int{codes.NotFound: 1})
	m.decision(ctx, verbWrite, true, true)
	m.decision(ctx, verbWrite, false, true)
	m.decision(ctx, verbRead, false, false)
	got := metricstest.Read(t, reader)
	for k, v := range map[string]float64{
		"secretbroker_batch_items_total{code=OK,rpc=BatchPutSecrets}":                3,
		"secretbroker_batch_items_total{code=PERMISSION_DENIED,rpc=BatchPutSecrets}": 2,
		"secretbroker_batch_items_total{code=NOT_FOUND,rpc=BatchDeleteSecrets}":      1,
		"secretbroker_batch_size{rpc=BatchPutSecrets}":                               1,
		"secretbroker_batch_size{rpc=BatchDeleteSecrets}":                            1,
		"secretbroker_authz_decisions_total{decision=allow,verb=write}":              1,
		"secretbroker_authz_decisions_total{decision=deny,verb=write}":               1,
		"secretbroker_authz_decisions_total{decision=unauthenticated,verb=read}":     1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	// A nil *metrics (no provider) counts nothing and does not panic.
	var none *metrics
	none.batch(ctx, "BatchPutSecrets", 1, nil)
	none.decision(ctx, verbRead, true, true)
	none.keyLookup(ctx, keyHit)
}
