// Package spanexport owns what the broker puts around OpenTelemetry's span
// exporter: its failures logged once per outage, not per batch (Health,
// which with NewErrorHealth also logs OpenTelemetry's other errors once per
// run of them), and the spans it exports made valid UTF-8, so that one
// caller's string cannot fail a whole batch (Watch).
package spanexport

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Health logs the trace exporter's failures once per outage: the
// first failure is logged at WARN; later ones are counted, not logged,
// until an export succeeds again (logged at INFO with the count) or
// repeat has passed since the last line (then one more WARN line with the
// count).
//
// Another Health (NewErrorHealth) is OpenTelemetry's error handler
// (otel.SetErrorHandler), so that no error of the SDK becomes a stray
// text line or one line per span or batch: the errors that are not a span
// export's, a metric push's above all (OTEL_METRICS_EXPORTER), logged as
// what they are, not as the trace exporter's. Nothing tells it that they
// stopped: an error after repeat without any begins a new run of them.
type Health struct {
	log    *slog.Logger
	now    func() time.Time
	repeat time.Duration
	// failing and still are the lines of a failure that begins an outage
	// and of one repeat after the last line; noRecovery is set for
	// errors that no success ends (NewErrorHealth).
	failing, still string
	noRecovery     bool

	mu     sync.Mutex
	down   bool
	since  time.Time // when the outage began
	logged time.Time // when it was last logged
	quiet  int       // failures since then that were not logged
	total  int       // failures in this outage
}

// NewHealth returns the Health of the trace exporter's failures, which
// logs to logger, takes the time from now, and logs a failure again when
// repeat has passed since the last line.
func NewHealth(logger *slog.Logger, now func() time.Time, repeat time.Duration) *Health {
	return &Health{log: logger, now: now, repeat: repeat,
		failing: "trace export failing: spans are dropped until the collector answers; further failures are not logged until then",
		still:   "trace export still failing",
	}
}

// NewErrorHealth returns the Health of OpenTelemetry's errors other
// than the span exporter's (which it reports itself, as reportedError).
func NewErrorHealth(logger *slog.Logger, now func() time.Time, repeat time.Duration) *Health {
	return &Health{log: logger, now: now, repeat: repeat, noRecovery: true,
		failing: "OpenTelemetry error (not a span export: a metric push, or the SDK's own); the ones that follow soon are counted, not logged",
		still:   "OpenTelemetry errors go on",
	}
}

// failed records a failure; it logs it when it begins an outage or when
// the outage has been quiet for repeat. An error the watched exporter
// already reported (a reportedError) is not counted twice.
func (h *Health) failed(err error) {
	if _, ok := errors.AsType[*reportedError](err); ok {
		return
	}
	h.mu.Lock()
	now := h.now()
	if h.down && h.noRecovery && h.quiet == 0 && now.Sub(h.logged) >= h.repeat {
		h.down, h.total = false, 0 // none since the last line, repeat ago: over
	}
	h.total++
	switch {
	case !h.down:
		h.down, h.since, h.logged, h.quiet = true, now, now, 0
		h.mu.Unlock()
		h.log.Warn(h.failing, slog.Any("error", err))
		return
	case now.Sub(h.logged) >= h.repeat:
		quiet, since := h.quiet, h.since
		h.logged, h.quiet = now, 0
		h.mu.Unlock()
		h.log.Warn(h.still,
			slog.Any("error", err), slog.Int("failures_not_logged", quiet), slog.Time("since", since))
		return
	}
	h.quiet++
	h.mu.Unlock()
}

// Handle is failed, as OpenTelemetry's error handler
// (otel.SetErrorHandler).
func (h *Health) Handle(err error) { h.failed(err) }

// succeeded records a successful export, which ends an outage.
func (h *Health) succeeded() {
	h.mu.Lock()
	if !h.down {
		h.mu.Unlock()
		return
	}
	total, since := h.total, h.since
	h.down, h.total, h.quiet = false, 0, 0
	h.mu.Unlock()
	h.log.Info("trace export recovered",
		slog.Int("failures", total), slog.Duration("outage", h.now().Sub(since)))
}

// Watch returns exp with each export's outcome told to health, and the
// spans it exports made valid UTF-8 (validSpans).
func Watch(exp sdktrace.SpanExporter, health *Health) sdktrace.SpanExporter {
	return &watchedExporter{SpanExporter: exp, health: health}
}

// watchedExporter tells Health how each export went, so that an
// outage ends with the first export that succeeds. It hands the exporter
// spans whose strings are valid UTF-8 (validSpans).
type watchedExporter struct {
	sdktrace.SpanExporter
	health *Health
}

func (e *watchedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, validSpans(spans))
	if err != nil {
		e.health.failed(err)
		// The batch span processor hands the error to otel.Handle, which
		// is health.failed again: marked, it is not counted twice.
		return &reportedError{err: err}
	}
	if len(spans) > 0 {
		e.health.succeeded()
	}
	return nil
}

// reportedError is an export error Health has already seen.
type reportedError struct{ err error }

func (e *reportedError) Error() string { return e.err.Error() }
func (e *reportedError) Unwrap() error { return e.err }

// validSpans returns spans with every string an export carries (span and
// event names, attribute keys and values, the status description) valid
// UTF-8, each invalid byte sequence replaced by U+FFFD. OTLP encodes them
// as protobuf strings, which must be UTF-8: one invalid string fails the
// marshalling of the whole batch, and every span in it is lost. Callers
// choose some of those strings: the gateway's HTTP span carries the
// request's path and User-Agent, which anyone may send to /healthz, so
// without this one request a batch would drop every call's spans with it.
// Spans that need nothing are passed as they are; so is the slice when
// none does.
func validSpans(spans []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan // a copy, from the first span that needs one
	for i, s := range spans {
		if spanValid(s) {
			if out != nil {
				out = append(out, s)
			}
			continue
		}
		if out == nil {
			out = make([]sdktrace.ReadOnlySpan, i, len(spans))
			copy(out, spans[:i])
		}
		out = append(out, newValidSpan(s))
	}
	if out == nil {
		return spans
	}
	return out
}

// spanValid reports whether every string of s that an export carries is
// valid UTF-8.
func spanValid(s sdktrace.ReadOnlySpan) bool {
	if !utf8.ValidString(s.Name()) || !utf8.ValidString(s.Status().Description) || !attrsValid(s.Attributes()) {
		return false
	}
	for _, e := range s.Events() {
		if !utf8.ValidString(e.Name) || !attrsValid(e.Attributes) {
			return false
		}
	}
	for _, l := range s.Links() {
		if !attrsValid(l.Attributes) {
			return false
		}
	}
	return true
}

func attrsValid(attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if !utf8.ValidString(string(kv.Key)) {
			return false
		}
		switch kv.Value.Type() {
		case attribute.STRING:
			if !utf8.ValidString(kv.Value.AsString()) {
				return false
			}
		case attribute.STRINGSLICE:
			for _, v := range kv.Value.AsStringSlice() {
				if !utf8.ValidString(v) {
					return false
				}
			}
		}
	}
	return true
}

// validUTF8 is s with each invalid byte sequence replaced by U+FFFD.
func validUTF8(s string) string { return strings.ToValidUTF8(s, string(utf8.RuneError)) }

func validAttrs(attrs []attribute.KeyValue) []attribute.KeyValue {
	if attrsValid(attrs) {
		return attrs
	}
	out := make([]attribute.KeyValue, len(attrs))
	for i, kv := range attrs {
		kv.Key = attribute.Key(validUTF8(string(kv.Key)))
		switch kv.Value.Type() {
		case attribute.STRING:
			kv.Value = attribute.StringValue(validUTF8(kv.Value.AsString()))
		case attribute.STRINGSLICE:
			vs := kv.Value.AsStringSlice()
			for j, v := range vs {
				vs[j] = validUTF8(v)
			}
			kv.Value = attribute.StringSliceValue(vs)
		}
		out[i] = kv
	}
	return out
}

// validSpan is a span whose strings were made valid UTF-8; everything
// else is the span's own.
type validSpan struct {
	sdktrace.ReadOnlySpan
	name   string
	status sdktrace.Status
	attrs  []attribute.KeyValue
	events []sdktrace.Event
	links  []sdktrace.Link
}

func newValidSpan(s sdktrace.ReadOnlySpan) *validSpan {
	v := &validSpan{ReadOnlySpan: s, name: validUTF8(s.Name()), status: s.Status(), attrs: validAttrs(s.Attributes())}
	v.status.Description = validUTF8(v.status.Description)
	for _, e := range s.Events() {
		e.Name, e.Attributes = validUTF8(e.Name), validAttrs(e.Attributes)
		v.events = append(v.events, e)
	}
	for _, l := range s.Links() {
		l.Attributes = validAttrs(l.Attributes)
		v.links = append(v.links, l)
	}
	return v
}

func (v *validSpan) Name() string                     { return v.name }
func (v *validSpan) Status() sdktrace.Status          { return v.status }
func (v *validSpan) Attributes() []attribute.KeyValue { return v.attrs }
func (v *validSpan) Events() []sdktrace.Event         { return v.events }
func (v *validSpan) Links() []sdktrace.Link           { return v.links }
