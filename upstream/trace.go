package upstream

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// tracerName is the instrumentation scope of the client's own spans.
const tracerName = "github.com/secretbroker/secretbroker/upstream"

// The attributes the client puts on spans. None holds a path, a value or
// the token: route templates, counts, GitHub's request id and rate-limit
// figures only.
const (
	attrResendCount        = "http.request.resend_count"
	attrGitHubRequestID    = "github.request_id"
	attrRateLimitRemaining = "github.ratelimit.remaining"
	attrRateLimitReset     = "github.ratelimit.reset"
	attrRateLimitResource  = "github.ratelimit.resource"
	attrPacerWait          = "secretbroker.pacer.wait_ms"
	attrPacerReason        = "secretbroker.pacer.reason"
	attrRoute              = "http.route"
)

// WaitReason is the label of a pacer wait's reason, on the pacer's span
// (secretbroker.pacer.reason) and in the retry log lines: spacing,
// points, primary, secondary_pause, in_flight, backoff, content,
// cpu_time; "none" for no wait.
func WaitReason(r pace.Reason) string {
	switch r {
	case pace.ReasonSpacing:
		return "spacing"
	case pace.ReasonBudget:
		return "points"
	case pace.ReasonPrimary:
		return "primary"
	case pace.ReasonPause:
		return "secondary_pause"
	case pace.ReasonQueue:
		return "in_flight"
	case pace.ReasonBackoff:
		return "backoff"
	case pace.ReasonContent:
		return "content"
	case pace.ReasonCPU:
		return "cpu_time"
	}
	return "none"
}

// tracerOf returns the tracer of the client's spans on tp, OpenTelemetry's
// global provider when tp is nil.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// acquire is pacer.Acquire in a span of its own, "github pacer wait",
// which says how long the request waited and why (WaitReason). A wait
// longer than a second is also logged at DEBUG with its reason, once per
// attempt (a batch's writes each wait their spacing: at INFO that would
// be a line per item; the pause that holds every request is logged at
// INFO once, by logPause).
func (c *Client) acquire(ctx context.Context, cst *credState, pr pace.Request, attempt int) (*pace.Permit, error) {
	ctx, span := c.tracer.Start(ctx, "github pacer wait", trace.WithAttributes(
		attribute.String("github.credential", cst.label),
		attribute.String(attrRoute, pr.Route),
		attribute.String("http.request.method", pr.Method),
		attribute.Int(attrResendCount, attempt-1),
	))
	defer span.End()
	permit, err := cst.pacer.Acquire(ctx, pr)
	if err != nil {
		span.SetStatus(codes.Error, "not admitted")
		if te, ok := err.(*pace.ThrottledError); ok {
			span.SetAttributes(attribute.String(attrPacerReason, WaitReason(te.Reason)))
		}
		return nil, err
	}
	waited, why := permit.Waited()
	span.SetAttributes(
		attribute.Int64(attrPacerWait, waited.Milliseconds()),
		attribute.String(attrPacerReason, WaitReason(why)),
	)
	if waited >= slowWait {
		c.log.LogAttrs(ctx, slog.LevelDebug, "github request waited for the pacer",
			slog.String("method", pr.Method),
			slog.String("route", pr.Route),
			slog.String("reason", WaitReason(why)),
			slog.Duration("wait", waited),
		)
	}
	return permit, nil
}

// slowWait is the least pacer wait that is logged.
const slowWait = time.Second

// attemptKey carries the attempt number (from 1) of a request to
// attemptTracer.
type attemptKey struct{}

// withAttempt returns ctx carrying attempt, for attemptTracer.
func withAttempt(ctx context.Context, attempt int) context.Context {
	return context.WithValue(ctx, attemptKey{}, attempt)
}

// attemptTracer is the transport inside otelhttp's: the span otelhttp
// started for the attempt is in the request's context, and it adds to it
// http.request.resend_count (the attempt number less one; a first try
// has 0), and from the answer github.request_id (X-GitHub-Request-Id) and
// the rate limit GitHub reported (remaining, reset in Unix seconds,
// resource).
type attemptTracer struct {
	next http.RoundTripper
}

func (t attemptTracer) RoundTrip(req *http.Request) (*http.Response, error) {
	span := trace.SpanFromContext(req.Context())
	if n, ok := req.Context().Value(attemptKey{}).(int); ok && span.IsRecording() {
		span.SetAttributes(attribute.Int(attrResendCount, n-1))
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || !span.IsRecording() {
		return resp, err
	}
	span.SetAttributes(responseAttributes(resp.Header)...)
	return resp, nil
}

// responseAttributes are the span attributes of GitHub's answer headers
// that tell an operator which request it was and how much quota is left.
func responseAttributes(h http.Header) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if id := h.Get("X-GitHub-Request-Id"); id != "" && len(id) <= 128 {
		attrs = append(attrs, attribute.String(attrGitHubRequestID, id))
	}
	if v, err := strconv.Atoi(h.Get("X-Ratelimit-Remaining")); err == nil {
		attrs = append(attrs, attribute.Int(attrRateLimitRemaining, v))
	}
	if v, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
		attrs = append(attrs, attribute.Int64(attrRateLimitReset, v))
	}
	if res := h.Get("X-Ratelimit-Resource"); res != "" {
		attrs = append(attrs, attribute.String(attrRateLimitResource, resourceLabel(res)))
	}
	return attrs
}

// logPause logs, at INFO, that GitHub's rate-limit answer to r paused the
// credential cst: why (primary, secondary_pause) and for how long.
func (c *Client) logPause(ctx context.Context, cst *credState, r request, status int) {
	until, why := cst.pacer.Hold()
	if until.IsZero() {
		return
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "github rate limit paused the credential",
		slog.String("credential", cst.label),
		slog.String("method", r.method),
		slog.String("route", r.route),
		slog.Int("status", status),
		slog.String("reason", WaitReason(why)),
		slog.Duration("pause", time.Until(until)),
	)
}
