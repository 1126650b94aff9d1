package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

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
