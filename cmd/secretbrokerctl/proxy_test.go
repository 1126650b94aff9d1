package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http/httpproxy"
)

// connectProxy is an HTTP CONNECT proxy on a loopback port: it tunnels
// CONNECT HOST:PORT to the listener routes names for it, and answers 502
// for a host it does not know, 407 without the Proxy-Authorization auth
// names (when set).
type connectProxy struct {
	addr   string // where it listens
	routes map[string]string
	auth   string // "user:password", or "" for none

	mu       sync.Mutex
	connects []string // the CONNECT targets asked, in order
}

func startConnectProxy(t *testing.T, routes map[string]string, auth string) *connectProxy {
	t.Helper()
	p := &connectProxy{routes: routes, auth: auth}
	p.addr = startLoopbackServer(t, p.serve)
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	p.mu.Lock()
	p.connects = append(p.connects, req.Host)
	p.mu.Unlock()
	if p.auth != "" && req.Header.Get("Proxy-Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(p.auth)) {
		_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
		return
	}
	backend, ok := p.routes[req.Host]
	var up net.Conn
	if ok {
		up, err = net.Dial("tcp", backend)
	}
	if !ok || err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	go func() {
		_, _ = io.Copy(up, br)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(c, up)
}

func (p *connectProxy) url(user string) string {
	if user != "" {
		return "http://" + user + "@" + p.addr
	}
	return "http://" + p.addr
}

func (p *connectProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.connects)
}

// startLoopbackServer serves handle on every connection to a loopback
// port (serveConns) and returns the port's address.
func startLoopbackServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveConns(t, lis, handle)
	return lis.Addr().String()
}

// serveConns runs handle on every connection lis accepts, each in its own
// goroutine, and closes the connection after; lis is closed at t's cleanup.
func serveConns(t *testing.T, lis net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// tlsBrokerHandler answers as the broker does outside --dev: a TLS
// server, which closes a plaintext client's connection.
func tlsBrokerHandler(t *testing.T) func(net.Conn) {
	srvCert := newBubbleCert(t, nil, func(c *x509.Certificate) {
		c.DNSNames = []string{"broker.test"}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	srvTLS := &tls.Config{Certificates: []tls.Certificate{*srvCert}, NextProtos: []string{"h2"}}
	return func(c net.Conn) { _ = tls.Server(c, srvTLS).Handshake() }
}

// TestProbeTLSFollowsTheProxy: the probe that tells a broker serving TLS
// from one restarting goes to the broker the way grpc-go's connection
// went: through the CONNECT proxy HTTPS_PROXY names, unless NO_PROXY
// names the broker or its address is loopback (http.ProxyFromEnvironment's
// choice, here from a Config, as the process's environment is read once).
// It dialed the broker's address directly, where behind a proxy there is
// nothing ("broker.test" does not resolve here) or something else.
func TestProbeTLSFollowsTheProxy(t *testing.T) {
	tlsBroker := startLoopbackServer(t, tlsBrokerHandler(t))
	plain := startLoopbackServer(t, func(net.Conn) {}) // closed before a byte, as by a broker restarting
	routes := map[string]string{"broker.test:9090": tlsBroker, "plain.test:9090": plain}
	for _, tc := range []struct {
		name        string
		addr        string
		auth        string // the proxy's; the client sends it too
		noProxy     string
		want        bool
		wantConnect []string
	}{
		{name: "TLS broker behind the proxy", addr: "broker.test:9090", want: true, wantConnect: []string{"broker.test:9090"}},
		{name: "TLS broker behind a proxy with a password", addr: "broker.test:9090", auth: "ctl:pa55", want: true, wantConnect: []string{"broker.test:9090"}},
		{name: "restarting broker behind the proxy", addr: "plain.test:9090", want: false, wantConnect: []string{"plain.test:9090"}},
		{name: "the proxy knows no such host", addr: "other.test:9090", want: false, wantConnect: []string{"other.test:9090"}},
		{name: "NO_PROXY names the broker", addr: "broker.test:9090", noProxy: "broker.test", want: false},
		{name: "loopback broker, never proxied", addr: tlsBroker, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := startConnectProxy(t, routes, tc.auth)
			cfg := httpproxy.Config{HTTPSProxy: proxy.url(tc.auth), NoProxy: tc.noProxy}
			choose := cfg.ProxyFunc()
			c := newCLI(strings.NewReader(""), io.Discard, io.Discard, func(string) string { return "" }, noTerminal{})
			c.proxy = func(r *http.Request) (*url.URL, error) { return choose(r.URL) }
			c.addr = tc.addr
			if got := c.probeTLS(t.Context()); got != tc.want {
				t.Errorf("probeTLS = %v, want %v", got, tc.want)
			}
			if got := proxy.asked(); !slices.Equal(got, tc.wantConnect) {
				t.Errorf("the proxy was asked CONNECT %q, want %q", got, tc.wantConnect)
			}
		})
	}
}

// proxyChildEnv marks TestPlaintextToTLSBrokerBehindProxy's child process.
const proxyChildEnv = "SECRETBROKERCTL_TEST_PROXY_CHILD"

// TestPlaintextToTLSBrokerBehindProxy: behind an HTTPS_PROXY, a plaintext
// call to a broker that serves TLS ends at its first attempt with the
// hint, as it does without a proxy: grpc-go's call and the ctl's probe
// both go through the proxy. The ctl runs in a child process whose
// environment names the proxy (net/http reads it once per process).
func TestPlaintextToTLSBrokerBehindProxy(t *testing.T) {
	if os.Getenv(proxyChildEnv) != "" {
		proxyChild(t)
		return
	}
	broker := startLoopbackServer(t, tlsBrokerHandler(t))
	proxy := startConnectProxy(t, map[string]string{"broker.test:9090": broker}, "")
	env := []string{proxyChildEnv + "=1", "HTTPS_PROXY=" + proxy.url("")}
	for _, kv := range cleanEnv() {
		switch k, _, _ := strings.Cut(kv, "="); strings.ToUpper(k) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "REQUEST_METHOD":
		default:
			env = append(env, kv)
		}
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPlaintextToTLSBrokerBehindProxy$", "-test.v", "-test.count=1")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child ran the call") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := proxy.asked(); len(got) != 2 || got[0] != "broker.test:9090" || got[1] != "broker.test:9090" {
		t.Errorf("the proxy was asked CONNECT %q, want broker.test:9090 twice (the call, the probe)", got)
	}
}

// proxyChild is TestPlaintextToTLSBrokerBehindProxy's child: a plaintext
// get of broker.test:9090, which only the proxy knows.
func proxyChild(t *testing.T) {
	env := map[string]string{"SECRETBROKER_ADDR": "broker.test:9090", "SECRETBROKER_TOKEN": plantedToken}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	c := newCLI(strings.NewReader(""), stdout, stderr, func(k string) string { return env[k] }, noTerminal{})
	code := c.main(t.Context(), []string{"get", "--insecure", flakySecret})
	if code != exitFail {
		t.Errorf("exit %d, want %d:\n%s", code, exitFail, stderr)
	}
	if n := strings.Count(stderr.String(), "trying again"); n != 0 {
		t.Errorf("%d retries, want none:\n%s", n, stderr)
	}
	if !strings.Contains(stderr.String(), "the connection was plaintext: if the broker serves TLS") {
		t.Errorf("no hint:\n%s", stderr)
	}
	t.Log("child ran the call")
}
