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
)

// readiness is what /readyz answers: ready once the listeners serve and,
// unless the credential check is skipped (--dev), the GitHub credential
// was verified; not ready from the moment shutdown begins. It is safe for
// concurrent use.
type readiness struct {
	mu         sync.Mutex
	serving    bool
	credential string // "" once verified (or not checked), else why not
	shutdown   bool
	detail     func() string // nil, or what degrades a ready broker (readyz_detail.go)
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

// setServing records that the listeners serve.
func (r *readiness) setServing() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serving = true
}

// setShuttingDown makes the broker not ready for good.
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
	r.credential = reason
}

// state returns "" when ready, else the reason it is not, one line.
func (r *readiness) state() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.shutdown:
		return reasonShuttingDown
	case !r.serving:
		return reasonStarting
	default:
		return r.credential
	}
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
//   - GET /readyz: 200 "ok" when ready, else 503 with the reason, one line.
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
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if !pprofOn {
		srv.WriteTimeout = readHeaderTimeout
	}
	return srv
}
