package main

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Why the front door refused a call: refusal.kind, and the reason label
// of secretbroker_calls_refused_total.
const (
	refusedCredentials = "credentials"  // no valid credentials (UNAUTHENTICATED, 401)
	refusedRate        = "rate"         // the caller's rate (--caller-rps)
	refusedCalls       = "calls"        // all callers' calls in progress (--max-concurrent-calls)
	refusedCallerCalls = "caller_calls" // the caller's calls in progress (--caller-max-concurrent)
	refusedWorking     = "working"      // calls at work (--max-working-calls and its queue)
	refusedShed        = "shed"         // the adaptive bound (--shed-sched-latency)
	refusedBytes       = "bytes"        // request bytes in progress (--max-inflight-bytes)
	refusedJWTKeys     = "jwt_keys"     // a JWT not checked: the issuer's keys not loaded yet (UNAVAILABLE, 503)
)

// Listeners, the listener label.
const (
	listenerGRPC = "grpc"
	listenerHTTP = "http"
)

// refusalCounter counts the calls the front door refuses, which reach
// neither the service nor the gateway's HTTP metrics: a refused flood
// must be visible, and cost little to count (attribute sets built once).
// A nil *refusalCounter counts nothing.
type refusalCounter struct {
	c    metric.Int64Counter
	opts map[[2]string][]metric.AddOption // by listener and kind
}

func newRefusalCounter(mp metric.MeterProvider) (*refusalCounter, error) {
	c, err := mp.Meter("github.com/secretbroker/secretbroker/cmd/secretbroker").Int64Counter("secretbroker_calls_refused_total",
		metric.WithDescription("Calls the front door refused before they ran, by listener (grpc, http) and reason: credentials (UNAUTHENTICATED, 401), rate, calls, caller_calls, working, shed, bytes (RESOURCE_EXHAUSTED, 429), jwt_keys (UNAVAILABLE, 503: a JWT not checked, the issuer's keys not loaded yet)."),
		metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	r := &refusalCounter{c: c, opts: map[[2]string][]metric.AddOption{}}
	for _, l := range []string{listenerGRPC, listenerHTTP} {
		for _, k := range []string{refusedCredentials, refusedRate, refusedCalls, refusedCallerCalls, refusedWorking, refusedShed, refusedBytes, refusedJWTKeys} {
			r.opts[[2]string{l, k}] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
				attribute.String("listener", l), attribute.String("reason", k)))}
		}
	}
	return r, nil
}

// add counts one refusal.
func (r *refusalCounter) add(ctx context.Context, listener, kind string) {
	if r == nil {
		return
	}
	if opts, ok := r.opts[[2]string{listener, kind}]; ok {
		r.c.Add(ctx, 1, opts...)
	}
}
