package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
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

// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG choose the sampler of
// the exported spans, always behind the parent's decision (a caller's
// traceparent, a batch's unsampled items), but for always_off; a sampler
// the broker does not take is a configuration error.
func TestTracesSamplerFromEnv(t *testing.T) {
	const (
		sampledParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	)
	for _, tc := range []struct {
		sampler, arg string
		// whether a root span, a sampled caller's and an unsampled
		// caller's are sampled
		root, sampled, unsampled bool
	}{
		{"", "", true, true, false},
		{"parentbased_always_on", "", true, true, false},
		{"always_on", "", true, true, false},
		{"always_off", "", false, false, false},
		{"parentbased_always_off", "", false, true, false},
		{"traceidratio", "0", false, true, false},
		{"parentbased_traceidratio", "0", false, true, false},
		{"TraceIDRatio", " 1 ", true, true, false},
		{"traceidratio", "", true, true, false},
	} {
		t.Run(tc.sampler+"/"+tc.arg, func(t *testing.T) {
			env := envMap(map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg})
			cfg, err := loadConfig([]string{"--dev"}, env, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			logger := slog.New(slog.DiscardHandler)
			tr, err := setupTracing(t.Context(), cfg, logger, tracetest.NewInMemoryExporter())
			if err != nil {
				t.Fatal(err)
			}
			defer tr.shutdown(t.Context(), logger)
			for _, c := range []struct {
				traceparent string
				want        bool
			}{{"", tc.root}, {sampledParent, tc.sampled}, {unsampledParent, tc.unsampled}} {
				ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": c.traceparent})
				_, span := tr.tp.Tracer("test").Start(ctx, "call")
				if got := span.SpanContext().IsSampled(); got != c.want {
					t.Errorf("parent %q: sampled %v, want %v", c.traceparent, got, c.want)
				}
				span.End()
			}
		})
	}
	for _, env := range []map[string]string{
		{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
		{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
		{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "one percent"},
	} {
		if _, err := loadConfig([]string{"--dev"}, envMap(env), io.Discard); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
			t.Errorf("%v: %v, want an error naming the variable", env, err)
		}
	}
}
