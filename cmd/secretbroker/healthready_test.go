package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const svcName = "secretbroker.v1.SecretService"

// healthStatuses returns the health server's status of "" and of the
// service, as Check answers them.
func healthStatuses(t *testing.T, hs *health.Server) [2]healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	var out [2]healthpb.HealthCheckResponse_ServingStatus
	for i, s := range []string{"", svcName} {
		resp, err := hs.Check(t.Context(), &healthpb.HealthCheckRequest{Service: s})
		if err != nil {
			t.Fatalf("Check(%q): %v", s, err)
		}
		out[i] = resp.GetStatus()
	}
	return out
}

// watchStream is a Health_WatchServer that records what Watch sends.
type watchStream struct {
	grpc.ServerStream // nil: only Context and Send are used
	ctx               context.Context
	mu                sync.Mutex
	sent              []healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, r.GetStatus())
	return nil
}

func (w *watchStream) statuses() []healthpb.HealthCheckResponse_ServingStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]healthpb.HealthCheckResponse_ServingStatus(nil), w.sent...)
}

// TestHealthFollowsReadiness runs the credential check loop in fake time
// with the gRPC health server following readiness: both services are
// NOT_SERVING (Check and Watch) while the listeners do not serve and while
// the credential check has not passed, SERVING from the moment /readyz
// would answer 200, whatever degrades it; the shutdown's turn is the
// shutdown's own (health.Server.Shutdown), not readiness's.
func TestHealthFollowsReadiness(t *testing.T) {
	const (
		ns = healthpb.HealthCheckResponse_NOT_SERVING
		sv = healthpb.HealthCheckResponse_SERVING
	)
	synctest.Test(t, func(t *testing.T) {
		r := newReadiness(true)
		hs := health.NewServer()
		healthFollows(r, hs, svcName)
		watch := &watchStream{ctx: t.Context()}
		watching := make(chan error, 1)
		go func() { watching <- hs.Watch(&healthpb.HealthCheckRequest{Service: svcName}, watch) }()
		synctest.Wait()

		check := func(step string, want healthpb.HealthCheckResponse_ServingStatus, wantWatched ...healthpb.HealthCheckResponse_ServingStatus) {
			t.Helper()
			synctest.Wait()
			if got := healthStatuses(t, hs); got != [2]healthpb.HealthCheckResponse_ServingStatus{want, want} {
				t.Errorf("%s: health %v, want %v for both", step, got, want)
			}
			if ready := r.state() == ""; ready != (want == sv) {
				t.Errorf("%s: /readyz ready %v, health %v", step, ready, want)
			}
			if got := watch.statuses(); fmt.Sprint(got) != fmt.Sprint(wantWatched) {
				t.Errorf("%s: Watch sent %v, want %v", step, got, wantWatched)
			}
		}
		check("starting", ns, ns)
		r.setServing()
		check("serving, credential unverified", ns, ns)

		unreachable := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
		script := &verifyScript{errs: []error{unreachable, unreachable, nil}}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.verifyCredential(t.Context(), script.verify, credentialRetryInterval, slog.New(slog.NewTextHandler(io.Discard, nil)))
		}()
		check("first check failed", ns, ns)
		time.Sleep(credentialRetryInterval)
		check("second check failed", ns, ns)
		time.Sleep(credentialRetryInterval)
		<-done
		check("credential verified", sv, ns, sv)
		if got := time.Since(start); got != 2*credentialRetryInterval {
			t.Errorf("verified after %v, want %v", got, 2*credentialRetryInterval)
		}

		r.setDetail(func() string { return "shedding" })
		check("degraded", sv, ns, sv)

		// The shutdown: readiness turns first and health does not follow;
		// the shutdown turns health itself after closing the listener.
		r.setShuttingDown()
		r.setCredential("late")
		synctest.Wait()
		if r.state() != reasonShuttingDown {
			t.Errorf("state %q, want %q", r.state(), reasonShuttingDown)
		}
		if got := healthStatuses(t, hs); got != [2]healthpb.HealthCheckResponse_ServingStatus{sv, sv} {
			t.Errorf("shutting down, gRPC listener still open: health %v, want SERVING until the shutdown turns it", got)
		}
		hs.Shutdown()
		synctest.Wait()
		if got := healthStatuses(t, hs); got != [2]healthpb.HealthCheckResponse_ServingStatus{ns, ns} {
			t.Errorf("after health shutdown: %v, want NOT_SERVING", got)
		}
		if got := fmt.Sprint(watch.statuses()); got != fmt.Sprint([]healthpb.HealthCheckResponse_ServingStatus{ns, sv, ns}) {
			t.Errorf("Watch sent %v, want [NOT_SERVING SERVING NOT_SERVING]", got)
		}
	})
}

// TestHealthWaitsForCredentialCheck runs the broker as in production
// against a GitHub that holds the credential check until the test lets it
// through: until then gRPC health is NOT_SERVING for the server and the
// service, as Check, a Watch and the gateway's /healthz say, and /readyz
// is 503; once the check passes, the Watch sees SERVING, and so do Check,
// /healthz and /readyz.
func TestHealthWaitsForCredentialCheck(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rate_limit" {
			http.NotFound(w, r)
			return
		}
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"resources":{"core":{"limit":5000,"used":0,"remaining":5000,"reset":0}},"rate":{"limit":5000,"used":0,"remaining":5000,"reset":0}}`)
	}))
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	t.Cleanup(gh.Close)
	t.Cleanup(let)

	b := startBroker(t, prodConfig(t, gh.URL, 5*time.Second))
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the credential check never reached GitHub")
	}
	ctx := t.Context()
	hc := healthpb.NewHealthClient(b.conn)
	wantHealth := func(step string, want healthpb.HealthCheckResponse_ServingStatus, wantReadyz, wantHealthz int) {
		t.Helper()
		for _, s := range []string{"", svcName} {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: s})
			if err != nil || resp.GetStatus() != want {
				t.Errorf("%s: Check(%q) = %v %v, want %v", step, s, resp, err, want)
			}
		}
		if code, body := b.adminGet(t, "/readyz"); code != wantReadyz {
			t.Errorf("%s: GET /readyz = %d %q, want %d", step, code, body, wantReadyz)
		}
		resp, err := b.http.Get("http://" + b.httpAddr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != wantHealthz {
			t.Errorf("%s: gateway GET /healthz = %d, want %d", step, resp.StatusCode, wantHealthz)
		}
	}
	wantHealth("credential check held", healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable, http.StatusServiceUnavailable)

	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: svcName})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch first = %v %v, want NOT_SERVING", resp, err)
	}
	let()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch after the credential check = %v %v, want SERVING", resp, err)
	}
	wcancel()
	wantHealth("credential verified", healthpb.HealthCheckResponse_SERVING, http.StatusOK, http.StatusOK)
}
