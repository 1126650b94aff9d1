package main

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Without an exporter no span is recorded, but a caller's trace still
// propagates: the span carries the caller's trace id and a span id of
// its own, and a traceparent goes on with them. With an exporter, a
// sampled caller's span is recorded and exported.
func TestSpansRecordedOnlyWithAnExporter(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parentID = "00f067aa0ba902b7"
	for _, tc := range []struct {
		name      string
		exporter  bool
		recording bool
	}{
		{"no exporter", false, false},
		{"an exporter", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
			var exp *tracetest.InMemoryExporter
			var tr *tracing
			var err error
			if tc.exporter {
				exp = tracetest.NewInMemoryExporter()
				tr, err = setupTracing(t.Context(), Config{}, logger, exp)
			} else {
				tr, err = setupTracing(t.Context(), Config{}, logger, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			prop := propagation.TraceContext{}
			in := propagation.MapCarrier{"traceparent": "00-" + traceID + "-" + parentID + "-01"}
			ctx := prop.Extract(context.Background(), in)
			ctx, span := tr.tp.Tracer("test").Start(ctx, "call")
			sc := span.SpanContext()
			if got := span.IsRecording(); got != tc.recording {
				t.Errorf("IsRecording = %v, want %v", got, tc.recording)
			}
			if !sc.IsValid() || sc.TraceID().String() != traceID || sc.SpanID().String() == parentID {
				t.Errorf("span context %s/%s, want trace %s and a span id of its own", sc.TraceID(), sc.SpanID(), traceID)
			}
			out := propagation.MapCarrier{}
			prop.Inject(ctx, out)
			want := "00-" + traceID + "-" + sc.SpanID().String() + "-"
			if got := out["traceparent"]; len(got) != len(want)+2 || got[:len(want)] != want {
				t.Errorf("traceparent sent on = %q, want %s..", got, want)
			}
			span.End()
			if err := tr.tp.ForceFlush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if exp != nil {
				if n := len(exp.GetSpans()); n != 1 {
					t.Errorf("%d spans exported, want 1", n)
				}
			}
			tr.shutdown(t.Context(), logger)
			if trace.SpanFromContext(ctx).SpanContext().TraceID().String() != traceID {
				t.Error("the context lost the trace")
			}
		})
	}
}
