package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/logtest"
)

// withMessage returns the lines whose msg starts with prefix.
func withMessage(lines []map[string]any, prefix string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if msg, _ := l["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestNewLoggerFormat(t *testing.T) {
	for _, tc := range []struct {
		format string
		want   string
	}{{logFormatJSON, `{"time":`}, {logFormatText, "time="}} {
		var buf bytes.Buffer
		newLogger(Config{LogFormat: tc.format, LogLevel: slog.LevelInfo}, &buf).Info("hello")
		if !strings.HasPrefix(buf.String(), tc.want) {
			t.Errorf("--log-format %s wrote %q, want it to start with %q", tc.format, buf.String(), tc.want)
		}
	}
}

func TestTracesExporterFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{"nothing set", nil, "", false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "otlp", false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "otlp", false},
		{"empty endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, "", false},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, "console", false},
		{"none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "none", false},
		{"otlp without endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "otlp", false},
		{"unknown", map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracesExporterFromEnv(envMap(tc.env))
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("= %q, %v; want %q, error %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// blockingExporter holds every export until released, whatever its
// context says: the worst collector.
type blockingExporter struct {
	release  chan struct{}
	exported atomic.Int64
}

func (e *blockingExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	<-e.release
	e.exported.Add(int64(len(spans)))
	return nil
}

func (e *blockingExporter) Shutdown(context.Context) error {
	<-e.release
	return nil
}

// A collector that never answers neither holds a span's end (a full queue
// drops spans) nor stretches the shutdown past traceFlushTimeout.
func TestStuckCollectorNeitherBlocksNorStretchesShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncWriter
		logger := slog.New(slog.NewJSONHandler(&logs, nil))
		exp := &blockingExporter{release: make(chan struct{})}
		tr, err := setupTracing(t.Context(), Config{}, logger, exp)
		if err != nil {
			t.Fatal(err)
		}
		tracer := tr.tp.Tracer("test")
		start := time.Now()
		// Far more spans than the queue holds: every End returns at once.
		for range 20000 {
			_, span := tracer.Start(t.Context(), "call")
			span.End()
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("ending spans took %v of fake time, want none", d)
		}
		start = time.Now()
		tr.shutdown(t.Context(), logger)
		if d := time.Since(start); d != traceFlushTimeout {
			t.Errorf("shutdown took %v, want the flush deadline %v", d, traceFlushTimeout)
		}
		if !strings.Contains(logs.String(), "spans not flushed at shutdown") {
			t.Errorf("the cut flush was not logged: %s", logs.String())
		}
		close(exp.release)
		synctest.Wait()
		if n := exp.exported.Load(); n >= 20000 {
			t.Errorf("%d spans exported: none were dropped, so something waited", n)
		}
	})
}

// An OTLP collector that cannot be reached, through autoexport from the
// environment: many spans and many export attempts make one JSON line,
// and no line that is not JSON. OpenTelemetry's own messages come through
// the same logger.
func TestUnreachableCollectorLogsOnce(t *testing.T) {
	// A loopback port that nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_EXPORTER_OTLP_TIMEOUT":  "200", // ms: each export gives up quickly
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	exporter, err := tracesExporterFromEnv(envMap(env))
	if err != nil || exporter != tracesExporterOTLP {
		t.Fatalf("exporter %q, %v", exporter, err)
	}
	var logs syncWriter
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := setupTracing(t.Context(), Config{TracesExporter: exporter}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	tracer := tr.tp.Tracer("test")
	const rounds = 3
	for range rounds {
		for range 50 {
			_, span := tracer.Start(t.Context(), "call")
			span.End()
		}
		// Each flush is one failed export.
		if err := tr.tp.ForceFlush(t.Context()); err == nil {
			t.Fatal("a flush to an unreachable collector succeeded")
		}
	}
	tr.shutdown(t.Context(), logger)

	lines := logtest.JSONLines(t, logs.String())
	if failing := withMessage(lines, "trace export failing"); len(failing) != 1 || failing[0]["component"] != "tracing" {
		t.Errorf("%d 'trace export failing' lines for %d failed exports, want 1:\n%s", len(failing), rounds, logs.String())
	}
	if len(withMessage(lines, "trace export still failing")) != 0 {
		t.Error("the outage was logged again within the repeat interval")
	}
	// OpenTelemetry's own debug messages came through the broker's logger.
	otelLines := 0
	for _, l := range lines {
		if l["component"] == "otel" {
			otelLines++
		}
	}
	if otelLines == 0 {
		t.Errorf("no line of OpenTelemetry's own logger in the broker's log:\n%s", logs.String())
	}
}

// failingExporter fails every export.
type failingExporter struct{}

func (failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	return errors.New("collector unreachable")
}
func (failingExporter) Shutdown(context.Context) error { return nil }

// OpenTelemetry's errors that are not a span export's (a metric push that
// fails, OTEL_METRICS_EXPORTER) are logged as what they are, once per
// run of them, never as the trace exporter's failing; a span export that
// fails is still logged as that, once.
func TestOTelErrorsAreNotTraceExportFailures(t *testing.T) {
	var logs syncWriter
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	tr, err := setupTracing(t.Context(), Config{}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	pushFailed := errors.New(`failed to upload metrics: Post "http://collector:4318/v1/metrics": connection refused`)
	for range 3 {
		otel.Handle(pushFailed)
	}
	tr.shutdown(t.Context(), logger)
	lines := logtest.JSONLines(t, logs.String())
	if len(lines) != 1 || !strings.HasPrefix(lines[0]["msg"].(string), "OpenTelemetry error") || lines[0]["error"] != pushFailed.Error() {
		t.Errorf("3 failed metric pushes: %v, want one line saying what failed", lines)
	}

	var spanLogs syncWriter
	logger = slog.New(slog.NewJSONHandler(&spanLogs, nil))
	tr, err = setupTracing(t.Context(), Config{}, logger, failingExporter{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, span := tr.tp.Tracer("test").Start(t.Context(), "call")
		span.End()
		_ = tr.tp.ForceFlush(t.Context())
	}
	tr.shutdown(t.Context(), logger)
	lines = withMessage(logtest.JSONLines(t, spanLogs.String()), "trace export failing")
	if n := len(logtest.JSONLines(t, spanLogs.String())); len(lines) != 1 || n != 1 {
		t.Errorf("2 failed span exports: %d lines, %d of them trace export failing, want 1:\n%s", n, len(lines), spanLogs.String())
	}
}
