package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// memURL is the root URL of a server reached in memory; nothing resolves it.
const memURL = "http://emulator.test"

// errDropped is what memTransport returns for a connection the server
// closed without an answer.
var errDropped = errors.New("connection closed without an answer")

// memTransport serves requests in memory with a handler, so that a client
// and the emulator share one synctest bubble (a loopback socket never
// blocks durably). It hands the handler the request as a server would see
// it, and turns the handler's http.ErrAbortHandler panic (an injected drop)
// into a transport error, wrapping the request context's error when it has
// one (the client gave up).
type memTransport struct{ h http.Handler }

func (t memTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	if in.Host == "" {
		in.Host = r.URL.Host
	}
	if in.Body == nil {
		in.Body = http.NoBody
	}
	defer func() {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		p := recover()
		if p == nil {
			return
		}
		if p != http.ErrAbortHandler {
			panic(p)
		}
		resp, err = nil, errDropped
		if cerr := r.Context().Err(); cerr != nil {
			err = fmt.Errorf("%w: %w", errDropped, cerr)
		}
	}()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	return rec.Result(), nil
}

// newMemEnv is an emulator served in memory, for use inside a synctest
// bubble, where its limits, latency and timestamps all run on the bubble's
// fake time.
func newMemEnv(t *testing.T, opts emulator.Options) *env {
	t.Helper()
	e := &env{t: t, url: memURL}
	e.emu = emulator.New(opts)
	e.demo = e.emu.SeedDemo()
	e.client = &http.Client{Transport: memTransport{e.emu}}
	return e
}

// The in-memory transport gives the handler what a server would: the
// request URI and host (absolute URLs in answers), and a drop as an error.
func TestMemTransport(t *testing.T) {
	e := newMemEnv(t, emulator.Options{})
	for _, name := range []string{"A", "B"} {
		e.want(e.put(envProd, name, "v", nil), 201)
	}
	r := e.want(e.do("GET", "/"+envProd+"/secrets?per_page=1", nil), 200)
	if link := r.header.Get("Link"); !strings.HasPrefix(link, "<"+memURL+"/"+envProd+"/secrets?") {
		t.Errorf("Link %q, want URLs under %s", link, memURL)
	}
	e.emu.InjectFault(emulator.Fault{Drop: true})
	if _, err := e.send(e.client, "GET", listOrg, ""); !errors.Is(err, errDropped) {
		t.Errorf("dropped request: %v, want %v", err, errDropped)
	}
}

// pipeListener is a net.Listener whose connections are net.Pipe ends, so
// that a real http.Server and http.Transport (keep-alives, connection
// reuse and closed connections included) run inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects to the listener; it is an http.Transport's DialContext.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// newPipeEnv is an emulator behind a real http.Server on in-memory pipes,
// for use inside a synctest bubble, with a keep-alive client (e.client)
// and one without keep-alives. Everything is shut down at cleanup.
func newPipeEnv(t *testing.T, opts emulator.Options) (e *env, noKeepAlive *http.Client) {
	t.Helper()
	e = newMemEnv(t, opts)
	l := newPipeListener()
	srv := &http.Server{Handler: e.emu, ReadHeaderTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	keep := &http.Transport{DialContext: l.dial}
	once := &http.Transport{DialContext: l.dial, DisableKeepAlives: true}
	t.Cleanup(func() {
		keep.CloseIdleConnections()
		once.CloseIdleConnections()
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	e.client = &http.Client{Transport: keep}
	return e, &http.Client{Transport: once}
}

// Every answer is dated, as GitHub's are, in memory too (where no
// net/http server adds a Date): the time it was answered, in whole
// seconds.
func TestAnswersAreDated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newMemEnv(t, emulator.Options{})
		time.Sleep(1500 * time.Millisecond)
		for _, path := range []string{"/orgs/octo-org/actions/secrets", "/orgs/octo-org/actions/secrets/NONE"} {
			r := e.do("GET", path, nil)
			d, err := http.ParseTime(r.header.Get("Date"))
			if err != nil || !d.Equal(time.Now().Truncate(time.Second)) {
				t.Errorf("GET %s (%d): Date %q (%v), want %v", path, r.status, r.header.Get("Date"), err, time.Now().Truncate(time.Second))
			}
		}
	})
}
