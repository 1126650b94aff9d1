package upstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

const (
	appID   = 9090
	memRoot = "http://github.test"
)

var (
	orgScope  = upstream.Scope{App: upstream.Actions, Org: "octo-org"}
	repoScope = upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world"}
	globex    = upstream.Scope{App: upstream.Actions, Org: "globex"}
	initech   = upstream.Scope{App: upstream.Actions, Org: "initech"}
)

// memTransport serves requests in memory with a handler, so that the
// client, the app's token minting and the emulator share one synctest
// bubble. It records every Authorization header it carries.
type memTransport struct {
	h    http.Handler
	mu   sync.Mutex
	auth map[string]bool
}

func (t *memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.Host = r.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	if a := r.Header.Get("Authorization"); a != "" {
		t.mu.Lock()
		_, cred, _ := strings.Cut(a, " ")
		t.auth[cred] = true
		t.mu.Unlock()
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return rec.Result(), nil
}

// seen returns every credential the transport carried.
func (t *memTransport) seen() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for a := range t.auth {
		out = append(out, a)
	}
	return out
}

func newRSAKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// appWorld is an emulator that hosts a GitHub App installed on octo-org
// (installation 1) and globex (installation 2), and a client that
// authenticates as the app, all in memory.
type appWorld struct {
	emu    *emulator.Server
	tr     *memTransport
	client *upstream.Client
	logs   *bytes.Buffer
	keyPEM []byte
}

func newAppWorld(t *testing.T, key *rsa.PrivateKey, keyPEM []byte, limits emulator.Limits, lifetime time.Duration, pacing upstream.Pacing) *appWorld {
	t.Helper()
	w := &appWorld{logs: &bytes.Buffer{}, keyPEM: keyPEM}
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: w.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.emu = emulator.New(emulator.Options{Limits: limits, Logger: logger, App: &emulator.App{
		ID: appID, PublicKey: &key.PublicKey, TokenLifetime: lifetime,
		Installations: []emulator.Installation{{ID: 1, Account: "octo-org"}, {ID: 2, Account: "globex"}},
	}})
	w.emu.SeedDemo()
	w.emu.AddOrg("globex")
	w.emu.AddOrg("initech")
	w.tr = &memTransport{h: w.emu, auth: map[string]bool{}}
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKeyFile: keyFile, BaseURL: memRoot, Transport: w.tr})
	if err != nil {
		t.Fatal(err)
	}
	w.client = newClient(t, upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: w.tr}, Pacing: &pacing, Logger: logger})
	return w
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newClient(t *testing.T, cfg upstream.Config) *upstream.Client {
	t.Helper()
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Authenticating as a GitHub App, under concurrent load for 35 minutes
// of fake time with installation tokens that last 10: every token is
// refreshed before it expires (ghinstallation's minute of margin), no
// call fails, GitHub never sees an expired token, and no limit is broken.
func TestAppTokenRefreshUnderLoad(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		limits := emulator.Limits{PointsPerMinute: 900, MaxConcurrent: 100}
		w := newAppWorld(t, key, keyPEM, limits, 10*time.Minute, upstream.DefaultPacing())
		const workers = 16
		end := time.Now().Add(35 * time.Minute)
		var mu sync.Mutex
		var calls int
		var failures []error
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				for n := 0; time.Now().Before(end); n++ {
					var err error
					switch (i + n) % 3 {
					case 0:
						_, err = w.client.GetPublicKey(t.Context(), orgScope)
					case 1:
						_, err = w.client.ListSecrets(t.Context(), repoScope, upstream.Page{})
					default:
						_, err = w.client.GetPublicKey(t.Context(), globex)
					}
					mu.Lock()
					calls++
					if err != nil {
						failures = append(failures, err)
					}
					mu.Unlock()
					time.Sleep(2 * time.Second)
				}
			})
		}
		wg.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d of %d calls failed; first: %v", len(failures), calls, failures[0])
		}
		st := w.emu.AppStats()
		t.Logf("%d calls; app stats %+v; emulator %+v", calls, st, w.emu.Stats())
		// Each installation: minted at 0, then every 9 minutes.
		if st.TokensMinted < 8 {
			t.Errorf("%d tokens minted over 35 minutes of 10-minute tokens for 2 installations, want at least 8", st.TokensMinted)
		}
		if st.ExpiredTokens != 0 {
			t.Errorf("GitHub saw %d expired tokens", st.ExpiredTokens)
		}
		if es := w.emu.Stats(); es.SecondaryViolations+es.PrimaryViolations != 0 {
			t.Errorf("violations: %+v", es)
		}
		if calls < workers*35*60/2/2 {
			t.Errorf("only %d calls", calls)
		}
		if got := w.emu.Count(emulator.RouteGetOrgInstallation) + w.emu.Count(emulator.RouteGetRepoInstallation); got != 2 {
			t.Errorf("%d installation lookups, want 2 (one per owner, cached)", got)
		}
	})
}

// Two installations have separate budgets: one whose primary quota is
// used up is held by its own pacer, while the other keeps working, and
// each has its own metrics label.
func TestAppInstallationsHaveSeparateBudgets(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		p := upstream.DefaultPacing()
		p.MaxAttempts = 1
		w := newAppWorld(t, key, keyPEM, emulator.Limits{PrimaryPerHour: 5}, 0, p)
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		w.client = newClient(t, upstream.Config{BaseURL: memRoot, Credentials: clientCreds(t, w), HTTPClient: &http.Client{Transport: w.tr}, Pacing: &p, MeterProvider: mp})
		for i := range 5 {
			if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil {
				t.Fatalf("octo-org call %d: %v", i+1, err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := w.client.GetPublicKey(ctx, orgScope)
		var te *upstream.ThrottledError
		var ge *upstream.Error
		if !errors.As(err, &te) && !(errors.As(err, &ge) && ge.RateLimited) {
			t.Fatalf("octo-org past its quota: %v, want it throttled or rate limited", err)
		}
		start := time.Now()
		for i := range 5 {
			if _, err := w.client.GetPublicKey(t.Context(), globex); err != nil {
				t.Fatalf("globex call %d while octo-org is exhausted: %v", i+1, err)
			}
		}
		if waited := time.Since(start); waited > time.Minute {
			t.Errorf("globex waited %v behind octo-org's budget", waited)
		}
		one, ok1 := w.client.PacerStatsOf("installation:1")
		two, ok2 := w.client.PacerStatsOf("installation:2")
		if !ok1 || !ok2 || one.Requests < 5 || two.Requests != 5 {
			t.Errorf("pacer stats: installation:1 %+v (%v), installation:2 %+v (%v)", one, ok1, two, ok2)
		}
		got := metricstest.Read(t, reader)
		for _, label := range []string{"installation:1", "installation:2", "app"} {
			if _, ok := got["secretbroker_pacer_queue_depth{credential="+label+"}"]; !ok {
				t.Errorf("no queue depth series for %s; have %v", label, got)
			}
		}
		if v := got["secretbroker_upstream_ratelimit_remaining{credential=installation:1,resource=core}"]; v != 0 {
			t.Errorf("installation:1 remaining %v, want 0", v)
		}
		if v := got["secretbroker_upstream_ratelimit_remaining{credential=installation:2,resource=core}"]; v != 0 {
			t.Errorf("installation:2 remaining %v, want 0 after its 5", v)
		}
	})
}

// clientCreds is a fresh App source for w's emulator.
func clientCreds(t *testing.T, w *appWorld) credential.Source {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, w.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKeyFile: keyFile, BaseURL: memRoot, Transport: w.tr})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// An organization the app is not installed on gets a NotInstalledError
// naming it, and nothing is sent for it; the others keep working. An
// expired installation token gets one re-mint and the call succeeds.
// VerifyCredential proves the app with GET /app. No token, JWT or key
// reaches a log line or an error.
func TestAppMissingInstallationRenewAndNoLeaks(t *testing.T) {
	key, keyPEM := newRSAKey(t)
	synctest.Test(t, func(t *testing.T) {
		w := newAppWorld(t, key, keyPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		var errs []error
		if err := w.client.VerifyCredential(t.Context()); err != nil {
			t.Fatalf("VerifyCredential: %v", err)
		}
		if n := w.emu.Count(emulator.RouteGetApp); n != 1 {
			t.Errorf("GET /app %d times, want 1", n)
		}
		_, err := w.client.GetPublicKey(t.Context(), initech)
		errs = append(errs, err)
		var ni *upstream.NotInstalledError
		if !errors.As(err, &ni) || ni.Account != "initech" {
			t.Fatalf("initech: %v, want a NotInstalledError naming initech", err)
		}
		if n := w.emu.Count(emulator.RouteGetOrgPublicKey); n != 0 {
			t.Errorf("%d public key requests reached GitHub for an org without installation", n)
		}
		if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatalf("octo-org: %v", err)
		}

		w.emu.ExpireTokens()
		if _, err := w.client.GetPublicKey(t.Context(), orgScope); err != nil {
			t.Fatalf("octo-org after its token expired: %v", err)
		}
		st := w.emu.AppStats()
		if st.ExpiredTokens != 1 || st.TokensMinted != 2 {
			t.Errorf("app stats %+v, want one expired token refused and one re-mint", st)
		}
		if !strings.Contains(w.logs.String(), "renewed it, retrying once") {
			t.Errorf("no log line of the renewal")
		}

		// A key GitHub does not know: every call is refused, after one
		// re-read of the key.
		_, wrongPEM := newRSAKey(t)
		bad := newAppWorld(t, key, wrongPEM, emulator.Limits{}, 0, upstream.DefaultPacing())
		err = bad.client.VerifyCredential(t.Context())
		errs = append(errs, err)
		if _, refused := upstream.CredentialRefused(err); !refused {
			t.Errorf("VerifyCredential with a wrong key: %v, want refused", err)
		}
		_, err = bad.client.GetPublicKey(t.Context(), orgScope)
		errs = append(errs, err)
		var ge *upstream.Error
		if !errors.As(err, &ge) || ge.StatusCode != http.StatusUnauthorized {
			t.Errorf("call with a wrong key: %v, want a 401 *Error", err)
		}

		secrets := append(w.tr.seen(), bad.tr.seen()...)
		if len(secrets) < 4 {
			t.Fatalf("only %d credentials seen; the test plants nothing", len(secrets))
		}
		for _, p := range [][]byte{keyPEM, wrongPEM} {
			lines := strings.Split(string(p), "\n")
			secrets = append(secrets, lines[len(lines)/2])
		}
		logs := w.logs.String() + bad.logs.String()
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("a token, JWT or key line reached the logs: %.12s...", s)
			}
			for _, e := range errs {
				if e != nil && strings.Contains(e.Error()+fmt.Sprintf("%+v", e), s) {
					t.Errorf("a token, JWT or key line is in an error: %.12s...", s)
				}
			}
		}
	})
}

// A token file: a 401 makes the client read the file once more (here
// changed in a way a stat cannot see) and retry once, which succeeds; a
// file that still holds the refused token is reported as refused after
// one request.
func TestTokenFile401RereadsOnce(t *testing.T) {
	const (
		oldTok = "ghp_PLANTEDold00000000000000000000000000"
		newTok = "ghp_PLANTEDnew11111111111111111111111111"
	)
	emu := emulator.New(emulator.Options{Token: newTok})
	emu.SeedDemo()
	tr := &memTransport{h: emu, auth: map[string]bool{}}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(oldTok), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := credential.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	c := newClient(t, upstream.Config{BaseURL: memRoot, Credentials: src, HTTPClient: &http.Client{Transport: tr},
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, nil))})

	_, err = c.GetPublicKey(t.Context(), orgScope)
	if _, refused := upstream.CredentialRefused(err); !refused {
		t.Fatalf("with the old token: %v, want refused", err)
	}
	if n := emu.TotalRequests(); n != 1 {
		t.Errorf("%d requests, want 1 (the re-read found the same token: no retry)", n)
	}

	if err := os.WriteFile(path, []byte(newTok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	emu.ResetCounts()
	if _, err := c.GetPublicKey(t.Context(), orgScope); err != nil {
		t.Fatalf("after the file changed: %v", err)
	}
	if n := emu.TotalRequests(); n != 2 {
		t.Errorf("%d requests, want 2 (a 401, then the retry with the re-read token)", n)
	}
	if c.Credentials()[0] != upstream.Credential {
		t.Errorf("labels %v, want %q", c.Credentials(), upstream.Credential)
	}
	for _, s := range []string{oldTok, newTok} {
		if strings.Contains(logs.String(), s) || strings.Contains(fmt.Sprint(err), s) {
			t.Errorf("token %.12s... reached the logs or an error", s)
		}
	}
}

// A token file swapped behind its symlink, as a Kubernetes Secret update
// does, is used from the next request on, without a restart and without
// a refused request.
func TestTokenFileSymlinkRotation(t *testing.T) {
	const (
		first  = "ghp_PLANTEDfirst000000000000000000000000"
		second = "ghp_PLANTEDsecond11111111111111111111111"
	)
	emu := emulator.New(emulator.Options{})
	emu.SeedDemo()
	tr := &memTransport{h: emu, auth: map[string]bool{}}
	dir := t.TempDir()
	for _, step := range []func() error{
		func() error { return os.Mkdir(filepath.Join(dir, "..v1"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(dir, "..v1", "token"), []byte(first+"\n"), 0o600) },
		func() error { return os.Symlink("..v1", filepath.Join(dir, "..data")) },
		func() error { return os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	src, err := credential.NewTokenFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, upstream.Config{BaseURL: memRoot, Credentials: src, HTTPClient: &http.Client{Transport: tr}})
	if _, err := c.GetPublicKey(t.Context(), orgScope); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return os.Mkdir(filepath.Join(dir, "..v2"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(dir, "..v2", "token"), []byte(second+"\n"), 0o600) },
		func() error { return os.Symlink("..v2", filepath.Join(dir, "..data_tmp")) },
		func() error { return os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")) },
		func() error { return os.RemoveAll(filepath.Join(dir, "..v1")) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	tr.mu.Lock()
	clear(tr.auth)
	tr.mu.Unlock()
	if _, err := c.ListSecrets(t.Context(), orgScope, upstream.Page{}); err != nil {
		t.Fatal(err)
	}
	if got := tr.seen(); len(got) != 1 || got[0] != second {
		t.Errorf("after the swap GitHub saw %d credentials, want only the new token", len(got))
	}
}
