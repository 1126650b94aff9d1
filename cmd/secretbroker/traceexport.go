package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// The environment variables that decide whether spans are exported at
// all. The exporter itself (autoexport) reads these and the other OTEL_*
// variables: OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and so on.
const (
	envTracesExporter      = "OTEL_TRACES_EXPORTER"
	envOTLPEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint  = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	tracesExporterOTLP     = "otlp"
	tracesExporterConsole  = "console"
	tracesExporterNone     = "none"
	tracesExporterDisabled = "" // neither variable set: nothing exported
)

// The sampler variables, and the samplers of OTEL_TRACES_SAMPLER the
// broker takes (OpenTelemetry's, but for the remote ones).
const (
	envTracesSampler               = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg            = "OTEL_TRACES_SAMPLER_ARG"
	samplerAlwaysOn                = "always_on"
	samplerAlwaysOff               = "always_off"
	samplerTraceIDRatio            = "traceidratio"
	samplerParentBasedAlwaysOn     = "parentbased_always_on"
	samplerParentBasedAlwaysOff    = "parentbased_always_off"
	samplerParentBasedTraceIDRatio = "parentbased_traceidratio"
	defaultTracesSampler           = samplerParentBasedAlwaysOn
)

// samplerRatioDefault is the ratio of a trace id ratio sampler without
// OTEL_TRACES_SAMPLER_ARG.
const samplerRatioDefault = 1.0

// tracesSamplerFromEnv returns the sampler OTEL_TRACES_SAMPLER names
// (lower-cased; parentbased_always_on when unset or empty) and, for the
// trace id ratio samplers, its ratio: OTEL_TRACES_SAMPLER_ARG, 0 to 1, 1
// when unset. Another sampler, or a ratio that is not a number from 0 to
// 1, is an error.
func tracesSamplerFromEnv(lookupEnv func(string) (string, bool)) (string, float64, error) {
	v, _ := lookupEnv(envTracesSampler)
	name := strings.ToLower(strings.TrimSpace(v))
	switch name {
	case "":
		return defaultTracesSampler, samplerRatioDefault, nil
	case samplerAlwaysOn, samplerAlwaysOff, samplerParentBasedAlwaysOn, samplerParentBasedAlwaysOff:
		return name, samplerRatioDefault, nil
	case samplerTraceIDRatio, samplerParentBasedTraceIDRatio:
		arg, _ := lookupEnv(envTracesSamplerArg)
		if arg = strings.TrimSpace(arg); arg == "" {
			return name, samplerRatioDefault, nil
		}
		ratio, err := strconv.ParseFloat(arg, 64)
		if err != nil || !(ratio >= 0 && ratio <= 1) {
			return "", 0, fmt.Errorf("%s: want a ratio from 0 to 1 for %s (the value is not shown, as it may be a secret)", envTracesSamplerArg, name)
		}
		return name, ratio, nil
	}
	return "", 0, fmt.Errorf("%s: want %s, %s, %s, %s, %s or %s (the value is not shown, as it may be a secret)", envTracesSampler,
		samplerParentBasedAlwaysOn, samplerParentBasedAlwaysOff, samplerParentBasedTraceIDRatio,
		samplerAlwaysOn, samplerAlwaysOff, samplerTraceIDRatio)
}

// The values of OTEL_METRICS_EXPORTER the broker takes. "prometheus",
// which autoexport would serve on a listener of its own, is left out:
// /metrics on the admin listener serves Prometheus already.
const (
	envMetricsExporter     = "OTEL_METRICS_EXPORTER"
	metricsExporterOTLP    = "otlp"
	metricsExporterConsole = "console"
	metricsExporterNone    = "none"
)

// metricsExporterFromEnv returns where OTEL_METRICS_EXPORTER asks metrics
// to be pushed: otlp, console, or "" for none (unset, empty or none).
// Another value is an error.
func metricsExporterFromEnv(lookupEnv func(string) (string, bool)) (string, error) {
	v, _ := lookupEnv(envMetricsExporter)
	switch v {
	case "", metricsExporterNone:
		return "", nil
	case metricsExporterOTLP, metricsExporterConsole:
		return v, nil
	}
	return "", fmt.Errorf("%s: want %s, %s or %s (Prometheus is served at /metrics on the admin listener) (the value is not shown, as it may be a secret)",
		envMetricsExporter, metricsExporterOTLP, metricsExporterConsole, metricsExporterNone)
}

// tracesExporterFromEnv returns the span exporter the environment asks
// for: OTEL_TRACES_EXPORTER when set (otlp, console or none), else otlp
// when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set, else "" (nothing is exported; autoexport alone would default to
// OTLP on localhost). Another value of OTEL_TRACES_EXPORTER is an error.
func tracesExporterFromEnv(lookupEnv func(string) (string, bool)) (string, error) {
	if v, ok := lookupEnv(envTracesExporter); ok && v != "" {
		switch v {
		case tracesExporterOTLP, tracesExporterConsole, tracesExporterNone:
			return v, nil
		}
		return "", fmt.Errorf("%s: want %s, %s or %s (the value is not shown, as it may be a secret)", envTracesExporter, tracesExporterOTLP, tracesExporterConsole, tracesExporterNone)
	}
	for _, name := range []string{envOTLPEndpoint, envOTLPTracesEndpoint} {
		if v, ok := lookupEnv(name); ok && v != "" {
			return tracesExporterOTLP, nil
		}
	}
	return tracesExporterDisabled, nil
}

// exportHealth logs the trace exporter's failures once per outage: the
// first failure is logged at WARN; later ones are counted, not logged,
// until an export succeeds again (logged at INFO with the count) or
// repeat has passed since the last line (then one more WARN line with the
// count).
//
// Another exportHealth (newErrorHealth) is OpenTelemetry's error handler
// (otel.SetErrorHandler), so that no error of the SDK becomes a stray
// text line or one line per span or batch: the errors that are not a span
// export's, a metric push's above all (OTEL_METRICS_EXPORTER), logged as
// what they are, not as the trace exporter's. Nothing tells it that they
// stopped: an error after repeat without any begins a new run of them.
type exportHealth struct {
	log    *slog.Logger
	now    func() time.Time
	repeat time.Duration
	// failing and still are the lines of a failure that begins an outage
	// and of one repeat after the last line; noRecovery is set for
	// errors that no success ends (newErrorHealth).
	failing, still string
	noRecovery     bool

	mu     sync.Mutex
	down   bool
	since  time.Time // when the outage began
	logged time.Time // when it was last logged
	quiet  int       // failures since then that were not logged
	total  int       // failures in this outage
}

func newExportHealth(logger *slog.Logger, now func() time.Time, repeat time.Duration) *exportHealth {
	return &exportHealth{log: logger, now: now, repeat: repeat,
		failing: "trace export failing: spans are dropped until the collector answers; further failures are not logged until then",
		still:   "trace export still failing",
	}
}

// newErrorHealth returns the exportHealth of OpenTelemetry's errors other
// than the span exporter's (which it reports itself, as reportedError).
func newErrorHealth(logger *slog.Logger, now func() time.Time, repeat time.Duration) *exportHealth {
	return &exportHealth{log: logger, now: now, repeat: repeat, noRecovery: true,
		failing: "OpenTelemetry error (not a span export: a metric push, or the SDK's own); the ones that follow soon are counted, not logged",
		still:   "OpenTelemetry errors go on",
	}
}

// failed records a failure; it logs it when it begins an outage or when
// the outage has been quiet for repeat. An error the watched exporter
// already reported (a reportedError) is not counted twice.
func (h *exportHealth) failed(err error) {
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

// succeeded records a successful export, which ends an outage.
func (h *exportHealth) succeeded() {
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

// watchedExporter tells exportHealth how each export went, so that an
// outage ends with the first export that succeeds. It hands the exporter
// spans whose strings are valid UTF-8 (validSpans).
type watchedExporter struct {
	sdktrace.SpanExporter
	health *exportHealth
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

// reportedError is an export error exportHealth has already seen.
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
