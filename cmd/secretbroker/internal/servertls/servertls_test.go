package servertls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/logtest"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// tlsHandshakeResult is what the test server saw of one connection.
type tlsHandshakeResult struct {
	err    error
	caller string // from the client certificate, if any
}

// serveTLSOnce listens on 127.0.0.1 with cfg, accepts one connection,
// handshakes, writes "ok" and reports what it saw.
func serveTLSOnce(t *testing.T, cfg *tls.Config) (addr string, result <-chan tlsHandshakeResult) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan tlsHandshakeResult, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- tlsHandshakeResult{err: err}
			return
		}
		defer func() { _ = conn.Close() }()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			ch <- tlsHandshakeResult{err: err}
			return
		}
		var res tlsHandshakeResult
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			res.caller, _ = identity.CertificateCaller(peers[0])
		}
		_, res.err = tc.Write([]byte("ok"))
		ch <- res
	}()
	return ln.Addr().String(), ch
}

// dialTLS handshakes with addr and reads the server's "ok"; the error is
// the first failure.
func dialTLS(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = conn.Close() }()
	// With TLS 1.3 the client finishes its handshake before the server
	// has checked the client certificate; a refusal shows up on read.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return conn.ConnectionState(), err
	}
	if string(buf) != "ok" {
		return conn.ConnectionState(), errors.New("unexpected reply " + string(buf))
	}
	return conn.ConnectionState(), nil
}

func TestConfigHandshake(t *testing.T) {
	ca := identitytest.NewCA(t)
	otherCA := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	caFile := ca.WriteCertFile(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	const spiffe = "spiffe://example.org/ns/ci/sa/deployer"
	client := ca.ClientCert(t, spiffe, "", "deployer")
	stranger := otherCA.ClientCert(t, spiffe, "", "deployer")

	tests := []struct {
		name         string
		clientCAFile string
		clientCerts  []tls.Certificate
		maxVersion   uint16
		nextProtos   []string
		wantErr      bool
		wantCaller   string
		wantProto    string
	}{
		{name: "mTLS with a client certificate", clientCAFile: caFile, clientCerts: []tls.Certificate{client}, nextProtos: []string{"h2"}, wantCaller: "x509:" + spiffe, wantProto: "h2"},
		{name: "mTLS over TLS 1.2", clientCAFile: caFile, clientCerts: []tls.Certificate{client}, maxVersion: tls.VersionTLS12, nextProtos: []string{"http/1.1"}, wantCaller: "x509:" + spiffe, wantProto: "http/1.1"},
		{name: "mTLS without a client certificate", clientCAFile: caFile, wantErr: true},
		{name: "mTLS without a client certificate over TLS 1.2", clientCAFile: caFile, maxVersion: tls.VersionTLS12, wantErr: true},
		{name: "mTLS with another CA's certificate", clientCAFile: caFile, clientCerts: []tls.Certificate{stranger}, wantErr: true},
		{name: "TLS only, no client certificate", nextProtos: []string{"h2", "http/1.1"}, wantProto: "h2"},
		{name: "TLS only, a client certificate is not asked for", clientCerts: []tls.Certificate{client}},
		{name: "TLS 1.1 refused", maxVersion: tls.VersionTLS11, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Config(slog.New(slog.DiscardHandler), certFile, keyFile, tt.clientCAFile)
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			addr, result := serveTLSOnce(t, cfg)
			state, dialErr := dialTLS(addr, &tls.Config{
				RootCAs:      roots,
				ServerName:   "localhost",
				Certificates: tt.clientCerts,
				MinVersion:   tls.VersionTLS10,
				MaxVersion:   tt.maxVersion,
				NextProtos:   tt.nextProtos,
			})
			res := <-result
			if tt.wantErr {
				if dialErr == nil || res.err == nil {
					t.Fatalf("client error %v, server error %v; want both to fail", dialErr, res.err)
				}
				return
			}
			if dialErr != nil || res.err != nil {
				t.Fatalf("client error %v, server error %v", dialErr, res.err)
			}
			if res.caller != tt.wantCaller {
				t.Errorf("server saw caller %q, want %q", res.caller, tt.wantCaller)
			}
			if state.NegotiatedProtocol != tt.wantProto {
				t.Errorf("ALPN %q, want %q", state.NegotiatedProtocol, tt.wantProto)
			}
		})
	}
}

func TestConfigSettings(t *testing.T) {
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	cfg, err := Config(slog.New(slog.DiscardHandler), certFile, keyFile, ca.WriteCertFile(t))
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	if strings.Join(cfg.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("NextProtos %q", cfg.NextProtos)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("ClientAuth %v, ClientCAs set %v; want RequireAndVerifyClientCert with a pool", cfg.ClientAuth, cfg.ClientCAs != nil)
	}
	// Handshakes run with the configuration GetConfigForClient returns
	// (the current client CA pool): the same settings.
	if cfg.GetConfigForClient == nil {
		t.Fatal("no GetConfigForClient: the client CA file is never read again")
	}
	hs, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || hs == nil {
		t.Fatalf("GetConfigForClient = %v, %v", hs, err)
	}
	if hs.MinVersion != tls.VersionTLS12 || strings.Join(hs.NextProtos, ",") != "h2,http/1.1" ||
		hs.ClientAuth != tls.RequireAndVerifyClientCert || hs.ClientCAs == nil || hs.GetCertificate == nil || hs.GetConfigForClient != nil {
		t.Errorf("handshake config: MinVersion %x, NextProtos %q, ClientAuth %v, ClientCAs set %v, GetCertificate set %v, GetConfigForClient set %v",
			hs.MinVersion, hs.NextProtos, hs.ClientAuth, hs.ClientCAs != nil, hs.GetCertificate != nil, hs.GetConfigForClient != nil)
	}
	cfg, err = Config(slog.New(slog.DiscardHandler), certFile, keyFile, "")
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil || cfg.GetConfigForClient != nil {
		t.Errorf("without a client CA: ClientAuth %v, GetConfigForClient set %v", cfg.ClientAuth, cfg.GetConfigForClient != nil)
	}
}

func TestConfigErrors(t *testing.T) {
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	otherCert, otherKey := ca.ServerCert(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                  string
		certFile, keyFile, ca string
		wantErr               string
	}{
		{name: "missing certificate", certFile: filepath.Join(dir, "none.crt"), keyFile: keyFile, wantErr: "TLS certificate"},
		{name: "missing key", certFile: certFile, keyFile: filepath.Join(dir, "none.key"), wantErr: "TLS key"},
		{name: "key of another certificate", certFile: certFile, keyFile: otherKey, wantErr: "does not match"},
		{name: "key file given as certificate", certFile: keyFile, keyFile: keyFile, wantErr: "TLS certificate"},
		{name: "missing client CA", certFile: otherCert, keyFile: otherKey, ca: filepath.Join(dir, "none.pem"), wantErr: "client CA file"},
		{name: "client CA not PEM", certFile: otherCert, keyFile: otherKey, ca: notPEM, wantErr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Config(slog.New(slog.DiscardHandler), tt.certFile, tt.keyFile, tt.ca)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Config error = %v, want one containing %q", err, tt.wantErr)
			}
			if bytes.Contains([]byte(err.Error()), bytes.TrimSpace(keyBytes)) || strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Errorf("error %q contains key material", err)
			}
		})
	}
}

// TestConfigReload: new files are served exactly when the 10 s
// check is due (in a synctest bubble, calling GetCertificate directly); a
// half-written pair or missing files keep the current certificate, logged
// at WARN once per change of the files and without their content; a real
// handshake afterwards serves the reloaded certificate.
func TestConfigReload(t *testing.T) {
	// The certificates are made outside the bubble: they must be valid at
	// the real time of the handshake at the end.
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	pairs := make([][2][]byte, 3) // PEM of three more certificates and keys
	for i := range pairs {
		c, k := ca.ServerCert(t)
		pairs[i] = [2][]byte{mustRead(t, c), mustRead(t, k)}
	}
	original := mustRead(t, certFile)
	write := func(path string, data []byte) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	both := func(i int) func(t *testing.T) {
		return func(t *testing.T) { write(certFile, pairs[i][0])(t); write(keyFile, pairs[i][1])(t) }
	}
	mixed := func(cert, key int) func(t *testing.T) {
		return func(t *testing.T) { write(certFile, pairs[cert][0])(t); write(keyFile, pairs[key][1])(t) }
	}
	// Kubernetes replaces a Secret's files by swapping a symlink.
	swap := func(i int) func(t *testing.T) {
		return func(t *testing.T) {
			dir := t.TempDir()
			c, k := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			write(c, pairs[i][0])(t)
			write(k, pairs[i][1])(t)
			for _, p := range [][2]string{{c, certFile}, {k, keyFile}} {
				tmp := p[1] + ".new"
				if err := os.Symlink(p[0], tmp); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, p[1]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	steps := []struct {
		name    string
		do      func(t *testing.T)
		advance time.Duration
		want    []byte // certificate PEM served
		warns   int    // WARN lines logged so far
	}{
		{name: "initial", want: original},
		{name: "replaced, 1 ns before the check", do: both(0), advance: tlsCertCheckInterval - time.Nanosecond, want: original},
		{name: "exactly 10 s after the last check", advance: time.Nanosecond, want: pairs[0][0]},
		{name: "certificate replaced before its key", do: write(certFile, pairs[1][0]), advance: tlsCertCheckInterval, want: pairs[0][0], warns: 1},
		// The failed check counts: the next one is 10 s after it.
		{name: "key 5 s later: not checked yet", do: write(keyFile, pairs[1][1]), advance: 5 * time.Second, want: pairs[0][0], warns: 1},
		{name: "1 ns before the check", advance: 5*time.Second - time.Nanosecond, want: pairs[0][0], warns: 1},
		{name: "checked", advance: time.Nanosecond, want: pairs[1][0], warns: 1},
		{name: "symlink swap", do: swap(2), advance: tlsCertCheckInterval, want: pairs[2][0], warns: 1},
		{name: "files removed", do: func(t *testing.T) { _ = os.Remove(certFile); _ = os.Remove(keyFile) }, advance: time.Minute, want: pairs[2][0], warns: 2},
		{name: "still removed at the next check: logged once", advance: time.Minute, want: pairs[2][0], warns: 2},
		{name: "a key that is not the certificate's", do: mixed(2, 1), advance: time.Minute, want: pairs[2][0], warns: 3},
		{name: "unchanged at the next check: logged once", advance: time.Minute, want: pairs[2][0], warns: 3},
		{name: "that key with another certificate", do: mixed(0, 1), advance: time.Minute, want: pairs[2][0], warns: 4},
		{name: "files back", do: both(0), advance: time.Minute, want: pairs[0][0], warns: 4},
	}
	var cfg *tls.Config
	var logs logtest.Buffer
	synctest.Test(t, func(t *testing.T) {
		var err error
		cfg, err = Config(slog.New(slog.NewTextHandler(&logs, nil)), certFile, keyFile, "")
		if err != nil {
			t.Fatalf("Config: %v", err)
		}
		for _, s := range steps {
			if s.do != nil {
				s.do(t)
			}
			time.Sleep(s.advance)
			cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
			if err != nil {
				t.Fatalf("%s: GetCertificate: %v", s.name, err)
			}
			if want := leafOf(t, s.want); !cert.Leaf.Equal(want) {
				t.Fatalf("%s: served serial %v, want %v", s.name, cert.Leaf.SerialNumber, want.SerialNumber)
			}
			if got := strings.Count(logs.String(), "level=WARN"); got != s.warns {
				t.Fatalf("%s: %d WARN lines, want %d:\n%s", s.name, got, s.warns, logs.String())
			}
		}
	})
	for _, p := range pairs {
		if strings.Contains(logs.String(), string(bytes.TrimSpace(p[1]))) || strings.Contains(logs.String(), "PRIVATE KEY") {
			t.Fatalf("the log quotes a key:\n%s", logs.String())
		}
	}
	if t.Failed() {
		return
	}

	// Outside the bubble, a real handshake sees the reloaded certificate
	// too. (cfg holds no channel or timer of the bubble; the files are
	// unchanged since the last check, so whether this handshake checks them
	// again or not, it serves the same pair.)
	addr, result := serveTLSOnce(t, cfg)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	state, err := dialTLS(addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if res := <-result; err != nil || res.err != nil {
		t.Fatalf("handshake: client %v, server %v", err, res.err)
	}
	if !state.PeerCertificates[0].Equal(leafOf(t, pairs[0][0])) {
		t.Error("handshake served another certificate than GetCertificate")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// pipeListener serves TLS handshakes over in-memory connections with Config's
// configuration set up as run sets up the named listener: "gateway" serves
// one clone of it with crypto/tls (as http.Server.ServeTLS does), "gRPC"
// through credentials.NewTLS of one clone (as grpc.Creds does, ALPN "h2"
// enforced). The clone is kept across handshakes, and with it the session
// ticket keys, as on a listener.
type pipeListener struct {
	name    string
	gateway *tls.Config
	grpc    credentials.TransportCredentials
}

func newPipeListener(name string, cfg *tls.Config) *pipeListener {
	if name == "gRPC" {
		return &pipeListener{name: name, grpc: credentials.NewTLS(cfg.Clone())}
	}
	return &pipeListener{name: name, gateway: cfg.Clone()}
}

// memConn is one end of an in-memory connection whose writes do not wait
// for the reader (net.Pipe's do, and TLS 1.3 peers may both write at
// once). It blocks on channels only, so a synctest bubble sees it as
// durably blocked.
type memConn struct {
	in, out    chan []byte
	closed     chan struct{} // this end closed
	peerClosed chan struct{}
	closeOnce  *sync.Once
	unread     []byte
}

// memPipe returns the two ends of an in-memory connection.
func memPipe() (*memConn, *memConn) {
	ab, ba := make(chan []byte, 64), make(chan []byte, 64)
	aClosed, bClosed := make(chan struct{}), make(chan struct{})
	a := &memConn{in: ba, out: ab, closed: aClosed, peerClosed: bClosed, closeOnce: new(sync.Once)}
	b := &memConn{in: ab, out: ba, closed: bClosed, peerClosed: aClosed, closeOnce: new(sync.Once)}
	return a, b
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.unread) == 0 {
		select {
		case c.unread = <-c.in:
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.peerClosed:
			select { // what the peer wrote before closing comes first
			case c.unread = <-c.in:
			default:
				return 0, io.EOF
			}
		}
	}
	n := copy(p, c.unread)
	c.unread = c.unread[n:]
	return n, nil
}

func (c *memConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.peerClosed:
		return 0, io.ErrClosedPipe
	case c.out <- bytes.Clone(p):
		return len(p), nil
	}
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memConn) LocalAddr() net.Addr              { return memAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// handshake runs one handshake with a client with clientCfg; the server
// then writes "ok" and the client reads it (with TLS 1.3 a refused client
// certificate shows there). It returns whether the client resumed a
// session and each side's first error. In a synctest bubble it takes no
// time.
func (l *pipeListener) handshake(ctx context.Context, clientCfg *tls.Config) (resumed bool, clientErr, serverErr error) {
	sc, cc := memPipe()
	served := make(chan error, 1)
	go func() {
		defer func() { _ = sc.Close() }()
		var conn net.Conn
		if l.grpc != nil {
			c, _, err := l.grpc.ServerHandshake(sc)
			if err != nil {
				served <- err
				return
			}
			conn = c
		} else {
			tc := tls.Server(sc, l.gateway)
			if err := tc.HandshakeContext(ctx); err != nil {
				served <- err
				return
			}
			conn = tc
		}
		_, err := conn.Write([]byte("ok"))
		served <- err
	}()
	clientErr = func() error {
		defer func() { _ = cc.Close() }()
		var conn net.Conn
		if l.grpc != nil {
			c, info, err := credentials.NewTLS(clientCfg).ClientHandshake(ctx, "localhost", cc)
			if err != nil {
				return err
			}
			conn, resumed = c, info.(credentials.TLSInfo).State.DidResume
		} else {
			tc := tls.Client(cc, clientCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return err
			}
			conn, resumed = tc, tc.ConnectionState().DidResume
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "ok" {
			return errors.New("unexpected reply " + string(buf))
		}
		return nil
	}()
	return resumed, clientErr, <-served
}

// TestConfigClientCAReload: the client CA file is read again like
// the certificate (checked at most every 10 s, on handshake), on both
// listeners: a client certificate from a CA added to the file is refused
// until the check and accepted after it, one from a CA removed is refused
// after it, also when it resumes a session it had before; a file that
// cannot be used keeps the current CAs and is logged at WARN once per
// change, without its content.
func TestConfigClientCAReload(t *testing.T) {
	const spiffe = "spiffe://example.org/ns/ci/sa/deployer"
	const garbage = "PLANTED-not-a-certificate"
	steps := []struct {
		name     string
		file     string // what the CA file becomes: "old", "new", "old+new", "garbage", "missing"; "" unchanged
		advance  time.Duration
		accepted []string // clients whose certificate is accepted ("old", "new"); the others are refused
		resumed  bool     // the accepted clients resumed their session (from the step before)
		warns    int      // WARN lines logged so far
	}{
		{name: "at start", accepted: []string{"old"}},
		{name: "new CA added, 1 ns before the check", file: "old+new", advance: tlsCertCheckInterval - time.Nanosecond, accepted: []string{"old"}, resumed: true},
		{name: "exactly 10 s after the last check", advance: time.Nanosecond, accepted: []string{"old", "new"}, resumed: false},
		{name: "both accepted again", advance: time.Second, accepted: []string{"old", "new"}, resumed: true},
		// The old client offers the session it had: refused all the same.
		{name: "old CA removed", file: "new", advance: tlsCertCheckInterval, accepted: []string{"new"}},
		{name: "not PEM: the CAs stay", file: "garbage", advance: tlsCertCheckInterval, accepted: []string{"new"}, warns: 1},
		{name: "still not PEM at the next check: logged once", advance: tlsCertCheckInterval, accepted: []string{"new"}, warns: 1},
		{name: "back to the CAs in use: nothing to load", file: "new", advance: time.Minute, accepted: []string{"new"}, warns: 1},
		{name: "the same not-PEM content again: a change, logged", file: "garbage", advance: time.Minute, accepted: []string{"new"}, warns: 2},
		{name: "file removed", file: "missing", advance: time.Minute, accepted: []string{"new"}, warns: 3},
		{name: "still removed: logged once", advance: time.Minute, accepted: []string{"new"}, warns: 3},
		{name: "both CAs", file: "old+new", advance: time.Minute, accepted: []string{"old", "new"}, warns: 3},
	}
	for _, listener := range []string{"gateway", "gRPC"} {
		t.Run(listener, func(t *testing.T) {
			// Everything is made in the bubble: the certificates are valid
			// at its fake time.
			synctest.Test(t, func(t *testing.T) {
				cas := map[string]*identitytest.CA{"old": identitytest.NewCA(t), "new": identitytest.NewCA(t)}
				certFile, keyFile := cas["old"].ServerCert(t)
				caFile := cas["old"].WriteCertFile(t)
				roots := x509.NewCertPool()
				roots.AppendCertsFromPEM(cas["old"].CertPEM())
				var logs logtest.Buffer
				cfg, err := Config(slog.New(slog.NewTextHandler(&logs, nil)), certFile, keyFile, caFile)
				if err != nil {
					t.Fatalf("Config: %v", err)
				}
				l := newPipeListener(listener, cfg)
				// Each client keeps its certificate and its sessions across
				// the steps.
				clients := map[string]*tls.Config{}
				for name, ca := range cas {
					clients[name] = &tls.Config{
						RootCAs:            roots,
						ServerName:         "localhost",
						Certificates:       []tls.Certificate{ca.ClientCert(t, spiffe, "", "deployer")},
						NextProtos:         []string{"h2"},
						ClientSessionCache: tls.NewLRUClientSessionCache(1),
					}
				}
				for _, s := range steps {
					switch s.file {
					case "":
					case "missing":
						if err := os.Remove(caFile); err != nil {
							t.Fatal(err)
						}
					default:
						var data []byte
						for name := range strings.SplitSeq(s.file, "+") {
							if name == "garbage" {
								data = append(data, garbage...)
							} else {
								data = append(data, cas[name].CertPEM()...)
							}
						}
						if err := os.WriteFile(caFile, data, 0o600); err != nil {
							t.Fatal(err)
						}
					}
					time.Sleep(s.advance)
					for _, client := range []string{"old", "new"} {
						resumed, clientErr, serverErr := l.handshake(t.Context(), clients[client])
						if slices.Contains(s.accepted, client) {
							if clientErr != nil || serverErr != nil {
								t.Fatalf("%s: the %s CA's client refused: client %v, server %v", s.name, client, clientErr, serverErr)
							}
							if s.resumed && !resumed {
								t.Fatalf("%s: the %s CA's client did not resume its session", s.name, client)
							}
						} else if clientErr == nil || serverErr == nil {
							t.Fatalf("%s: the %s CA's client: client error %v, server error %v; want both to fail", s.name, client, clientErr, serverErr)
						} else if !strings.Contains(serverErr.Error(), "certificate signed by unknown authority") {
							t.Fatalf("%s: the %s CA's client refused for another reason: %v", s.name, client, serverErr)
						}
					}
					if got := strings.Count(logs.String(), "level=WARN"); got != s.warns {
						t.Fatalf("%s: %d WARN lines, want %d:\n%s", s.name, got, s.warns, logs.String())
					}
				}
				if strings.Contains(logs.String(), garbage) {
					t.Fatalf("the log quotes the CA file:\n%s", logs.String())
				}
			})
		})
	}
}
