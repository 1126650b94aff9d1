package service

import (
	"context"
	"fmt"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/codes"
)

// Results of a key cache lookup, the result label of
// secretbroker_key_cache_lookups_total:
//
//   - hit: a lookup served from the cache without asking GitHub (a fresh
//     key, or a forced revalidation whose budget is spent or whose key was
//     already replaced).
//   - miss: no key was cached for the scope; it was fetched outright.
//   - revalidated_304: a cached key was revalidated with If-None-Match and
//     GitHub answered 304 (unchanged, no primary quota spent).
//   - refreshed: a cached key was revalidated and GitHub answered with the
//     same key id (an ETag change, or no ETag to be conditional on).
//   - rotation: a cached key was revalidated and GitHub answered with a
//     new key id: the scope's key was rotated.
//
// Concurrent lookups of one scope share one GitHub request; the four
// results other than hit count those requests, not the callers that
// waited for them.
const (
	keyHit          = "hit"
	keyMiss         = "miss"
	keyRevalidated  = "revalidated_304"
	keyRefreshed    = "refreshed"
	keyRotation     = "rotation"
	decisionAllow   = "allow"
	decisionDeny    = "deny"
	decisionNoCallr = "unauthenticated"
)

// metrics are the service's instruments. Labels hold fixed strings (RPC
// names, gRPC codes, verbs, results): never a secret name or a value, and
// a caller only when callerLabel is set (see callerAttr).
type metrics struct {
	keyLookups metric.Int64Counter
	batchItems metric.Int64Counter
	batchSize  metric.Int64Histogram
	decisions  metric.Int64Counter
	drifts     metric.Int64Counter
	unchanged  metric.Int64Counter

	// callerLabel adds the caller label to batch_items_total and
	// authz_decisions_total (Options.MetricsCallerLabel).
	callerLabel bool

	// Attribute sets of the fixed label combinations counted on every
	// call, built once (attribute.NewSet sorts and allocates): by key
	// lookup result, and by verb and decision (used only without the
	// caller label). Read only after newMetrics.
	// (Slices, so that passing them allocates no variadic slice.)
	lookupOpts   map[string][]metric.AddOption
	decisionOpts map[[2]string][]metric.AddOption
}

// fixedMetricOptions fills m's precomputed attribute sets.
func (m *metrics) fixedMetricOptions() {
	m.lookupOpts = make(map[string][]metric.AddOption)
	for _, r := range []string{keyHit, keyMiss, keyRevalidated, keyRefreshed, keyRotation} {
		m.lookupOpts[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))}
	}
	m.decisionOpts = make(map[[2]string][]metric.AddOption)
	for _, v := range []string{verbRead, verbWrite, verbDelete, verbManage} {
		for _, d := range []string{decisionAllow, decisionDeny, decisionNoCallr} {
			m.decisionOpts[[2]string{v, d}] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("verb", v), attribute.String("decision", d)))}
		}
	}
}

// maxCallerLabel bounds the caller label, in bytes; a longer identity is
// cut (on a rune boundary).
const maxCallerLabel = 128

// noCaller is the caller label of a call without an authenticated caller.
const noCaller = "none"

// callerAttr returns attrs with the caller label appended when the
// operator opted in: ctx's authenticated caller ("token:deployer",
// "jwt:SUB", "x509:URI"), cut to maxCallerLabel bytes, or "none".
func (m *metrics) callerAttr(ctx context.Context, attrs ...attribute.KeyValue) []attribute.KeyValue {
	if !m.callerLabel {
		return attrs
	}
	c := callerOf(ctx)
	if c == "" {
		c = noCaller
	}
	if len(c) > maxCallerLabel {
		n := maxCallerLabel
		for n > 0 && !utf8.RuneStart(c[n]) {
			n--
		}
		c = c[:n]
	}
	return append(attrs, attribute.String("caller", c))
}

// newMetrics creates the service's instruments on mp (a no-op provider
// when nil); the key cache's entry count is observed from keys.
func newMetrics(mp metric.MeterProvider, keys *keyCache) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/secretbroker/secretbroker/service")
	m := &metrics{}
	m.fixedMetricOptions()
	var err error
	if m.keyLookups, err = meter.Int64Counter("secretbroker_key_cache_lookups_total",
		metric.WithDescription("Public key cache lookups by result: hit, miss, revalidated_304, refreshed, rotation.")); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if m.batchItems, err = meter.Int64Counter("secretbroker_batch_items_total",
		metric.WithDescription("Items of batch calls by RPC and the item's gRPC code.")); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if m.batchSize, err = meter.Int64Histogram("secretbroker_batch_size",
		metric.WithDescription("Items per batch call, by RPC."),
		metric.WithExplicitBucketBoundaries(1, 5, 10, 25, 50, 100, 250, 500, 1000)); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if m.decisions, err = meter.Int64Counter("secretbroker_authz_decisions_total",
		metric.WithDescription("Authorization decisions by verb and decision (allow, deny, unauthenticated); none without an authorizer.")); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if m.drifts, err = meter.Int64Counter("secretbroker_drift_detected_total",
		metric.WithDescription("Writes that found the secret changed behind the broker's back (GitHub's updated_at moved since the broker's last write), by RPC.")); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if m.unchanged, err = meter.Int64Counter("secretbroker_unchanged_skipped_total",
		metric.WithDescription("Writes not sent because the broker last wrote the same value and GitHub still reports that write, by RPC.")); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	entries, err := meter.Int64ObservableGauge("secretbroker_key_cache_entries",
		metric.WithDescription("Scopes whose public key is cached."))
	if err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	if _, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(entries, int64(keys.len()))
		return nil
	}, entries); err != nil {
		return nil, fmt.Errorf("service: metrics: %w", err)
	}
	return m, nil
}

// keyLookup counts a key cache lookup's result.
func (m *metrics) keyLookup(ctx context.Context, result string) {
	if m == nil {
		return
	}
	if opt, ok := m.lookupOpts[result]; ok {
		m.keyLookups.Add(ctx, 1, opt...)
		return
	}
	m.keyLookups.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// batch counts a finished batch: its size and its items by code.
func (m *metrics) batch(ctx context.Context, rpc string, n int, counts map[codes.Code]int) {
	m.batchSized(ctx, rpc, n)
	for c, k := range counts {
		m.batchItemsEnded(ctx, rpc, c, k)
	}
}

// batchSized records a batch's (or an operation's) number of items.
func (m *metrics) batchSized(ctx context.Context, rpc string, n int) {
	if m == nil {
		return
	}
	m.batchSize.Record(ctx, int64(n), metric.WithAttributes(attribute.String("rpc", rpc)))
}

// batchItemsEnded counts k items of a batch (or an operation) that ended
// with code c.
func (m *metrics) batchItemsEnded(ctx context.Context, rpc string, c codes.Code, k int) {
	if m == nil || k == 0 {
		return
	}
	m.batchItems.Add(ctx, int64(k), metric.WithAttributes(m.callerAttr(ctx, attribute.String("rpc", rpc), attribute.String("code", codeName(c)))...))
}

// decision counts an authorization decision.
func (m *metrics) decision(ctx context.Context, verb string, allowed, authenticated bool) {
	if m == nil {
		return
	}
	d := decisionDeny
	switch {
	case !authenticated:
		d = decisionNoCallr
	case allowed:
		d = decisionAllow
	}
	if !m.callerLabel {
		if opt, ok := m.decisionOpts[[2]string{verb, d}]; ok {
			m.decisions.Add(ctx, 1, opt...)
			return
		}
	}
	m.decisions.Add(ctx, 1, metric.WithAttributes(m.callerAttr(ctx, attribute.String("verb", verb), attribute.String("decision", d))...))
}

// drift counts a write that found drift; rpc is a fixed method name.
func (m *metrics) drift(ctx context.Context, rpc string) {
	if m == nil {
		return
	}
	m.drifts.Add(ctx, 1, metric.WithAttributes(attribute.String("rpc", rpc)))
}

// skipped counts a write not sent because it was unchanged.
func (m *metrics) skipped(ctx context.Context, rpc string) {
	if m == nil {
		return
	}
	m.unchanged.Add(ctx, 1, metric.WithAttributes(attribute.String("rpc", rpc)))
}
