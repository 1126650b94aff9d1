package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/secretbroker/secretbroker/service/audit"
)

// serviceName is the OpenTelemetry service.name, unless OTEL_SERVICE_NAME
// says otherwise.
const serviceName = "secretbroker"

// newLogger returns the process logger: JSON lines on w, or text in dev
// mode, at cfg.LogLevel.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.Dev {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// setupTracing installs the W3C TraceContext and Baggage propagators and
// an SDK tracer provider as OpenTelemetry's globals, which the gRPC, HTTP
// and upstream instrumentation use. Spans are exported with OTLP/gRPC only
// when cfg.OTLPEndpoint is set; the exporter reads its endpoint, headers
// and TLS settings from the OTEL_EXPORTER_OTLP_* variables itself. The
// returned provider must be shut down on exit.
func setupTracing(ctx context.Context, cfg Config) (*sdktrace.TracerProvider, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))

	res, err := newResource(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return tp, nil
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
// a registry of its own (not Prometheus' global one), so that the same
// instruments could be exported over OTLP with another reader. The
// provider must be shut down on exit.
func setupMetrics(ctx context.Context) (*sdkmetric.MeterProvider, http.Handler, error) {
	res, err := newResource(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics resource: %w", err)
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return mp, h, nil
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
