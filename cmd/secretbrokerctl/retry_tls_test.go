package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
		srvTLS := &tls.Config{Certificates: []tls.Certificate{srvCert}, NextProtos: []string{"h2"}}
		env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090", "SECRETBROKER_TOKEN": plantedToken}
		res := getAgainstTLS(t, srvTLS, env, []string{"--tls", flakySecret})
		wantCode(t, res, exitFail)
		wantContains(t, "stderr", res.stderr, "authentication handshake failed")
		if strings.Contains(res.stderr, "trying again") {
			t.Errorf("a certificate the client does not trust is retried:\n%s", res.stderr)
		}
	})
}

// TestRefusedClientCertificateNotRetried: a broker that refuses the
// client's certificate (none sent, or one from a CA it does not trust)
// refuses every attempt the same way. Over TLS 1.3 the client finishes its
// side of the handshake first and learns of the refusal from the broker's
// alert, which grpc-go reports as UNAVAILABLE "error reading server
// preface: remote error: tls: ...", not "authentication handshake
// failed", or, when a write of the client's loses the race with the
// close, as that write's failure ("broken pipe"): it was retried five
// times, some 10 s, as if the broker were restarting.
func TestRefusedClientCertificateNotRetried(t *testing.T) {
	// Certificates valid in the bubble's fake time (2000) too.
	ca := newBubbleCert(t, nil, nil)
	srvCert := newBubbleCert(t, ca, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	clientAuth := func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }
	otherCert, otherKey := writeClientCert(t, *newBubbleCert(t, newBubbleCert(t, nil, nil), clientAuth))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	srvTLS := &tls.Config{
		Certificates: []tls.Certificate{*srvCert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"h2"},
	}
	caFile := writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]}))
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{name: "no client certificate", args: []string{"--tls-ca-file", caFile}, stderr: "tls: certificate required"},
		{name: "client certificate from another CA", args: []string{"--tls-ca-file", caFile, "--tls-cert-file", otherCert, "--tls-key-file", otherKey}, stderr: "tls: unknown certificate authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The race between the client's writes and the broker's close
			// goes either way: run it often enough to see both.
			for range 20 {
				refusedOnce(t, srvTLS, tc.args, tc.stderr)
			}
		})
	}
}

// refusedOnce runs get with args against a broker that refuses every
// handshake with srvTLS, and checks that it failed once, saying stderr.
func refusedOnce(t *testing.T, srvTLS *tls.Config, args []string, stderr string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		res := getAgainstTLS(t, srvTLS, map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090"}, append([]string{flakySecret}, args...))
		wantCode(t, res, exitFail)
		wantContains(t, "stderr", res.stderr, stderr)
		if strings.Contains(res.stderr, "trying again") {
			t.Fatalf("a client certificate the broker refuses is retried:\n%s", res.stderr)
		}
	})
}

// newBubbleCert returns a certificate valid from 1999 to 2100 (synctest's
// clock starts in 2000), issued by parent, or a CA of its own when parent
// is nil; edit, when set, fills in the template.
func newBubbleCert(t *testing.T, parent *tls.Certificate, edit func(*x509.Certificate)) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "secretbrokerctl test"},
		NotBefore:    time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	issuer, signer := tmpl, any(key)
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		issuer, signer = parent.Leaf, parent.PrivateKey
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestConnectionMisconfigured: which of grpc-go's UNAVAILABLE messages
// say the connection's setup is refused (not retried), and which may pass.
func TestConnectionMisconfigured(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: certificate required"`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: bad certificate"`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: expired certificate"`, true},
		{`name resolver error: produced zero addresses`, true},
		{`connection error: desc = "error reading server preface: remote error: tls: internal error"`, false},
		{`connection error: desc = "error reading server preface: EOF"`, false},
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`, false},
		{`the broker is shutting down`, false},
	} {
		if got := connectionMisconfigured(status.New(codes.Unavailable, tc.msg)); got != tc.want {
			t.Errorf("connectionMisconfigured(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

// TestPlaintextToTLSBrokerHints: a plaintext client (loopback, no TLS
// flag) against a broker that serves TLS, as it does outside --dev, is
// closed without a word: grpc-go says "error reading server preface". The
// error then says what to pass, with and without a TLS flag.
func TestPlaintextToTLSBrokerHints(t *testing.T) {
	srvCert := newBubbleCert(t, nil, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	srvTLS := &tls.Config{Certificates: []tls.Certificate{*srvCert}, NextProtos: []string{"h2"}}
	for _, tc := range []struct {
		name     string
		args     []string
		wantHint bool
	}{
		{"plaintext", nil, true},
		{"TLS, a certificate the client does not trust", []string{"--tls"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090", "SECRETBROKER_TOKEN": plantedToken}
				res := getAgainstTLS(t, srvTLS, env, append(tc.args, flakySecret))
				wantCode(t, res, exitFail)
				hinted := strings.Contains(res.stderr, "the connection was plaintext: if the broker serves TLS")
				if hinted != tc.wantHint {
					t.Errorf("hint %v, want %v:\n%s", hinted, tc.wantHint, res.stderr)
				}
			})
		})
	}
}

// getAgainstTLS runs get, with env and args, in the caller's bubble
// against an in-memory broker that runs crypto/tls's server handshake
// with srvTLS on every connection and then closes it: a refusal's alert
// and a close, as crypto/tls does (the client's first writes may fail
// before it reads the alert), or a plaintext client's bytes refused.
func getAgainstTLS(t *testing.T, srvTLS *tls.Config, env map[string]string, args []string) result {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = tls.Server(c, srvTLS).Handshake()
				_ = c.Close()
			}()
		}
	}()
	r := &fakeRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	r.c = newCLI(strings.NewReader(""), r.stdout, r.stderr, func(k string) string { return env[k] }, noTerminal{})
	r.c.dial = func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
	return r.result(t, r.c.main(t.Context(), append([]string{"get"}, args...)))
}
