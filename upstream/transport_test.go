package upstream

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// TestTransportReusesConnections sends 1,000 calls through a Client with
// the default transport, half one after another and half from 25
// goroutines at once (the pacer lets 4 run at a time), to an emulator
// that counts the connections it accepts: plain HTTP/1.1, and TLS where
// the server offers HTTP/2. At most 10 connections may be opened, and the
// connections metric must add up to every request. (Over HTTP/1.1 a
// request that finds no idle connection dials one, and takes whichever is
// ready first, a dialed one or one a finished request returned; the
// dial's connection then joins the pool unused. So while the first
// requests run at once a few more connections than requests in flight
// may be opened; with 4 in flight they stay under 10.)
func TestTransportReusesConnections(t *testing.T) {
	const sequential, workers, each = 500, 25, 20
	const calls = sequential + workers*each
	const maxConns = 10
	const inFlight = 4
	for _, tc := range []struct {
		name  string
		tls   bool
		proto int // the HTTP major version every request must use
	}{
		{"plain HTTP/1.1", false, 1},
		{"TLS with HTTP/2", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			em := emulator.New(emulator.Options{Token: testToken})
			em.AddRepo("acme", "api", false)
			var wrongProto atomic.Int64
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ProtoMajor != tc.proto {
					wrongProto.Add(1)
				}
				em.ServeHTTP(w, r)
			}))
			ts.Config.ConnState = em.ConnState
			if tc.tls {
				ts.EnableHTTP2 = true
				ts.StartTLS()
			} else {
				ts.Start()
			}
			t.Cleanup(ts.Close)

			reader := sdkmetric.NewManualReader()
			pacing := quickPacing()
			pacing.MaxInFlight = inFlight
			c := newClient(t, Config{BaseURL: ts.URL, Pacing: pacing, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
			if tc.tls {
				// The default transport, trusting the test server's certificate.
				tr := NewTransport()
				tr.TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
				hc, err := pooledClient(nil, c.metrics, tr)
				if err != nil {
					t.Fatal(err)
				}
				c.hc = hc
			}
			t.Cleanup(c.hc.CloseIdleConnections)

			for range sequential {
				if _, err := c.GetPublicKey(t.Context(), repActions); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			var failed atomic.Int64
			for range workers {
				wg.Go(func() {
					for range each {
						if _, err := c.GetPublicKey(t.Context(), repActions); err != nil {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d concurrent calls failed", n)
			}

			conns := em.Connections()
			if conns < 1 || conns > maxConns {
				t.Errorf("the server accepted %d connections for %d calls; want 1 to %d", conns, calls, maxConns)
			}
			if n := wrongProto.Load(); n > 0 {
				t.Errorf("%d requests were not HTTP/%d", n, tc.proto)
			}
			if got := em.Stats().Requests; got != calls {
				t.Errorf("the server served %d requests, want %d", got, calls)
			}
			got := metricstest.Read(t, reader)
			opened := got[`secretbroker_upstream_connections_total{reused=false}`]
			reused := got[`secretbroker_upstream_connections_total{reused=true}`]
			if opened < 1 || opened > maxConns || opened+reused != calls {
				t.Errorf("connections metric: %v opened, %v reused; want 1 to %d opened and %d in all", opened, reused, maxConns, calls)
			}
		})
	}
}

// TestNewTransport pins the pool's settings: idle connections for every
// request one credential may have in flight, no cap per host, HTTP/2
// attempted, keep-alives and the timeouts.
func TestNewTransport(t *testing.T) {
	tr := NewTransport()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"MaxIdleConnsPerHost", tr.MaxIdleConnsPerHost, MaxInFlightLimit},
		{"MaxIdleConns (no total cap)", tr.MaxIdleConns, 0},
		{"MaxConnsPerHost (no cap)", tr.MaxConnsPerHost, 0},
		{"ForceAttemptHTTP2", tr.ForceAttemptHTTP2, true},
		{"DisableKeepAlives", tr.DisableKeepAlives, false},
		{"IdleConnTimeout", tr.IdleConnTimeout, 90 * time.Second},
		{"TLSHandshakeTimeout", tr.TLSHandshakeTimeout, 10 * time.Second},
		{"ResponseHeaderTimeout", tr.ResponseHeaderTimeout, 15 * time.Second},
		{"has a dialer", tr.DialContext != nil, true},
		{"has a proxy function", tr.Proxy != nil, true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestRequestsCarryTraceContextOnly: with the broker's global propagators
// (W3C trace context and baggage), a request to GitHub carries the call's
// traceparent and none of the caller's baggage.
func TestRequestsCarryTraceContextOnly(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	type seen struct{ traceparent, baggage string }
	got := make(chan seen, 1)
	em := emulator.New(emulator.Options{Token: testToken})
	em.AddRepo("acme", "api", false)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.Header.Get("Traceparent"), r.Header.Get("Baggage")}:
		default:
		}
		em.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	tp := sdktrace.NewTracerProvider()
	c := newClient(t, Config{BaseURL: ts.URL, Pacing: quickPacing(), TracerProvider: tp})
	t.Cleanup(c.hc.CloseIdleConnections)

	member, err := baggage.NewMember("internal.session", "PLANTED-session-7c1e")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tp.Tracer("test").Start(baggage.ContextWithBaggage(t.Context(), bag), "call")
	defer span.End()
	if _, err := c.GetPublicKey(ctx, repActions); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if !strings.Contains(s.traceparent, span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q, want the call's trace %s", s.traceparent, span.SpanContext().TraceID())
	}
	if s.baggage != "" {
		t.Errorf("GitHub received the caller's baggage %q", s.baggage)
	}
}
