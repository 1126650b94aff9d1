package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// devUpstream is the embedded GitHub emulator that --dev runs on a
// loopback port.
type devUpstream struct {
	url   string // e.g. "http://127.0.0.1:41234"
	token upstream.Token
	creds credential.Source // --dev-github-app's app; nil for the token
	demo  emulator.Demo
	srv   *http.Server
	done  chan struct{}
}

// startEmulator starts the GitHub emulator on 127.0.0.1 with a random
// token and github.com's rate limits (emulator.GitHubLimits), so that
// --dev paces as production does, or none with --dev-limits=off
// (devEmulatorLimits), seeded with the demo data.
func startEmulator(ctx context.Context, cfg Config, logger *slog.Logger) (*devUpstream, error) {
	token := rand.Text()
	opts := emulator.Options{
		Token:        token,
		LegacyRoutes: cfg.UpstreamLegacyRoutes,
		Logger:       logger,
		Limits:       cfg.devEmulatorLimits(),
	}
	var appKey *rsa.PrivateKey
	if cfg.GitHubApp.Dev {
		var err error
		if opts.App, appKey, err = devAppOptions(); err != nil {
			return nil, err
		}
	}
	emu := emulator.New(opts)
	demo := emu.SeedDemo()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("emulator listener: %w", err)
	}
	d := &devUpstream{
		url:   "http://" + ln.Addr().String(),
		token: upstream.Token(token),
		demo:  demo,
		srv: &http.Server{
			Handler:           emu,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		done: make(chan struct{}),
	}
	if appKey != nil {
		if d.creds, err = devGitHubApp(emu, appKey, []string{demo.Org}, d.url); err != nil {
			ln.Close()
			return nil, err
		}
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("emulator stopped", slog.Any("error", err))
		}
	}()
	return d, nil
}

// stop shuts the emulator down, waiting until ctx is done at most.
func (d *devUpstream) stop(ctx context.Context) {
	if err := d.srv.Shutdown(ctx); err != nil {
		_ = d.srv.Close()
	}
	<-d.done
}

// writeDevBanner prints what --dev seeded and copy-paste grpcurl and curl
// commands for it, addressed to the bound listeners.
func writeDevBanner(w io.Writer, demo emulator.Demo, emulatorURL, grpcAddr, httpAddr, adminAddr string) error {
	org := demo.Org
	// The repository, and the environment, to use in the examples: prefer
	// an environment whose name needs escaping ("prod/eu").
	var repo emulator.DemoRepo
	env := ""
	for _, r := range demo.Repos {
		for _, e := range r.Environments {
			if env == "" || (strings.Contains(e, "/") && !strings.Contains(env, "/")) {
				repo, env = r, e
			}
		}
	}
	if repo.Name == "" && len(demo.Repos) > 0 {
		repo = demo.Repos[0]
	}
	var selectedID int64
	for _, r := range demo.Repos {
		if r.Private {
			selectedID = r.ID
			break
		}
	}
	if selectedID == 0 {
		selectedID = repo.ID
	}

	orgScope := "orgs/" + org + "/actions"
	orgAgents := "orgs/" + org + "/agents"
	repoScope := "repos/" + org + "/" + repo.Name + "/actions"
	repoAgents := "repos/" + org + "/" + repo.Name + "/agents"
	envScope := "repos/" + org + "/" + repo.Name + "/environments/" + url.PathEscape(env)
	grpcurl := func(body, method string) string {
		return fmt.Sprintf("grpcurl -plaintext -d '%s' %s secretbroker.v1.SecretService/%s", body, grpcAddr, method)
	}
	h := "http://" + httpAddr

	var b strings.Builder
	b.WriteString("\nsecretbroker --dev: serving against the embedded GitHub emulator (nothing leaves this machine)\n")
	b.WriteString("No credentials needed: on loopback only, every call is served unauthenticated, as any local process may.\n\n")
	fmt.Fprintf(&b, "  gRPC      %s   (reflection on)\n", grpcAddr)
	fmt.Fprintf(&b, "  JSON      %s   (OpenAPI at %s/openapi.json)\n", h, h)
	fmt.Fprintf(&b, "  admin     http://%s   (/healthz, /readyz, /metrics)\n", adminAddr)
	fmt.Fprintf(&b, "  emulator  %s   (random token, for the broker only)\n\n", emulatorURL)
	fmt.Fprintf(&b, "Demo organization %q:\n", org)
	for _, r := range demo.Repos {
		vis := "public"
		if r.Private {
			vis = "private"
		}
		fmt.Fprintf(&b, "  repository %-14s id %-9d %s", r.Name, r.ID, vis)
		if len(r.Environments) > 0 {
			var envs []string
			for _, e := range r.Environments {
				s := fmt.Sprintf("%q", e)
				if esc := url.PathEscape(e); esc != e {
					s += " (" + esc + " in resource names)"
				}
				envs = append(envs, s)
			}
			fmt.Fprintf(&b, ", environments %s", strings.Join(envs, ", "))
		}
		b.WriteString("\n")
	}

	b.WriteString("\ngRPC (grpcurl):\n\n")
	lines := []string{
		fmt.Sprintf("grpcurl -plaintext %s list", grpcAddr),
		fmt.Sprintf("grpcurl -plaintext %s describe secretbroker.v1.SecretService", grpcAddr),
		grpcurl(`{"parent":"`+orgScope+`"}`, "GetPublicKey"),
		grpcurl(fmt.Sprintf(`{"name":"%s/secrets/DEPLOY_TOKEN","value":"s3cr3t","visibility":"selected","selected_repository_ids":[%d]}`, orgScope, selectedID), "PutSecret"),
		grpcurl(`{"name":"`+orgAgents+`/secrets/MODEL_KEY","value":"s3cr3t","visibility":"all"}`, "PutSecret"),
		grpcurl(`{"name":"`+repoScope+`/secrets/NPM_TOKEN","value":"s3cr3t"}`, "PutSecret"),
		grpcurl(`{"name":"`+repoAgents+`/secrets/MODEL_KEY","value":"s3cr3t"}`, "PutSecret"),
	}
	if env != "" {
		lines = append(lines, grpcurl(`{"name":"`+envScope+`/secrets/DB_PASSWORD","value":"s3cr3t"}`, "PutSecret"))
	}
	lines = append(lines,
		grpcurl(`{"name":"`+orgScope+`/secrets/DEPLOY_TOKEN"}`, "GetSecret"),
		grpcurl(`{"name":"`+orgScope+`/secrets/DEPLOY_TOKEN"}`, "ListSelectedRepositories"),
		grpcurl(`{"parent":"`+repoScope+`"}`, "ListSecrets"),
	)
	if env != "" {
		lines = append(lines, grpcurl(`{"parent":"`+envScope+`"}`, "ListSecrets"))
	}
	lines = append(lines,
		grpcurl(`{"requests":[{"name":"`+repoScope+`/secrets/A","value":"s3cr3t"},{"name":"`+repoAgents+`/secrets/B","value":"s3cr3t"}]}`, "BatchPutSecrets"),
		grpcurl(`{"name":"`+repoScope+`/secrets/NPM_TOKEN"}`, "DeleteSecret"),
	)
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}

	b.WriteString("\nJSON gateway (curl):\n\n")
	lines = []string{
		fmt.Sprintf("curl -s %s/v1/%s/secrets/public-key", h, orgScope),
		fmt.Sprintf(`curl -s -X PUT %s/v1/%s/secrets/DEPLOY_TOKEN -H 'Content-Type: application/json' -d '{"value":"s3cr3t","visibility":"selected","selected_repository_ids":[%d]}'`, h, orgScope, selectedID),
		fmt.Sprintf(`curl -s -X PUT %s/v1/%s/secrets/MODEL_KEY -H 'Content-Type: application/json' -d '{"value":"s3cr3t","visibility":"all"}'`, h, orgAgents),
		fmt.Sprintf(`curl -s -X PUT %s/v1/%s/secrets/NPM_TOKEN -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, h, repoScope),
		fmt.Sprintf(`curl -s -X PUT %s/v1/%s/secrets/MODEL_KEY -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, h, repoAgents),
	}
	if env != "" {
		lines = append(lines, fmt.Sprintf(`curl -s -X PUT %s/v1/%s/secrets/DB_PASSWORD -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, h, envScope))
	}
	lines = append(lines,
		fmt.Sprintf("curl -s %s/v1/%s/secrets/DEPLOY_TOKEN", h, orgScope),
		fmt.Sprintf("curl -s %s/v1/%s/secrets/DEPLOY_TOKEN/repositories", h, orgScope),
		fmt.Sprintf("curl -s %s/v1/%s/secrets", h, repoScope),
	)
	if env != "" {
		lines = append(lines, fmt.Sprintf("curl -s %s/v1/%s/secrets", h, envScope))
	}
	lines = append(lines,
		fmt.Sprintf(`curl -s -X POST %s/v1/secrets:batchPut -H 'Content-Type: application/json' -d '{"requests":[{"name":"%s/secrets/A","value":"s3cr3t"},{"name":"%s/secrets/B","value":"s3cr3t","visibility":"private"}]}'`, h, repoScope, orgScope),
		fmt.Sprintf(`curl -s -X POST %s/v1/secrets:batchDelete -H 'Content-Type: application/json' -d '{"names":["%s/secrets/A","%s/secrets/B"]}'`, h, repoScope, orgScope),
		fmt.Sprintf("curl -s -X DELETE %s/v1/%s/secrets/NPM_TOKEN", h, repoScope),
		fmt.Sprintf("curl -s %s/openapi.json", h),
	)
	for _, l := range lines {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString("\n(grpcurl: go run github.com/fullstorydev/grpcurl/cmd/grpcurl@latest if it is not installed)\n\n")

	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing the dev banner: %w", err)
	}
	return nil
}
