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
// devAccess is what a call to a --dev broker needs besides its address,
// when --dev is given TLS or authentication settings too: the banner's
// commands then carry them, as placeholders the user fills in.
type devAccess struct {
	tls        bool // --tls-cert-file: TLS on both listeners
	clientCert bool // --tls-client-ca-file: a client certificate
	bearer     bool // --callers-file or --jwt-issuer: a bearer token
	reflection bool // reflection without credentials (--reflection-unauthenticated)
}

// devAccessOf returns cfg's devAccess.
func devAccessOf(cfg Config) devAccess {
	return devAccess{tls: cfg.TLSCertFile != "", clientCert: cfg.TLSClientCAFile != "",
		bearer: cfg.CallersFile != "" || cfg.JWTIssuer != "", reflection: cfg.ReflectionUnauthenticated}
}

// grpcurlFlags are grpcurl's flags for a call.
func (a devAccess) grpcurlFlags() string {
	f := "-plaintext"
	if a.tls {
		f = "-cacert CA.pem"
		if a.clientCert {
			f += " -cert CLIENT.pem -key CLIENT-KEY.pem"
		}
	}
	if a.bearer {
		f += ` -H "authorization: Bearer $SECRETBROKER_TOKEN"`
	}
	return f
}

// curlFlags are curl's flags for a call.
func (a devAccess) curlFlags() string {
	f := "-s"
	if a.tls {
		f += " --cacert CA.pem"
		if a.clientCert {
			f += " --cert CLIENT.pem --key CLIENT-KEY.pem"
		}
	}
	if a.bearer {
		f += ` -H "Authorization: Bearer $SECRETBROKER_TOKEN"`
	}
	return f
}

// note says what the commands need, or that they need nothing.
func (a devAccess) note() string {
	if !a.tls && !a.bearer {
		return "No credentials needed: on loopback only, every call is served unauthenticated, as any local process may.\n"
	}
	var need []string
	if a.tls {
		need = append(need, "CA.pem, the CA that signed --tls-cert-file")
		if a.clientCert {
			need = append(need, "CLIENT.pem and CLIENT-KEY.pem, a client certificate and key --tls-client-ca-file accepts")
		}
	}
	if a.bearer {
		need = append(need, "SECRETBROKER_TOKEN, a caller's token (--callers-file) or JWT (--jwt-issuer)")
	}
	return "Credentials needed: the commands below name " + strings.Join(need, "; ") + ".\n"
}

func writeDevBanner(w io.Writer, demo emulator.Demo, emulatorURL, grpcAddr, httpAddr, adminAddr string, access devAccess) error {
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
	gflags := access.grpcurlFlags()
	grpcurl := func(body, method string) string {
		return fmt.Sprintf("grpcurl %s -d '%s' %s secretbroker.v1.SecretService/%s", gflags, body, grpcAddr, method)
	}
	h := "http://" + httpAddr
	if access.tls {
		h = "https://" + httpAddr
	}
	curl := "curl " + access.curlFlags()

	var b strings.Builder
	b.WriteString("\nsecretbroker --dev: serving against the embedded GitHub emulator (nothing leaves this machine)\n")
	b.WriteString(access.note() + "\n")
	reflection := "reflection on"
	if access.bearer && !access.reflection {
		reflection = "reflection on, with credentials"
	}
	fmt.Fprintf(&b, "  gRPC      %s   (%s)\n", grpcAddr, reflection)
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
		fmt.Sprintf("grpcurl %s %s list", gflags, grpcAddr),
		fmt.Sprintf("grpcurl %s %s describe secretbroker.v1.SecretService", gflags, grpcAddr),
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
		fmt.Sprintf("%s %s/v1/%s/secrets/public-key", curl, h, orgScope),
		fmt.Sprintf(`%s -X PUT %s/v1/%s/secrets/DEPLOY_TOKEN -H 'Content-Type: application/json' -d '{"value":"s3cr3t","visibility":"selected","selected_repository_ids":[%d]}'`, curl, h, orgScope, selectedID),
		fmt.Sprintf(`%s -X PUT %s/v1/%s/secrets/MODEL_KEY -H 'Content-Type: application/json' -d '{"value":"s3cr3t","visibility":"all"}'`, curl, h, orgAgents),
		fmt.Sprintf(`%s -X PUT %s/v1/%s/secrets/NPM_TOKEN -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, curl, h, repoScope),
		fmt.Sprintf(`%s -X PUT %s/v1/%s/secrets/MODEL_KEY -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, curl, h, repoAgents),
	}
	if env != "" {
		lines = append(lines, fmt.Sprintf(`%s -X PUT %s/v1/%s/secrets/DB_PASSWORD -H 'Content-Type: application/json' -d '{"value":"s3cr3t"}'`, curl, h, envScope))
	}
	lines = append(lines,
		fmt.Sprintf("%s %s/v1/%s/secrets/DEPLOY_TOKEN", curl, h, orgScope),
		fmt.Sprintf("%s %s/v1/%s/secrets/DEPLOY_TOKEN/repositories", curl, h, orgScope),
		fmt.Sprintf("%s %s/v1/%s/secrets", curl, h, repoScope),
	)
	if env != "" {
		lines = append(lines, fmt.Sprintf("%s %s/v1/%s/secrets", curl, h, envScope))
	}
	lines = append(lines,
		fmt.Sprintf(`%s -X POST %s/v1/secrets:batchPut -H 'Content-Type: application/json' -d '{"requests":[{"name":"%s/secrets/A","value":"s3cr3t"},{"name":"%s/secrets/B","value":"s3cr3t","visibility":"private"}]}'`, curl, h, repoScope, orgScope),
		fmt.Sprintf(`%s -X POST %s/v1/secrets:batchDelete -H 'Content-Type: application/json' -d '{"names":["%s/secrets/A","%s/secrets/B"]}'`, curl, h, repoScope, orgScope),
		fmt.Sprintf("%s -X DELETE %s/v1/%s/secrets/NPM_TOKEN", curl, h, repoScope),
		fmt.Sprintf("%s %s/openapi.json", curl, h),
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
