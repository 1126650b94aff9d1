package credential_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

const secondaryLimit = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`

// memTransport serves the app's requests in memory with h, so that the
// app and the emulator share one synctest bubble. It records every
// credential it carries.
type memTransport struct {
	h    http.Handler
	mu   sync.Mutex
	auth []string
}

func (t *memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.Host = r.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	if a := r.Header.Get("Authorization"); a != "" {
		_, cred, _ := strings.Cut(a, " ")
		t.mu.Lock()
		t.auth = append(t.auth, cred)
		t.mu.Unlock()
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return rec.Result(), nil
}

// noCredentialIn fails t when s holds a credential tr carried (the app's
// JWTs, installation tokens).
func (t *memTransport) noCredentialIn(tb testing.TB, s string) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.auth {
		if c != "" && strings.Contains(s, c) {
			tb.Errorf("%q holds a credential the app sent", s)
		}
	}
}

// memApp is an emulator hosting app 77, installed on acme (installation
// 5) and octocat (6), and an app that reaches it in memory: fixed to
// installationID when positive.
type memApp struct {
	emu *emulator.Server
	tr  *memTransport
	app *credential.App
}

func newMemApp(t *testing.T, installationID int64) *memApp {
	t.Helper()
	key, _ := newKey(t)
	emu := emulator.New(emulator.Options{App: &emulator.App{ID: 77, PublicKey: &key.PublicKey, Installations: []emulator.Installation{
		{ID: 5, Account: "acme"}, {ID: 6, Account: "octocat"},
	}}})
	emu.AddOrg("acme")
	emu.AddOrg("octocat")
	tr := &memTransport{h: emu}
	a, err := credential.NewApp(credential.AppConfig{AppID: 77, PrivateKey: key, InstallationID: installationID, BaseURL: "http://github.test", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return &memApp{emu: emu, tr: tr, app: a}
}

// resetIn is an x-ratelimit-reset header value d from now.
func resetIn(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }

// answer is one refusal GitHub gives to one of the app's own requests,
// and what the app makes of it.
type answer struct {
	name   string
	status int
	body   string
	header func() http.Header // called in the bubble, at the refusal's time
	// limited: the *HTTPError is RateLimited, with RetryAt wait after
	// the answer; held: how long the answer is the app's without
	// asking GitHub again (0: the next call asks).
	limited bool
	wait    time.Duration
	held    time.Duration
}

func (a answer) fault(route string) emulator.Fault {
	f := emulator.Fault{Route: route, Status: a.status, Body: a.body}
	if a.header != nil {
		f.Header = a.header()
	}
	return f
}

// checkHTTPError checks that err is the *HTTPError a says, for route.
func checkHTTPError(t *testing.T, err error, a answer, method, route string, answeredAt time.Time) {
	t.Helper()
	he, ok := errors.AsType[*credential.HTTPError](err)
	if !ok {
		t.Fatalf("error %v, want a *credential.HTTPError", err)
	}
	if he.Method != method || he.Route != route || he.StatusCode != a.status {
		t.Errorf("HTTPError %s %s %d, want %s %s %d", he.Method, he.Route, he.StatusCode, method, route, a.status)
	}
	if he.RateLimited != a.limited {
		t.Errorf("RateLimited = %v, want %v", he.RateLimited, a.limited)
	}
	var wait time.Duration
	if !he.RetryAt.IsZero() {
		wait = he.RetryAt.Sub(answeredAt)
	}
	if wait != a.wait {
		t.Errorf("RetryAt is %v after the answer, want %v", wait, a.wait)
	}
}

// rateLimitAnswers are the refusals both the lookup and the mint are
// tested with; held is for a lookup (a mint holds any refusal that is not
// transient for at least mintRetry, 5 s).
var rateLimitAnswers = []answer{
	{name: "secondary limit, Retry-After 60", status: 403, body: secondaryLimit,
		header: func() http.Header { return http.Header{"Retry-After": {"60"}} }, limited: true, wait: time.Minute, held: time.Minute},
	{name: "secondary limit, no hint", status: 403, body: secondaryLimit, limited: true, wait: time.Minute, held: time.Minute},
	{name: "429, Retry-After 30", status: 429,
		header: func() http.Header { return http.Header{"Retry-After": {"30"}} }, limited: true, wait: 30 * time.Second, held: 30 * time.Second},
	{name: "primary quota used up", status: 403, body: `{"message":"API rate limit exceeded for installation."}`,
		header: func() http.Header {
			return http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {resetIn(90 * time.Second)}}
		}, limited: true, wait: 90*time.Second + pace.ResetMargin, held: 90*time.Second + pace.ResetMargin},
	{name: "Retry-After before the reset", status: 403,
		header: func() http.Header {
			return http.Header{"Retry-After": {"20"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {resetIn(time.Hour)}}
		}, limited: true, wait: 20 * time.Second, held: 20 * time.Second},
	{name: "Retry-After 0", status: 429, header: func() http.Header { return http.Header{"Retry-After": {"0"}} }, limited: true},
	{name: "403, not a limit", status: 403, body: `{"message":"Resource not accessible by integration"}`},
}

// An installation lookup GitHub refuses for a rate limit is an *HTTPError
// that says so and until when; it is the answer for that owner and every
// other (GitHub counts the app's requests together), with no lookup sent,
// until then (and the next lookup is sent then). A refusal that is not a
// rate limit is not remembered.
func TestAppRateLimitedLookupRemembered(t *testing.T) {
	for _, a := range rateLimitAnswers {
		t.Run(a.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newMemApp(t, 0)
				m.emu.InjectFault(a.fault(emulator.RouteGetOrgInstallation))
				start := time.Now()
				_, err := m.app.For(t.Context(), "acme", "")
				checkHTTPError(t, err, a, http.MethodGet, "/orgs/{org}/installation", start)
				m.tr.noCredentialIn(t, err.Error())
				if a.held > 0 {
					time.Sleep(a.held - time.Second)
					_, again := m.app.For(t.Context(), "ACME", "")
					if he, ok := errors.AsType[*credential.HTTPError](again); !ok || !he.RateLimited {
						t.Errorf("%v after the refusal: %v, want the remembered refusal", time.Since(start), again)
					}
					if n := m.emu.Count(emulator.RouteGetOrgInstallation); n != 1 {
						t.Errorf("%d lookups for acme within %v of its refusal, want 1", n, a.held)
					}
					if _, err := m.app.For(t.Context(), "octocat", ""); !errors.Is(err, again) {
						t.Errorf("another owner meanwhile: %v, want the remembered refusal", err)
					}
					if n := m.emu.Count(emulator.RouteGetOrgInstallation); n != 1 {
						t.Errorf("%d organization lookups within %v of the refusal, want 1", n, a.held)
					}
					time.Sleep(time.Second)
				}
				c, err := m.app.For(t.Context(), "acme", "")
				if err != nil || c.Label() != "installation:5" {
					t.Fatalf("after the refusal's time: %v, %v; want installation:5", c, err)
				}
				if c, err := m.app.For(t.Context(), "octocat", ""); err != nil || c.Label() != "installation:6" {
					t.Errorf("another owner after the refusal's time: %v, %v; want installation:6", c, err)
				}
				if n := m.emu.Count(emulator.RouteGetOrgInstallation); n != 3 {
					t.Errorf("%d organization lookups, want 3 (acme's refused, acme's and octocat's)", n)
				}
			})
		})
	}
}

// A token mint GitHub refuses for a rate limit is an *HTTPError that says
// so and until when, and the answer to every call for a token (Renew's
// included), with no mint sent, until then, or for mintRetry (5 s) if that
// is longer; another refusal is remembered for mintRetry. A transient
// failure (500, 502, 503, 504) is not remembered: the next call mints.
func TestInstallationRateLimitedMintRemembered(t *testing.T) {
	answers := append([]answer(nil), rateLimitAnswers...)
	for i := range answers {
		answers[i].held = max(answers[i].held, 5*time.Second) // mintRetry
	}
	for _, status := range []int{500, 502, 503, 504} {
		answers = append(answers, answer{name: strconv.Itoa(status), status: status})
	}
	const mintRoute = "/app/installations/{installation_id}/access_tokens"
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newMemApp(t, 5)
				c, err := m.app.For(t.Context(), "acme", "")
				if err != nil {
					t.Fatal(err)
				}
				m.emu.InjectFault(a.fault(emulator.RouteCreateInstallationToken))
				start := time.Now()
				_, err = c.Token(t.Context())
				checkHTTPError(t, err, a, http.MethodPost, mintRoute, start)
				m.tr.noCredentialIn(t, err.Error())
				if a.held > 0 {
					time.Sleep(a.held - time.Second)
					_, again := c.Token(t.Context())
					if he, ok := errors.AsType[*credential.HTTPError](again); !ok || he.StatusCode != a.status {
						t.Errorf("%v after the refusal: %v, want the remembered refusal", time.Since(start), again)
					}
					if a.limited {
						if err := c.Renew(t.Context(), "refused"); !errors.Is(err, again) {
							t.Errorf("Renew during the rate limit: %v, want the remembered refusal", err)
						}
					}
					if n := m.emu.Count(emulator.RouteCreateInstallationToken); n != 1 {
						t.Errorf("%d mints within %v of the refusal, want 1", n, a.held)
					}
					time.Sleep(time.Second)
				}
				if _, err := c.Token(t.Context()); err != nil {
					t.Fatalf("after the refusal's time: %v", err)
				}
				if n := m.emu.Count(emulator.RouteCreateInstallationToken); n != 2 {
					t.Errorf("%d mints, want the refused one and one more", n)
				}
			})
		})
	}
}

// GitHub counts the app's JWT requests together: a mint refused for a
// rate limit holds the lookups for other owners until its Retry-After;
// then they go, and the mints too.
func TestAppRateLimitHoldsAllJWTRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemApp(t, 0)
		acme, err := m.app.For(t.Context(), "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		m.emu.InjectFault(emulator.Fault{Route: emulator.RouteCreateInstallationToken, Status: http.StatusForbidden,
			Body: secondaryLimit, Header: http.Header{"Retry-After": {"60"}}})
		_, refused := acme.Token(t.Context())
		he, ok := errors.AsType[*credential.HTTPError](refused)
		if !ok || !he.RateLimited {
			t.Fatalf("the mint: %v, want a rate-limited refusal", refused)
		}
		time.Sleep(59 * time.Second)
		if _, err := m.app.For(t.Context(), "octocat", ""); !errors.Is(err, he) {
			t.Errorf("another owner's lookup during the mint's rate limit: %v, want the refusal", err)
		}
		if n := m.emu.Count(emulator.RouteGetOrgInstallation); n != 1 {
			t.Errorf("%d organization lookups during the rate limit, want 1 (acme's, before it)", n)
		}
		time.Sleep(time.Second)
		octocat, err := m.app.For(t.Context(), "octocat", "")
		if err != nil || octocat.Label() != "installation:6" {
			t.Fatalf("another owner after the rate limit: %v, %v; want installation:6", octocat, err)
		}
		for _, c := range []credential.Credential{acme, octocat} {
			if _, err := c.Token(t.Context()); err != nil {
				t.Errorf("%s's token after the rate limit: %v", c.Label(), err)
			}
		}
		m.tr.noCredentialIn(t, refused.Error())
	})
}

// The hold is on the app's JWT requests only: an installation that holds
// a token not due for a refresh keeps using it while another owner's
// lookup is refused for a rate limit.
func TestAppRateLimitLeavesTokensInHand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemApp(t, 0)
		acme, err := m.app.For(t.Context(), "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		tok := mustToken(t, acme) // minted, valid for an hour
		m.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgInstallation, Status: http.StatusForbidden,
			Body: secondaryLimit, Header: http.Header{"Retry-After": {"60"}}})
		if _, err := m.app.For(t.Context(), "octocat", ""); err == nil {
			t.Fatal("octocat's lookup was not refused")
		}
		if got, err := acme.Token(t.Context()); err != nil || got != tok {
			t.Fatalf("acme's token in hand while another owner's lookup is rate limited: %v", err)
		}
	})
}

// Transient tells the failures worth retrying: 500, 502, 503 and 504, and
// a connection dropped, refused or reset, or a timeout; not other answers
// (a rate limit included), TLS failures or other errors.
func TestTransient(t *testing.T) {
	httpErr := func(status int) error {
		return fmt.Errorf("credential: GET /orgs/{org}/installation: %w", &credential.HTTPError{StatusCode: status})
	}
	urlErr := func(err error) error {
		return fmt.Errorf("credential: GET /orgs/{org}/installation: %w", &url.Error{Op: "Get", URL: "https://api.github.com/orgs/x/installation", Err: err})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"500", httpErr(500), true},
		{"502", httpErr(502), true},
		{"503", httpErr(503), true},
		{"504", httpErr(504), true},
		{"501", httpErr(501), false},
		{"401", httpErr(401), false},
		{"403", httpErr(403), false},
		{"404", httpErr(404), false},
		{"429", httpErr(429), false},
		{"reset", urlErr(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"refused", urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), true},
		{"unexpected EOF", urlErr(io.ErrUnexpectedEOF), true},
		{"timeout", urlErr(context.DeadlineExceeded), true},
		{"bad certificate", urlErr(x509.UnknownAuthorityError{}), false},
		{"other", errors.New("credential: something else"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := credential.Transient(tc.err); got != tc.want {
				t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// A Renew that waits while another renews stops waiting when its context
// ends, with its context's error; the other's renewal goes on.
func TestInstallationRenewWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemApp(t, 5)
		c, err := m.app.For(t.Context(), "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		old := mustToken(t, c)
		gate := make(chan struct{})
		emu := m.tr.h
		m.tr.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/access_tokens") {
				<-gate
			}
			emu.ServeHTTP(w, r)
		})
		first := make(chan error, 1)
		go func() { first <- c.Renew(context.Background(), old) }()
		synctest.Wait() // the first Renew's mint waits at the gate

		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err = c.Renew(ctx, old)
		if took := time.Since(start); took != 300*time.Millisecond {
			t.Errorf("the waiting Renew returned after %v, want its deadline's 300ms", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the waiting Renew: %v, want its deadline", err)
		}
		close(gate)
		if err := <-first; err != nil {
			t.Fatalf("the first Renew: %v", err)
		}
		if tok := mustToken(t, c); tok == old {
			t.Error("the first Renew kept the refused token")
		}
	})
}
