package main

// The admin listener (--admin-addr): plain HTTP for the operator and the
// orchestrator, separate from the gateway, serving liveness, readiness
// and, with --admin-pprof, Go's profiler. It serves no secret data and no
// API call, so it needs no caller authentication.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/liblog"
	"github.com/secretbroker/secretbroker/upstream"
)

const (
	// credentialRetryInterval is how long after a failed credential check
	// that says nothing of the credential (GitHub unreachable, a 5xx, a
	// rate limit) the check is made again.
	credentialRetryInterval = 10 * time.Second
	// credentialCheckTimeout bounds one credential check, its retries
	// included.
	credentialCheckTimeout = time.Minute
	// maxReasonBytes bounds the reason /readyz gives.
	maxReasonBytes = 300
)

// Reasons /readyz gives when it answers 503.
const (
	reasonStarting     = "starting: the listeners are not serving yet"
	reasonShuttingDown = "shutting down"
	reasonUnverified   = "the GitHub credential is not verified yet"
	reasonJWTKeys      = "the JWT issuer's keys are not loaded yet"
)

// keyLoader is what readiness needs of the JWT verifier
// (identity.JWTVerifier): whether its keys are loaded, and if not why.
type keyLoader interface {
	Loaded() <-chan struct{}
	LoadError() error
}

// readiness is what /readyz answers: ready once the listeners serve,
// unless the credential check is skipped (--dev) the GitHub credential
// was verified, and the JWT issuer's keys (if any) were loaded once; not
// ready from the moment shutdown begins. It is the one
// source of truth for the gRPC health status too (follow). It is safe for
// concurrent use.
type readiness struct {
	mu         sync.Mutex
	serving    bool
	credential string // "" once verified (or not checked), else why not
	// jwtKeys is the JWT verifier until its keys are loaded (awaitJWTKeys);
	// nil then, or without JWTs.
	jwtKeys  keyLoader
	shutdown bool
	detail   func() string // nil, or what degrades a ready broker (readyz_detail.go)
	// follower is told each change of readiness until shutdown begins
	// (follow); nil: none.
	follower func(ready bool)
}

// newReadiness returns a readiness that is not ready. checkCredential
// says whether the GitHub credential must be verified first.
func newReadiness(checkCredential bool) *readiness {
	r := &readiness{}
	if checkCredential {
		r.credential = reasonUnverified
	}
	return r
}

// follow makes f follow readiness: f is called at once with whether the
// broker is ready (state() == "", /readyz's 200), then on each change of
// it, in order, until shutdown begins. The shutdown's own turn is not
// told: the shutdown turns the gRPC health NOT_SERVING itself, once the
// gRPC listener is closed (shutdown in server.go). f must not call r.
func (r *readiness) follow(f func(ready bool)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.follower = f
	if !r.shutdown {
		f(r.stateLocked() == "")
	}
}

// changeLocked applies change and tells the follower if readiness turned;
// r.mu is held.
func (r *readiness) changeLocked(change func()) {
	was := r.stateLocked() == ""
	change()
	if now := r.stateLocked() == ""; now != was && r.follower != nil && !r.shutdown {
		r.follower(now)
	}
}

// setServing records that the listeners serve.
func (r *readiness) setServing() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changeLocked(func() { r.serving = true })
}

// setShuttingDown makes the broker not ready for good. The follower is not
// told (follow).
func (r *readiness) setShuttingDown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shutdown = true
}

// setCredential records the credential's state: "" verified, else why it
// is not.
func (r *readiness) setCredential(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changeLocked(func() { r.credential = reason })
}

// state returns "" when ready, else the reason it is not, one line.
func (r *readiness) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stateLocked()
}

// stateLocked is state with r.mu held.
func (r *readiness) stateLocked() string {
	switch {
	case r.shutdown:
		return reasonShuttingDown
	case !r.serving:
		return reasonStarting
	case r.credential != "":
		return r.credential
	case r.jwtKeys != nil:
		if err := r.jwtKeys.LoadError(); err != nil {
			return oneLine(reasonJWTKeys + ": " + err.Error())
		}
		return reasonJWTKeys
	default:
		return ""
	}
}

// setJWTKeys makes the broker not ready until keys are loaded
// (awaitJWTKeys); at once if they are already.
func (r *readiness) setJWTKeys(keys keyLoader) {
	select {
	case <-keys.Loaded():
		return
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changeLocked(func() { r.jwtKeys = keys })
}

// awaitJWTKeys waits until the keys setJWTKeys set are loaded, or ctx
// ends, and then no longer holds readiness back.
func (r *readiness) awaitJWTKeys(ctx context.Context) {
	r.mu.Lock()
	keys := r.jwtKeys
	r.mu.Unlock()
	if keys == nil {
		return
	}
	select {
	case <-keys.Loaded():
	case <-ctx.Done():
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changeLocked(func() { r.jwtKeys = nil })
}

// verifyCredential checks the GitHub credential with verify until it is
// verified, or ctx ends, and records each outcome in r. A failure that
// says nothing of the credential (GitHub unreachable, a 5xx, a rate
// limit) is logged as a warning and retried every interval; a refusal
// (401, or a 403 that is not a rate limit) is logged as an error once and
// checked again every interval too, quietly: credentials rotate without a
// restart (a token file or app key replaced by a Secret update), and the
// broker turns ready once GitHub accepts the new one.
func (r *readiness) verifyCredential(ctx context.Context, verify func(context.Context) error, interval time.Duration, logger *slog.Logger) {
	refusedBefore := false
	for {
		cctx, cancel := context.WithTimeout(ctx, credentialCheckTimeout)
		err := verify(cctx)
		cancel()
		if ctx.Err() != nil {
			return // shutting down; readiness says so already
		}
		if err == nil {
			r.setCredential("")
			logger.Info("GitHub credential verified")
			return
		}
		if status, refused := upstream.CredentialRefused(err); refused {
			reason := fmt.Sprintf("the GitHub credential was refused (%d)", status)
			r.setCredential(reason)
			if !refusedBefore {
				logger.Error(reason+"; the broker stays not ready until GitHub accepts a credential (rotate the token file or the app's key; it is checked again)",
					slog.Any("error", err), slog.Duration("retry_in", interval))
			}
			refusedBefore = true
		} else {
			r.setCredential(oneLine(reasonUnverified + ": " + err.Error()))
			logger.Warn("GitHub credential not verified; retrying",
				slog.Any("error", err), slog.Duration("retry_in", interval))
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// oneLine makes s one line of at most maxReasonBytes bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxReasonBytes {
		s = strings.ToValidUTF8(s[:maxReasonBytes], "")
	}
	return s
}

// newAdminHandler returns the admin listener's handler:
//
//   - GET /healthz: 200 "ok" while the process serves (liveness).
//   - GET /readyz: 200 "ok" when ready, else 503 with the reason, one line;
//     what degrades the broker (readiness.detailLine) follows either.
//   - GET /metrics: the broker's metrics in Prometheus' text format, when
//     metrics is not nil.
//   - /debug/pprof/...: Go's profiler, only with pprof; registered on this
//     mux explicitly, never on http.DefaultServeMux, which the broker does
//     not serve.
//
// Nothing else is served (404).
func newAdminHandler(ready *readiness, pprofOn bool, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := ready.state(); reason != "" {
			if d := ready.detailLine(); d != "" {
				// What degrades the broker may be why it is not ready:
				// started while its Redis is unreachable, it takes the
				// budget as spent by the other replicas and cannot verify
				// its credential for up to 3 minutes, and the check's
				// error names only the budget.
				reason += "; " + d
			}
			writeText(w, http.StatusServiceUnavailable, reason)
			return
		}
		if d := ready.detailLine(); d != "" {
			// Degraded but serving: still ready.
			writeText(w, http.StatusOK, "ok (degraded: "+d+")")
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	// /metrics is on this mux: it is the operator's listener, not the
	// gateway.
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index) // the named profiles too: heap, goroutine, ...
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// writeText answers a plain-text line.
func writeText(w http.ResponseWriter, code int, line string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, line)
}

// newAdminServer returns the admin listener's server. Its answers are
// short, so its timeouts are too, but for the profiler, which may stream
// for as long as it is asked to.
func newAdminServer(ready *readiness, pprofOn bool, metrics http.Handler, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           newAdminHandler(ready, pprofOn, metrics),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          liblog.HTTPErrorLog(logger),
	}
	if !pprofOn {
		srv.WriteTimeout = readHeaderTimeout
	}
	return srv
}

// healthFollows makes the gRPC health status of the server as a whole ("")
// and of each of services follow r, /readyz's own state: NOT_SERVING from
// now until /readyz would answer 200, SERVING while it would (degraded or
// not: a degradation, like shedding under overload, is no reason to take
// the broker out of service), NOT_SERVING again if it no longer would. The
// shutdown turns hs NOT_SERVING itself (hs.Shutdown), after the gRPC
// listener closes.
func healthFollows(r *readiness, hs *health.Server, services ...string) {
	r.follow(func(ready bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
		for _, s := range services {
			hs.SetServingStatus(s, st)
		}
	})
}
