package upstream_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// uninstalling serves w's emulator, except that while gone is set the app
// is uninstalled from octo-org: its installation lookups (as an
// organization and as a user) and its installation's token mints are
// answered 404.
type uninstalling struct {
	next    http.Handler
	gone    atomic.Bool
	refused atomic.Int64 // lookups answered 404
}

func (u *uninstalling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/orgs/octo-org/installation", "/users/octo-org/installation", "/app/installations/1/access_tokens":
	default:
		u.next.ServeHTTP(w, r)
		return
	}
	if u.gone.Load() {
		if r.URL.Path == "/orgs/octo-org/installation" {
			u.refused.Add(1)
		}
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	u.next.ServeHTTP(w, r)
}

// bodyCounter counts the answers' bodies its transport hands out and how
// many of them were closed.
type bodyCounter struct {
	rt             http.RoundTripper
	opened, closed atomic.Int64
}

func (b *bodyCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(r)
	if err == nil && resp.Body != nil {
		b.opened.Add(1)
		resp.Body = &countedBody{ReadCloser: resp.Body, closed: &b.closed}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	once   sync.Once
	closed *atomic.Int64
}

func (c *countedBody) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.ReadCloser.Close()
}

// An installation GitHub no longer has (the app uninstalled from the
// owner): the token mint's 404 is the owner's NotInstalledError, never a
// 404 a caller could take for its secret's; the app forgets the
// installation, so the next call looks the owner up again (and works
// once the app is installed again); and the refused mint's answer is
// closed, as every other answer of the app's own requests.
func TestAppUninstalledInstallation(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		const lifetime = 10 * time.Minute
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, lifetime, upstream.DefaultPacing())
		u := &uninstalling{next: w.emu}
		bodies := &bodyCounter{rt: &memTransport{h: u, auth: map[string]bool{}}}
		keyFile := filepath.Join(t.TempDir(), "app.pem")
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKeyFile: keyFile, BaseURL: memRoot, Transport: bodies})
		if err != nil {
			t.Fatal(err)
		}
		client := newClient(t, upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: bodies}})
		lookups := func() int { return w.emu.Count(emulator.RouteGetOrgInstallation) }

		if _, err := client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatalf("installed: %v", err)
		}
		if n := lookups(); n != 1 {
			t.Fatalf("%d lookups, want 1", n)
		}

		// Uninstalled once the token has expired: the next call mints.
		u.gone.Store(true)
		time.Sleep(lifetime)
		_, err = client.GetPublicKey(t.Context(), orgScope)
		wantNotInstalled(t, "after the uninstall", err)
		// Forgotten: the owner is looked up again, and is not installed.
		_, err = client.GetPublicKey(t.Context(), orgScope)
		wantNotInstalled(t, "the call after", err)
		if n := u.refused.Load(); n != 1 {
			t.Errorf("%d lookups while uninstalled, want 1 (the call after the refused mint)", n)
		}

		// Not installed is remembered for 5 s: calls meanwhile are
		// answered so without a lookup, even once the app is installed
		// again; the first call after looks it up, and works.
		_, err = client.GetPublicKey(t.Context(), orgScope)
		wantNotInstalled(t, "a call within 5 s", err)
		u.gone.Store(false)
		time.Sleep(5*time.Second - time.Millisecond)
		_, err = client.GetPublicKey(t.Context(), orgScope)
		wantNotInstalled(t, "installed again, a millisecond before the 5 s end", err)
		if n := u.refused.Load(); n != 1 {
			t.Errorf("%d lookups while uninstalled, want 1 (remembered for 5 s)", n)
		}
		if n := lookups(); n != 1 {
			t.Errorf("%d lookups reached the emulator within the 5 s, want 1 (the first)", n)
		}
		time.Sleep(time.Millisecond)
		if _, err := client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatalf("installed again, 5 s on: %v", err)
		}
		if n := lookups(); n != 2 {
			t.Errorf("%d lookups reached the emulator, want 2 (the first, and the one after the reinstall)", n)
		}
		if o, c := bodies.opened.Load(), bodies.closed.Load(); o != c {
			t.Errorf("%d answers' bodies, %d closed", o, c)
		}
	})
}

// The app's JWTs, its own and those ghinstallation signs for lookups and
// mints, are issued 60 s in the past and expire 5 min ahead, as GitHub's
// App documentation recommends: a clock up to a minute ahead of GitHub's
// still works.
func TestAppJWTTimes(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		var seen []string
		var mu sync.Mutex
		w.tr.h = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if a := r.Header.Get("Authorization"); len(a) > len("Bearer ") && a[:len("Bearer ")] == "Bearer " {
				mu.Lock()
				seen = append(seen, a[len("Bearer "):])
				mu.Unlock()
			}
			w.emu.ServeHTTP(rw, r)
		})
		if err := w.client.VerifyCredential(t.Context()); err != nil { // GET /app with the app's own JWT
			t.Fatal(err)
		}
		if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil { // a lookup and a mint
			t.Fatal(err)
		}
		now := time.Now()
		jwts := 0
		for _, tok := range seen {
			var claims jwt.RegisteredClaims
			parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
			if _, err := parser.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil }); err != nil {
				continue // an installation token, not a JWT
			}
			jwts++
			if got, want := claims.IssuedAt.Time, now.Add(-60*time.Second); !got.Equal(want) {
				t.Errorf("iat %v, want %v (60 s back)", got, want)
			}
			if got, want := claims.ExpiresAt.Time, now.Add(5*time.Minute); !got.Equal(want) {
				t.Errorf("exp %v, want %v (5 min ahead)", got, want)
			}
		}
		if jwts < 3 {
			t.Errorf("%d JWTs seen, want the app's own, the lookup's and the mint's", jwts)
		}
	})
}

// octoCred returns octo-org's credential (installation 1) of a new App
// whose own requests go to rt.
func octoCred(t *testing.T, key *rsa.PrivateKey, rt http.RoundTripper) credential.Credential {
	t.Helper()
	app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKey: key, BaseURL: memRoot, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := app.For(t.Context(), "octo-org", "")
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// mintStub answers installation 1's token mints itself: with 403 (a
// suspended installation: a failure that is not transient, so it is
// remembered for mintRetry) while fail is set, after waiting for release while hang is set, else as the
// emulator does. It counts the mints that reached it.
type mintStub struct {
	next    http.Handler
	fail    atomic.Bool
	hang    atomic.Bool
	release chan struct{}
	mints   atomic.Int64
}

func (m *mintStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/app/installations/1/access_tokens" {
		m.next.ServeHTTP(w, r)
		return
	}
	m.mints.Add(1)
	if m.hang.Load() {
		<-m.release
	}
	if m.fail.Load() {
		http.Error(w, `{"message":"This installation has been suspended"}`, http.StatusForbidden)
		return
	}
	m.next.ServeHTTP(w, r)
}

// Calls that want an installation's token at once share one mint; a
// failed mint is every call's answer for mintRetry (5 s), with no mint
// meanwhile; a call whose context ends while a mint hangs stops waiting
// at once, and the mint goes on for the others.
func TestAppMintsShared(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		stub := &mintStub{next: w.emu, release: make(chan struct{})}
		cred := octoCred(t, key, &memTransport{h: stub, auth: map[string]bool{}})
		tokens := func(n int) []error {
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { _, errs[i] = cred.Token(t.Context()) })
			}
			wg.Wait()
			return errs
		}

		// Failing: eight calls at once, one mint; all eight fail.
		stub.fail.Store(true)
		stub.hang.Store(true)
		done := make(chan []error)
		go func() { done <- tokens(8) }()
		synctest.Wait() // all eight wait for the one hanging mint
		close(stub.release)
		stub.hang.Store(false)
		for i, err := range <-done {
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Errorf("call %d: %v, want the mint's 403", i, err)
			}
		}
		if n := stub.mints.Load(); n != 1 {
			t.Fatalf("%d mints for eight calls at once, want 1", n)
		}
		// Within mintRetry: the same error, no mint.
		time.Sleep(4 * time.Second)
		if _, err := cred.Token(t.Context()); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("within 5 s of the failure: %v, want the mint's 403", err)
		}
		if n := stub.mints.Load(); n != 1 {
			t.Errorf("%d mints within 5 s of the failure, want 1", n)
		}
		// After it, and GitHub better: one mint, and a token.
		time.Sleep(time.Second)
		stub.fail.Store(false)
		for i, err := range tokens(4) {
			if err != nil {
				t.Errorf("after the retry delay, call %d: %v", i, err)
			}
		}
		if n := stub.mints.Load(); n != 2 {
			t.Errorf("%d mints, want 2", n)
		}
	})
}

// A call whose context ends while the installation's mint hangs returns
// then, with its context's error; the mint goes on, and serves the calls
// still waiting.
func TestAppMintWaitEndsWithContext(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		stub := &mintStub{next: w.emu, release: make(chan struct{})}
		stub.hang.Store(true)
		cred := octoCred(t, key, &memTransport{h: stub, auth: map[string]bool{}})
		patient := make(chan error, 1)
		go func() {
			_, err := cred.Token(t.Context())
			patient <- err
		}()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := cred.Token(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != time.Second {
			t.Errorf("impatient call: %v after %v, want its deadline after 1s", err, time.Since(start))
		}
		close(stub.release)
		if err := <-patient; err != nil {
			t.Errorf("the call that waited: %v", err)
		}
		if n := stub.mints.Load(); n != 1 {
			t.Errorf("%d mints, want 1", n)
		}
	})
}

// stallingTransport holds installation 1's token mints while stall is
// set, until the request's context ends, as a connection whose answer
// never comes would; other requests go on to rt.
type stallingTransport struct {
	rt    http.RoundTripper
	stall atomic.Bool
	mints atomic.Int64
}

func (s *stallingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/app/installations/1/access_tokens" {
		s.mints.Add(1)
		if s.stall.Load() {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
	}
	return s.rt.RoundTrip(r)
}

// A mint whose answer never comes ends after 30 s (mintTimeout), though
// no caller's context ends it; 5 s later the next call mints again.
func TestAppStalledMint(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		tr := &stallingTransport{rt: &memTransport{h: w.emu, auth: map[string]bool{}}}
		tr.stall.Store(true)
		cred := octoCred(t, key, tr)
		start := time.Now()
		if _, err := cred.Token(t.Context()); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 30*time.Second {
			t.Fatalf("stalled mint: %v after %v, want a deadline after 30s", err, time.Since(start))
		}
		tr.stall.Store(false)
		time.Sleep(5 * time.Second)
		if _, err := cred.Token(t.Context()); err != nil {
			t.Fatalf("after the stall: %v", err)
		}
		if n := tr.mints.Load(); n != 2 {
			t.Errorf("%d mints, want 2", n)
		}
	})
}

// A private key put right ends a failed mint's 5 s of answers at once, even
// when another JWT (the app's own, here) read the new key first.
func TestAppKeyFixedElsewhere(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	_, wrongPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		keyFile := filepath.Join(t.TempDir(), "app.pem")
		if err := os.WriteFile(keyFile, wrongPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKeyFile: keyFile, BaseURL: memRoot,
			Transport: w.tr, InstallationID: 1})
		if err != nil {
			t.Fatal(err)
		}
		cred, err := app.For(t.Context(), "octo-org", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cred.Token(t.Context()); err == nil {
			t.Fatal("a wrong key minted a token")
		}
		time.Sleep(time.Second) // the file's next version has a later modification time
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		probe, _ := app.Probe()
		if _, err := probe.Token(t.Context()); err != nil { // signs the app's JWT: reads the new key
			t.Fatal(err)
		}
		if _, err := cred.Token(t.Context()); err != nil {
			t.Errorf("the token within 5 s of the failure, after the key was put right: %v", err)
		}
		if n := w.emu.AppStats().TokensMinted; n != 1 {
			t.Errorf("%d tokens minted, want 1", n)
		}
	})
}

// An uninstall noticed by the renewal after a 401 (GitHub refused the
// token it had, then answered the new mint 404) is the owner's
// NotInstalledError too, not the 401.
func TestAppUninstallNoticedByRenewal(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		u := &uninstalling{next: w.emu}
		tr := &memTransport{h: u, auth: map[string]bool{}}
		app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKey: key, BaseURL: memRoot, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		client := newClient(t, upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: tr}})
		if _, err := client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatalf("installed: %v", err)
		}
		u.gone.Store(true)
		w.emu.ExpireTokens() // the token it has is refused: 401, then a mint
		_, err = client.GetPublicKey(t.Context(), orgScope)
		wantNotInstalled(t, "after the uninstall", err)
	})
}

// wantNotInstalled fails t unless err is octo-org's NotInstalledError,
// and no *upstream.Error, which a caller could take for its secret's.
func wantNotInstalled(t *testing.T, what string, err error) {
	t.Helper()
	var ni *upstream.NotInstalledError
	if !errors.As(err, &ni) || ni.Account != "octo-org" {
		t.Fatalf("%s: %v, want a NotInstalledError naming octo-org", what, err)
	}
	if ge, ok := errors.AsType[*upstream.Error](err); ok {
		t.Errorf("%s: an *upstream.Error %d", what, ge.StatusCode)
	}
}

// A repository GitHub does not have, asked about before anything of its
// owner's: the repository's installation lookup answers 404, the app
// falls back to the owner's installation, and the call gets GitHub's own
// 404 for the repository, not "not installed". The owner's installation
// is then cached for its other repositories. An owner without any
// installation is still a NotInstalledError.
func TestAppMissingRepositoryOfInstalledOwner(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		missing := upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "no-such-repo"}
		_, err := w.client.GetPublicKey(t.Context(), missing)
		var ge *upstream.Error
		if !errors.As(err, &ge) || ge.StatusCode != http.StatusNotFound {
			t.Fatalf("GetPublicKey(%v) = %v, want GitHub's 404", missing, err)
		}
		if _, ok := errors.AsType[*upstream.NotInstalledError](err); ok {
			t.Fatalf("GetPublicKey(%v) = %v, a NotInstalledError for an installed owner", missing, err)
		}
		if _, err := w.client.GetPublicKey(t.Context(), repoScope); err != nil {
			t.Fatalf("GetPublicKey(%v): %v", repoScope, err)
		}
		repoLookups, orgLookups := w.emu.Count(emulator.RouteGetRepoInstallation), w.emu.Count(emulator.RouteGetOrgInstallation)
		if repoLookups != 1 || orgLookups != 1 {
			t.Errorf("%d repository and %d organization installation lookups, want 1 and 1 (then cached)", repoLookups, orgLookups)
		}

		nobody := upstream.Scope{App: upstream.Actions, Owner: "initech", Repo: "tps"}
		w.emu.AddRepo("initech", "tps", false)
		_, err = w.client.GetPublicKey(t.Context(), nobody)
		if ni, ok := errors.AsType[*upstream.NotInstalledError](err); !ok || ni.Account != "initech" {
			t.Fatalf("GetPublicKey(%v) = %v, want a NotInstalledError naming initech", nobody, err)
		}
		if n := w.emu.Count(emulator.RouteGetUserInstallation); n != 1 {
			t.Errorf("%d user installation lookups, want 1 (the last fallback for initech)", n)
		}
	})
}
