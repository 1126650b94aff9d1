package main

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Log formats, the values of --log-format.
const (
	logFormatJSON = "json"
	logFormatText = "text"
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

// newTraceHandler wraps h.
func newTraceHandler(h slog.Handler) slog.Handler {
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

// httpErrorLog returns the ErrorLog of the broker's HTTP servers: net/http's
// own lines, through logger at WARN, except those any client causes once
// per connection before it has sent a request (callerConnLine: a failed
// TLS handshake, which a port scan, a load balancer's TCP check or, under
// mTLS, a client without a certificate makes; an HTTP/2 connection it
// breaks), logged at DEBUG, as the gRPC listener's own are (grpclog.go):
// a flood of connections must not flood the log.
func httpErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(httpErrorWriter{h: logger.Handler()}, "", 0)
}

// callerConnLine reports whether msg is one of net/http's lines about a
// connection its client broke.
func callerConnLine(msg string) bool {
	for _, prefix := range [...]string{
		"http: TLS handshake error from ",
		"http2: server: error reading preface from client ",
		"http2: server connection error from ",
		"http2: server closing client connection: ",
		"http2: received GOAWAY ",
		"timeout waiting for SETTINGS frames from ",
		"timeout waiting for PING response",
	} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// httpErrorWriter writes each of net/http's lines as a record of h.
type httpErrorWriter struct{ h slog.Handler }

func (w httpErrorWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if callerConnLine(msg) {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !w.h.Enabled(ctx, level) {
		return len(p), nil
	}
	return len(p), w.h.Handle(ctx, slog.NewRecord(time.Now(), level, msg, 0))
}
