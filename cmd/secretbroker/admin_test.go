package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// adminGet sends GET path to the broker's admin listener and returns the
// status and the body.
func (b *broker) adminGet(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := b.http.Get("http://" + b.adminAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// TestAdminDev: in dev mode the admin listener is alive and ready at
// once (no credential to check), on loopback, and serves neither the
// profiler without --admin-pprof nor anything of the API.
func TestAdminDev(t *testing.T) {
	b := startBroker(t, devConfig(t))
	if !strings.HasPrefix(b.adminAddr, "127.0.0.1:") {
		t.Errorf("admin address %s, want loopback", b.adminAddr)
	}
	tests := []struct {
		path     string
		wantCode int
		wantBody string // "" to skip
	}{
		{"/healthz", http.StatusOK, "ok\n"},
		{"/readyz", http.StatusOK, "ok\n"},
		{"/debug/pprof/", http.StatusNotFound, ""},
		{"/debug/pprof/cmdline", http.StatusNotFound, ""},
		{"/debug/pprof/heap", http.StatusNotFound, ""},
		{"/v1/orgs/octo-org/actions/secrets/public-key", http.StatusNotFound, ""},
		{"/openapi.json", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		code, body := b.adminGet(t, tt.path)
		if code != tt.wantCode || (tt.wantBody != "" && body != tt.wantBody) {
			t.Errorf("GET %s = %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
		}
	}
	if !strings.Contains(b.logs.String(), `"admin_addr":"`+b.adminAddr+`"`) {
		t.Errorf("the serving log line does not name the admin address")
	}
}

// TestAdminPprof: --admin-pprof serves the profiler on the admin listener
// only.
func TestAdminPprof(t *testing.T) {
	cfg := devConfig(t)
	cfg.AdminPprof = true
	b := startBroker(t, cfg)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"} {
		if code, _ := b.adminGet(t, path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
	}
	resp, err := b.http.Get("http://" + b.httpAddr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("the gateway serves the profiler")
	}
}

// TestReadyzCredential runs the broker as in production against an
// emulated GitHub that demands its token: with the right token /readyz
// turns 200 once the credential is verified; with another it stays 503
// and names the refusal, logged at ERROR once. The token never reaches
// the logs or the answer.
func TestReadyzCredential(t *testing.T) {
	const token = "ghp_PLANTEDadminTOKEN0123456789abcdefghij"
	tests := []struct {
		name      string
		token     string
		wantLog   string
		wantCode  int
		wantReady string
	}{
		{"right token", token, "GitHub credential verified", http.StatusOK, "ok\n"},
		{"wrong token", "ghp_PLANTEDotherTOKEN0123456789abcdefghij", "the GitHub credential was refused (401)",
			http.StatusServiceUnavailable, "the GitHub credential was refused (401)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu := emulator.New(emulator.Options{Token: token})
			hs := httptest.NewServer(emu)
			t.Cleanup(hs.Close)
			cfg, err := loadConfig([]string{
				"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
				"--upstream-url=" + hs.URL, "--shutdown-timeout=5s",
			}, envMap(map[string]string{"GITHUB_TOKEN": tt.token}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			b := startBroker(t, cfg)
			if code, _ := b.adminGet(t, "/healthz"); code != http.StatusOK {
				t.Errorf("GET /healthz = %d, want 200", code)
			}
			if !b.logs.waitFor(tt.wantLog, 1, 30*time.Second) {
				t.Fatalf("no %q log line", tt.wantLog)
			}
			code, body := b.adminGet(t, "/readyz")
			if code != tt.wantCode || body != tt.wantReady {
				t.Errorf("GET /readyz = %d %q, want %d %q", code, body, tt.wantCode, tt.wantReady)
			}
			if n := emu.Count(emulator.RouteGetRateLimit); n != 1 {
				t.Errorf("GitHub saw %d credential checks, want 1", n)
			}
			b.stop(t, 10*time.Second)
			logs := b.logs.String()
			if n := strings.Count(logs, `"level":"ERROR"`); tt.wantCode == http.StatusOK && n != 0 || tt.wantCode != http.StatusOK && n != 1 {
				t.Errorf("%d ERROR log lines", n)
			}
			for _, planted := range []string{token, tt.token} {
				if strings.Contains(logs, planted) || strings.Contains(body, planted) {
					t.Errorf("a token reached the logs or /readyz")
				}
			}
		})
	}
}

// TestReadyzShutdown: /readyz answers 503 from the moment shutdown begins,
// while a slow request holds the drain and before run returns.
func TestReadyzShutdown(t *testing.T) {
	gh := newFakeGitHub(t)
	b := startBroker(t, prodConfig(t, gh.URL, 10*time.Second))
	if !b.logs.waitFor("GitHub credential verified", 1, 30*time.Second) {
		t.Fatal("the credential was never verified")
	}
	if code, body := b.adminGet(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("GET /readyz before shutdown = %d %q, want 200", code, body)
	}

	res := make(chan int, 1)
	go func() {
		resp, err := b.http.Get("http://" + b.httpAddr + "/v1/orgs/acme/actions/secrets/public-key")
		if err != nil {
			res <- 0
			return
		}
		resp.Body.Close()
		res <- resp.StatusCode
	}()
	select {
	case <-gh.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached GitHub")
	}

	// Readiness turns before gRPC health does, so NOT_SERVING means
	// /readyz says 503 already.
	b.cancelUntilNotServing(t)

	code, body := b.adminGet(t, "/readyz")
	if code != http.StatusServiceUnavailable || body != "shutting down\n" {
		t.Errorf("GET /readyz during shutdown = %d %q, want 503 \"shutting down\"", code, body)
	}
	if code, _ := b.adminGet(t, "/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz during shutdown = %d, want 200: the process still serves", code)
	}
	select {
	case err := <-b.done:
		t.Fatalf("run returned (%v) with a request in flight", err)
	default:
	}

	gh.unblock()
	if code := <-res; code != http.StatusOK {
		t.Errorf("in-flight request = %d, want 200", code)
	}
	b.stop(t, 5*time.Second)
	if _, err := http.Get("http://" + b.adminAddr + "/healthz"); err == nil {
		t.Errorf("the admin listener still serves after run returned")
	}
}

// TestReadinessStates: the reasons, in order of precedence.
func TestReadinessStates(t *testing.T) {
	r := newReadiness(true)
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, reasonStarting},
		{r.setServing, reasonUnverified},
		{func() { r.setCredential("") }, ""},
		{r.setShuttingDown, reasonShuttingDown},
		{func() { r.setCredential("") }, reasonShuttingDown},
	}
	for i, s := range steps {
		s.do()
		if got := r.state(); got != s.want {
			t.Errorf("step %d: state %q, want %q", i, got, s.want)
		}
	}
	dev := newReadiness(false)
	dev.setServing()
	if got := dev.state(); got != "" {
		t.Errorf("without a credential check: state %q, want ready", got)
	}
}

// verifyScript is a credential check that answers from a script, one
// error per call, recording when each call came.
type verifyScript struct {
	mu    sync.Mutex
	errs  []error
	calls []time.Time
}

func (v *verifyScript) verify(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, time.Now())
	if len(v.errs) == 0 {
		return errors.New("script exhausted")
	}
	err := v.errs[0]
	v.errs = v.errs[1:]
	return err
}

// TestVerifyCredentialRetries runs the check loop in fake time: failures
// that say nothing of the credential are retried every interval, with the
// reason in /readyz; a 401 or 403 is in /readyz and logged at ERROR once,
// and checked again every interval, so that a rotated credential makes
// the broker ready; success makes the broker ready.
func TestVerifyCredentialRetries(t *testing.T) {
	unreachable := errors.New(`github: GET /rate_limit: sending the request: dial tcp 127.0.0.1:1: connect: connection refused`)
	tests := []struct {
		name       string
		errs       []error
		wantCalls  int
		wantState  string
		wantErrors int    // ERROR log lines
		wantFirst  string // the state after the first check, when it failed; "" for the unverified reason
	}{
		{"verified at once", []error{nil}, 1, "", 0, ""},
		{"unreachable, then verified", []error{unreachable, unreachable, nil}, 3, "", 0, ""},
		{"unreachable, then refused, then rotated", []error{unreachable, &upstream.Error{StatusCode: http.StatusUnauthorized},
			&upstream.Error{StatusCode: http.StatusUnauthorized}, nil}, 4, "", 1, ""},
		{"forbidden, then rotated", []error{&upstream.Error{StatusCode: http.StatusForbidden}, nil}, 2, "", 1, "the GitHub credential was refused (403)"},
		{"rate limited is retried", []error{&upstream.Error{StatusCode: http.StatusForbidden, RateLimited: true}, nil}, 2, "", 0, ""},
		{"server error is retried", []error{&upstream.Error{StatusCode: http.StatusBadGateway}, nil}, 2, "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var logs syncBuffer
				logger := slog.New(slog.NewJSONHandler(&logs, nil))
				r := newReadiness(true)
				r.setServing()
				v := &verifyScript{errs: tt.errs}
				done := make(chan struct{})
				start := time.Now()
				go func() {
					r.verifyCredential(t.Context(), v.verify, credentialRetryInterval, logger)
					close(done)
				}()
				synctest.Wait()
				if len(tt.errs) > 1 {
					// After the first failure: not ready, with the reason.
					got := r.state()
					if tt.wantFirst != "" && got != tt.wantFirst {
						t.Errorf("after a refused check: state %q, want %q", got, tt.wantFirst)
					}
					if tt.wantFirst == "" && (!strings.HasPrefix(got, reasonUnverified+": ") || strings.Contains(got, "\n")) {
						t.Errorf("after a failed check: state %q, want the unverified reason on one line", got)
					}
				}
				<-done
				if got := r.state(); got != tt.wantState {
					t.Errorf("state %q, want %q", got, tt.wantState)
				}
				if len(v.calls) != tt.wantCalls {
					t.Fatalf("%d checks, want %d", len(v.calls), tt.wantCalls)
				}
				for i, at := range v.calls {
					if want := start.Add(time.Duration(i) * credentialRetryInterval); !at.Equal(want) {
						t.Errorf("check %d at +%s, want +%s", i, at.Sub(start), want.Sub(start))
					}
				}
				if n := strings.Count(logs.String(), `"level":"ERROR"`); n != tt.wantErrors {
					t.Errorf("%d ERROR log lines, want %d:\n%s", n, tt.wantErrors, logs.String())
				}
			})
		})
	}

	t.Run("stops with its context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newReadiness(true)
			r.setServing()
			ctx, cancel := context.WithCancel(t.Context())
			v := &verifyScript{errs: []error{unreachable, unreachable, unreachable}}
			done := make(chan struct{})
			go func() {
				r.verifyCredential(ctx, v.verify, credentialRetryInterval, slog.New(slog.DiscardHandler))
				close(done)
			}()
			synctest.Wait() // the first check failed; the loop waits
			cancel()
			<-done
			if len(v.calls) != 1 {
				t.Errorf("%d checks, want 1", len(v.calls))
			}
		})
	})
}

func TestOneLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb\r\n  c\t", "a b c"},
		{strings.Repeat("é", 400), strings.Repeat("é", maxReasonBytes/2)},
	}
	for _, tt := range tests {
		if got := oneLine(tt.in); got != tt.want {
			t.Errorf("oneLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := oneLine(strings.Repeat("x", 1000)); len(got) != maxReasonBytes {
		t.Errorf("oneLine of 1000 bytes is %d bytes, want %d", len(got), maxReasonBytes)
	}
}

// TestAdminConfig covers --admin-addr and --admin-pprof.
func TestAdminConfig(t *testing.T) {
	prodEnv := map[string]string{"GITHUB_TOKEN": testToken}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantAddr  string
		wantPprof bool
		wantErr   []string // substrings of the error; nil for none
	}{
		{name: "defaults", args: []string{"--grpc-addr=127.0.0.1:9090", "--http-addr=127.0.0.1:8080"}, env: prodEnv,
			wantAddr: ":9091"},
		{name: "flags", args: []string{"--grpc-addr=127.0.0.1:9090", "--http-addr=127.0.0.1:8080", "--admin-addr=10.0.0.5:7000", "--admin-pprof"},
			env: prodEnv, wantAddr: "10.0.0.5:7000", wantPprof: true},
		{name: "environment", args: []string{"--grpc-addr=127.0.0.1:9090", "--http-addr=127.0.0.1:8080"},
			env:      map[string]string{"GITHUB_TOKEN": testToken, "SECRETBROKER_ADMIN_ADDR": ":7001", "SECRETBROKER_ADMIN_PPROF": "true"},
			wantAddr: ":7001", wantPprof: true},
		{name: "dev binds loopback", args: []string{"--dev"}, wantAddr: "127.0.0.1:9091"},
		{name: "dev keeps a loopback host", args: []string{"--dev", "--admin-addr=[::1]:0"}, wantAddr: "[::1]:0"},
		{name: "dev refuses another host", args: []string{"--dev", "--admin-addr=0.0.0.0:9091"},
			wantErr: []string{"--admin-addr", "loopback"}},
		{name: "not an address", args: []string{"--grpc-addr=127.0.0.1:9090", "--http-addr=127.0.0.1:8080", "--admin-addr=9091"},
			env: prodEnv, wantErr: []string{"--admin-addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(tt.args, envMap(tt.env), io.Discard)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("loadConfig = nil error, want one naming %v", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.AdminAddr != tt.wantAddr || cfg.AdminPprof != tt.wantPprof {
				t.Errorf("AdminAddr %q AdminPprof %v, want %q %v", cfg.AdminAddr, cfg.AdminPprof, tt.wantAddr, tt.wantPprof)
			}
			if s := cfg.String(); !strings.Contains(s, "admin_addr:"+tt.wantAddr) {
				t.Errorf("String() = %s, want admin_addr", s)
			}
		})
	}
}
