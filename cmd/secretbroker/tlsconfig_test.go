package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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

func TestServerTLSConfigHandshake(t *testing.T) {
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
			cfg, err := serverTLSConfig(certFile, keyFile, tt.clientCAFile)
			if err != nil {
				t.Fatalf("serverTLSConfig: %v", err)
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

func TestServerTLSConfigSettings(t *testing.T) {
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	cfg, err := serverTLSConfig(certFile, keyFile, ca.WriteCertFile(t))
	if err != nil {
		t.Fatalf("serverTLSConfig: %v", err)
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
	cfg, err = serverTLSConfig(certFile, keyFile, "")
	if err != nil {
		t.Fatalf("serverTLSConfig: %v", err)
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Errorf("without a client CA: ClientAuth %v", cfg.ClientAuth)
	}
}

func TestServerTLSConfigErrors(t *testing.T) {
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
			_, err := serverTLSConfig(tt.certFile, tt.keyFile, tt.ca)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("serverTLSConfig error = %v, want one containing %q", err, tt.wantErr)
			}
			if bytes.Contains([]byte(err.Error()), bytes.TrimSpace(keyBytes)) || strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Errorf("error %q contains key material", err)
			}
		})
	}
}

// TestServerTLSConfigReload: new files are served exactly when the 10 s
// check is due (in a synctest bubble, calling GetCertificate directly); a
// half-written pair or missing files keep the current certificate; a real
// handshake afterwards serves the reloaded certificate.
func TestServerTLSConfigReload(t *testing.T) {
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
	}{
		{name: "initial", want: original},
		{name: "replaced, 1 ns before the check", do: both(0), advance: tlsCertCheckInterval - time.Nanosecond, want: original},
		{name: "exactly 10 s after the last check", advance: time.Nanosecond, want: pairs[0][0]},
		{name: "certificate replaced before its key", do: write(certFile, pairs[1][0]), advance: tlsCertCheckInterval, want: pairs[0][0]},
		// The failed check counts: the next one is 10 s after it.
		{name: "key 5 s later: not checked yet", do: write(keyFile, pairs[1][1]), advance: 5 * time.Second, want: pairs[0][0]},
		{name: "1 ns before the check", advance: 5*time.Second - time.Nanosecond, want: pairs[0][0]},
		{name: "checked", advance: time.Nanosecond, want: pairs[1][0]},
		{name: "symlink swap", do: swap(2), advance: tlsCertCheckInterval, want: pairs[2][0]},
		{name: "files removed", do: func(t *testing.T) { _ = os.Remove(certFile); _ = os.Remove(keyFile) }, advance: time.Minute, want: pairs[2][0]},
		{name: "files back", do: both(0), advance: time.Minute, want: pairs[0][0]},
	}
	var cfg *tls.Config
	synctest.Test(t, func(t *testing.T) {
		var err error
		cfg, err = serverTLSConfig(certFile, keyFile, "")
		if err != nil {
			t.Fatalf("serverTLSConfig: %v", err)
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
		}
	})
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
