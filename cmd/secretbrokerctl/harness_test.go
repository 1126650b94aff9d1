package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// Planted values: tests prove that neither ever reaches stdout or stderr.
const (
	plantedValue = "PLANTED-value-Zebra-4711"
	plantedToken = "sbtok-PLANTED-caller-0123456789abcdef"
	// upstreamToken is the broker's GitHub token, for the emulator.
	upstreamToken = "ghp_PLANTEDupstream0123456789abcdefghij"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers (log lines).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// broker is a real secretbroker built from its packages: a gRPC server on
// 127.0.0.1:0 serving service.New, whose upstream client talks to the
// GitHub emulator on a loopback httptest server. Writes are not spaced
// (WriteInterval 0) and no points budget applies, so nothing waits.
type broker struct {
	addr string
	emu  *emulator.Server
	demo emulator.Demo
	logs *syncBuffer
	// state is the real service's state store: what it wrote, and who.
	state state.Store
}

type brokerOpts struct {
	// auth makes every call need the bearer token plantedToken or a
	// verified client certificate, as the broker's front door does.
	auth bool
	// tls, when set, is the server's TLS configuration.
	tls *tls.Config
	// server, when set, replaces the real service (a fake broker).
	server secretbrokerv1.SecretServiceServer
	// wrap, when set, serves wrap(the real service) instead of it: a
	// broker with some methods replaced.
	wrap func(*service.Server) secretbrokerv1.SecretServiceServer
}

func startBroker(t *testing.T, o brokerOpts) *broker {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := &broker{logs: logs}

	srv := o.server
	if srv == nil {
		b.emu = emulator.New(emulator.Options{Token: upstreamToken, Logger: logger})
		b.demo = b.emu.SeedDemo()
		gh := httptest.NewServer(b.emu)
		t.Cleanup(gh.Close)
		client, err := upstream.New(upstream.Config{
			BaseURL: gh.URL,
			Token:   upstream.Token(upstreamToken),
			Pacing:  &upstream.Pacing{MaxInFlight: 10, MaxAttempts: 1},
			Logger:  logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		b.state = st
		svc := service.New(client, service.Options{Logger: logger, State: st})
		// Runs before the store closes (cleanups run last first).
		t.Cleanup(func() {
			if err := svc.CloseOperations(context.Background()); err != nil {
				t.Errorf("close operations: %v", err)
			}
		})
		srv = svc
		if o.wrap != nil {
			srv = o.wrap(svc)
		}
	}

	var opts []grpc.ServerOption
	if o.auth {
		tokens, err := identity.ParseTokens(fmt.Appendf(nil, "callers:\n  - name: ctl\n    token_sha256: %s\n", sha256Hex(plantedToken)))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, grpc.UnaryInterceptor(authenticate(tokens)))
	}
	if o.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.tls)))
	}
	gs := grpc.NewServer(opts...)
	secretbrokerv1.RegisterSecretServiceServer(gs, srv)
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-served
		for _, planted := range []string{plantedValue, plantedToken, upstreamToken} {
			if strings.Contains(logs.String(), planted) {
				t.Errorf("a planted value reached the broker's logs:\n%s", logs.String())
			}
		}
	})
	b.addr = ln.Addr().String()
	return b
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// authenticate is the part of the broker's front door that matters here:
// a call needs "authorization: Bearer TOKEN" with a known token, or a
// verified client certificate; the caller then reaches the service.
func authenticate(tokens *identity.Tokens) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var caller string
		md, _ := metadata.FromIncomingContext(ctx)
		if auth := md.Get("authorization"); len(auth) == 1 {
			if tok, ok := strings.CutPrefix(auth[0], "Bearer "); ok {
				caller, _ = tokens.Authenticate(tok)
			}
		} else if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				caller, _ = identity.CertificateCaller(ti.State.VerifiedChains[0][0])
			}
		}
		if caller == "" {
			return nil, status.Error(codes.Unauthenticated, "valid credentials are required: a client certificate or an Authorization bearer token")
		}
		return handler(identity.WithCaller(ctx, caller), req)
	}
}

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// all is stdout and stderr together, for leak checks.
func (r result) all() string { return r.stdout + "\n" + r.stderr }

// ctl runs the command in-process with stdin, the environment env and a
// terminal that is never one (as when stdin is a pipe or a file), and
// checks that no planted value or token is in its output.
func ctl(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	return ctlWith(t, env, strings.NewReader(stdin), noTerminal{}, args...)
}

func ctlWith(t *testing.T, env map[string]string, stdin io.Reader, term terminal, args ...string) result {
	t.Helper()
	return ctlCtx(t.Context(), t, env, stdin, term, args...)
}

func ctlCtx(ctx context.Context, t *testing.T, env map[string]string, stdin io.Reader, term terminal, args ...string) result {
	t.Helper()
	return ctlClock(ctx, t, env, stdin, term, nil, args...)
}

// ctlClock is ctlCtx with the clock now (nil: the wall clock).
func ctlClock(ctx context.Context, t *testing.T, env map[string]string, stdin io.Reader, term terminal, now func() time.Time, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := newCLI(stdin, &stdout, &stderr, func(k string) string { return env[k] }, term)
	// These tests run on the wall clock: no retry, whose waits would be
	// real. TestRetry and TestSecondInterrupt run the retries in fake time.
	c.maxAttempts = 1
	if now != nil {
		c.now = now
	}
	code := c.main(ctx, args)
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	for _, planted := range []string{plantedValue, plantedToken} {
		if strings.Contains(r.all(), planted) {
			t.Errorf("%v printed a planted secret:\nstdout:\n%s\nstderr:\n%s", args, r.stdout, r.stderr)
		}
	}
	return r
}

// env returns the environment that points the command at b with the
// planted token.
func (b *broker) env() map[string]string {
	return map[string]string{"SECRETBROKER_ADDR": b.addr, "SECRETBROKER_TOKEN": plantedToken}
}

// open returns the value the emulator holds for name in scope.
func (b *broker) open(t *testing.T, scope, name string) string {
	t.Helper()
	v, err := b.emu.Open(scope, name)
	if err != nil {
		t.Fatalf("open %s %s: %v", scope, name, err)
	}
	return string(v)
}

func (b *broker) repoID(t *testing.T, name string) int64 {
	t.Helper()
	for _, r := range b.demo.Repos {
		if r.Name == name {
			return r.ID
		}
	}
	t.Fatalf("no demo repository %q", name)
	return 0
}

// noTerminal is a standard input that is not a terminal.
type noTerminal struct{}

func (noTerminal) IsTerminal(any) bool { return false }
func (noTerminal) ReadPassword(context.Context, io.Reader) ([]byte, error) {
	return nil, fmt.Errorf("not a terminal")
}

// fakeTerminal is a terminal on stdin that answers ReadPassword with line
// and counts the reads.
type fakeTerminal struct {
	line  string
	block bool  // wait for ctx instead of answering
	err   error // the answer instead of line
	reads int
}

func (*fakeTerminal) IsTerminal(any) bool { return true }
func (f *fakeTerminal) ReadPassword(ctx context.Context, _ io.Reader) ([]byte, error) {
	f.reads++
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return []byte(f.line), nil
}

// writeFile writes data to a new file in t's temporary directory.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeClientCert writes cert and its key as PEM files.
func writeClientCert(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, "client.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	keyFile = writeFile(t, "client.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}))
	return certFile, keyFile
}

// serverTLS returns a server configuration with a certificate from ca for
// 127.0.0.1 that requires a client certificate from ca.
func serverTLS(t *testing.T, ca *identitytest.CA) *tls.Config {
	t.Helper()
	certFile, keyFile := ca.ServerCert(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}
