package credential_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	tokenA = "ghp_PLANTEDtokenAAAAAAAAAAAAAAAAAAAAAAAA1"
	tokenB = "ghp_PLANTEDtokenBBBBBBBBBBBBBBBBBBBBBBBB2"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustToken(t *testing.T, c credential.Credential) string {
	t.Helper()
	tok, err := c.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The token file is read again when it changes: rewritten in place, or
// swapped behind a symlink as a Kubernetes Secret update does. A file
// emptied mid-update keeps the token it had.
func TestTokenFileRotation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir string) string // returns the path to read
		rotate func(t *testing.T, dir string)
	}{
		{"rewritten in place", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "token"), tokenA+"\n")
			return filepath.Join(dir, "token")
		}, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "token"), "  "+tokenB+"\n\n")
		}},
		{"kubernetes symlink swap", func(t *testing.T, dir string) string {
			must(t, os.Mkdir(filepath.Join(dir, "..2026_11_27_01"), 0o700))
			writeFile(t, filepath.Join(dir, "..2026_11_27_01", "token"), tokenA)
			must(t, os.Symlink("..2026_11_27_01", filepath.Join(dir, "..data")))
			must(t, os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")))
			return filepath.Join(dir, "token")
		}, func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, "..2026_11_27_02"), 0o700))
			writeFile(t, filepath.Join(dir, "..2026_11_27_02", "token"), tokenB)
			must(t, os.Symlink("..2026_11_27_02", filepath.Join(dir, "..data_tmp")))
			must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
			must(t, os.RemoveAll(filepath.Join(dir, "..2026_11_27_01")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := credential.NewTokenFile(tc.setup(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if got := mustToken(t, f); got != tokenA {
				t.Fatalf("Token = %q, want the first token", got)
			}
			tc.rotate(t, dir)
			if got := mustToken(t, f); got != tokenB {
				t.Fatalf("after the rotation Token = %q, want the new token", got)
			}
			if f.Label() != credential.LabelToken {
				t.Errorf("Label = %q, want %q", f.Label(), credential.LabelToken)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A token file emptied or garbled mid-update keeps serving the token it
// had; the error of a bad file never holds its content.
func TestTokenFileBadUpdateKeepsToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, tokenA)
	f, err := credential.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "")
	if got := mustToken(t, f); got != tokenA {
		t.Errorf("emptied file: Token = %q, want the token it had", got)
	}
	writeFile(t, path, tokenB+" "+tokenA)
	if got := mustToken(t, f); got != tokenA {
		t.Errorf("two words: Token = %q, want the token it had", got)
	}
	// A header cannot carry it: every call would fail.
	writeFile(t, path, tokenB+"\x00")
	if got := mustToken(t, f); got != tokenA {
		t.Errorf("NUL: Token = %q, want the token it had", got)
	}
}

func TestNewTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"empty", " \n", "is empty"},
		{"two words", tokenA + " " + tokenB, "more than one word"},
		{"NUL", tokenA[:12] + "\x00" + tokenA[12:], "holds a control character"},
		{"ESC", tokenA[:12] + "\x1b" + tokenA[12:] + "\n", "holds a control character"},
		{"DEL", tokenA + "\x7f", "holds a control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			writeFile(t, path, tc.content)
			_, err := credential.NewTokenFile(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTokenFile = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PLANTED") {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
	if _, err := credential.NewTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("NewTokenFile of a missing file succeeded")
	}
}

// Renew reads the file even when a stat cannot tell it changed (same
// size, same modification time), and fails when the file still holds the
// refused token.
func TestTokenFileRenew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeFile(t, path, tokenA)
	f, err := credential.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Renew(t.Context(), tokenA); err == nil {
		t.Fatal("Renew with the file unchanged succeeded; want an error")
	} else if strings.Contains(err.Error(), tokenA) {
		t.Errorf("Renew's error holds the token: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, tokenB) // same length
	must(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
	if got := mustToken(t, f); got != tokenA {
		t.Fatalf("Token = %q; the stat should not have seen the change", got)
	}
	if err := f.Renew(t.Context(), tokenA); err != nil {
		t.Fatalf("Renew after the file changed: %v", err)
	}
	if got := mustToken(t, f); got != tokenB {
		t.Fatalf("after Renew Token = %q, want the new token", got)
	}
	// Another caller refused with the old token too: renewed already.
	if err := f.Renew(t.Context(), tokenA); err != nil {
		t.Errorf("second Renew for the same refused token: %v", err)
	}
}

// newKey returns an RSA key and its PEM (PKCS #1).
func newKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// appEnv is an emulator with a registered app on a loopback server.
type appEnv struct {
	emu     *emulator.Server
	url     string
	key     *rsa.PrivateKey
	keyPEM  []byte
	keyFile string
}

func newAppEnv(t *testing.T, prefix string, installs ...emulator.Installation) *appEnv {
	t.Helper()
	key, keyPEM := newKey(t)
	emu := emulator.New(emulator.Options{App: &emulator.App{ID: 77, PublicKey: &key.PublicKey, Installations: installs}})
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	writeFile(t, keyFile, string(keyPEM))
	return &appEnv{emu: emu, url: hs.URL + prefix, key: key, keyPEM: keyPEM, keyFile: keyFile}
}

func (e *appEnv) app(t *testing.T, installationID int64) *credential.App {
	t.Helper()
	a, err := credential.NewApp(credential.AppConfig{AppID: 77, PrivateKeyFile: e.keyFile, InstallationID: installationID, BaseURL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// An organization's installation is looked up once however many callers
// ask at once, then cached; a repository owner is looked up through the
// repository; a missing installation is a *NotInstalledError naming the
// account, remembered only briefly, so that installing the app later takes
// effect. It all works under /api/v3 too (GitHub Enterprise Server).
func TestAppFindsInstallations(t *testing.T) {
	for _, prefix := range []string{"", "/api/v3"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			e := newAppEnv(t, prefix, emulator.Installation{ID: 11, Account: "acme"}, emulator.Installation{ID: 12, Account: "octocat"})
			a := e.app(t, 0)
			var wg sync.WaitGroup
			labels := make([]string, 20)
			for i := range labels {
				wg.Go(func() {
					c, err := a.For(t.Context(), "ACME", "")
					if err != nil {
						t.Error(err)
						return
					}
					labels[i] = c.Label()
				})
			}
			wg.Wait()
			for _, l := range labels {
				if l != "installation:11" {
					t.Fatalf("label %q, want installation:11", l)
				}
			}
			if _, err := a.For(t.Context(), "acme", ""); err != nil {
				t.Fatal(err)
			}
			if n := e.emu.Count(emulator.RouteGetOrgInstallation); n != 1 {
				t.Errorf("%d organization installation lookups, want 1", n)
			}
			e.emu.AddRepo("octocat", "hello-world", false)
			c, err := a.For(t.Context(), "octocat", "hello-world")
			if err != nil || c.Label() != "installation:12" {
				t.Fatalf("For(octocat/hello-world) = %v, %v; want installation:12", c, err)
			}
			if n := e.emu.Count(emulator.RouteGetRepoInstallation); n != 1 {
				t.Errorf("%d repository installation lookups, want 1", n)
			}
			if n := e.emu.Count(emulator.RouteGetOrgInstallation) + e.emu.Count(emulator.RouteGetUserInstallation); n != 1 {
				t.Errorf("%d owner installation lookups, want 1 (acme's): the repository's answered", n)
			}
			tok := mustToken(t, c)
			if !strings.HasPrefix(tok, "ghs_") {
				t.Errorf("installation token %q does not look like one", tok[:4])
			}
			// A refused token, kept by Renew, is not printed either.
			if err := c.Renew(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
				if out := fmt.Sprintf(f, c); strings.Contains(out, tok) {
					t.Errorf("%s of an installation shows its refused token", f)
				}
			}

			_, err = a.For(t.Context(), "initech", "")
			var ni *credential.NotInstalledError
			if !errors.As(err, &ni) || ni.Account != "initech" || !strings.Contains(err.Error(), `"initech"`) {
				t.Fatalf("For(initech) = %v, want a NotInstalledError naming initech", err)
			}
			// Remembered for a while (installing then takes effect after
			// it: upstream's TestAppUninstalledInstallation, in fake time):
			// asked again at once, it is not looked up again.
			before := e.emu.Count(emulator.RouteGetOrgInstallation)
			if _, err := a.For(t.Context(), "INITECH", ""); !errors.As(err, &ni) {
				t.Fatalf("For(INITECH) again = %v, want a NotInstalledError", err)
			}
			if n := e.emu.Count(emulator.RouteGetOrgInstallation); n != before {
				t.Errorf("%d more lookups for an owner just found not installed, want none", n-before)
			}
		})
	}
}

// With a fixed installation id nothing is looked up.
func TestAppFixedInstallation(t *testing.T) {
	e := newAppEnv(t, "", emulator.Installation{ID: 5, Account: "acme"})
	a := e.app(t, 5)
	for _, owner := range []string{"acme", "globex"} {
		c, err := a.For(t.Context(), owner, "")
		if err != nil || c.Label() != "installation:5" {
			t.Fatalf("For(%s) = %v, %v; want installation:5", owner, c, err)
		}
	}
	mustToken(t, mustFor(t, a, "acme"))
	if n := e.emu.Count(emulator.RouteGetOrgInstallation); n != 0 {
		t.Errorf("%d lookups with a fixed installation, want 0", n)
	}
	if n := e.emu.AppStats().TokensMinted; n != 1 {
		t.Errorf("%d tokens minted, want 1", n)
	}
}

func mustFor(t *testing.T, a *credential.App, owner string) credential.Credential {
	t.Helper()
	c, err := a.For(t.Context(), owner, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The private key file is read again when it changes: an app started with
// a key GitHub does not know fails to mint, and works once the file holds
// the right key, without a restart. No error holds the key or a token.
func TestAppKeyRotation(t *testing.T) {
	e := newAppEnv(t, "", emulator.Installation{ID: 5, Account: "acme"})
	_, wrongPEM := newKey(t)
	writeFile(t, e.keyFile, string(wrongPEM))
	a := e.app(t, 5)
	c := mustFor(t, a, "acme")
	_, err := c.Token(t.Context())
	var he *credential.HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Token with a wrong key = %v, want a 401 HTTPError", err)
	}
	for _, secret := range [][]byte{wrongPEM, e.keyPEM} {
		if strings.Contains(err.Error(), pemBody(secret)) {
			t.Errorf("error holds a private key: %v", err)
		}
	}
	writeFile(t, e.keyFile, string(e.keyPEM))
	if tok := mustToken(t, c); tok == "" {
		t.Fatal("no token after the key file was fixed")
	}
	probe, path := a.Probe()
	if path != credential.ProbeApp || probe.Label() != credential.LabelApp {
		t.Errorf("Probe = %s %s, want app %s", probe.Label(), path, credential.ProbeApp)
	}
	if err := probe.Renew(t.Context(), ""); err == nil {
		t.Error("app Renew with the key file unchanged succeeded; want an error")
	}
}

// pemBody is a line from the middle of a PEM, which any leak would hold.
func pemBody(p []byte) string {
	lines := strings.Split(string(p), "\n")
	return lines[len(lines)/2]
}

// Renew of an installation mints a new token once for each refused token,
// however many callers were refused.
func TestInstallationRenew(t *testing.T) {
	e := newAppEnv(t, "", emulator.Installation{ID: 5, Account: "acme"})
	c := mustFor(t, e.app(t, 0), "acme")
	old := mustToken(t, c)
	e.emu.ExpireTokens()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := c.Renew(t.Context(), old); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if tok := mustToken(t, c); tok == old {
		t.Fatal("Renew kept the refused token")
	}
	if n := e.emu.AppStats().TokensMinted; n != 2 {
		t.Errorf("%d tokens minted, want 2 (one renewal for ten refusals)", n)
	}
}

func TestNewAppErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad.pem")
	writeFile(t, notPEM, "PLANTED-not-a-key")
	for _, tc := range []struct {
		name string
		cfg  credential.AppConfig
		want string
	}{
		{"no id", credential.AppConfig{PrivateKeyFile: notPEM}, "not positive"},
		{"missing key file", credential.AppConfig{AppID: 1, PrivateKeyFile: filepath.Join(dir, "none")}, "no such file"},
		{"not a key", credential.AppConfig{AppID: 1, PrivateKeyFile: notPEM}, "private key file"},
		{"no key", credential.AppConfig{AppID: 1}, "no private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := credential.NewApp(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewApp = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "PLANTED") {
				t.Errorf("error holds the file's content: %v", err)
			}
		})
	}
}

// stubApp returns an app with a new key whose requests go to baseURL, a
// stub of GitHub that checks no JWT.
func stubApp(t *testing.T, baseURL string) *credential.App {
	t.Helper()
	_, keyPEM := newKey(t)
	keyFile := filepath.Join(t.TempDir(), "k.pem")
	writeFile(t, keyFile, string(keyPEM))
	a, err := credential.NewApp(credential.AppConfig{AppID: 1, PrivateKeyFile: keyFile, BaseURL: baseURL})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A caller whose context ends stops waiting for a lookup.
func TestAppLookupWaitEnds(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprint(w, `{"id":3}`)
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(release) })
	a := stubApp(t, hs.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.For(ctx, "acme", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("For = %v, want the deadline", err)
	}
}

// Neither %v nor %#v of a Source shows a token, nor the path of a token
// file, which may be a token given by mistake.
func TestSourcesDoNotPrint(t *testing.T) {
	// The file's name is a token: a secretKeyRef filling the variable
	// meant for the mounted file's path.
	path := filepath.Join(t.TempDir(), tokenB)
	if err := os.WriteFile(path, []byte(tokenA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := credential.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]any{"Static": credential.Static(tokenA), "TokenFile": file} {
		for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
			if out := fmt.Sprintf(f, s); strings.Contains(out, tokenA) || strings.Contains(out, tokenB) {
				t.Errorf("%s of %s shows a token: %s", f, name, out)
			}
		}
	}
}

// A repository's installation lookup that GitHub answers 404 (the
// repository does not exist, or the owner's installation was not granted
// it) falls back to the owner's own installation, the organization's and
// then the user's, so that the owner's installation answers for the
// repository and GitHub says whether it is there. An answer naming another
// account (a transferred repository's, through GitHub's redirect) counts
// as a 404. Only when every lookup answers 404 is the owner not installed;
// any other answer ends the lookups. An organization's path asks the
// owner's routes: a user's account (for which GitHub has no organization)
// is found too, so that "not installed" is always the account's.
func TestAppLookupFallsBackToOwner(t *testing.T) {
	const (
		// otherAccount is a 200 naming another account.
		otherAccount = 1
		repoPath     = "/repos/acme/widget/installation"
		orgPath      = "/orgs/acme/installation"
		userPath     = "/users/acme/installation"
	)
	tests := []struct {
		name    string
		repo    string
		answers map[string]int // status by path; 404 when missing
		asked   []string
		label   string // "" for an error
		errWant string
	}{
		{"repository's installation", "widget", map[string]int{repoPath: 200}, []string{repoPath}, "installation:5", ""},
		{"organization's", "widget", map[string]int{orgPath: 200}, []string{repoPath, orgPath}, "installation:5", ""},
		{"user's", "widget", map[string]int{userPath: 200}, []string{repoPath, orgPath, userPath}, "installation:5", ""},
		{"none", "widget", nil, []string{repoPath, orgPath, userPath}, "", `not installed on the organization or account "acme"`},
		{"organization lookup fails", "widget", map[string]int{orgPath: 502, userPath: 200}, []string{repoPath, orgPath}, "", "GET /orgs/{org}/installation: 502"},
		{"another account's", "widget", map[string]int{repoPath: otherAccount, orgPath: 200}, []string{repoPath, orgPath}, "installation:5", ""},
		{"organization's path", "", map[string]int{orgPath: 200}, []string{orgPath}, "installation:5", ""},
		{"organization's path, a user", "", map[string]int{userPath: 200}, []string{orgPath, userPath}, "installation:5", ""},
		{"organization's path, none", "", nil, []string{orgPath, userPath}, "", `not installed on the organization or account "acme"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var asked []string
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				asked = append(asked, r.URL.Path)
				mu.Unlock()
				switch code := tt.answers[r.URL.Path]; code {
				case 0:
					http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
				case http.StatusOK:
					fmt.Fprint(w, `{"id":5,"account":{"login":"ACME"}}`)
				case otherAccount:
					fmt.Fprint(w, `{"id":8,"account":{"login":"initech"}}`)
				default:
					w.WriteHeader(code)
				}
			}))
			t.Cleanup(hs.Close)
			c, err := stubApp(t, hs.URL).For(t.Context(), "acme", tt.repo)
			switch {
			case tt.label != "" && (err != nil || c.Label() != tt.label):
				t.Fatalf("For = %v, %v; want %s", c, err, tt.label)
			case tt.label == "" && (err == nil || !strings.Contains(err.Error(), tt.errWant)):
				t.Fatalf("For = %v, %v; want an error saying %q", c, err, tt.errWant)
			}
			if tt.errWant != "" && strings.Contains(tt.errWant, "not installed") {
				if _, ok := errors.AsType[*credential.NotInstalledError](err); !ok {
					t.Errorf("For's error %v is not a *NotInstalledError", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(asked, tt.asked) {
				t.Errorf("asked %q, want %q", asked, tt.asked)
			}
		})
	}
}

// An installation lookup follows GitHub's redirect (a renamed or
// transferred repository's path) on GitHub's own host only: the app's
// transport signs every request it sends, so a redirect to another host,
// followed, would hand that host a JWT that mints tokens for every
// installation. Such a redirect is the lookup's answer.
func TestAppLookupRedirectStaysOnGitHub(t *testing.T) {
	for _, tc := range []struct {
		name      string
		elsewhere bool
		status    int
	}{
		{"same host, 301", false, http.StatusMovedPermanently},
		{"same host, 307", false, http.StatusTemporaryRedirect},
		{"another host, 302", true, http.StatusFound},
		{"another host, 307", true, http.StatusTemporaryRedirect},
		{"another host, 308", true, http.StatusPermanentRedirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var leaked sync.Map
			found := func(w http.ResponseWriter, r *http.Request) {
				if auth := r.Header.Get("Authorization"); auth != "" {
					leaked.Store(auth, true)
				}
				fmt.Fprint(w, `{"id":5,"account":{"login":"acme"}}`)
			}
			other := httptest.NewServer(http.HandlerFunc(found))
			t.Cleanup(other.Close)
			var gh *httptest.Server
			gh = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/repositories/42/installation" {
					found(w, r)
					return
				}
				target := gh.URL + "/repositories/42/installation"
				if tc.elsewhere {
					target = other.URL + "/repositories/42/installation"
				}
				http.Redirect(w, r, target, tc.status)
			}))
			t.Cleanup(gh.Close)
			c, err := stubApp(t, gh.URL).For(t.Context(), "acme", "widget")
			if !tc.elsewhere {
				if err != nil || c.Label() != "installation:5" {
					t.Fatalf("For = %v, %v; want installation:5 through the redirect", c, err)
				}
				return
			}
			var sent bool
			leaked.Range(func(any, any) bool { sent = true; return false })
			if sent {
				t.Fatal("the other host got the app's JWT")
			}
			if err == nil || !strings.Contains(err.Error(), strconv.Itoa(tc.status)) {
				t.Fatalf("For = %v, %v; want the redirect's %d as the lookup's error", c, err, tc.status)
			}
		})
	}
}
