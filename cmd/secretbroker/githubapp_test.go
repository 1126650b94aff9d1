package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func writeAppKey(t *testing.T) (*rsa.PrivateKey, string, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	path := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(path, p, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, path, p
}

// The GitHub App flags: an id and a key file together, never with a token
// (from a file or GITHUB_TOKEN); --dev-github-app turns --dev on.
func TestGitHubAppConfig(t *testing.T) {
	tokenFile := writeTokenFile(t, testToken)
	base := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // "" for no error
	}{
		{"app", []string{"--github-app-id=12", "--github-app-private-key-file=/k.pem"}, nil, ""},
		{"app with installation", []string{"--github-app-id=12", "--github-app-private-key-file=/k.pem", "--github-app-installation-id=7"}, nil, ""},
		{"app from the environment", nil, map[string]string{"SECRETBROKER_GITHUB_APP_ID": "12", "SECRETBROKER_GITHUB_APP_PRIVATE_KEY_FILE": "/k.pem"}, ""},
		{"app and token file", []string{"--github-app-id=12", "--github-app-private-key-file=/k.pem", "--upstream-token-file=" + tokenFile}, nil, "both a GitHub token"},
		{"app and GITHUB_TOKEN", []string{"--github-app-id=12", "--github-app-private-key-file=/k.pem"}, map[string]string{"GITHUB_TOKEN": testToken}, "both a GitHub token"},
		{"id without key", []string{"--github-app-id=12"}, nil, "--github-app-private-key-file is required"},
		{"key without id", []string{"--github-app-private-key-file=/k.pem"}, nil, "--github-app-id must be"},
		{"installation without app", []string{"--github-app-installation-id=3"}, nil, "--github-app-id must be"},
		{"dev app", []string{"--dev-github-app"}, nil, ""},
		{"dev app with an id", []string{"--dev-github-app", "--github-app-id=3"}, nil, "--dev-github-app makes its own app"},
		{"dev with an app", []string{"--dev", "--github-app-id=12", "--github-app-private-key-file=/k.pem"}, nil, "--dev runs against the embedded emulator and uses no GitHub App"},
		{"dev with an app from the environment", nil, map[string]string{"SECRETBROKER_DEV": "true", "SECRETBROKER_GITHUB_APP_INSTALLATION_ID": "7"}, "--dev-github-app runs --dev as a GitHub App"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg, err := loadConfig(append(append([]string{}, base...), tc.args...), envMap(tc.env), &out)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if tc.name == "dev app" && !cfg.Dev {
					t.Error("--dev-github-app did not turn --dev on")
				}
				if s := cfg.String(); strings.Contains(s, testToken) || !strings.Contains(s, "github_app") {
					t.Errorf("String() = %s", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig = %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
}

// recordingHandler records every credential GitHub was shown.
type recordingHandler struct {
	h    http.Handler
	mu   sync.Mutex
	seen map[string]bool
}

func (r *recordingHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if _, cred, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok {
		r.mu.Lock()
		r.seen[cred] = true
		r.mu.Unlock()
	}
	r.h.ServeHTTP(w, req)
}

// TestRunAsGitHubApp runs the broker as a GitHub App against the emulator
// on loopback, under /api/v3 as on GitHub Enterprise Server: it proves the
// app with GET /app, finds octo-org's installation, mints a token and
// writes a secret; an organization without the app is FAILED_PRECONDITION
// (400 on the gateway) naming it. Neither the key nor any token or JWT
// reaches the logs or an answer.
func TestRunAsGitHubApp(t *testing.T) {
	const value = "PLANTED-app-plaintext-Wombat-7"
	key, keyFile, keyPEM := writeAppKey(t)
	emu := emulator.New(emulator.Options{App: &emulator.App{ID: 31337, PublicKey: &key.PublicKey,
		Installations: []emulator.Installation{{ID: 8, Account: "octo-org"}}}})
	emu.SeedDemo()
	emu.AddOrg("initech")
	rec := &recordingHandler{h: emu, seen: map[string]bool{}}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)
	cfg, err := loadConfig([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-url=" + hs.URL + "/api/v3", "--github-app-id=31337", "--github-app-private-key-file=" + keyFile,
		"--log-level=debug", "--upstream-write-interval=10ms",
	}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)

	code, m := b.do(t, http.MethodPut, "/v1/repos/octo-org/hello-world/actions/secrets/APP_WRITTEN", `{"value":"`+value+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("PUT = %d %v, want 201", code, m)
	}
	if got, err := emu.Open("repos/octo-org/hello-world/actions", "APP_WRITTEN"); err != nil || string(got) != value {
		t.Fatalf("GitHub holds a value that does not open to the one sent (%v)", err)
	}
	code, m = b.do(t, http.MethodPut, "/v1/orgs/initech/actions/secrets/NOPE", `{"value":"`+value+`","visibility":"all"}`)
	if msg, _ := m["message"].(string); code != http.StatusBadRequest || !strings.Contains(msg, `"initech"`) {
		t.Fatalf("PUT to an org without the app = %d %v, want 400 FAILED_PRECONDITION naming initech", code, m)
	}
	if m["code"] != float64(9) { // codes.FailedPrecondition
		t.Errorf("code %v, want 9 (FAILED_PRECONDITION)", m["code"])
	}
	if n := emu.AppStats().TokensMinted; n != 1 {
		t.Errorf("%d tokens minted, want 1", n)
	}
	if n := emu.Count(emulator.RouteGetRepoInstallation) + emu.Count(emulator.RouteGetOrgInstallation); n != 2 {
		t.Errorf("%d installation lookups, want 2 (octo-org once, initech once)", n)
	}
	if !b.logs.waitFor("GitHub credential verified", 1, 30*time.Second) {
		t.Error("the app was not verified")
	}
	if n := emu.Count(emulator.RouteGetApp); n != 1 {
		t.Errorf("GET /app %d times, want 1 (the readiness check)", n)
	}

	b.stop(t, 10*time.Second)
	logs := b.logs.String()
	rec.mu.Lock()
	planted := []string{value, pemLine(keyPEM)}
	for s := range rec.seen {
		planted = append(planted, s)
	}
	rec.mu.Unlock()
	if len(planted) < 4 {
		t.Fatalf("only %d credentials planted", len(planted)-2)
	}
	for _, s := range planted {
		if strings.Contains(logs, s) {
			t.Errorf("planted value %.12s... reached the broker's logs", s)
		}
	}
}

func pemLine(p []byte) string {
	lines := strings.Split(string(p), "\n")
	return lines[len(lines)/2]
}

// --dev-github-app runs --dev as a GitHub App against the emulator.
func TestRunDevGitHubApp(t *testing.T) {
	cfg, err := loadConfig([]string{"--dev-github-app", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--shutdown-timeout=5s", "--upstream-write-interval=10ms", "--log-level=debug"}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	code, m := b.do(t, http.MethodPut, "/v1/orgs/octo-org/actions/secrets/DEV_APP", `{"value":"v","visibility":"all"}`)
	if code != http.StatusCreated {
		t.Fatalf("PUT = %d %v, want 201", code, m)
	}
	code, m = b.do(t, http.MethodGet, "/v1/orgs/octo-org/actions/secrets/DEV_APP", "")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %v, want 200", code, m)
	}
	for _, route := range []string{emulator.RouteGetOrgInstallation, emulator.RouteCreateInstallationToken} {
		if !strings.Contains(b.logs.String(), route) {
			t.Errorf("the emulator logged no %s: the broker did not authenticate as an app", route)
		}
	}
}
