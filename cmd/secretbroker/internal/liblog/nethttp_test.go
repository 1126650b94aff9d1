package liblog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestHTTPErrorLogLevels: of net/http's own lines, those a client causes
// with a connection it breaks are logged at DEBUG, the others at WARN.
func TestHTTPErrorLogLevels(t *testing.T) {
	for _, tc := range []struct {
		line string
		want slog.Level
	}{
		{"http: TLS handshake error from 192.0.2.1:4711: EOF\n", slog.LevelDebug},
		{"http: TLS handshake error from 192.0.2.1:4711: tls: client didn't provide a certificate\n", slog.LevelDebug},
		{"http2: server: error reading preface from client 192.0.2.1:4711: bogus greeting \"GET\"\n", slog.LevelDebug},
		{"http2: server connection error from 192.0.2.1:4711: connection error: PROTOCOL_ERROR\n", slog.LevelDebug},
		{"http: panic serving 192.0.2.1:4711: boom\ngoroutine 1 [running]:\n", slog.LevelWarn},
		{"http: Accept error: too many open files; retrying in 5ms\n", slog.LevelWarn},
	} {
		var out bytes.Buffer
		HTTPErrorLog(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))).Print(tc.line)
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
			t.Fatalf("%q: %v: %s", tc.line, err, out.String())
		}
		if rec.Level != tc.want.String() || rec.Msg != strings.TrimSuffix(tc.line, "\n") {
			t.Errorf("%q logged at %s as %q, want %s", tc.line, rec.Level, rec.Msg, tc.want)
		}
	}
}
