package credential_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/internal/coalesce"
)

// pipeNet is a network in memory: an http.Server on a listener whose
// connections are net.Pipe ends, each made dialDelay after it is dialled,
// so that a real http.Transport (with its httptrace hooks) and the
// emulator run inside one synctest bubble.
type pipeNet struct {
	dialDelay time.Duration
	conns     chan net.Conn
	done      chan struct{}
	once      sync.Once
}

func (n *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

func (n *pipeNet) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}

func (n *pipeNet) Addr() net.Addr { return pipeAddr{} }

// dial is an http.Transport's DialContext: a connection to the listener,
// dialDelay from now (a slow network), unless ctx ends first.
func (n *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	select {
	case <-time.After(n.dialDelay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	client, server := net.Pipe()
	select {
	case n.conns <- server:
		return client, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// endWatch is a transport that notes each request whose context had ended
// when next returned: when, from start, and with what cause.
type endWatch struct {
	next  http.RoundTripper
	start time.Time

	mu    sync.Mutex
	ended []requestEnd
}

type requestEnd struct {
	at    time.Duration
	cause error
}

func (w *endWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(r)
	if r.Context().Err() != nil {
		w.mu.Lock()
		w.ended = append(w.ended, requestEnd{time.Since(w.start), context.Cause(r.Context())})
		w.mu.Unlock()
	}
	return resp, err
}

// newPipeApp is app 77, installed on acme (installation 5) and fixed to
// installationID when positive, served by the emulator over pipeNet with
// dialDelay, through an endWatch; GitHub takes latency to answer route,
// for the first ten requests. It is all shut down at cleanup.
func newPipeApp(t *testing.T, installationID int64, dialDelay time.Duration, route string, latency time.Duration) (*credential.App, *emulator.Server, *endWatch) {
	t.Helper()
	key, _ := newKey(t)
	emu := emulator.New(emulator.Options{App: &emulator.App{ID: 77, PublicKey: &key.PublicKey, Installations: []emulator.Installation{{ID: 5, Account: "acme"}}}})
	emu.AddOrg("acme")
	emu.InjectFault(emulator.Fault{Route: route, Latency: latency, Times: 10})
	pn := &pipeNet{dialDelay: dialDelay, conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(pn) }()
	tr := &http.Transport{DialContext: pn.dial, DisableKeepAlives: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	watch := &endWatch{next: tr, start: time.Now()}
	a, err := credential.NewApp(credential.AppConfig{AppID: 77, PrivateKey: key, InstallationID: installationID, BaseURL: "http://github.test", Transport: watch})
	if err != nil {
		t.Fatal(err)
	}
	return a, emu, watch
}

// sharer is one caller of a shared lookup or mint. Times are fake, from
// the scenario's start.
type sharer struct {
	at      time.Duration // when it asks, after the caller before it has joined
	leaveAt time.Duration // when its context is cancelled; 0: never
	wantOK  bool          // it gets the installation or a token; else context.Canceled
	wantAt  time.Duration // when its call returns
}

// An installation lookup that every caller waiting for it has left is
// cancelled then, down to its request to GitHub, wherever that request
// is (a lookup is a GET: GitHub makes nothing of it, and the next caller
// looks up again); while any caller waits, a later one included, it runs
// on and one lookup serves them all. A token mint (a POST that makes a
// token) runs on though nobody waits, wherever its request is (here, a 2 s
// dial, then GitHub's answer): a later caller joins it, and its token is
// kept, so that no caller mints another.
func TestAppAbandonedLookupOrMint(t *testing.T) {
	const (
		s       = time.Second
		dial    = 2 * s  // the network's time to connect
		latency = 10 * s // GitHub's time to answer
	)
	tests := []struct {
		name    string
		mint    bool // a token mint; else an installation lookup
		callers []sharer
		// wantCancelled is when each request to GitHub cut short ended,
		// with cause coalesce.ErrCallAbandoned.
		wantCancelled []time.Duration
		// wantAtGitHub is how many lookups or mints reached GitHub.
		wantAtGitHub int
	}{
		{
			name:          "lookup: a lone caller leaves while it connects",
			callers:       []sharer{{leaveAt: 1 * s, wantAt: 1 * s}},
			wantCancelled: []time.Duration{1 * s},
		},
		{
			name:          "lookup: a lone caller leaves once it is sent",
			callers:       []sharer{{leaveAt: 5 * s, wantAt: 5 * s}},
			wantCancelled: []time.Duration{5 * s}, wantAtGitHub: 1,
		},
		{
			name: "lookup: the last of two callers leaves",
			callers: []sharer{
				{leaveAt: 3 * s, wantAt: 3 * s},
				{at: 1 * s, leaveAt: 4 * s, wantAt: 4 * s},
			},
			wantCancelled: []time.Duration{4 * s}, wantAtGitHub: 1,
		},
		{
			name: "lookup: a later caller joins it and waits",
			callers: []sharer{
				{leaveAt: 3 * s, wantAt: 3 * s},
				{at: 1 * s, wantOK: true, wantAt: dial + latency},
			},
			wantAtGitHub: 1,
		},
		{
			name: "lookup: a caller after an abandoned one looks up again",
			callers: []sharer{
				{leaveAt: 5 * s, wantAt: 5 * s},
				{at: 6 * s, wantOK: true, wantAt: 6*s + dial + latency},
			},
			wantCancelled: []time.Duration{5 * s}, wantAtGitHub: 2,
		},
		{
			name:         "mint: a lone caller leaves while it connects, and it runs on",
			mint:         true,
			callers:      []sharer{{leaveAt: 1 * s, wantAt: 1 * s}},
			wantAtGitHub: 1,
		},
		{
			name: "mint: the last of two callers leaves while it connects, and it runs on",
			mint: true,
			callers: []sharer{
				{leaveAt: 500 * time.Millisecond, wantAt: 500 * time.Millisecond},
				{at: 100 * time.Millisecond, leaveAt: 1500 * time.Millisecond, wantAt: 1500 * time.Millisecond},
			},
			wantAtGitHub: 1,
		},
		{
			name: "mint: a caller after one abandoned while it connected joins it",
			mint: true,
			callers: []sharer{
				{leaveAt: 1 * s, wantAt: 1 * s},
				{at: 3 * s, wantOK: true, wantAt: dial + latency},
			},
			wantAtGitHub: 1,
		},
		{
			name: "mint: once sent it runs on, and a later caller joins it",
			mint: true,
			callers: []sharer{
				{leaveAt: 5 * s, wantAt: 5 * s},
				{at: 6 * s, wantOK: true, wantAt: dial + latency},
			},
			wantAtGitHub: 1,
		},
		{
			name: "mint: once sent its token is kept for a later caller",
			mint: true,
			callers: []sharer{
				{leaveAt: 5 * s, wantAt: 5 * s},
				{at: 13 * s, wantOK: true, wantAt: 13 * s},
			},
			wantAtGitHub: 1,
		},
		{
			name: "mint: a caller joins it while it connects and waits",
			mint: true,
			callers: []sharer{
				{leaveAt: 1 * s, wantAt: 1 * s},
				{at: 500 * time.Millisecond, wantOK: true, wantAt: dial + latency},
			},
			wantAtGitHub: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				route, fixed := emulator.RouteGetOrgInstallation, int64(0)
				if tt.mint {
					route, fixed = emulator.RouteCreateInstallationToken, 5
				}
				app, emu, watch := newPipeApp(t, fixed, dial, route, latency)
				call := func(ctx context.Context) error {
					if !tt.mint {
						_, err := app.For(ctx, "acme", "")
						return err
					}
					cred, err := app.For(ctx, "acme", "")
					if err != nil {
						return err
					}
					tok, err := cred.Token(ctx)
					if err == nil && tok == "" {
						err = errors.New("an empty token")
					}
					return err
				}
				start := watch.start
				var wg sync.WaitGroup
				for i, c := range tt.callers {
					time.Sleep(time.Until(start.Add(c.at)))
					ctx, cancel := context.WithCancel(t.Context())
					if c.leaveAt > 0 {
						time.AfterFunc(time.Until(start.Add(c.leaveAt)), cancel)
					}
					wg.Go(func() {
						defer cancel()
						err := call(ctx)
						if at := time.Since(start); at != c.wantAt {
							t.Errorf("caller %d returned at %v, want %v", i, at, c.wantAt)
						}
						switch {
						case c.wantOK && err != nil:
							t.Errorf("caller %d: %v, want an answer", i, err)
						case !c.wantOK && !errors.Is(err, context.Canceled):
							t.Errorf("caller %d: %v, want context.Canceled", i, err)
						}
					})
					synctest.Wait() // it has joined or started the call
				}
				wg.Wait()
				// Whatever still runs ends by then.
				time.Sleep(time.Until(start.Add(time.Minute)))
				if got := emu.Count(route); got != tt.wantAtGitHub {
					t.Errorf("%d requests reached GitHub, want %d", got, tt.wantAtGitHub)
				}
				watch.mu.Lock()
				defer watch.mu.Unlock()
				var ended []time.Duration
				for _, e := range watch.ended {
					ended = append(ended, e.at)
					if !errors.Is(e.cause, coalesce.ErrCallAbandoned) {
						t.Errorf("a request ended at %v with cause %v, want ErrCallAbandoned", e.at, e.cause)
					}
				}
				if !slices.Equal(ended, tt.wantCancelled) {
					t.Errorf("requests cut short at %v, want %v", ended, tt.wantCancelled)
				}
			})
		})
	}
}

// A mint whose only caller left before it could hold itself (Hold) is
// not a failure to remember: the next caller mints, rather than being
// answered the abandoned mint's context.Canceled for mintRetry. With one P
// the starting caller leaves before the call's goroutine runs.
func TestAppMintAbandonedBeforeHoldNotRemembered(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	synctest.Test(t, func(t *testing.T) {
		app, emu, _ := newPipeApp(t, 5, time.Second, emulator.RouteCreateInstallationToken, time.Second)
		cred, err := app.For(t.Context(), "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		gone, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := cred.Token(gone); !errors.Is(err, context.Canceled) {
			t.Fatalf("Token with an ended context: %v, want context.Canceled", err)
		}
		synctest.Wait()
		time.Sleep(time.Second)
		tok, err := cred.Token(t.Context())
		if err != nil || tok == "" {
			t.Errorf("Token after an abandoned mint: %q, %v; want a token", tok, err)
		}
		if got := emu.Count(emulator.RouteCreateInstallationToken); got != 1 {
			t.Errorf("%d mints reached GitHub, want 1", got)
		}
	})
}
