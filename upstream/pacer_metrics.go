package upstream

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Kinds of a pause, the kind label of secretbroker_pacer_pauses_total.
const (
	pausePrimary   = "primary"   // x-ratelimit-remaining 0: held until x-ratelimit-reset
	pauseSecondary = "secondary" // a rate-limit refusal (429, or 403 "rate limit"): Retry-After or the secondary pause
	pauseBackoff   = "backoff"   // a backoff asked of the pacer after failures
)

// pauseKind is a hold's pace.Reason as the kind label; "" for a reason
// that is not a hold.
func pauseKind(why pace.Reason) string {
	switch why {
	case pace.ReasonPrimary:
		return pausePrimary
	case pace.ReasonPause:
		return pauseSecondary
	case pace.ReasonBackoff:
		return pauseBackoff
	}
	return ""
}

// pacerInstruments are the pacer's series other than the queue depth:
// the waits of admitted requests, the points and the response time used
// in the window, the pauses.
type pacerInstruments struct {
	wait       metric.Float64Histogram
	pointsUsed metric.Int64ObservableGauge   // observed in watch
	cpuUsed    metric.Float64ObservableGauge // observed in watch
	pauses     metric.Int64Counter
}

func newPacerInstruments(meter metric.Meter) (pacerInstruments, error) {
	var (
		in  pacerInstruments
		err error
	)
	if in.wait, err = meter.Float64Histogram("secretbroker_pacer_wait_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("How long each admitted request waited in the pacer, by credential and the reason that held it back longest: "+
			"in_flight, spacing, points, primary, secondary_pause, backoff, content, cpu_time; none (0 s) for a request admitted at once."),
		metric.WithExplicitBucketBoundaries(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)); err != nil {
		return in, fmt.Errorf("upstream: metrics: %w", err)
	}
	if in.pointsUsed, err = meter.Int64ObservableGauge("secretbroker_pacer_points_used",
		metric.WithDescription("Points of GitHub's secondary rate limit counted against the budget now, by credential: "+
			"requests in flight and those completed within the last 60 s (GET 1, PUT and DELETE 5); 0 with the budget off.")); err != nil {
		return in, fmt.Errorf("upstream: metrics: %w", err)
	}
	if in.cpuUsed, err = meter.Float64ObservableGauge("secretbroker_pacer_cpu_time_used_seconds",
		metric.WithUnit("s"),
		metric.WithDescription("Response time counted against the CPU-time budget now, by credential (GitHub's limit of 90 s of CPU time a minute, "+
			"estimated by response time): requests in flight (each its time so far, at least what it is expected to take) "+
			"and the response times of those completed within the last 60 s; 0 with the budget off.")); err != nil {
		return in, fmt.Errorf("upstream: metrics: %w", err)
	}
	if in.pauses, err = meter.Int64Counter("secretbroker_pacer_pauses_total",
		metric.WithDescription("Pauses of the credential that began, by credential and kind: primary (quota used up until its reset), "+
			"secondary (a rate-limit refusal), backoff. A pause that only grows is not counted again.")); err != nil {
		return in, fmt.Errorf("upstream: metrics: %w", err)
	}
	return in, nil
}

// pacerObserver records one credential's pacer waits and pauses on m's
// instruments (pace.Observer). Its methods run under the pacer's lock and
// record only.
type pacerObserver struct {
	m    *metrics
	cred attribute.KeyValue
	// waitOpts are the attribute sets of Admitted by reason (index),
	// built once: every request is admitted, under the pacer's lock.
	waitOpts [][]metric.RecordOption
}

// observer returns the pace.Observer of the credential labelled label.
func (m *metrics) observer(label string) pace.Observer {
	o := pacerObserver{m: m, cred: attribute.String("credential", label)}
	for r := range pace.ReasonCPU + 1 {
		o.waitOpts = append(o.waitOpts, []metric.RecordOption{metric.WithAttributeSet(
			attribute.NewSet(o.cred, attribute.String("reason", WaitReason(r))))})
	}
	return o
}

// Admitted records a request's wait in the pacer.
func (o pacerObserver) Admitted(_ pace.Request, wait time.Duration, why pace.Reason) {
	if why >= 0 && int(why) < len(o.waitOpts) {
		o.m.pacer.wait.Record(context.Background(), wait.Seconds(), o.waitOpts[why]...)
		return
	}
	o.m.pacer.wait.Record(context.Background(), wait.Seconds(), metric.WithAttributes(
		o.cred, attribute.String("reason", WaitReason(why))))
}

// Held counts a pause that began; a pause that only grows is not a new
// one.
func (o pacerObserver) Held(why pace.Reason, _ time.Time, began bool) {
	kind := pauseKind(why)
	if !began || kind == "" {
		return
	}
	o.m.pacer.pauses.Add(context.Background(), 1, metric.WithAttributes(
		o.cred, attribute.String("kind", kind)))
}
