package liblog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// The values OpenTelemetry's internal logger repeats (input, value, key)
// are hidden, and so is the error of a line that has one; a line without
// any keeps its error. Attributes added with With and in a group are
// hidden the same way. (TestOTelConfigErrorsHideTheirInput in
// cmd/secretbroker drives OpenTelemetry's own exporters through it.)
func TestHandlerHidesInput(t *testing.T) {
	const planted = "PLANTEDotelValue789"
	for _, tc := range []struct {
		name   string
		log    func(*slog.Logger)
		hidden bool // the line must not hold planted
		keep   string
	}{
		{"input and its error", func(l *slog.Logger) {
			l.Warn("parse headers", "input", planted, "err", errors.New("bad header "+planted))
		}, true, "parse headers"},
		{"value", func(l *slog.Logger) { l.Warn("escape header value", "value", planted) }, true, "escape header value"},
		{"key", func(l *slog.Logger) { l.Info("parse", "key", planted) }, true, "parse"},
		{"With", func(l *slog.Logger) { l.With("input", planted).Warn("parse url") }, true, "parse url"},
		{"in a group", func(l *slog.Logger) { l.WithGroup("g").Warn("parse url", "input", planted) }, true, "parse url"},
		{"an error without input", func(l *slog.Logger) { l.Warn("export", "err", errors.New("refused "+planted)) }, false, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(slog.New(OTelHandler(slog.NewTextHandler(&buf, nil))))
			out := buf.String()
			if holds := strings.Contains(out, planted); holds == tc.hidden {
				t.Errorf("line %q: holds the value %v, want %v", out, holds, !tc.hidden)
			}
			if !strings.Contains(out, tc.keep) {
				t.Errorf("line %q lost %q", out, tc.keep)
			}
			if tc.hidden && !strings.Contains(out, "not shown") {
				t.Errorf("line %q does not say a value is hidden", out)
			}
		})
	}
}
