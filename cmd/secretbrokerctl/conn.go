package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// maxTokenFileBytes bounds a token file: a JWT is a few KB.
const maxTokenFileBytes = 64 << 10

// transport is how the client reaches the broker: plaintext, or TLS with
// the system's roots or a CA file, and maybe a client certificate.
type transport struct {
	plaintext bool
	caFile    string // "" with TLS: the system's roots
	certFile  string
	keyFile   string
}

// chooseTransport decides the transport from the flags: plaintext with
// --insecure, or to a loopback address when no TLS flag is given; TLS
// otherwise (with the system's roots unless --tls-ca-file), so that
// nothing goes in plaintext to another host unless --insecure says so.
func chooseTransport(o *common) (transport, error) {
	tlsFlags := o.tls || o.caFile != "" || o.certFile != "" || o.keyFile != ""
	if o.insecure && tlsFlags {
		return transport{}, errors.New("--insecure is plaintext; it cannot be combined with --tls or the --tls-* flags")
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return transport{}, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return transport{}, errors.New("--addr: want host:port (the value is not shown, as it may be a secret)")
	}
	if o.insecure || (!tlsFlags && isLoopback(host)) {
		return transport{plaintext: true}, nil
	}
	return transport{caFile: o.caFile, certFile: o.certFile, keyFile: o.keyFile}, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP
// address. Other names are not resolved: they count as remote.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tlsConfig loads the transport's TLS material.
func (t transport) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-file: %w", withoutPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca-file %s: no PEM certificate in it", t.caFile)
		}
		cfg.RootCAs = pool
	}
	if t.certFile != "" {
		cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", withoutPath(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// bearerToken is a caller's token; it prints as [redacted].
type bearerToken string

func (bearerToken) String() string   { return redacted }
func (bearerToken) GoString() string { return redacted }

// bearerCreds sends "authorization: Bearer TOKEN" with every call.
type bearerCreds struct {
	token  bearerToken
	secure bool // whether grpc must refuse to send it without TLS
}

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b.token)}, nil
}

// RequireTransportSecurity is false only for the plaintext the flags
// allowed (loopback, or --insecure).
func (b bearerCreds) RequireTransportSecurity() bool { return b.secure }

// token returns the caller's bearer token: the content of --token-file
// (surrounding white space removed), else SECRETBROKER_TOKEN, else ""
// (no token: the broker may know the caller by its certificate, or serve
// it unauthenticated as --dev does). It never puts the token in an error.
func (c *cli) token(o *common) (bearerToken, error) {
	var tok string
	if o.tokenFile != "" {
		f, err := os.Open(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", withoutPath(err))
		}
		defer f.Close()
		b, err := readLimited(f, maxTokenFileBytes)
		if err != nil {
			return "", fmt.Errorf("--token-file %s: %w", o.tokenFile, err)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s is empty", o.tokenFile)
		}
	} else {
		tok = strings.TrimSpace(c.getenv("SECRETBROKER_TOKEN"))
	}
	for _, r := range tok {
		if r <= ' ' || r > '~' {
			return "", errors.New("the bearer token holds a character a token cannot (white space, a control character or non-ASCII)")
		}
	}
	c.remember(tok)
	return bearerToken(tok), nil
}

// connect checks the connection flags and returns a client of the broker
// and a function that closes the connection. Errors are usage errors:
// nothing has been sent.
func (c *cli) connect(o *common) (secretbrokerv1.SecretServiceClient, func(), error) {
	tr, err := chooseTransport(o)
	if err != nil {
		return nil, nil, err
	}
	tok, err := c.token(o)
	if err != nil {
		return nil, nil, err
	}
	var opts []grpc.DialOption
	c.plaintext, c.addr = tr.plaintext, o.addr
	if tr.plaintext {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg, err := tr.tlsConfig()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(alertCreds{credentials.NewTLS(cfg)}))
	}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds{token: tok, secure: !tr.plaintext}))
	}
	// Retries are the interceptor's, per call (retry.go), not a service
	// config's retryPolicy: that one is per method (SyncSecrets is a read
	// as a dry run and starts an operation otherwise), knows no RetryInfo
	// and says nothing of its waits.
	opts = append(opts, grpc.WithChainUnaryInterceptor(c.retryInterceptor))
	if c.dial != nil {
		opts = append(opts, grpc.WithContextDialer(c.dial))
	}
	conn, err := grpc.NewClient(o.addr, opts...)
	if err != nil {
		// Not err: url.Parse's errors quote the address.
		return nil, nil, errors.New("--addr: not a valid gRPC target (the value is not shown, as it may be a secret)")
	}
	return secretbrokerv1.NewSecretServiceClient(conn), func() { _ = conn.Close() }, nil
}

// alertCreds are TLS credentials whose connections report the broker's
// TLS alert, when it sent one, rather than a write's failure (alertConn).
type alertCreds struct {
	credentials.TransportCredentials
}

func (a alertCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := a.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return conn, info, err
	}
	return &alertConn{Conn: conn, readFailed: make(chan struct{})}, info, nil
}

func (a alertCreds) Clone() credentials.TransportCredentials {
	return alertCreds{a.TransportCredentials.Clone()}
}

// alertWait bounds how long a failed write waits for the reads to fail.
const alertWait = time.Second

// alertConn is a client's TLS connection. Over TLS 1.3 the broker checks
// the client's certificate after the client has ended its side of the
// handshake, and refuses it (none sent, not trusted, expired) with an
// alert and a close: the client's reads then fail with the alert ("remote
// error: tls: certificate required"), but its first writes, racing with
// the close, may fail first ("broken pipe", "connection reset by peer"),
// and grpc-go reports that error, which says nothing of the cause and is
// retried (connectionMisconfigured). A write that fails waits for the
// reads (grpc-go's reader always reads) to fail too, for alertWait at
// most, and returns their error instead when it is the broker's alert.
type alertConn struct {
	net.Conn
	readFailed chan struct{} // closed when a read failed, with readErr
	once       sync.Once
	readErr    error
}

func (c *alertConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() {
			c.readErr = err
			close(c.readFailed)
		})
	}
	return n, err
}

func (c *alertConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil {
		return n, nil
	}
	t := time.NewTimer(alertWait)
	defer t.Stop()
	select {
	case <-c.readFailed:
		if oe, ok := errors.AsType[*net.OpError](c.readErr); ok && oe.Op == "remote error" {
			return n, c.readErr
		}
	case <-t.C:
	}
	return n, err
}

// tlsProbeTimeout bounds probeTLS.
const tlsProbeTimeout = 5 * time.Second

// errAnsweredTLS ends probeTLS's handshake at the server's certificate.
var errAnsweredTLS = errors.New("the server answered a TLS handshake")

// plaintextToTLS reports whether err, a call's failure, is a plaintext
// connection to a broker that serves TLS, which no retry mends: the
// connection was closed as it began, or answered with other than HTTP/2
// (closedOnConnect), as a TLS server answers a plaintext client (crypto/tls,
// as the broker outside --dev, closes it without a word; other TLS
// servers send an alert or an HTTP/1.x 400), and the broker answers a TLS
// handshake (probeTLS). A broker that is restarting, closing connections
// before a byte or refusing them, answers none, and is retried.
func (c *cli) plaintextToTLS(ctx context.Context, err error) bool {
	st := status.Convert(err)
	if !c.plaintext || st.Code() != codes.Unavailable || !closedOnConnect(st.Message()) {
		return false
	}
	return c.probeTLS(ctx)
}

// probeTLS dials the broker again, the way the call's connection went
// (probeDial), and starts a TLS handshake on that connection, which it
// ends (with an alert) as soon as the server sends its certificate: true
// when it did, as a TLS server does. Nothing else goes on that
// connection: no token, no request.
func (c *cli) probeTLS(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	conn, err := c.probeDial(ctx)
	if err != nil {
		return false
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The certificate is neither trusted nor checked: the handshake
		// ends at it, whatever it is, and the connection is closed.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			return errAnsweredTLS
		},
	})
	return errors.Is(tc.HandshakeContext(ctx), errAnsweredTLS)
}

// probeDial connects to the broker as grpc-go connected the call: with
// c.dial when set (grpc-go then uses no proxy); else through the HTTP
// CONNECT proxy that c.proxy, grpc-go's choice (http.ProxyFromEnvironment
// asked for https://ADDR), names for the broker's address; else
// directly. Dialed directly, a broker behind a proxy is not found, or
// something else is.
func (c *cli) probeDial(ctx context.Context) (net.Conn, error) {
	if c.dial != nil {
		return c.dial(ctx, c.addr)
	}
	proxy, err := c.proxy(&http.Request{URL: &url.URL{Scheme: "https", Host: c.addr}})
	if err != nil {
		return nil, fmt.Errorf("choosing the proxy: %w", err)
	}
	var d net.Dialer
	if proxy == nil {
		return d.DialContext(ctx, "tcp", c.addr)
	}
	return dialConnect(ctx, &d, proxy, c.addr)
}

// dialConnect opens a tunnel to addr through the HTTP proxy at proxy, as
// grpc-go does: a plain TCP connection to the proxy's host (port 443 when
// it names none, as grpc-go's resolver of the proxy's name adds), then
// CONNECT addr, with Proxy-Authorization Basic when proxy holds a user.
// Errors never hold proxy's user information.
func dialConnect(ctx context.Context, d *net.Dialer, proxy *url.URL, addr string) (_ net.Conn, err error) {
	host := proxy.Host
	if proxy.Port() == "" {
		host = net.JoinHostPort(proxy.Hostname(), "443")
	}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = conn.Close()
		}
	}()
	// The exchange ends with ctx: a proxy that does not answer is cut.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Host: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if u := proxy.User; u != nil {
		pass, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
	if err := req.Write(conn); err != nil {
		stop()
		return nil, fmt.Errorf("proxy %s: sending CONNECT: %w", host, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if !stop() {
		return nil, fmt.Errorf("proxy %s: %w", host, context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("proxy %s: reading the answer to CONNECT: %w", host, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("proxy %s: CONNECT %s answered %s", host, addr, resp.Status)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn is a connection some of whose bytes were read into r.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }
