// Package tracelog owns the broker's slog handler that names, in every
// record logged inside a traced call, the trace and the span it belongs
// to (trace_id, span_id).
package tracelog

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// traceHandler is a slog.Handler that adds trace_id and span_id to every
// record logged with a context that carries a valid span context: every
// line logged inside a call (the service and the upstream client log with
// the *Context variants, or Log/LogAttrs with the call's context) names
// the trace and the span it belongs to. Other records pass through as
// they are.
type traceHandler struct {
	inner slog.Handler
}

// NewHandler returns h with trace_id and span_id added to every record
// logged with a context that carries a valid span context.
func NewHandler(h slog.Handler) slog.Handler {
	return &traceHandler{inner: h}
}

func (h *traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(
			slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()),
		)
	}
	return h.inner.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &traceHandler{inner: h.inner.WithAttrs(attrs)}
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{inner: h.inner.WithGroup(name)}
}
