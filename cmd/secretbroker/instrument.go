package main

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/httpmetrics"
)

// instrumentGateway wraps the JSON gateway's handler in its HTTP
// instrumentation.
//
// When spans are recorded (an exporter is configured), that is otelhttp:
// the HTTP server span with its attributes, and its three http.server.*
// histograms. When none is, otelhttp would still build the span's
// attributes for every request, wrap the ResponseWriter twice and copy the
// request, for a span nothing reads, about a tenth of a cached call's cost
// on the gateway (docs/BENCHMARKS.md). Then the gateway gets
// httpmetrics.New instead: the same histograms, under the same names,
// scope, buckets and attributes (its TestHTTPMetricsAsOtelhttp holds it
// to that), and the caller's trace context extracted from the request's
// headers as otelhttp's propagation does, so a call's log lines and its
// requests to GitHub still carry the caller's trace id.
func instrumentGateway(next http.Handler, recording bool, opts gatewayInstrumentation) http.Handler {
	if recording {
		return otelhttp.NewHandler(next, "gateway",
			otelhttp.WithTracerProvider(opts.tracerProvider),
			otelhttp.WithMeterProvider(opts.meterProvider),
			otelhttp.WithPropagators(opts.propagator),
			// server.address and server.port name the listener, not
			// the caller's Host header: otelhttp puts both on every
			// http_server_* series, so a header any caller chooses
			// would add series until the SDK's cardinality limit,
			// after which every new series, legitimate ones included,
			// is folded into one overflow series.
			otelhttp.WithServerName(opts.serverName),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
				return gatewaySpanName(r.Method)
			}))
	}
	return httpmetrics.New(next, opts.meterProvider, opts.propagator, opts.serverName)
}

// gatewayInstrumentation is what the gateway's HTTP instrumentation
// records with.
type gatewayInstrumentation struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
	// serverName is the listener's address: server.address and
	// server.port of every series.
	serverName string
}
