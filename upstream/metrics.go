package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Credential is the credential label of the client's metrics for a token
// (Config.Token, or a token file). A GitHub App's labels are "app" for its
// own JWT and "installation:<id>" for each installation: as many as the
// app has installations in use.
const Credential = credential.LabelToken

// Causes of a retry, the cause label of secretbroker_upstream_retries_total.
const (
	causeRateLimit   = "rate_limit"
	causeServerError = "server_error"
	causeTransport   = "transport"
)

// statusTransport is the status label of an attempt that got no answer.
const statusTransport = "transport_error"

// statusCanceled is the status label of an attempt that had no answer
// because its caller's context ended (cancelled, or past its deadline):
// not GitHub's failure, and not counted as one.
const statusCanceled = "canceled"

// maxResources bounds how many distinct x-ratelimit-resource values the
// rate-limit gauges keep per credential; later ones are reported as
// "other".
const maxResources = 16

// metrics are the client's instruments. Labels hold route templates,
// methods, status codes, GitHub's rate-limit resource names and the fixed
// credential labels: never a path, a name, a value or the token.
type metrics struct {
	meter    metric.Meter
	requests metric.Int64Counter
	duration metric.Float64Histogram
	retries  metric.Int64Counter
	pacer    pacerInstruments // pacer_metrics.go

	mu     sync.Mutex
	limits map[string]map[string]rateLimitSeen // by credential label, then resource

	// attemptOpts holds the attribute sets of each route, method and
	// status seen (attemptLabels to *attemptOptions), built on first use:
	// attribute.NewSet sorts and allocates, and each request would build
	// two. Bounded: routes are templates, methods and statuses few.
	attemptOpts sync.Map
}

// attemptLabels is a combination of the labels of an attempt.
type attemptLabels struct{ route, method, status string }

// attemptOptions are the measurement options of one attemptLabels: with
// status for requests_total, without for the duration histogram.
// They are slices so that passing them allocates no variadic slice.
type attemptOptions struct {
	requests []metric.AddOption
	duration []metric.RecordOption
}

// attemptOptionsOf returns k's options, building them the first time.
func (m *metrics) attemptOptionsOf(k attemptLabels) *attemptOptions {
	if o, ok := m.attemptOpts.Load(k); ok {
		return o.(*attemptOptions)
	}
	route, method := attribute.String("route", k.route), attribute.String("method", k.method)
	o := &attemptOptions{
		requests: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(route, method, attribute.String("status", k.status)))},
		duration: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(route, method))},
	}
	actual, _ := m.attemptOpts.LoadOrStore(k, o)
	return actual.(*attemptOptions)
}

// rateLimitSeen is the last rate-limit state GitHub reported for a
// resource.
type rateLimitSeen struct {
	remaining int
	reset     time.Time
}

// over reports whether the window l describes has ended at now: its reset
// time has come. GitHub's next window starts full, but the broker cannot
// tell how much of it others sharing the quota (another replica, another
// client of the token or installation) have used since, so the gauges
// report nothing for it, rather than the old window's figures or a guess,
// until an answer tells. A window without a reset time is never over.
func (l rateLimitSeen) over(now time.Time) bool {
	return !l.reset.IsZero() && !now.Before(l.reset)
}

// newMetrics creates the client's instruments on mp (a no-op provider
// when nil); watch registers the observable ones, which read the
// pacers of the client's credentials. Each pacer reports its waits and
// pauses to an observer of m (pacer_metrics.go), so m exists before them.
func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := &metrics{limits: make(map[string]map[string]rateLimitSeen)}
	meter := mp.Meter("github.com/secretbroker/secretbroker/upstream")
	m.meter = meter
	var err error
	if m.requests, err = meter.Int64Counter("secretbroker_upstream_requests_total",
		metric.WithDescription("Requests sent to GitHub, one per attempt, by route template, method and status (transport_error when there was no answer).")); err != nil {
		return nil, fmt.Errorf("upstream: metrics: %w", err)
	}
	if m.duration, err = meter.Float64Histogram("secretbroker_upstream_request_duration_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of one attempt at a GitHub request, by route template and method."),
		metric.WithExplicitBucketBoundaries(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, fmt.Errorf("upstream: metrics: %w", err)
	}
	if m.retries, err = meter.Int64Counter("secretbroker_upstream_retries_total",
		metric.WithDescription("Retries of GitHub requests, by route template and cause (rate_limit, server_error, transport).")); err != nil {
		return nil, fmt.Errorf("upstream: metrics: %w", err)
	}
	if m.pacer, err = newPacerInstruments(meter); err != nil {
		return nil, err
	}
	return m, nil
}

// watch registers the observable instruments, which read the pacers of
// creds and the rate limits m keeps.
func (m *metrics) watch(creds *credentials) error {
	meter := m.meter
	remaining, err := meter.Int64ObservableGauge("secretbroker_upstream_ratelimit_remaining",
		metric.WithDescription("Requests left in GitHub's primary rate-limit window, as GitHub last reported it, by credential and resource. "+
			"Not reported once that window's reset time has passed: the new window's figures are unknown (others may share the quota) until GitHub's next answer."))
	if err != nil {
		return fmt.Errorf("upstream: metrics: %w", err)
	}
	reset, err := meter.Int64ObservableGauge("secretbroker_upstream_ratelimit_reset_timestamp_seconds",
		metric.WithDescription("When GitHub's primary rate-limit window resets, in Unix seconds, as GitHub last reported it, by credential and resource. "+
			"Not reported once that time has passed, until GitHub's next answer."))
	if err != nil {
		return fmt.Errorf("upstream: metrics: %w", err)
	}
	queue, err := meter.Int64ObservableGauge("secretbroker_pacer_queue_depth",
		metric.WithDescription("Requests waiting for the pacer to admit them, by credential."))
	if err != nil {
		return fmt.Errorf("upstream: metrics: %w", err)
	}
	if _, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, st := range creds.all() {
			ps := st.pacer.Stats()
			cred := metric.WithAttributes(attribute.String("credential", st.label))
			o.ObserveInt64(queue, int64(ps.Queued), cred)
			o.ObserveInt64(m.pacer.pointsUsed, int64(ps.PointsUsed), cred)
			o.ObserveFloat64(m.pacer.cpuUsed, ps.CPUUsed.Seconds(), cred)
		}
		now := time.Now()
		m.mu.Lock()
		defer m.mu.Unlock()
		for label, limits := range m.limits {
			cred := attribute.String("credential", label)
			for res, l := range limits {
				if l.over(now) {
					continue
				}
				attrs := metric.WithAttributes(cred, attribute.String("resource", res))
				o.ObserveInt64(remaining, int64(l.remaining), attrs)
				if !l.reset.IsZero() {
					o.ObserveInt64(reset, l.reset.Unix(), attrs)
				}
			}
		}
		return nil
	}, remaining, reset, queue, m.pacer.pointsUsed, m.pacer.cpuUsed); err != nil {
		return fmt.Errorf("upstream: metrics: %w", err)
	}
	return nil
}

// attempt records one attempt at r: its status (transport_error when
// err is not an answer, canceled when that is because ctx ended), its
// duration and the rate limits it reported for the credential labelled
// cred.
func (m *metrics) attempt(ctx context.Context, r request, cred string, rl pace.RateLimit, err error, d time.Duration) {
	status := statusTransport
	if rl.Status != 0 {
		status = statusLabel(rl.Status)
	} else if e, ok := errors.AsType[*Error](err); ok {
		status = statusLabel(e.StatusCode)
	} else if ctx.Err() != nil {
		status = statusCanceled
	}
	o := m.attemptOptionsOf(attemptLabels{route: r.route, method: r.method, status: status})
	m.requests.Add(ctx, 1, o.requests...)
	m.duration.Record(ctx, d.Seconds(), o.duration...)
	m.rateLimit(cred, rl)
}

// statusLabel is an HTTP status code as a label, without allocating for
// the common ones.
func statusLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// rateLimit keeps what rl says of the primary rate limit of the
// credential labelled cred.
func (m *metrics) rateLimit(cred string, rl pace.RateLimit) {
	if rl.Remaining < 0 {
		return
	}
	res := resourceLabel(rl.Resource)
	m.mu.Lock()
	defer m.mu.Unlock()
	limits := m.limits[cred]
	if limits == nil {
		limits = make(map[string]rateLimitSeen)
		m.limits[cred] = limits
	}
	if _, ok := limits[res]; !ok && len(limits) >= maxResources {
		res = "other"
	}
	limits[res] = rateLimitSeen{remaining: rl.Remaining, reset: rl.Reset}
}

// forget drops what m keeps of the credential labelled cred, which the
// client dropped (credentials.drop).
func (m *metrics) forget(cred string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.limits, cred)
}

// resourceLabel is GitHub's x-ratelimit-resource as a label: "unknown"
// when absent, "other" when it is not a short lower-case identifier (the
// header is GitHub's, but a label must stay bounded).
func resourceLabel(res string) string {
	if res == "" {
		return "unknown"
	}
	if len(res) > 40 {
		return "other"
	}
	for _, c := range res {
		if (c < 'a' || c > 'z') && c != '_' && (c < '0' || c > '9') {
			return "other"
		}
	}
	return res
}

// retry records a retry of r for cause.
func (m *metrics) retry(ctx context.Context, r request, cause string) {
	m.retries.Add(ctx, 1, metric.WithAttributes(attribute.String("route", r.route), attribute.String("cause", cause)))
}
