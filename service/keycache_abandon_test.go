package service

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// requestWatch is a transport that notes each request cut short: whose
// context had ended when next returned (the emulator gives up a request
// whose context ends while it waits), when, and with what cause.
type requestWatch struct {
	next  http.RoundTripper
	start time.Time

	mu    sync.Mutex
	ended []requestEnd
}

// requestEnd is a request whose context ended while it was in flight.
type requestEnd struct {
	at    time.Duration // from start
	cause error
}

func (w *requestWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(r)
	if r.Context().Err() != nil {
		w.mu.Lock()
		w.ended = append(w.ended, requestEnd{time.Since(w.start), context.Cause(r.Context())})
		w.mu.Unlock()
	}
	return resp, err
}

// fetchCaller is one caller of GetPublicKey in an abandoned-fetch
// scenario. Times are fake, from the scenario's start.
type fetchCaller struct {
	at       time.Duration // when it asks, after the caller before it has joined
	leaveAt  time.Duration // when its context is cancelled; 0: never
	deadline time.Duration // its context's deadline; 0: none
	wantCode codes.Code    // codes.OK: it gets the key
	wantAt   time.Duration // when its call returns
}

func (c fetchCaller) timing() arrival { return arrival{c.at, c.deadline, c.leaveAt, c.wantAt} }

// A shared key fetch that every caller waiting for it has left, cancelled
// or timed out, is cancelled at once, down to its request to GitHub (it
// ran on to the first caller's deadline, or for sharedCallTimeout, holding
// its pacer slot); while any caller still waits, a late one included, it
// runs on, and one fetch serves them all.
func TestKeyCacheAbandonedFetchCancelled(t *testing.T) {
	const (
		s       = time.Second
		latency = 10 * s // GitHub's answer to the key request
	)
	tests := []struct {
		name    string
		callers []fetchCaller
		// wantCancelled is when the one key request's context ended
		// while it was in flight; 0: it was answered.
		wantCancelled time.Duration
	}{
		{
			name: "a lone caller leaves",
			callers: []fetchCaller{
				{leaveAt: 1 * s, wantCode: codes.Canceled, wantAt: 1 * s},
			},
			wantCancelled: 1 * s,
		},
		{
			name: "a lone caller with a later deadline leaves",
			callers: []fetchCaller{
				{leaveAt: 1 * s, deadline: 20 * s, wantCode: codes.Canceled, wantAt: 1 * s},
			},
			wantCancelled: 1 * s,
		},
		{
			name: "every caller leaves, the last by its deadline",
			callers: []fetchCaller{
				{leaveAt: 1 * s, wantCode: codes.Canceled, wantAt: 1 * s},
				{leaveAt: 2 * s, wantCode: codes.Canceled, wantAt: 2 * s},
				{deadline: 3 * s, wantCode: codes.DeadlineExceeded, wantAt: 3 * s},
			},
			wantCancelled: 3 * s,
		},
		{
			name: "the first caller leaves, another waits",
			callers: []fetchCaller{
				{leaveAt: 1 * s, wantCode: codes.Canceled, wantAt: 1 * s},
				{wantCode: codes.OK, wantAt: latency},
			},
		},
		{
			name: "a caller arriving later joins the fetch, then leaves last",
			callers: []fetchCaller{
				{leaveAt: 2 * s, wantCode: codes.Canceled, wantAt: 2 * s},
				{at: 1 * s, leaveAt: 4 * s, wantCode: codes.Canceled, wantAt: 4 * s},
			},
			wantCancelled: 4 * s,
		},
		{
			name: "a caller arriving later joins the fetch and waits",
			callers: []fetchCaller{
				{leaveAt: 2 * s, wantCode: codes.Canceled, wantAt: 2 * s},
				{at: 1 * s, deadline: 20 * s, wantCode: codes.OK, wantAt: latency},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				logs := &syncBuffer{}
				logger := newTestLogger(logs)
				emu := emulator.New(emulator.Options{Token: testToken, Logger: logger})
				emu.SeedDemo()
				emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgPublicKey, Latency: latency, Times: 2})
				start := time.Now()
				watch := &requestWatch{next: newEmulatorTransport(emu), start: start}
				client, err := upstream.New(upstream.Config{
					BaseURL:    emulatorURL,
					Token:      upstream.Token(testToken),
					HTTPClient: &http.Client{Transport: watch},
					Logger:     logger,
				})
				if err != nil {
					t.Fatal(err)
				}
				srv := New(client, Options{Logger: logger, KeyTTL: time.Hour})
				arriveInTurn(t, start, tt.callers, func(ctx context.Context, i int, c fetchCaller) {
					pk, err := srv.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/octo-org/actions"})
					if c.wantCode == codes.OK {
						if err != nil || pk.GetKeyId() == "" {
							t.Errorf("caller %d: GetPublicKey = %v, %v; want the key", i, pk, err)
						}
						return
					}
					if got := status.Code(err); got != c.wantCode {
						t.Errorf("caller %d: code = %v (%v), want %v", i, got, err, c.wantCode)
					}
				})
				// Any request still in flight ends by then.
				time.Sleep(time.Until(start.Add(2 * latency)))
				if got := emu.Count(emulator.RouteGetOrgPublicKey); got != 1 {
					t.Errorf("%d key requests to GitHub, want 1", got)
				}
				watch.mu.Lock()
				ended := watch.ended
				watch.mu.Unlock()
				switch {
				case tt.wantCancelled == 0 && len(ended) != 0:
					t.Errorf("the key request was cancelled (%+v), want it answered", ended)
				case tt.wantCancelled == 0:
				case len(ended) != 1 || ended[0].at != tt.wantCancelled || !errors.Is(ended[0].cause, upstream.ErrCallAbandoned):
					t.Errorf("the key request's context ended %+v; want once, at %v, with cause ErrCallAbandoned", ended, tt.wantCancelled)
				}
			})
		})
	}
}

// A forced revalidation every caller left before GitHub answered it
// checked nothing: it gives its budget back, so that the next caller's
// evidence against the key is checked (here it finds the rotation)
// rather than answered the cached key for a TTL.
func TestKeyCacheAbandonedRevalidationRefunds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeKeys(t)
		c := newKeyCache(f, time.Minute)
		if _, err := c.get(t.Context(), testScope); err != nil {
			t.Fatal(err)
		}
		f.id.Store(2)
		f.gate = make(chan struct{}) // GitHub does not answer
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := c.revalidate(ctx, testScope, "1"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("revalidate with a caller leaving = %v, want DeadlineExceeded", err)
		}
		synctest.Wait() // the abandoned call has ended
		f.gate = nil
		if k, err := c.revalidate(t.Context(), testScope, "1"); err != nil || k.id != "2" {
			t.Errorf("revalidate after an abandoned one = %+v, %v; want key 2", k, err)
		}
	})
}
