package tracelog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestTraceHandler(t *testing.T) {
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanID := trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	inCall := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled}))
	onlyTrace := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID}))

	for _, tc := range []struct {
		name      string
		ctx       context.Context
		log       func(l *slog.Logger, ctx context.Context)
		wantIDs   bool
		wantAttrs map[string]any
	}{
		{"inside a call", inCall, func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m", "k", "v") }, true, map[string]any{"k": "v"}},
		{"LogAttrs", inCall, func(l *slog.Logger, ctx context.Context) { l.LogAttrs(ctx, slog.LevelWarn, "m", slog.Int("n", 1)) }, true, map[string]any{"n": 1.0}},
		{"With keeps the ids", inCall, func(l *slog.Logger, ctx context.Context) { l.With("component", "x").DebugContext(ctx, "m") }, true, map[string]any{"component": "x"}},
		{"no context", context.Background(), func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m") }, false, nil},
		{"no span id", onlyTrace, func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m") }, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
			tc.log(l, tc.ctx)
			var got map[string]any // one JSON line: a second one fails Unmarshal
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("want one JSON line: %v: %q", err, buf.String())
			}
			if tc.wantIDs {
				if got["trace_id"] != traceID.String() || got["span_id"] != spanID.String() {
					t.Errorf("trace_id %v span_id %v, want %s and %s", got["trace_id"], got["span_id"], traceID, spanID)
				}
			} else if _, ok := got["trace_id"]; ok {
				t.Errorf("a line outside a call has trace_id: %v", got)
			}
			for k, v := range tc.wantAttrs {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}

	// A disabled level stays disabled through the wrapper.
	l := slog.New(NewHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if l.Enabled(inCall, slog.LevelInfo) {
		t.Error("info enabled under a warn handler")
	}
}
