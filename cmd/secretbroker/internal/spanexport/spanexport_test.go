package spanexport

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/logtest"
)

// An outage is logged once when it begins, once more per repeat interval
// while it lasts (with how many failures were not logged), and once when
// it ends; every line is JSON.
func TestExportHealthOncePerOutage(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	h := NewHealth(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now }, time.Hour)
	refused := errors.New("connection refused")

	h.succeeded() // no outage: nothing to say
	for range 500 {
		h.failed(refused)
		now = now.Add(time.Second)
	}
	h.failed(&reportedError{err: refused}) // already counted: ignored
	lines := logtest.JSONLines(t, buf.String())
	if len(lines) != 1 || lines[0]["level"] != "WARN" || lines[0]["error"] != "connection refused" {
		t.Fatalf("500 failures in 500 s: %v, want one WARN line", lines)
	}
	now = now.Add(time.Hour)
	h.failed(refused)
	lines = logtest.JSONLines(t, buf.String())
	if len(lines) != 2 || lines[1]["msg"] != "trace export still failing" || lines[1]["failures_not_logged"] != 499.0 {
		t.Fatalf("after an hour: %v, want a second line counting 499 failures not logged", lines)
	}
	h.succeeded()
	h.succeeded()
	lines = logtest.JSONLines(t, buf.String())
	if len(lines) != 3 || lines[2]["level"] != "INFO" || lines[2]["failures"] != 501.0 {
		t.Fatalf("recovery: %v, want one INFO line counting 501 failures", lines)
	}
	h.failed(refused) // a new outage
	if lines = logtest.JSONLines(t, buf.String()); len(lines) != 4 || !strings.HasPrefix(lines[3]["msg"].(string), "trace export failing") {
		t.Fatalf("a new outage: %v, want its first line", lines)
	}
}

// OpenTelemetry's other errors have no success to end their run: an error
// after repeat without any begins a new one, logged as such; one within
// repeat of the last line is counted.
func TestErrorHealthRuns(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	h := NewErrorHealth(slog.New(slog.NewJSONHandler(&buf, nil)), func() time.Time { return now }, time.Hour)
	err := errors.New("push failed")
	h.failed(err)
	now = now.Add(time.Minute)
	h.failed(err) // counted
	now = now.Add(time.Hour)
	h.failed(err) // repeat after the first line: one more, counting one
	now = now.Add(3 * time.Hour)
	h.failed(err) // none for 3 hours: a new run
	lines := logtest.JSONLines(t, buf.String())
	if len(lines) != 3 || lines[1]["msg"] != "OpenTelemetry errors go on" || lines[1]["failures_not_logged"] != 1.0 ||
		!strings.HasPrefix(lines[2]["msg"].(string), "OpenTelemetry error (") {
		t.Errorf("lines %v", lines)
	}
}

// TestValidSpans: every string an export carries comes out valid UTF-8;
// a batch of valid spans is passed on as it is.
func TestValidSpans(t *testing.T) {
	const bad = "bad-\xc3"
	stub := tracetest.SpanStub{
		Name:       bad,
		Status:     sdktrace.Status{Code: codes.Error, Description: bad},
		Attributes: []attribute.KeyValue{attribute.String(bad, bad), attribute.StringSlice("list", []string{"ok", bad}), attribute.Int("n", 7)},
		Events:     []sdktrace.Event{{Name: bad, Attributes: []attribute.KeyValue{attribute.String("e", bad)}}},
		Links:      []sdktrace.Link{{Attributes: []attribute.KeyValue{attribute.String("l", bad)}}},
	}
	good := tracetest.SpanStub{Name: "good", Attributes: []attribute.KeyValue{attribute.String("a", "é")}}.Snapshot()

	valid := []sdktrace.ReadOnlySpan{good, good}
	if got := validSpans(valid); &got[0] != &valid[0] {
		t.Error("valid spans were copied")
	}
	got := validSpans([]sdktrace.ReadOnlySpan{good, stub.Snapshot(), good})
	if len(got) != 3 || got[0].Name() != "good" || got[2].Name() != "good" {
		t.Fatalf("validSpans = %v", got)
	}
	s := got[1]
	str := fmt.Sprintf("%s %v %v %v %v", s.Name(), s.Attributes(), s.Status(), s.Events(), s.Links())
	if !spanValid(s) {
		t.Errorf("span still invalid: %s", str)
	}
	if s.Name() != "bad-\ufffd" || s.Status().Description != "bad-\ufffd" || s.Status().Code != codes.Error {
		t.Errorf("name %q, status %v", s.Name(), s.Status())
	}
	if n := s.Attributes()[2]; n.Key != "n" || n.Value.AsInt64() != 7 {
		t.Errorf("attribute n = %v", n)
	}
	if !utf8.ValidString(str) {
		t.Errorf("not UTF-8: %q", str)
	}
	if s.SpanKind() != stub.SpanKind || !s.StartTime().Equal(stub.StartTime) {
		t.Error("the span's other fields changed")
	}
}
