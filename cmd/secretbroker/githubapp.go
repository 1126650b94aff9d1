package main

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// GitHubAppConfig is how the broker authenticates as a GitHub App rather
// than with a token.
type GitHubAppConfig struct {
	// ID is the app's id. Flag --github-app-id. Default 0: no app.
	ID int64
	// PrivateKeyFile is the PEM file of the app's private key, read again
	// when it changes. Flag --github-app-private-key-file. The key is
	// never a flag value.
	PrivateKeyFile string
	// InstallationID, when set, is the one installation used for every
	// organization; otherwise the broker asks GitHub for each
	// organization's or repository owner's installation. Flag
	// --github-app-installation-id.
	InstallationID int64
	// Dev runs --dev as a GitHub App against the emulator: an RSA key
	// made in memory, registered with the emulator, one installation per
	// demo organization. Flag --dev-github-app; it implies --dev.
	Dev bool
}

// enabled reports whether the broker authenticates as an app.
func (g GitHubAppConfig) enabled() bool {
	return g.ID != 0 || g.PrivateKeyFile != "" || g.InstallationID != 0 || g.Dev
}

// LogValue logs the app's settings; the key file's path, never its
// content.
func (g GitHubAppConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("id", g.ID),
		slog.String("private_key_file", g.PrivateKeyFile),
		slog.Int64("installation_id", g.InstallationID),
		slog.Bool("dev", g.Dev),
	)
}

// registerGitHubAppFlags adds the GitHub App flags to fs.
func registerGitHubAppFlags(fs *flag.FlagSet, cfg *Config) {
	fs.Int64Var(&cfg.GitHubApp.ID, "github-app-id", 0,
		"authenticate as the GitHub App with this `id` (with --github-app-private-key-file) instead of a token")
	fs.StringVar(&cfg.GitHubApp.PrivateKeyFile, "github-app-private-key-file", "",
		"`file` holding the GitHub App's private key (PEM); read again when it changes")
	fs.Int64Var(&cfg.GitHubApp.InstallationID, "github-app-installation-id", 0,
		"the GitHub App's one installation `id`; default: looked up per organization or repository owner")
	fs.BoolVar(&cfg.GitHubApp.Dev, "dev-github-app", false,
		"--dev, with the broker authenticating to the emulator as a GitHub App")
}

// validateGitHubApp checks the app's settings: both an id and a key file,
// no token besides, and no --dev (whose emulator the app would not reach).
// --dev-github-app turns --dev on.
func (c *Config) validateGitHubApp() error {
	g := c.GitHubApp
	if g.Dev {
		c.Dev = true
		if g.ID != 0 || g.PrivateKeyFile != "" || g.InstallationID != 0 {
			return errors.New("--dev-github-app makes its own app: give no --github-app-id, --github-app-private-key-file or --github-app-installation-id with it")
		}
		return nil
	}
	if !g.enabled() {
		return nil
	}
	if c.Dev {
		// --dev talks to the embedded emulator only: the app would be
		// ignored, and the broker would authenticate with a token.
		return errors.New("--dev runs against the embedded emulator and uses no GitHub App: give no --github-app-id, --github-app-private-key-file or --github-app-installation-id with it (--dev-github-app runs --dev as a GitHub App)")
	}
	switch {
	case c.UpstreamToken != "" || c.UpstreamTokenFile != "":
		return fmt.Errorf("both a GitHub token (--upstream-token-file or %s) and a GitHub App (--github-app-*) are configured: give one", envGitHubToken)
	case g.ID <= 0:
		return errors.New("--github-app-id must be the GitHub App's id, a positive number")
	case g.PrivateKeyFile == "":
		return errors.New("--github-app-private-key-file is required with --github-app-id")
	case g.InstallationID < 0:
		return errors.New("--github-app-installation-id must be positive")
	}
	return nil
}

// upstreamCredentials returns the credential source for the upstream
// client: the GitHub App, the token file (read again when it changes), or
// nil for the fixed token in upstream.Config.Token. baseURL is GitHub's
// API root, the app's too.
func upstreamCredentials(cfg Config, baseURL string, rt http.RoundTripper) (credential.Source, error) {
	switch {
	case cfg.GitHubApp.enabled() && !cfg.GitHubApp.Dev:
		app, err := credential.NewApp(credential.AppConfig{
			AppID:          cfg.GitHubApp.ID,
			PrivateKeyFile: cfg.GitHubApp.PrivateKeyFile,
			InstallationID: cfg.GitHubApp.InstallationID,
			BaseURL:        baseURL,
			Transport:      rt,
			UserAgent:      userAgent,
		})
		if err != nil {
			return nil, fmt.Errorf("github app: %w", err)
		}
		return app, nil
	case cfg.UpstreamTokenFile != "":
		f, err := credential.NewTokenFile(cfg.UpstreamTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--upstream-token-file: %w", err)
		}
		return f, nil
	}
	return nil, nil
}

// devAppID is the id of the app --dev-github-app registers.
const devAppID = 424242

// devGitHubApp registers a GitHub App with a fresh in-memory key on emu,
// installs it on every account in accounts, and returns the credential
// source that authenticates as it against url.
func devGitHubApp(emu *emulator.Server, key *rsa.PrivateKey, accounts []string, url string) (credential.Source, error) {
	for _, a := range accounts {
		if _, ok := emu.Install(a); !ok {
			return nil, errors.New("--dev-github-app: the emulator has no app")
		}
	}
	app, err := credential.NewApp(credential.AppConfig{AppID: devAppID, PrivateKey: key, BaseURL: url, UserAgent: userAgent})
	if err != nil {
		return nil, fmt.Errorf("--dev-github-app: %w", err)
	}
	return app, nil
}

// devAppOptions returns the emulator's App option for --dev-github-app,
// with a new key, and the key.
func devAppOptions() (*emulator.App, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("--dev-github-app: generating a key: %w", err)
	}
	return &emulator.App{ID: devAppID, PublicKey: &key.PublicKey}, key, nil
}

// useCredentials sets upCfg's credential source; the fixed token stays
// when src is nil.
func useCredentials(upCfg *upstream.Config, src credential.Source) {
	if src != nil {
		upCfg.Credentials = src
		upCfg.Token = ""
	}
}
