package main

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/servertls"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
)

// TestSecretFileFlagGivenTheSecret: a flag that names the file holding a
// secret is given the secret itself, as happens when a Kubernetes
// secretKeyRef fills SECRETBROKER_UPSTREAM_TOKEN_FILE instead of a mounted
// file's path. Reading "the file" fails, and the error (printed at start,
// into the log pipeline) named the path, *fs.PathError's way: the token,
// the Redis URL with its password, the app's private key. It names the
// flag and what went wrong, and never the path of a secret's file.
func TestSecretFileFlagGivenTheSecret(t *testing.T) {
	_, _, appPEM := writeAppKey(t)
	const (
		token    = "ghp_PLANTEDtokenAsAPath0123456789abcd"
		redisURL = "redis://:PLANTEDredisPassword42@redis:6379/0"
		hmacKey  = "PLANTEDhmacKeyAsAPath-0123456789abcdef0123"
	)
	certFile := writeFile(t, "cert.pem", "not read as a certificate before the key fails")
	base := []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}
	for _, tc := range []struct {
		name   string
		secret string
		// err is the error of the flag given secret: loadConfig's, or
		// what reads the file at start.
		err  func(t *testing.T) error
		flag string
	}{
		{"GitHub token", token, func(t *testing.T) error {
			_, err := loadConfig(base, envMap(map[string]string{"SECRETBROKER_UPSTREAM_TOKEN_FILE": token}), io.Discard)
			return err
		}, "--upstream-token-file"},
		{"Redis URL", redisURL, func(t *testing.T) error {
			_, err := loadConfig(append(base, "--dev"), envMap(map[string]string{"SECRETBROKER_REDIS_URL_FILE": redisURL}), io.Discard)
			return err
		}, "--redis-url-file"},
		{"GitHub App private key", string(appPEM), func(t *testing.T) error {
			cfg, err := loadConfig(append(base, "--upstream-url=http://127.0.0.1:1", "--github-app-id=12"),
				envMap(map[string]string{"SECRETBROKER_GITHUB_APP_PRIVATE_KEY_FILE": string(appPEM)}), io.Discard)
			if err != nil {
				return err
			}
			return run(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard, nil)
		}, "--github-app-private-key-file"}, // a PEM block: refused at load (refuseCredentials)
		{"TLS key", string(appPEM), func(t *testing.T) error {
			_, err := servertls.Config(slog.New(slog.DiscardHandler), certFile, string(appPEM), "")
			return err
		}, "TLS key"},
		{"audit HMAC key", hmacKey, func(t *testing.T) error {
			_, err := audit.ReadKey(hmacKey)
			return err
		}, "audit HMAC key"},
		{"state HMAC key", hmacKey, func(t *testing.T) error {
			_, err := state.ReadKeyFile(hmacKey)
			return err
		}, "--state-hmac-key-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("error %q does not name %s", err, tc.flag)
			}
			for _, line := range strings.Split(tc.secret, "\n") {
				if len(line) >= 8 && strings.Contains(err.Error(), line) {
					t.Fatalf("the error holds the secret given as the path: %.120s...", err)
				}
			}
		})
	}
	// A path that is one still says what is wrong with it.
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := loadConfig(base, envMap(map[string]string{"SECRETBROKER_UPSTREAM_TOKEN_FILE": missing}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("a missing token file: %v, want an error saying so", err)
	}
}
