package liblog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestGRPCLoggerWritesThroughSlog: grpc's and grpc-gateway's lines go
// through the broker's logger, at DEBUG, with their severity.
func TestGRPCLoggerWritesThroughSlog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		level    slog.Level
		log      func(g grpcLogger)
		want     string // the msg; "" when nothing is written
		severity string
	}{
		{"error at debug", slog.LevelDebug, func(g grpcLogger) { g.Errorf("HTTP header %q skipped", "Note") }, `HTTP header "Note" skipped`, "error"},
		{"warning at debug", slog.LevelDebug, func(g grpcLogger) { g.Warningln("a", "b") }, "ab", "warning"},
		{"info at debug", slog.LevelDebug, func(g grpcLogger) { g.Info("x") }, "x", "info"},
		{"error at info", slog.LevelInfo, func(g grpcLogger) { g.Error("hidden") }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			g := grpcLogger{l: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level}))}
			tc.log(g)
			if tc.want == "" {
				if buf.Len() != 0 {
					t.Errorf("logged %s", buf.String())
				}
				return
			}
			var line struct {
				Level, Msg, Severity string
			}
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("%v: %s", err, buf.String())
			}
			var sev struct {
				S string `json:"grpc_severity"`
			}
			_ = json.Unmarshal(buf.Bytes(), &sev)
			if line.Level != "DEBUG" || line.Msg != tc.want || sev.S != tc.severity {
				t.Errorf("logged %s", buf.String())
			}
		})
	}
	g := grpcLogger{l: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if !g.V(0) || g.V(2) {
		t.Errorf("V(0) = %v, V(2) = %v; want true, false", g.V(0), g.V(2))
	}
}
