package liblog

import (
	"context"
	"log/slog"
)

// OTelHandler returns the handler of OpenTelemetry's internal logger,
// which passes its lines on to h (see otelLogHandler).
func OTelHandler(h slog.Handler) slog.Handler { return otelLogHandler{h} }

// otelLogHandler is the handler of OpenTelemetry's internal logger: it
// passes the lines on with the values they repeat of an OTEL_* variable
// hidden. OpenTelemetry's exporters log a variable they cannot parse with
// its value ("parse headers" input=..., "escape header value" value=...,
// "parse url" input=..., with an error that quotes it too), and
// OTEL_EXPORTER_OTLP_HEADERS is where a collector's credential goes, an
// endpoint may hold a password. The message and the level stay, and say
// which setting is wrong.
type otelLogHandler struct{ slog.Handler }

// otelInputKey reports whether k is a key under which OpenTelemetry's
// internal logger repeats what it was given.
func otelInputKey(k string) bool {
	switch k {
	case "input", "value", "key":
		return true
	}
	return false
}

// hiddenOTelValue stands for a value otelLogHandler hides.
const hiddenOTelValue = "(not shown: an OTEL_* variable's value, which may hold a credential)"

// Handle hides the values under otelInputKey and, in the same line, the
// error (logr's "err"), which may quote them.
func (h otelLogHandler) Handle(ctx context.Context, r slog.Record) error {
	repeats := false
	r.Attrs(func(a slog.Attr) bool {
		repeats = otelInputKey(a.Key)
		return !repeats
	})
	if !repeats {
		return h.Handler.Handle(ctx, r)
	}
	hidden := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if otelInputKey(a.Key) || a.Key == "err" {
			a = slog.String(a.Key, hiddenOTelValue)
		}
		hidden.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, hidden)
}

// WithAttrs hides the values under otelInputKey (logr's WithValues).
func (h otelLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	shown := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		if otelInputKey(a.Key) {
			a = slog.String(a.Key, hiddenOTelValue)
		}
		shown[i] = a
	}
	return otelLogHandler{h.Handler.WithAttrs(shown)}
}

// WithGroup keeps the hiding in the group.
func (h otelLogHandler) WithGroup(name string) slog.Handler {
	return otelLogHandler{h.Handler.WithGroup(name)}
}
