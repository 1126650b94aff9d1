package main

import (
	"bufio"
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
	"syscall"
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
	return getAgainst(t, func(c net.Conn) { _ = tls.Server(c, srvTLS).Handshake() }, nil, env, args)
}

// getAgainst runs get, with env and args, in the caller's bubble against
// an in-memory broker that runs handle on every connection and then
// closes it; dialErr, when set, fails every dial instead.
func getAgainst(t *testing.T, handle func(net.Conn), dialErr error, env map[string]string, args []string) result {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	serveConns(t, lis, handle)
	r := &fakeRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	r.c = newCLI(strings.NewReader(""), r.stdout, r.stderr, func(k string) string { return env[k] }, noTerminal{})
	r.c.dial = func(ctx context.Context, _ string) (net.Conn, error) {
		if dialErr != nil {
			return nil, dialErr
		}
		return lis.DialContext(ctx)
	}
	return r.result(t, r.c.main(t.Context(), append([]string{"get"}, args...)))
}

// TestPlaintextToTLSBrokerNotRetried: a plaintext client against a broker
// that serves TLS was retried five times, with backoffs, before it printed
// the hint to pass --tls or --tls-ca-file, although no retry mends it.
// Once the failure is told to be the broker's TLS (a TLS handshake the
// ctl tries answered as a TLS server does), the call ends at once with the
// hint; a broker that is restarting (its connections refused, or closed
// before a byte) is still retried. Attempts are counted from the notices.
func TestPlaintextToTLSBrokerNotRetried(t *testing.T) {
	srvCert := newBubbleCert(t, nil, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	srvTLS := &tls.Config{Certificates: []tls.Certificate{*srvCert}, NextProtos: []string{"h2"}}
	// tlsFront answers a TLS client with srvTLS's handshake and any other
	// with answer (a TLS front other than crypto/tls: an alert, or an
	// HTTP/1.x 400).
	tlsFront := func(answer string) func(net.Conn) {
		return func(c net.Conn) {
			br := bufio.NewReader(c)
			first, err := br.Peek(1)
			if err != nil {
				return
			}
			if first[0] == 0x16 { // a TLS handshake record
				_ = tls.Server(peekedConn{Conn: c, r: br}, srvTLS).Handshake()
				return
			}
			_, _ = c.Write([]byte(answer))
		}
	}
	const hint = "the connection was plaintext: if the broker serves TLS, as it does outside --dev, pass --tls or --tls-ca-file"
	for _, tc := range []struct {
		name     string
		handle   func(net.Conn)
		dialErr  error
		attempts int
		hint     bool
	}{
		{name: "TLS broker, closes without a word (crypto/tls)", handle: func(c net.Conn) { _ = tls.Server(c, srvTLS).Handshake() }, attempts: 1, hint: true},
		{name: "TLS front, answers with an alert", handle: tlsFront("\x15\x03\x03\x00\x02\x02\x46"), attempts: 1, hint: true},
		{name: "TLS front, answers HTTP/1.1 400", handle: tlsFront("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), attempts: 1, hint: true},
		{name: "restarting, closes before a byte", handle: func(net.Conn) {}, attempts: retryMaxAttempts},
		{name: "restarting, refuses connections", dialErr: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, attempts: retryMaxAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090", "SECRETBROKER_TOKEN": plantedToken}
				res := getAgainst(t, tc.handle, tc.dialErr, env, []string{flakySecret})
				wantCode(t, res, exitFail)
				if got := strings.Count(res.stderr, "trying again") + 1; got != tc.attempts {
					t.Errorf("%d attempts, want %d:\n%s", got, tc.attempts, res.stderr)
				}
				if tc.hint {
					wantContains(t, "stderr", res.stderr, hint)
				}
			})
		})
	}
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }
