package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
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
		httpErrorLog(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))).Print(tc.line)
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
			t.Fatalf("%q: %v: %s", tc.line, err, out.String())
		}
		if rec.Level != tc.want.String() || rec.Msg != strings.TrimSuffix(tc.line, "\n") {
			t.Errorf("%q logged at %s as %q, want %s", tc.line, rec.Level, rec.Msg, tc.want)
		}
	}
}

// TestBrokenHandshakesDoNotFloodTheLog: every connection to the TLS
// gateway whose handshake fails (anyone can open one) makes net/http log
// a line; a flood of them must not flood the log at WARN, as the front
// door's refusals do not.
func TestBrokenHandshakesDoNotFloodTheLog(t *testing.T) {
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--shutdown-timeout=5s", "--tls-cert-file=" + certFile, "--tls-key-file=" + keyFile}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBrokerTLS(t, cfg)
	const n = 20
	for range n {
		c, err := net.Dial("tcp", b.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		// A TLS record header announcing a handshake message larger than
		// TLS allows: the server refuses it at once.
		_, _ = c.Write([]byte("\x16\x03\x01\x00\x05hello"))
		c.Close()
	}
	if !b.logs.waitFor("TLS handshake error", n, 10*time.Second) {
		t.Fatalf("fewer than %d handshake lines:\n%s", n, b.logs)
	}
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, `"level":"DEBUG"`) {
			t.Errorf("a broken handshake logged above DEBUG: %s", line)
		}
	}
}
