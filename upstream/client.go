package upstream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Defaults for the fields of Config left empty.
const (
	DefaultBaseURL           = "https://api.github.com"
	DefaultUserAgent         = "secretbroker"
	DefaultAPIVersionActions = "2022-11-28"
	// DefaultAPIVersionActionsGHES is the Actions default for GitHub
	// Enterprise Server (a base URL ending in /api/v3, without
	// LegacyRoutes): its 3.21 reference documents this version only.
	DefaultAPIVersionActionsGHES = "2026-03-10"
	DefaultAPIVersionAgents      = "2026-03-10"
	DefaultTimeout               = 30 * time.Second
)

const (
	// maxBody bounds how much of a response body the client reads.
	maxBody = 1 << 20
	// lookupTimeout bounds one repository id lookup for legacy routes,
	// which may outlive the caller that started it.
	lookupTimeout = 30 * time.Second
)

// Config configures a Client. Only Token is usually needed; the zero value
// of every other field selects the default documented on it.
type Config struct {
	// BaseURL is the REST API's root: "https://api.github.com" (the
	// default) or, for GitHub Enterprise Server, "https://HOST/api/v3". A
	// trailing slash is tolerated. It must be an absolute http or https URL
	// without credentials, query or fragment.
	BaseURL string
	// Token is sent as "Authorization: Bearer <token>"; no Authorization
	// header is sent when it is empty. It is ignored when Credentials is
	// set.
	Token Token
	// Credentials, when set, hands out the credential for each request's
	// owner (a token file, a GitHub App's installations); each credential
	// has its own pacer, pauses and metrics label. A 401 makes the client
	// renew the credential once and retry. nil means the fixed Token.
	Credentials credential.Source
	// UserAgent is the User-Agent header; default "secretbroker".
	UserAgent string
	// APIVersionActions is the X-GitHub-Api-Version header for Actions
	// scopes and for repository lookups; default "2022-11-28", or
	// "2026-03-10" (DefaultAPIVersionActionsGHES) when BaseURL's path ends
	// in /api/v3 and LegacyRoutes is off (GitHub Enterprise Server 3.21,
	// whose reference gives only that version; the older releases'
	// reference, with the legacy routes, predates API versions).
	APIVersionActions string
	// APIVersionAgents is the X-GitHub-Api-Version header for Agents
	// scopes; default "2026-03-10".
	APIVersionAgents string
	// LegacyRoutes selects the routes of older GitHub Enterprise Server
	// releases, where environment secrets live under
	// /repositories/{repository_id}/environments/{environment_name}/secrets.
	// Before each call the client asks GitHub for the repository's current
	// id (GET /repos/{owner}/{repo}, conditional on the ETag of the answer
	// it cached: a 304 when nothing changed), since a rename or transfer
	// moves a name to another id. Other scopes are unaffected.
	LegacyRoutes bool
	// HTTPClient sends the requests. The default has a 30 s timeout and an
	// OpenTelemetry-instrumented pooled transport (transport.go: idle
	// connections for 100 requests in flight, HTTP/2 where GitHub offers
	// it, reuse counted in secretbroker_upstream_connections_total), whose
	// span per attempt carries the attributes of trace.go. Whichever
	// client sends, the Client follows no redirect (noRedirects): a 3xx
	// answer is an *Error with its status, not retried. The Client does
	// not modify the given http.Client.
	HTTPClient *http.Client
	// Pacing paces and retries the requests to stay within GitHub's rate
	// limits for the credential; nil selects DefaultPacing(). New rejects
	// a Pacing outside the ranges its fields document.
	Pacing *Pacing
	// Logger receives one Info line per retry, with the method, route
	// template, reason (rate_limit, server_error, transport), status,
	// attempt and wait; one Info line per rate-limit answer that paused
	// the credential, with the reason (primary, secondary_pause) and how
	// long; and one Debug line per pacer wait over a second, with its
	// reason: never a path, a value or the token. nil discards them.
	Logger *slog.Logger
	// SharedState, when set, gives the pacer the state the credential
	// shares with the broker's other replicas (sharedstate.go); nil keeps
	// it in memory.
	SharedState StateFunc
	// MeterProvider receives the client's metrics (metrics.go): requests
	// and their durations per attempt, retries, the rate limits GitHub
	// reported and the pacer's queue. nil selects a no-op provider.
	MeterProvider metric.MeterProvider
	// TracerProvider receives the client's spans (trace.go): the pacer's
	// wait, and with the default HTTPClient one span per attempt. nil
	// selects OpenTelemetry's global provider.
	TracerProvider trace.TracerProvider
}

// Client is a GitHub REST client for the secrets API. It is safe for
// concurrent use. Create one with New.
type Client struct {
	base      *url.URL
	creds     *credentials // a pointer, so that %v of a Client never shows a token
	userAgent string
	vActions  string
	vAgents   string
	legacy    bool
	ghes      bool // GitHub Enterprise Server: a base URL under /api/v3, or legacy routes
	hc        *http.Client
	pacing    Pacing
	log       *slog.Logger
	metrics   *metrics
	tracer    trace.Tracer

	retries   atomic.Int64 // PacerStats.Retries
	throttled atomic.Int64 // PacerStats.Throttled

	repoIDs    sync.Map // lower-cased "owner/repo" -> cachedRepoID, for legacy routes
	repoOwners sync.Map // int64 -> [2]string{owner, repo}, for legacy routes' credentials
	lookups    Group[int64]
}

// New returns a Client for cfg. It fails when BaseURL is not an absolute
// http or https URL, or when Pacing is out of range.
func New(cfg Config) (*Client, error) {
	raw := cfg.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, which may hold credentials.
		return nil, errors.New("upstream: base URL is not a valid URL")
	}
	shown := *base
	shown.User = nil // never repeat user information, password or not
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, fmt.Errorf("upstream: base URL %q: scheme must be http or https", shown.String())
	case base.Host == "" || base.Opaque != "":
		return nil, fmt.Errorf("upstream: base URL %q: not an absolute URL with a host", shown.String())
	case base.User != nil:
		return nil, fmt.Errorf("upstream: base URL %q: must not hold credentials; use Config.Token", shown.String())
	case base.RawQuery != "" || base.ForceQuery || base.Fragment != "":
		return nil, fmt.Errorf("upstream: base URL %q: must not have a query or fragment", shown.String())
	}
	esc := strings.TrimRight(base.EscapedPath(), "/")
	if base.Path, err = url.PathUnescape(esc); err != nil {
		return nil, fmt.Errorf("upstream: base URL path: %w", err)
	}
	base.RawPath = esc

	pacing := DefaultPacing()
	if cfg.Pacing != nil {
		pacing = *cfg.Pacing
	}
	if pacing, err = pacing.normalized(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.MeterProvider)
	if err != nil {
		return nil, err
	}
	creds, err := newCredentials(cfg, pacing, m)
	if err != nil {
		return nil, err
	}
	if err := m.watch(creds); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	c := &Client{
		base:      base,
		creds:     creds,
		userAgent: cmp.Or(cfg.UserAgent, DefaultUserAgent),
		vActions:  cmp.Or(cfg.APIVersionActions, defaultActionsVersion(base, cfg.LegacyRoutes)),
		vAgents:   cmp.Or(cfg.APIVersionAgents, DefaultAPIVersionAgents),
		legacy:    cfg.LegacyRoutes,
		ghes:      cfg.LegacyRoutes || isGHES(base),
		hc:        cfg.HTTPClient,
		pacing:    pacing,
		log:       logger,
		metrics:   m,
		tracer:    tracerOf(cfg.TracerProvider),
	}
	if c.hc == nil {
		if c.hc, err = defaultHTTPClient(cfg.TracerProvider, m); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// routeKey carries a request's route template to the span name formatter.
type routeKey struct{}

// defaultHTTPClient is the client Config.HTTPClient defaults to: a 30 s
// timeout, the pooled transport of transport.go with connection reuse
// counted in m, inside OpenTelemetry's instrumented transport.
func defaultHTTPClient(tp trace.TracerProvider, m *metrics) (*http.Client, error) {
	return pooledClient(tp, m, NewTransport())
}

// spanName names a client span by the request's route template, never by
// its path: paths hold names, and templates keep span names few.
func spanName(_ string, r *http.Request) string {
	if route, ok := r.Context().Value(routeKey{}).(string); ok {
		return "github " + r.Method + " " + route
	}
	return "github " + r.Method
}

// GetPublicKey returns the scope's public key, with the response's ETag.
func (c *Client) GetPublicKey(ctx context.Context, s Scope) (PublicKey, error) {
	pk, _, err := c.publicKey(ctx, s, "")
	return pk, err
}

// RevalidatePublicKey asks whether the scope's public key is still the one
// whose response had ETag etag, with a conditional request
// (If-None-Match), which GitHub does not count against the primary rate
// limit when it answers 304. On 304 notModified is true and pk is zero
// but for pk.ETag, which is etag; otherwise pk is the current key with its
// ETag. An empty etag makes it an unconditional GetPublicKey.
func (c *Client) RevalidatePublicKey(ctx context.Context, s Scope, etag string) (pk PublicKey, notModified bool, err error) {
	return c.publicKey(ctx, s, etag)
}

func (c *Client) publicKey(ctx context.Context, s Scope, etag string) (PublicKey, bool, error) {
	sp, err := c.scopePath(ctx, s)
	if err != nil {
		return PublicKey{}, false, err
	}
	var pk PublicKey
	res, err := c.do(ctx, request{
		method:      http.MethodGet,
		route:       sp.route + "/secrets/public-key",
		path:        sp.path + "/secrets/public-key",
		version:     c.version(s),
		out:         &pk,
		ifNoneMatch: etag,
	})
	if err != nil {
		c.legacyFailed(s, err)
		return PublicKey{}, false, err
	}
	if res.status == http.StatusNotModified {
		return PublicKey{ETag: etag}, true, nil
	}
	pk.ETag = res.header.Get("ETag")
	return pk, false, nil
}

// ListSecrets returns one page of the scope's secrets.
func (c *Client) ListSecrets(ctx context.Context, s Scope, p Page) (SecretList, error) {
	sp, err := c.scopePath(ctx, s)
	if err != nil {
		return SecretList{}, err
	}
	var list SecretList
	list.HasNext, err = c.getPage(ctx, s, sp.route+"/secrets", sp.path+"/secrets", p, &list)
	if err != nil {
		c.legacyFailed(s, err)
		return SecretList{}, err
	}
	return list, nil
}

// getPage fetches page p of a list into out and reports whether a next
// page exists (see hasNext). A page holding more items than per_page
// asked for is an error: GitHub never sends one, and the callers that
// read every page of a list (up to 100) would hold tens of thousands of
// items a page, as many as a MiB of body holds, instead of 100.
func (c *Client) getPage(ctx context.Context, s Scope, route, path string, p Page, out listPage) (bool, error) {
	q, err := pageQuery(p)
	if err != nil {
		return false, err
	}
	if _, err := c.do(ctx, request{
		method:  http.MethodGet,
		route:   route,
		path:    path,
		query:   q,
		version: c.version(s),
		out:     out,
	}); err != nil {
		return false, err
	}
	if n, per := out.items(), perPage(p); n > per {
		return false, fmt.Errorf("github: GET %s: the answer holds %d items for a page of at most %d", route, n, per)
	}
	return hasNext(p, out.totalCount()), nil
}

// listPage is one page of a GitHub list; every list GitHub's secrets API
// returns carries total_count.
type listPage interface {
	totalCount() int
	items() int
}

func (l *SecretList) totalCount() int     { return l.TotalCount }
func (l *RepositoryList) totalCount() int { return l.TotalCount }
func (l *SecretList) items() int          { return len(l.Secrets) }
func (l *RepositoryList) items() int      { return len(l.Repositories) }

// perPage is the number of items a page p holds at most: per_page, with
// GitHub's default of 30 and its cap of 100.
func perPage(p Page) int {
	if p.PerPage <= 0 {
		return 30
	}
	return min(p.PerPage, 100)
}

// hasNext reports whether page p of a list of total items has a next page:
// page × per_page < total_count, with GitHub's defaults (page 1, 30 per
// page) and its cap of 100 per page.
func hasNext(p Page, total int) bool {
	page, per := max(p.Page, 1), perPage(p)
	return page < (total+per-1)/per // page*per < total, without overflow
}

// GetSecret returns a secret's metadata; GitHub never returns its value.
func (c *Client) GetSecret(ctx context.Context, s Scope, name string) (Secret, error) {
	sp, err := c.secretPath(ctx, s, name)
	if err != nil {
		return Secret{}, err
	}
	var sec Secret
	if _, err := c.do(ctx, request{
		method:  http.MethodGet,
		route:   sp.route,
		path:    sp.path,
		version: c.version(s),
		out:     &sec,
	}); err != nil {
		return Secret{}, err
	}
	return sec, nil
}

// PutSecret creates or updates a secret with a value sealed to the scope's
// public key. created reports whether GitHub created the secret (201)
// rather than updating it (204).
func (c *Client) PutSecret(ctx context.Context, s Scope, name string, body PutSecretBody) (created bool, err error) {
	w, err := c.PutSecretFunc(ctx, s, name, func() (PutSecretBody, error) { return body, nil })
	return w.Created, err
}

// Written is what GitHub's answer to a successful PUT of a secret tells.
type Written struct {
	// Created: GitHub created the secret (201) rather than updating it
	// (204).
	Created bool
	// UpdatedFrom and UpdatedTo bound the secret's updated_at after the
	// write, on GitHub's clock, at whole seconds (see updatedWithin).
	// Both are zero when the answer had no usable Date header.
	UpdatedFrom, UpdatedTo time.Time
}

// clockSkew is how far apart the clocks of GitHub's servers are taken to
// be: the one that stamps a secret's updated_at and the one that dates the
// answer.
const clockSkew = time.Second

// updatedWithin bounds the updated_at a write left, from its answer's Date
// header (GitHub's clock, whole seconds, taken as the answer left) and the
// round trip took: the secret was stamped between the request's arrival,
// at most took before the answer, and the answer, widened by clockSkew on
// each side. ok is false without a valid Date.
func updatedWithin(h http.Header, took time.Duration) (from, to time.Time, ok bool) {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil || d.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	d = d.UTC()
	return d.Add(-took).Truncate(time.Second).Add(-clockSkew), d.Add(clockSkew), true
}

// PutSecretFunc is PutSecret with a body made at the last moment: body is
// called once per attempt, right after the pacer admits the request and
// right before it is sent, so that the caller can seal the value with the
// newest key it knows of, however long the request waited for its turn.
// An error from body aborts the call without sending anything; it is
// returned wrapped. body must not call the Client: the request holds a
// place in flight while body runs. The encrypted values body returns never
// appear in errors. When a retry follows an attempt whose outcome is
// unknown (a dropped connection), created may be false for a secret the
// first attempt created.
func (c *Client) PutSecretFunc(ctx context.Context, s Scope, name string, body func() (PutSecretBody, error)) (Written, error) {
	if body == nil {
		return Written{}, fmt.Errorf("upstream: PutSecretFunc: nil body function")
	}
	sp, err := c.secretPath(ctx, s, name)
	if err != nil {
		return Written{}, err
	}
	res, err := c.do(ctx, request{
		method:  http.MethodPut,
		route:   sp.route,
		path:    sp.path,
		version: c.version(s),
		makeBody: func() (any, []string, error) {
			b, err := body()
			if err != nil {
				return nil, nil, err
			}
			return b, []string{b.EncryptedValue}, nil
		},
	})
	if err != nil {
		c.legacyFailed(s, err)
		return Written{}, err
	}
	w := Written{Created: res.status == http.StatusCreated}
	w.UpdatedFrom, w.UpdatedTo, _ = updatedWithin(res.header, res.took)
	return w, nil
}

// DeleteSecret deletes a secret.
func (c *Client) DeleteSecret(ctx context.Context, s Scope, name string) error {
	sp, err := c.secretPath(ctx, s, name)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, request{
		method:     http.MethodDelete,
		route:      sp.route,
		path:       sp.path,
		version:    c.version(s),
		goneIsDone: true,
	})
	return err
}

// ListSelectedRepositories returns one page of the repositories selected
// for an organization secret. s must be an organization scope.
func (c *Client) ListSelectedRepositories(ctx context.Context, s Scope, name string, p Page) (RepositoryList, error) {
	sp, err := c.orgSecretPath(s, name)
	if err != nil {
		return RepositoryList{}, err
	}
	var list RepositoryList
	if list.HasNext, err = c.getPage(ctx, s, sp.route+"/repositories", sp.path+"/repositories", p, &list); err != nil {
		return RepositoryList{}, err
	}
	return list, nil
}

// SetSelectedRepositories replaces the repositories selected for an
// organization secret with ids; an empty ids clears the selection. s must
// be an organization scope.
func (c *Client) SetSelectedRepositories(ctx context.Context, s Scope, name string, ids []int64) error {
	sp, err := c.orgSecretPath(s, name)
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []int64{} // GitHub wants [], not null
	}
	_, err = c.do(ctx, request{
		method:  http.MethodPut,
		route:   sp.route + "/repositories",
		path:    sp.path + "/repositories",
		version: c.version(s),
		body: struct {
			IDs []int64 `json:"selected_repository_ids"`
		}{ids},
	})
	return err
}

// AddSelectedRepository adds a repository to those selected for an
// organization secret. s must be an organization scope.
func (c *Client) AddSelectedRepository(ctx context.Context, s Scope, name string, id int64) error {
	return c.selectedRepository(ctx, http.MethodPut, s, name, id)
}

// RemoveSelectedRepository removes a repository from those selected for an
// organization secret. s must be an organization scope.
func (c *Client) RemoveSelectedRepository(ctx context.Context, s Scope, name string, id int64) error {
	return c.selectedRepository(ctx, http.MethodDelete, s, name, id)
}

func (c *Client) selectedRepository(ctx context.Context, method string, s Scope, name string, id int64) error {
	sp, err := c.orgSecretPath(s, name)
	if err != nil {
		return err
	}
	if id <= 0 {
		return fmt.Errorf("upstream: repository id %d is not positive", id)
	}
	_, err = c.do(ctx, request{
		method:  method,
		route:   sp.route + "/repositories/{repository_id}",
		path:    sp.path + "/repositories/" + strconv.FormatInt(id, 10),
		version: c.version(s),
	})
	return err
}

// ListRepositoryOrganizationSecrets returns one page of the organization
// secrets shared with a repository. s must be a repository scope.
func (c *Client) ListRepositoryOrganizationSecrets(ctx context.Context, s Scope, p Page) (SecretList, error) {
	if err := validateScope(s); err != nil {
		return SecretList{}, err
	}
	if s.IsOrg() || s.IsEnvironment() {
		return SecretList{}, fmt.Errorf("upstream: scope %s: organization secrets are listed for repository scopes only", s)
	}
	if err := c.offered(s); err != nil {
		return SecretList{}, err
	}
	if c.legacy {
		// The older release's reference has no such route.
		return SecretList{}, &NotOfferedError{What: "route listing a repository's organization secrets (older releases, --upstream-legacy-routes)", Where: "GitHub Enterprise Server"}
	}
	var list SecretList
	var err error
	if list.HasNext, err = c.getPage(ctx, s, "/repos/{owner}/{repo}/{app}/organization-secrets", "/"+s.Path()+"/organization-secrets", p, &list); err != nil {
		return SecretList{}, err
	}
	return list, nil
}

// GetRepository returns a repository; its ID is what legacy routes need.
func (c *Client) GetRepository(ctx context.Context, owner, repo string) (Repository, error) {
	r, _, _, err := c.repository(ctx, owner, repo, "")
	return r, err
}

// repository gets a repository, conditionally (If-None-Match) on etag
// when it is not empty, and returns the answer's ETag. On 304 notModified
// is true and r is zero.
func (c *Client) repository(ctx context.Context, owner, repo, etag string) (r Repository, newETag string, notModified bool, err error) {
	if err := validSegment("owner", owner); err != nil {
		return Repository{}, "", false, err
	}
	if err := validSegment("repo", repo); err != nil {
		return Repository{}, "", false, err
	}
	res, err := c.do(ctx, request{
		method:      http.MethodGet,
		route:       "/repos/{owner}/{repo}",
		path:        "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo),
		version:     c.vActions,
		out:         &r,
		ifNoneMatch: etag,
	})
	if err != nil {
		return Repository{}, "", false, err
	}
	if res.status == http.StatusNotModified {
		return Repository{}, etag, true, nil
	}
	return r, res.header.Get("ETag"), false, nil
}

// version returns the X-GitHub-Api-Version for the scope's app.
func (c *Client) version(s Scope) string {
	if s.App == Agents {
		return c.vAgents
	}
	return c.vActions
}

// PutValueOptional reports whether a PUT of a secret of scope s may leave
// out encrypted_value and key_id, updating an existing secret's other
// settings and keeping its value, as the reference of the GitHub and API
// version the client talks to gives it: for Actions organization and
// repository secrets on github.com at API version 2022-11-28 (003:215/219,
// 003:830/834) and on the older GitHub Enterprise Server, LegacyRoutes
// (004:233/237, 004:737/741; 002's organization PUT). Everywhere else they
// are Required: environment secrets (003:1147/1151, 004:1042/1046), Agents
// secrets (001:215/219, 001:852/856) and GitHub Enterprise Server 3.21
// (000:218/222, 000:835/839); so is any other API version, which no
// reference the client follows documents.
func (c *Client) PutValueOptional(s Scope) bool {
	if s.App != Actions || s.IsEnvironment() {
		return false
	}
	if c.legacy {
		return true
	}
	return !c.ghes && c.vActions == DefaultAPIVersionActions
}

// A routePath is a route template and the matching escaped path, both
// relative to the base URL and starting with "/".
type routePath struct {
	route, path string
}

// scopePath returns the scope's prefix, resolving the repository id for a
// legacy environment route.
func (c *Client) scopePath(ctx context.Context, s Scope) (routePath, error) {
	if err := validateScope(s); err != nil {
		return routePath{}, err
	}
	if err := c.offered(s); err != nil {
		return routePath{}, err
	}
	switch {
	case s.IsOrg():
		return routePath{"/orgs/{org}/{app}", "/" + s.Path()}, nil
	case s.IsEnvironment() && c.legacy:
		id, err := c.repositoryID(ctx, s.Owner, s.Repo)
		if err != nil {
			return routePath{}, err
		}
		return routePath{
			"/repositories/{repository_id}/environments/{environment_name}",
			"/repositories/" + strconv.FormatInt(id, 10) + "/environments/" + url.PathEscape(s.Environment),
		}, nil
	case s.IsEnvironment():
		return routePath{"/repos/{owner}/{repo}/environments/{environment_name}", "/" + s.Path()}, nil
	default:
		return routePath{"/repos/{owner}/{repo}/{app}", "/" + s.Path()}, nil
	}
}

// secretPath returns the route and path of one secret of the scope.
func (c *Client) secretPath(ctx context.Context, s Scope, name string) (routePath, error) {
	if err := validSegment("secret name", name); err != nil {
		return routePath{}, err
	}
	sp, err := c.scopePath(ctx, s)
	if err != nil {
		return routePath{}, err
	}
	return routePath{sp.route + "/secrets/{secret_name}", sp.path + "/secrets/" + url.PathEscape(name)}, nil
}

// orgSecretPath is secretPath for the organization-only endpoints.
func (c *Client) orgSecretPath(s Scope, name string) (routePath, error) {
	if err := validateScope(s); err != nil {
		return routePath{}, err
	}
	if err := c.offered(s); err != nil {
		return routePath{}, err
	}
	if !s.IsOrg() {
		return routePath{}, fmt.Errorf("upstream: scope %s: selected repositories exist for organization secrets only", s)
	}
	if err := validSegment("secret name", name); err != nil {
		return routePath{}, err
	}
	return routePath{"/orgs/{org}/{app}/secrets/{secret_name}", "/" + s.Path() + "/secrets/" + url.PathEscape(name)}, nil
}

// validateScope checks that s has one of the three shapes Scope documents.
func validateScope(s Scope) error {
	if s.App != Actions && s.App != Agents {
		return fmt.Errorf("upstream: scope %s: unknown app %q", s, s.App)
	}
	if s.IsOrg() {
		if s.Owner != "" || s.Repo != "" || s.Environment != "" {
			return fmt.Errorf("upstream: scope %s: an organization scope has no owner, repository or environment", s)
		}
		return validSegment("org", s.Org)
	}
	if err := validSegment("owner", s.Owner); err != nil {
		return err
	}
	if err := validSegment("repo", s.Repo); err != nil {
		return err
	}
	if s.IsEnvironment() {
		if s.App != Actions {
			return fmt.Errorf("upstream: scope %s: environments have %s secrets only", s, Actions)
		}
		return validSegment("environment", s.Environment)
	}
	return nil
}

// validSegment rejects values that cannot be one path segment: empty, or a
// dot segment that a server would resolve away.
func validSegment(what, v string) error {
	if v == "" || v == "." || v == ".." {
		return fmt.Errorf("upstream: %s %q is not a valid path segment", what, v)
	}
	return nil
}

// pageQuery encodes p's non-zero fields.
func pageQuery(p Page) (url.Values, error) {
	if p.Page < 0 || p.PerPage < 0 {
		return nil, fmt.Errorf("upstream: page %d, per_page %d: must not be negative", p.Page, p.PerPage)
	}
	q := url.Values{}
	if p.Page > 0 {
		q.Set("page", strconv.Itoa(p.Page))
	}
	if p.PerPage > 0 {
		q.Set("per_page", strconv.Itoa(p.PerPage))
	}
	return q, nil
}

// repositoryID returns GitHub's current id of owner/repo, for a legacy
// route. A name is not bound to an id for good: a repository renamed or
// transferred keeps its id, and a new repository may take its old name.
// So every call asks GitHub (checkRepositoryID), conditionally on the
// cached answer's ETag, and the id is used only once GitHub has confirmed
// it. Concurrent callers for one repository share one request (a Group).
// A waiter whose context ends stops waiting; the request itself runs on
// for the others, bounded by lookupTimeout, and keeps the first caller's
// trace. Later callers join it while anyone still waits for it; once the
// last waiter has left, it is cancelled. Once it has finished or been
// left, the next caller starts a new one.
func (c *Client) repositoryID(ctx context.Context, owner, repo string) (int64, error) {
	key := strings.ToLower(owner + "/" + repo)
	res, err := c.lookups.Do(ctx, key, func(ctx context.Context) (int64, error) {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		return c.checkRepositoryID(lctx, key, owner, repo)
	})
	if err != nil {
		return 0, fmt.Errorf("waiting for the repository id for a legacy route: %w", err)
	}
	if res.Err != nil {
		return 0, fmt.Errorf("resolving the repository id for a legacy route: %w", res.Err)
	}
	return res.Val, nil
}

// A cachedRepoID is a repository id a legacy route used, with the ETag of
// the answer that gave it ("" when GitHub sent none).
type cachedRepoID struct {
	id   int64
	etag string
}

// checkRepositoryID asks GitHub for the id of owner/repo (key is its
// lower-cased "owner/repo"): with If-None-Match when the cached answer had
// an ETag, so that an unchanged repository costs a 304, which GitHub does
// not count against the primary rate limit (the pacer admits and charges
// it as the GET it is). A 304 confirms the cached id; a 200 replaces it.
// Any failure fails the call, a transient one included (a 5xx, a dropped
// connection, after do's retries): no id is used unconfirmed. A 404 or a
// redirect (a repository renamed away, GitHub pointing at its new name;
// the client follows no redirect) says GitHub no longer maps the name to
// the cached id, which is forgotten.
func (c *Client) checkRepositoryID(ctx context.Context, key, owner, repo string) (int64, error) {
	var old cachedRepoID
	v, had := c.repoIDs.Load(key)
	if had {
		old = v.(cachedRepoID)
	}
	r, etag, notModified, err := c.repository(ctx, owner, repo, old.etag)
	if err != nil {
		if had && unmapped(err) {
			// Only the entry this check read: another check may have
			// stored a newer one meanwhile.
			c.repoIDs.CompareAndDelete(key, old)
		}
		return 0, err
	}
	if notModified {
		return old.id, nil
	}
	if r.ID <= 0 {
		return 0, fmt.Errorf("github: GET /repos/{owner}/{repo}: the answer has no repository id")
	}
	c.repoOwners.Store(r.ID, [2]string{owner, repo})
	c.repoIDs.Store(key, cachedRepoID{id: r.ID, etag: etag})
	return r.ID, nil
}

// unmapped reports whether err is GitHub saying that a repository name
// maps to no repository of its own: a 404, or a redirect.
func unmapped(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && (e.StatusCode == http.StatusNotFound || redirectMessage(e.StatusCode) != "")
}

// legacyFailed forgets the cached repository id of a legacy environment
// scope after a 404 from an endpoint that answers 404 only for a missing
// repository or environment (not for a missing secret): the repository
// may have been deleted and created again under a new id, and the next
// call's check (checkRepositoryID) is then unconditional.
func (c *Client) legacyFailed(s Scope, err error) {
	if err == nil || !c.legacy || !s.IsEnvironment() {
		return
	}
	var e *Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
		c.repoIDs.Delete(strings.ToLower(s.Owner + "/" + s.Repo))
	}
}

// A request is one call to GitHub.
type request struct {
	method  string
	route   string     // template, for errors and span names
	path    string     // escaped, relative to the base URL, with a leading "/"
	query   url.Values // may be nil
	version string     // X-GitHub-Api-Version
	body    any        // JSON-encoded when non-nil
	// makeBody, when set, makes the body once per attempt, after the pacer
	// admitted it; it also returns values of the body that must not appear
	// in errors.
	makeBody func() (body any, secrets []string, err error)
	out      any      // decoded from a 2xx answer's body when non-nil
	secrets  []string // values of the body that must not appear in errors
	// ifNoneMatch, when set, is sent as If-None-Match; a 304 answer is
	// then a success.
	ifNoneMatch string
	// probe sends r with the credential source's probe credential (the
	// token, or the app's JWT) whatever its path.
	probe bool
	// auth is the attempt's token; do sets it.
	auth string
	// goneIsDone: a 404 after an attempt whose outcome is unknown means
	// that attempt deleted it, so do reports success. Only a request that
	// deletes the resource its path names (DeleteSecret) may set it: a 404
	// to a DELETE of a secret's selected repository, say, means the secret
	// or the repository never existed, which no earlier attempt caused.
	goneIsDone bool
}

// A response is what callers need of a 2xx answer (or of a 304 to a
// conditional request).
type response struct {
	status int
	header http.Header
	// took is the answered attempt's round trip.
	took time.Duration
}

// url returns r's absolute URL.
func (c *Client) url(r request) (string, error) {
	u := *c.base
	esc := c.base.RawPath + r.path
	p, err := url.PathUnescape(esc)
	if err != nil {
		return "", err
	}
	u.Path, u.RawPath = p, esc
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	return u.String(), nil
}

// An outcome is what the pacer and the retry loop need of an attempt's
// answer: its header (nil when there was none) and what it said of the
// rate limits (with the refusals GitHub tells only in its message).
type outcome struct {
	header http.Header
	rl     pace.RateLimit
	// unsent: a write (any method but GET) that got no answer never had a
	// connection to go on (a refused dial, a failed DNS lookup, a TLS
	// handshake that failed): GitHub cannot have applied it. Known only
	// through a transport that reports its progress (httptrace: net/http's
	// does); with another, a failure may have come after GitHub had the
	// request.
	unsent bool
}

// send makes one attempt at r: it sends body (nil for none) to u and
// decodes the answer. A non-2xx answer is an *Error; other failures are
// wrapped with the route template. The outcome is returned whether or
// not there was an answer. No error holds the token or any of secrets.
func (c *Client) send(ctx context.Context, r request, u string, body []byte, secrets []string) (response, outcome, error) {
	fail := func(what string, err error) error {
		return fmt.Errorf("github: %s %s: %s: %w", r.method, r.route, what, c.redact(err, secrets))
	}
	none := outcome{rl: pace.ParseRateLimit(nil, 0, time.Time{})}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx = context.WithValue(ctx, routeKey{}, r.route)
	// Whether a write that fails may have reached GitHub: not before the
	// transport had a connection for it. (Once it has one, the bytes may
	// be on their way before any later hook runs: WroteRequest can come
	// after GitHub has the request.)
	var traced, gotConn atomic.Bool
	if r.method != http.MethodGet {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GetConn: func(string) { traced.Store(true) },
			GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		})
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return response{}, none, fail("building the request", err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("X-GitHub-Api-Version", r.version)
	if r.auth != "" {
		req.Header.Set("Authorization", "Bearer "+r.auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.ifNoneMatch != "" {
		req.Header.Set("If-None-Match", r.ifNoneMatch)
	}

	resp, err := noRedirects(c.hc).Do(req)
	if err != nil {
		none.unsent = traced.Load() && !gotConn.Load()
		return response{}, none, fail("sending the request", err)
	}
	now := time.Now()
	recordStatus(ctx, r.method, resp.StatusCode)
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
	}()

	out := outcome{header: resp.Header, rl: pace.ParseRateLimit(resp.Header, resp.StatusCode, now)}
	res := response{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusNotModified && r.ifNoneMatch != "" {
		return res, out, nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		e := newError(r.method, r.route, resp, b, out.rl, now, secrets)
		out.rl = out.rl.WithMessage(e.Message)
		if msg := redirectMessage(resp.StatusCode); msg != "" {
			e.Message = msg
		}
		return response{}, out, e
	}
	if r.out == nil {
		return res, out, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return response{}, out, fail("reading the response", err)
	}
	if len(b) > maxBody {
		return response{}, out, fail("reading the response", fmt.Errorf("body exceeds %d bytes", maxBody))
	}
	if err := json.Unmarshal(b, r.out); err != nil {
		return response{}, out, fail("decoding the response", err)
	}
	return res, out, nil
}

// redact wraps err so that its message never holds any of extra (do puts
// each attempt's token there), whatever a transport put into it;
// errors.Is and errors.As still see err.
func (c *Client) redact(err error, extra []string) error {
	return &redactedError{err: err, secrets: extra}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}

func (e *redactedError) Unwrap() error { return e.err }

// VerifyCredential proves the token with GitHub's cheapest call, GET
// /rate_limit, which GitHub does not count against the primary rate limit;
// it goes through the pacer and is retried like any read. It returns nil
// when GitHub accepts the token, and also on a 404, which GitHub
// Enterprise Server answers when its rate limits are turned off: the
// request was authenticated before it was found missing. GitHub refusing
// the token is an *Error with StatusCode 401 or 403 (see
// CredentialRefused); any other error (GitHub unreachable, a 5xx, a rate
// limit) says nothing of the token.
//
// With a GitHub App (Config.Credentials) it proves the app's JWT with GET
// /app instead.
func (c *Client) VerifyCredential(ctx context.Context) error {
	_, path := c.creds.src.Probe()
	_, err := c.do(ctx, request{
		method:  http.MethodGet,
		route:   path,
		path:    path,
		version: c.vActions,
		probe:   true,
	})
	if e, ok := errors.AsType[*Error](err); ok && e.StatusCode == http.StatusNotFound {
		return nil
	}
	return err
}

// CredentialRefused reports whether err, from VerifyCredential or any
// other call, is GitHub refusing the token: a 401, or a 403 that is not a
// rate limit. It returns the status code when it is.
func CredentialRefused(err error) (status int, refused bool) {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return 0, false
	}
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		return e.StatusCode, true
	case e.StatusCode == http.StatusForbidden && !e.RateLimited:
		return e.StatusCode, true
	}
	return 0, false
}

// ActionsVersionFor is the Actions API version New uses for a client of
// baseURL, with legacy routes or not, when Config names none; see
// Config.APIVersionActions. A baseURL that does not parse gets
// DefaultAPIVersionActions (New refuses it anyway).
func ActionsVersionFor(baseURL string, legacy bool) string {
	base, err := url.Parse(cmp.Or(baseURL, DefaultBaseURL))
	if err != nil {
		return DefaultAPIVersionActions
	}
	return defaultActionsVersion(base, legacy)
}

// defaultActionsVersion is ActionsVersionFor for a parsed base URL.
func defaultActionsVersion(base *url.URL, legacy bool) string {
	if !legacy && isGHES(base) {
		return DefaultAPIVersionActionsGHES
	}
	return DefaultAPIVersionActions
}

// isGHES reports whether base is GitHub Enterprise Server's API root,
// https://HOST/api/v3.
func isGHES(base *url.URL) bool {
	return strings.HasSuffix(strings.TrimRight(base.Path, "/"), "/api/v3")
}

// NotOfferedError reports a request for secrets the GitHub the client
// talks to does not have, as its reference pages give it; nothing was
// sent. It is safe to log. Find it with errors.As.
type NotOfferedError struct {
	// What is missing, for example "Agents secrets"; Where names the
	// GitHub, for example "GitHub Enterprise Server".
	What, Where string
}

func (e *NotOfferedError) Error() string {
	return "upstream: " + e.Where + " has no " + e.What
}

// offered checks that the client's GitHub has s's secrets: GitHub
// Enterprise Server's reference pages (3.21 and the older release with the
// legacy routes) document Actions secrets only; Agents secrets are
// github.com's.
func (c *Client) offered(s Scope) error {
	if c.ghes && s.App == Agents {
		return &NotOfferedError{What: "Agents secrets", Where: "GitHub Enterprise Server"}
	}
	return nil
}
