package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/test/bufconn"
)

// TestUntrustedCertificateNotRetried: a broker whose certificate the
// client does not trust fails every attempt the same way (grpc-go's
// UNAVAILABLE "authentication handshake failed"): a misconfiguration,
// which was retried five times as if the broker were restarting.
func TestUntrustedCertificateNotRetried(t *testing.T) {
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	srvCert := hs.TLS.Certificates[0] // httptest's, which the client does not trust
	hs.Close()
	synctest.Test(t, func(t *testing.T) {
		lis := bufconn.Listen(1 << 20)
		defer lis.Close()
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				go func() {
					tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{srvCert}, NextProtos: []string{"h2"}})
					_ = tc.Handshake()
					_ = tc.Close()
				}()
			}
		}()
		r := &fakeRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
		env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090", "SECRETBROKER_TOKEN": plantedToken}
		r.c = newCLI(strings.NewReader(""), r.stdout, r.stderr, func(k string) string { return env[k] }, noTerminal{})
		r.c.dial = func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
		res := r.result(t, r.c.main(t.Context(), []string{"get", "--tls", flakySecret}))
		wantCode(t, res, exitFail)
		wantContains(t, "stderr", res.stderr, "authentication handshake failed")
		if strings.Contains(res.stderr, "trying again") {
			t.Errorf("a certificate the client does not trust is retried:\n%s", res.stderr)
		}
	})
}
