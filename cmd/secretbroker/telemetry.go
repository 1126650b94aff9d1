package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/liblog"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/spanexport"
	"github.com/secretbroker/secretbroker/service/audit"
)

// serviceName is the OpenTelemetry service.name, unless OTEL_SERVICE_NAME
// says otherwise.
const serviceName = "secretbroker"

// Trace export settings.
const (
	// traceFlushTimeout bounds the flush of the spans still queued at
	// shutdown: an unreachable collector never holds the exit longer.
	traceFlushTimeout = 5 * time.Second
	// traceErrorRepeat is how long an outage of the trace collector stays
	// quiet after its first log line before it is logged again (with how
	// many failures were not).
	traceErrorRepeat = 15 * time.Minute
)

// tracing is the broker's trace pipeline: the tracer provider every
// package's spans are started on (given to each through its Config or
// Options, as the meter provider is), and what shuts it down.
type tracing struct {
	tp *sdktrace.TracerProvider
	// recording is whether any span is exported (samplerFor).
	recording bool
}

// shutdown flushes the spans still queued, within traceFlushTimeout at
// most (less if ctx ends first), and stops the provider. A collector that
// does not answer in time loses those spans; the process does not wait.
func (t *tracing) shutdown(ctx context.Context, logger *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), traceFlushTimeout)
	defer cancel()
	if err := t.tp.Shutdown(sctx); err != nil {
		logger.Warn("trace export: spans not flushed at shutdown", slog.Any("error", err))
	}
}

// setupTracing installs the W3C TraceContext and Baggage propagators, an
// error handler and a logger for OpenTelemetry's own messages (through
// logger, as JSON or text like every other line), and an SDK tracer
// provider as OpenTelemetry's globals, and returns the provider, which run
// also hands to every package explicitly.
//
// Spans are exported only when cfg.TracesExporter says so (from
// OTEL_TRACES_EXPORTER, or an OTEL_EXPORTER_OTLP_*ENDPOINT; see
// tracesExporterFromEnv): then the exporter is the one
// go.opentelemetry.io/contrib/exporters/autoexport builds from the
// standard OTEL_* variables (OTLP over http/protobuf or grpc, or the
// console). extra, when not nil, receives the spans too (tests). Spans go
// through a
// batch span processor, so a slow or unreachable collector never holds a
// call: a full queue drops spans instead. Export failures are logged once
// per outage (spanexport.Health); OpenTelemetry's other errors (a metric
// push's) as what they are, once per run of them (spanexport.NewErrorHealth).
func setupTracing(ctx context.Context, cfg Config, logger *slog.Logger, extra sdktrace.SpanExporter) (*tracing, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	// OpenTelemetry's internal messages (warnings at V(1), info at V(4))
	// go through the broker's logger at levels below info, never as the
	// default text lines on standard error.
	// Its lines about an OTEL_* variable it cannot parse lose the value
	// (liblog.OTelHandler).
	otel.SetLogger(logr.FromSlogHandler(liblog.OTelHandler(logger.With(slog.String("component", "otel")).Handler())))
	health := spanexport.NewHealth(logger.With(slog.String("component", "tracing")), time.Now, traceErrorRepeat)
	otel.SetErrorHandler(spanexport.NewErrorHealth(logger.With(slog.String("component", "otel")), time.Now, traceErrorRepeat))

	res, err := newResource(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	var exporters []sdktrace.SpanExporter
	switch cfg.TracesExporter {
	case tracesExporterDisabled, tracesExporterNone:
	default:
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("trace exporter (%s): %w", cfg.TracesExporter, err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			exporters = append(exporters, exp)
		}
	}
	if extra != nil {
		exporters = append(exporters, extra)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(samplerFor(len(exporters), cfg))}
	t := &tracing{recording: len(exporters) > 0}
	for _, exp := range exporters {
		opts = append(opts, sdktrace.WithBatcher(spanexport.Watch(exp, health)))
	}
	t.tp = sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(t.tp)
	return t, nil
}

// samplerFor returns the sampler of a tracer provider with n exporters.
// With none, no span is recorded (sdktrace.NeverSample): nothing would
// read it, and a recorded span costs its attributes, events and
// allocations on every call. Spans still get a span context, with the
// caller's trace id when a traceparent came in, so the context still
// propagates to GitHub (traceparent, unsampled) and every log line of a
// call still carries trace_id and span_id.
//
// With an exporter, the sampler cfg.TracesSampler names
// (OTEL_TRACES_SAMPLER), always behind its parent's decision: always_on
// and traceidratio are taken as their parentbased_ forms, so that a span
// whose parent is not sampled is not either. A caller's unsampled
// traceparent is kept, and so is the batch's bound on its trace (the items
// past the first maxItemEvents run under an unsampled span context: see
// service's itemEvents), which a sampler deciding again for each span
// would undo. always_off samples nothing, whatever the parent.
func samplerFor(n int, cfg Config) sdktrace.Sampler {
	if n == 0 {
		return sdktrace.NeverSample()
	}
	switch cfg.TracesSampler {
	case samplerAlwaysOff:
		return sdktrace.NeverSample()
	case samplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case samplerTraceIDRatio, samplerParentBasedTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.TracesSamplerRatio))
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// newResource returns the OpenTelemetry resource of the broker's traces
// and metrics.
func newResource(ctx context.Context) (*resource.Resource, error) {
	return resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
}

// setupMetrics returns the broker's one meter provider, which every
// package's instruments are created on (through their Config or Options,
// never through otel's global provider), and the handler of /metrics:
// Prometheus' text format, from the OpenTelemetry Prometheus exporter on
// a registry of its own (not Prometheus' global one). When exporter is
// "otlp" or "console" (OTEL_METRICS_EXPORTER), the same instruments are
// also pushed by a periodic reader from autoexport, which reads its
// endpoint, protocol and interval from the OTEL_* variables. The provider
// must be shut down on exit; its shutdown flushes that reader.
func setupMetrics(ctx context.Context, exporter string) (*sdkmetric.MeterProvider, http.Handler, error) {
	res, err := newResource(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics resource: %w", err)
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp), sdkmetric.WithView(callDurationViews()...)}
	switch exporter {
	case metricsExporterOTLP, metricsExporterConsole:
		// autoexport picks the reader by OTEL_METRICS_EXPORTER, which
		// metricsExporterFromEnv read and checked.
		push, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("%s metric exporter: %w", exporter, err)
		}
		opts = append(opts, sdkmetric.WithReader(push))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return mp, h, nil
}

// callDurationBuckets are the bucket boundaries, in seconds, of the call
// duration histograms, rpc_server_call_duration_seconds and
// http_server_request_duration_seconds: OpenTelemetry's for HTTP and RPC
// servers, which end at 10 s, and then up to 30 minutes. A write waits for
// GitHub's pacing (a second between writes, more under its limits, up to
// --max-queue-wait), a batch of 1,000 writes takes about 17 minutes,
// WaitOperation waits as long as it is asked to: past 10 s every call
// would fall in the +Inf bucket, and a quantile over them would read 10 s.
func callDurationBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120, 300, 600, 1200, 1800}
}

// callDurationViews give otelgrpc's and otelhttp's call duration
// histograms (and the gateway's own recording of otelhttp's:
// internal/httpmetrics) the buckets of callDurationBuckets.
func callDurationViews() []sdkmetric.View {
	var views []sdkmetric.View
	for _, name := range []string{"rpc.server.call.duration", "http.server.request.duration"} {
		views = append(views, sdkmetric.NewView(sdkmetric.Instrument{Name: name},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: callDurationBuckets()}}))
	}
	return views
}

// registerBrokerMetrics registers the broker's own series on mp:
// secretbroker_build_info{version} (always 1) and
// secretbroker_audit_write_failures_total, read from trail (nil: no
// trail, always 0).
func registerBrokerMetrics(mp metric.MeterProvider, trail *audit.Log) error {
	meter := mp.Meter("github.com/secretbroker/secretbroker/cmd/secretbroker")
	info, err := meter.Int64ObservableGauge("secretbroker_build_info",
		metric.WithDescription("Always 1; the version label is the broker's build version."))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	failures, err := meter.Int64ObservableCounter("secretbroker_audit_write_failures_total",
		metric.WithDescription("Audit records that could not be written."))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	version := metric.WithAttributes(attribute.String("version", buildVersion()))
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(info, 1, version)
		o.ObserveInt64(failures, trail.Failures())
		return nil
	}, info, failures); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
