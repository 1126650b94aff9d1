package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The gateway's instrumentation carries a caller's trace into the call in
// both modes. Without an exporter there is no HTTP span: the call's
// context holds the caller's span context itself, and nothing is
// recorded. With one, otelhttp records the HTTP span as the caller's
// child, and the call's context holds it.
func TestGatewayInstrumentation(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parentID = "00f067aa0ba902b7"
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	for _, tc := range []struct {
		name     string
		exporter bool
	}{
		{"no exporter", false},
		{"an exporter", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra *tracetest.InMemoryExporter
			if tc.exporter {
				extra = tracetest.NewInMemoryExporter()
			}
			var tr *tracing
			var err error
			if extra != nil {
				tr, err = setupTracing(t.Context(), Config{}, logger, extra)
			} else {
				tr, err = setupTracing(t.Context(), Config{}, logger, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.shutdown(t.Context(), logger)
			var seen trace.Span
			var recording bool
			h := instrumentGateway(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = trace.SpanFromContext(r.Context())
				recording = seen.IsRecording() // until the span ends
				// The writer still reaches net/http's own through the wrapper.
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("Flush through the instrumentation: %v", err)
				}
			}), tr.recording, gatewayInstrumentation{
				tracerProvider: tr.tp, meterProvider: sdkmetric.NewMeterProvider(),
				propagator: propagation.TraceContext{}, serverName: "127.0.0.1:8080",
			})
			r := httptest.NewRequest(http.MethodGet, "/v1/x", nil)
			r.Header.Set("Traceparent", "00-"+traceID+"-"+parentID+"-01")
			h.ServeHTTP(httptest.NewRecorder(), r)
			if seen == nil {
				t.Fatal("the handler did not run")
			}
			sc := seen.SpanContext()
			if sc.TraceID().String() != traceID {
				t.Errorf("trace id %s, want the caller's %s", sc.TraceID(), traceID)
			}
			if recording != tc.exporter {
				t.Errorf("IsRecording = %v, want %v", recording, tc.exporter)
			}
			// Without a span the caller's own context; with one, a
			// child with an id of its own.
			if own := sc.SpanID().String() != parentID; own != tc.exporter {
				t.Errorf("span id %s (the caller's is %s): own id = %v, want %v", sc.SpanID(), parentID, own, tc.exporter)
			}
			if extra != nil {
				if err := tr.tp.ForceFlush(t.Context()); err != nil {
					t.Fatal(err)
				}
				if n := len(extra.GetSpans()); n != 1 {
					t.Errorf("%d spans exported, want 1", n)
				}
			}
		})
	}
}
