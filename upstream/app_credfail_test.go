package upstream_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// appRequests are the app's own requests an organization's call makes:
// the installation lookup and the token mint.
var appRequests = []struct {
	name, route, template, method string
}{
	{"lookup", emulator.RouteGetOrgInstallation, "/orgs/{org}/installation", http.MethodGet},
	{"mint", emulator.RouteCreateInstallationToken, "/app/installations/{installation_id}/access_tokens", http.MethodPost},
}

// GitHub refusing the app's installation lookup or token mint for a
// secondary rate limit (403, Retry-After: 60) reaches the caller as a
// rate limit (*Error RateLimited, which the service answers
// RESOURCE_EXHAUSTED with RetryInfo), its RetryAfter the time left; calls
// made meanwhile send that request no more, and the first call after the
// minute does.
func TestAppCredentialRateLimitHoldsItsRequest(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	for _, ar := range appRequests {
		t.Run(ar.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
				// One refusal: GitHub would answer the next request, so
				// any sent within the minute makes a call succeed.
				w.emu.InjectFault(emulator.Fault{Route: ar.route, Status: http.StatusForbidden,
					Body: secondaryLimitBody, Header: http.Header{"Retry-After": {"60"}}})
				start := time.Now()
				for range 60 {
					_, err := w.client.GetPublicKey(t.Context(), orgScope)
					elapsed := time.Since(start)
					ge, ok := errors.AsType[*upstream.Error](err)
					if !ok || !ge.RateLimited || ge.StatusCode != http.StatusForbidden || ge.Route != ar.template || ge.Method != ar.method {
						t.Fatalf("call at %v: %v, want a rate-limited 403 of %s %s", elapsed, err, ar.method, ar.template)
					}
					if want := time.Minute - elapsed; ge.RetryAfter != want {
						t.Errorf("call at %v: RetryAfter %v, want %v", elapsed, ge.RetryAfter, want)
					}
					for _, cred := range w.tr.seen() {
						if strings.Contains(err.Error(), cred) {
							t.Fatalf("the error holds a credential: %v", err)
						}
					}
					time.Sleep(time.Second)
				}
				if n := w.emu.Count(ar.route); n != 1 {
					t.Errorf("%s sent %d times within the minute GitHub asked for, want 1", ar.name, n)
				}
				if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil {
					t.Fatalf("after the minute: %v", err)
				}
				if n := w.emu.Count(ar.route); n != 2 {
					t.Errorf("%s sent %d times, want 2", ar.name, n)
				}
			})
		})
	}
}

// dropTransport fails the first drops requests whose path ends in suffix
// with a reset connection, and passes the rest on.
type dropTransport struct {
	next   http.RoundTripper
	suffix string
	drops  atomic.Int64
}

func (d *dropTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, d.suffix) && d.drops.Add(-1) >= 0 {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	return d.next.RoundTrip(r)
}

// appClient returns a client of w's emulator whose GitHub App (installed
// as w's) sends its own requests through appTransport.
func appClient(t *testing.T, w *appWorld, key *rsa.PrivateKey, appTransport http.RoundTripper, pacing upstream.Pacing) *upstream.Client {
	t.Helper()
	app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKey: key, BaseURL: memRoot, Transport: appTransport})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: w.tr}, Pacing: &pacing})
}

// A transient failure of the app's installation lookup or token mint (500,
// 502, 503, 504, a reset connection) is retried like a failed attempt,
// with the backoff, within MaxAttempts: the call succeeds when GitHub
// answers the retry, and fails with the failure after MaxAttempts
// lookups or mints (none answered from a cache meanwhile).
func TestAppCredentialTransientFailureRetried(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	type failure struct {
		status int // else a reset connection
		times  int
	}
	tests := []struct {
		name        string
		request     int // of appRequests
		fail        failure
		maxAttempts int
		wantSent    int    // of the failing request
		wantErr     string // "" for success
	}{
		{name: "mint 500", request: 1, fail: failure{500, 1}, maxAttempts: 5, wantSent: 2},
		{name: "mint 502", request: 1, fail: failure{502, 1}, maxAttempts: 5, wantSent: 2},
		{name: "mint 503", request: 1, fail: failure{503, 1}, maxAttempts: 5, wantSent: 2},
		{name: "mint 504", request: 1, fail: failure{504, 1}, maxAttempts: 5, wantSent: 2},
		{name: "mint reset", request: 1, fail: failure{0, 1}, maxAttempts: 5, wantSent: 2},
		{name: "lookup 502", request: 0, fail: failure{502, 1}, maxAttempts: 5, wantSent: 2},
		{name: "lookup reset", request: 0, fail: failure{0, 1}, maxAttempts: 5, wantSent: 2},
		{name: "mint 502 three times", request: 1, fail: failure{502, 3}, maxAttempts: 5, wantSent: 4},
		{name: "mint 502 throughout", request: 1, fail: failure{502, 100}, maxAttempts: 3, wantSent: 3, wantErr: "502 Bad Gateway"},
		{name: "lookup reset throughout", request: 0, fail: failure{0, 100}, maxAttempts: 3, wantSent: 3, wantErr: "connection reset"},
		{name: "one attempt", request: 1, fail: failure{502, 1}, maxAttempts: 1, wantSent: 1, wantErr: "502 Bad Gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ar := appRequests[tc.request]
				w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
				pacing := upstream.DefaultPacing()
				pacing.MaxAttempts = tc.maxAttempts
				suffix := "/installation"
				if ar.name == "mint" {
					suffix = "/access_tokens"
				}
				drop := &dropTransport{next: w.tr, suffix: suffix}
				if tc.fail.status == 0 {
					drop.drops.Store(int64(tc.fail.times))
				} else {
					w.emu.InjectFault(emulator.Fault{Route: ar.route, Status: tc.fail.status, Times: tc.fail.times})
				}
				client := appClient(t, w, key, drop, pacing)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
				defer cancel()
				_, err := client.GetPublicKey(ctx, orgScope)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("GetPublicKey: %v, want success after the retry", err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Fatalf("GetPublicKey: %v, want an error saying %q", err, tc.wantErr)
				}
				sent := w.emu.Count(ar.route) // the emulator sees no dropped request
				if tc.fail.status == 0 {
					left := max(drop.drops.Load(), 0)
					sent += tc.fail.times - int(left)
				}
				if sent != tc.wantSent {
					t.Errorf("%s sent %d times, want %d", ar.name, sent, tc.wantSent)
				}
				if got, want := client.PacerStats().Retries, tc.wantSent-1; got != want {
					t.Errorf("%d retries, want %d", got, want)
				}
			})
		})
	}
}

// A call whose token GitHub refuses (401) while another call renews the
// installation's token waits for that renewal only until its deadline,
// and then fails with its context's error; the other's renewal goes on.
func TestAppRenewWaitEndsWithCallerDeadline(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatal(err)
		}
		gate := make(chan struct{})
		var blockMint atomic.Bool
		emu := w.tr.h
		w.tr.h = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if blockMint.Load() && strings.HasSuffix(r.URL.Path, "/access_tokens") {
				<-gate
			}
			emu.ServeHTTP(rw, r)
		})
		w.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgPublicKey, Status: http.StatusUnauthorized, Body: `{"message":"Bad credentials"}`})
		w.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetRepoPublicKey, Status: http.StatusUnauthorized, Body: `{"message":"Bad credentials"}`})
		blockMint.Store(true)
		var wg sync.WaitGroup
		var firstErr error
		wg.Go(func() { _, firstErr = w.client.GetPublicKey(context.Background(), orgScope) })
		synctest.Wait() // the first call's renewal mint waits at the gate

		// The second call (the same installation: octo-org's
		// repository) is refused too, and waits for the renewal.
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := w.client.GetPublicKey(ctx, repoScope)
		if took := time.Since(start); took != 300*time.Millisecond {
			t.Errorf("the second call returned after %v, want its deadline's 300ms", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the second call: %v, want its deadline", err)
		}
		if n := w.emu.Count(emulator.RouteGetRepoPublicKey); n != 1 {
			t.Errorf("the second call sent %d requests, want 1 (refused)", n)
		}
		close(gate)
		wg.Wait()
		if firstErr != nil {
			t.Errorf("the first call, after its renewal: %v", firstErr)
		}
	})
}
