package credential

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/secretbroker/secretbroker/upstream/internal/coalesce"
	"github.com/secretbroker/secretbroker/upstream/netfail"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// DefaultBaseURL is GitHub's REST API root.
const DefaultBaseURL = "https://api.github.com"

// lookupTimeout bounds one installation lookup, which runs on for as long
// as any caller waits for it (one without a deadline may wait for ever),
// however many of them come and go.
const lookupTimeout = 30 * time.Second

// notInstalledFor is how long an owner GitHub said the app is not
// installed on is answered so without asking again (as a failed mint is
// for mintRetry): a caller retrying a call for such an owner costs GitHub
// up to three lookups (findInstallation) each 5 s, not each call, and an
// installation made meanwhile takes effect within 5 s. At most
// maxNotInstalled owners are remembered so.
const (
	notInstalledFor = 5 * time.Second
	maxNotInstalled = 1024
)

// rateLimitPause is how long a rate-limit refusal of one of the app's own
// requests that says nothing of how long to wait (no Retry-After, no
// x-ratelimit-reset ahead) holds that request back: GitHub's guidance for
// a secondary rate limit is to wait at least a minute (the client's
// Pacing.SecondaryPause defaults to the same).
const rateLimitPause = time.Minute

// AppConfig configures a GitHub App Source.
type AppConfig struct {
	// AppID is the GitHub App's id.
	AppID int64
	// PrivateKeyFile is the PEM file of the app's RSA private key. It is
	// read again when it changes, and after GitHub refuses a JWT or a
	// token.
	PrivateKeyFile string
	// PrivateKey, when PrivateKeyFile is empty, is the key itself, which
	// never changes (--dev-github-app, tests).
	PrivateKey *rsa.PrivateKey
	// InstallationID, when positive, is the one installation that serves
	// every owner; no installation is looked up.
	InstallationID int64
	// BaseURL is the REST API root: DefaultBaseURL when empty, or
	// "https://HOST/api/v3" for GitHub Enterprise Server.
	BaseURL string
	// Transport sends the app's own requests (installation lookups and
	// token minting); nil selects http.DefaultTransport.
	Transport http.RoundTripper
	// UserAgent is the User-Agent of the app's own requests; default
	// "secretbroker".
	UserAgent string
}

// App is a GitHub App Source: each installation is a Credential labelled
// "installation:<id>", whose installation tokens are minted when first
// needed and refreshed a minute before they expire (ghinstallation's
// margin); a call that holds the old token meanwhile keeps a token that is
// still valid. The app's own JWT is the Credential labelled "app" (Probe).
type App struct {
	id        int64
	base      string
	userAgent string
	signer    *keySigner
	rt        http.RoundTripper // sends the app's own requests
	hc        *http.Client      // the app's own requests, as the app (JWT)
	jwtCred   appCredential
	fixed     *installation

	// lookups runs one installation lookup per lower-cased owner for
	// all the callers that want it at once, and cancels it when the last
	// of them has left.
	lookups coalesce.Group[*installation]

	mu      sync.Mutex
	byID    map[int64]*installation
	byOwner map[string]*installation // lower-cased owner
	// missing holds, by lower-cased owner, until when an owner without
	// an installation is answered so without a lookup (notInstalledFor).
	missing map[string]time.Time
	// held is the latest rate-limit refusal of a request signed with the
	// app's JWT (an installation lookup, a token mint): GitHub counts
	// the app's requests together, so none is sent before its RetryAt,
	// for any owner or installation; it is their answer meanwhile.
	held *HTTPError
}

// NewApp returns the App for cfg. It reads and parses the private key now
// and fails when it cannot; its errors never hold the key.
func NewApp(cfg AppConfig) (*App, error) {
	if cfg.AppID <= 0 {
		return nil, fmt.Errorf("credential: GitHub App id %d is not positive", cfg.AppID)
	}
	if cfg.InstallationID < 0 {
		return nil, fmt.Errorf("credential: GitHub App installation id %d is negative", cfg.InstallationID)
	}
	signer := &keySigner{file: watchedFile{path: cfg.PrivateKeyFile}, key: cfg.PrivateKey}
	switch {
	case cfg.PrivateKeyFile != "":
		if _, err := signer.reload(false); err != nil {
			return nil, err
		}
	case cfg.PrivateKey == nil:
		return nil, errors.New("credential: GitHub App: no private key file")
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "secretbroker"
	}
	tr = userAgent{rt: tr, ua: ua}
	apps, err := ghinstallation.NewAppsTransportWithOptions(tr, cfg.AppID, ghinstallation.WithSigner(signer))
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	apps.BaseURL = base
	a := &App{
		id:        cfg.AppID,
		base:      base,
		userAgent: ua,
		signer:    signer,
		rt:        tr,
		hc:        &http.Client{Transport: apps, Timeout: lookupTimeout, CheckRedirect: sameOrigin},
		byID:      map[int64]*installation{},
		byOwner:   map[string]*installation{},
		missing:   map[string]time.Time{},
	}
	a.jwtCred = appCredential{a}
	if cfg.InstallationID > 0 {
		a.fixed = a.installation(cfg.InstallationID)
	}
	return a, nil
}

// maxRedirects is how many redirects an installation lookup follows, as
// net/http does by default.
const maxRedirects = 10

// sameOrigin is the CheckRedirect of the app's own requests: it follows a
// redirect (GitHub's, of a renamed or transferred repository's path) only
// to the scheme and host of the request it redirects. The app's transport
// signs every request it sends, a redirected one included, so net/http's
// own rule (it drops an Authorization header set on the request when a
// redirect leaves the host) does not apply: without this, a redirect to
// another host would hand it a JWT that can mint tokens for every
// installation. The redirect answer of another origin is the answer.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	from := via[len(via)-1].URL
	if !strings.EqualFold(req.URL.Scheme, from.Scheme) || !strings.EqualFold(req.URL.Host, from.Host) {
		return http.ErrUseLastResponse
	}
	return nil
}

// userAgent sets the User-Agent of the app's own requests, and bounds
// their answers' bodies to maxAnswer.
type userAgent struct {
	rt http.RoundTripper
	ua string
}

func (u userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	resp, err := u.rt.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &boundedBody{rc: resp.Body, left: maxAnswer}
	}
	return resp, err
}

// maxAnswer bounds the body of an answer to one of the app's own
// requests: an installation, a token, an error's message are a few
// hundred bytes. ghinstallation decodes a mint's answer with a
// json.Decoder, which would otherwise buffer whatever the server sends
// (a token that never ends) until mintTimeout.
const maxAnswer = 1 << 20

// errAnswerTooLarge is the read error of a body past maxAnswer.
var errAnswerTooLarge = fmt.Errorf("credential: the answer's body exceeds %d bytes", maxAnswer)

// boundedBody is a response body that fails once more than left bytes
// were read.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, errAnswerTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// String names the app without its key.
func (a *App) String() string { return "credential.App(" + strconv.FormatInt(a.id, 10) + ")" }

// GoString names the app without its key, for %#v.
func (a *App) GoString() string { return a.String() }

// Probe returns the app's JWT credential and ProbeApp.
func (a *App) Probe() (Credential, string) { return a.jwtCred, ProbeApp }

// For returns the installation that serves owner: the fixed one when
// AppConfig.InstallationID was set, else the one GitHub names for the
// organization (repo "") or for the repository, falling back to the
// owner's (see findInstallation), cached per owner.
// Concurrent callers for one owner share one lookup, which a caller
// arriving while it runs joins, and which is cancelled once every caller
// waiting for it has left (the next caller looks up again: a lookup is a
// GET, which changes nothing at GitHub). An owner without an
// installation is a *NotInstalledError, remembered for notInstalledFor
// only, so that installing the app later takes effect. A lookup or a mint
// GitHub refused for a rate limit is an *HTTPError with RateLimited set,
// which is the answer for every owner not looked up yet, without a
// lookup, until its RetryAt (see App.held).
func (a *App) For(ctx context.Context, owner, repo string) (Credential, error) {
	if a.fixed != nil {
		return a.fixed, nil
	}
	if owner == "" {
		return nil, errors.New("credential: no owner to find the GitHub App's installation for")
	}
	key := strings.ToLower(owner)
	if in, ok, err := a.known(key, owner); ok {
		return in, err
	}
	res, err := a.lookups.Do(ctx, key, func(ctx context.Context) (*installation, error) {
		// A lookup that ended between known and Do answers here.
		if in, ok, err := a.known(key, owner); ok {
			return in, err
		}
		return a.runLookup(ctx, key, owner, repo)
	})
	if err != nil {
		return nil, fmt.Errorf("credential: waiting for the GitHub App's installation for %q: %w", owner, err)
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Val, nil
}

// known answers For for owner key without a lookup when it can (ok): its
// installation cached, an installation missing not long ago, or a
// rate-limit refusal holding the app's JWT requests.
func (a *App) known(key, owner string) (in *installation, ok bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in, ok := a.byOwner[key]; ok {
		return in, true, nil
	}
	if until, ok := a.missing[key]; ok {
		if time.Now().Before(until) {
			return nil, true, &NotInstalledError{Account: owner}
		}
		delete(a.missing, key)
	}
	if he := a.heldLocked(time.Now()); he != nil {
		return nil, true, he
	}
	return nil, false, nil
}

// runLookup looks owner's installation up and remembers what GitHub said
// (see For), under ctx, a.lookups' context for the call, which is
// cancelled when the last caller waiting for it leaves.
func (a *App) runLookup(ctx context.Context, key, owner, repo string) (*installation, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	id, err := a.findInstallation(ctx, owner, repo)
	a.mu.Lock()
	defer a.mu.Unlock()
	var in *installation
	if err == nil {
		in = a.installationLocked(id)
		a.byOwner[key] = in
	}
	if _, ok := errors.AsType[*NotInstalledError](err); ok {
		a.rememberMissing(key)
	}
	a.holdLocked(err)
	return in, err
}

// heldLocked returns the rate-limit refusal that holds the app's JWT
// requests at now, or nil. The caller holds a.mu.
func (a *App) heldLocked(now time.Time) *HTTPError {
	if a.held != nil && now.Before(a.held.RetryAt) {
		return a.held
	}
	return nil
}

// holdLocked makes err, when GitHub refused a JWT request for a rate
// limit, hold every JWT request until its RetryAt (unless a later one
// holds them already). The caller holds a.mu.
func (a *App) holdLocked(err error) {
	if he, ok := errors.AsType[*HTTPError](err); ok && he.RateLimited && (a.held == nil || he.RetryAt.After(a.held.RetryAt)) {
		a.held = he
	}
}

// jwtHeld is heldLocked for a caller that does not hold a.mu.
func (a *App) jwtHeld(now time.Time) *HTTPError {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.heldLocked(now)
}

// holdJWT is holdLocked for a caller that does not hold a.mu.
func (a *App) holdJWT(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.holdLocked(err)
}

// rememberMissing remembers for notInstalledFor that owner key has no
// installation, unless maxNotInstalled owners are remembered so already
// (those whose time is over are dropped first). The caller holds a.mu.
func (a *App) rememberMissing(key string) {
	now := time.Now()
	rememberUntil(a.missing, key, now.Add(notInstalledFor), now, func(until time.Time) time.Time { return until })
}

// rememberUntil sets m[key] to v, which counts until until(v), unless m
// holds maxNotInstalled entries already (those whose time is over at now
// are dropped first) or v's time is over.
func rememberUntil[V any](m map[string]V, key string, v V, now time.Time, until func(V) time.Time) {
	if !now.Before(until(v)) {
		return
	}
	if _, ok := m[key]; !ok && len(m) >= maxNotInstalled {
		for k, old := range m {
			if !now.Before(until(old)) {
				delete(m, k)
			}
		}
		if len(m) >= maxNotInstalled {
			return
		}
	}
	m[key] = v
}

// findInstallation asks GitHub which installation serves owner: for a
// repository's path GET /repos/{owner}/{repo}/installation first, then
// (for an organization's path, and when the repository's answers 404: the
// repository does not exist, or the installation was not granted it) the
// owner's own, GET /orgs/{org}/installation and, for an owner that is a
// user, GET /users/{username}/installation. The installation is cached
// per owner, so a repository it cannot reach still gets the owner's
// installation, and GitHub's own answer for the repository, rather than
// "not installed"; and *NotInstalledError, which only every lookup
// answering 404 gives, always means that the account has no installation
// (what App.For remembers for a while). An answer naming another account
// (a repository transferred since: GitHub redirects its old path) counts
// as a 404.
func (a *App) findInstallation(ctx context.Context, owner, repo string) (int64, error) {
	type lookupRoute struct{ route, path string }
	routes := []lookupRoute{
		{"/orgs/{org}/installation", "/orgs/" + url.PathEscape(owner) + "/installation"},
		{"/users/{username}/installation", "/users/" + url.PathEscape(owner) + "/installation"},
	}
	if repo != "" {
		repoRoute := lookupRoute{"/repos/{owner}/{repo}/installation", "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/installation"}
		routes = append([]lookupRoute{repoRoute}, routes...)
	}
	for _, r := range routes {
		id, err := a.getInstallation(ctx, owner, r.route, r.path)
		if he, ok := errors.AsType[*HTTPError](err); ok && a.signer.correctClock(he) {
			id, err = a.getInstallation(ctx, owner, r.route, r.path) // once, with GitHub's time
		}
		if err != nil || id != 0 {
			return id, err
		}
	}
	return 0, &NotInstalledError{Account: owner}
}

// getInstallation sends one installation lookup for owner: the
// installation's id, or 0 when GitHub answers 404 or names another
// account.
func (a *App) getInstallation(ctx context.Context, owner, route, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("credential: GET %s: %w", route, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("credential: GET %s: %w", route, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return 0, nil
	case resp.StatusCode != http.StatusOK:
		return 0, newHTTPError(http.MethodGet, route, resp, body, time.Now())
	}
	var inst struct {
		ID      int64 `json:"id"`
		Account struct {
			Login string `json:"login"`
		} `json:"account"`
	}
	if err := json.Unmarshal(body, &inst); err != nil {
		return 0, fmt.Errorf("credential: GET %s: decoding the answer: %w", route, err)
	}
	if inst.ID <= 0 {
		return 0, fmt.Errorf("credential: GET %s: the answer has no installation id", route)
	}
	if inst.Account.Login != "" && !strings.EqualFold(inst.Account.Login, owner) {
		return 0, nil
	}
	return inst.ID, nil
}

// HTTPError is a non-2xx answer to one of the app's own requests. It holds
// the route template, the status and what the answer said of GitHub's
// rate limits only, and is safe to log.
type HTTPError struct {
	Method     string
	Route      string
	StatusCode int
	// RateLimited reports that GitHub refused the request for a primary
	// or secondary rate limit (as pace.RateLimit.Refused, the answer's
	// message included: a 429; a 403 with x-ratelimit-remaining 0 or
	// whose message says "rate limit").
	RateLimited bool
	// RetryAt is, when RateLimited, when GitHub lets the request go
	// again: the answer's time plus its Retry-After, else its
	// x-ratelimit-reset for a used-up primary quota, else plus
	// rateLimitPause (pace.RateLimit.Pause). The zero Time otherwise.
	RetryAt time.Time
	// RateLimitReset is x-ratelimit-reset, when the primary window
	// resets; the zero Time when GitHub did not say.
	RateLimitReset time.Time
	// ClockOffset is GitHub's clock minus this machine's, from the
	// answer's Date header (whole seconds), when dated.
	ClockOffset time.Duration
	dated       bool
}

// newHTTPError is the *HTTPError of resp, a non-2xx answer that arrived at
// now; body is (the start of) its body, whose "message" is read to tell a
// secondary rate limit and is not kept.
func newHTTPError(method, route string, resp *http.Response, body []byte, now time.Time) *HTTPError {
	e := &HTTPError{Method: method, Route: route, StatusCode: resp.StatusCode}
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		e.ClockOffset, e.dated = date.Sub(now.Truncate(time.Second)), true
	}
	var gh struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &gh) // no message: the headers alone tell
	rl := pace.ParseRateLimit(resp.Header, resp.StatusCode, now).WithMessage(gh.Message)
	e.RateLimitReset = rl.Reset
	if rl.Refused {
		wait, _ := rl.Pause(now, rateLimitPause)
		e.RateLimited = true
		e.RetryAt = now.Add(wait)
	}
	return e
}

// Error returns, for example, "github app: GET /orgs/{org}/installation: 401 Unauthorized".
func (e *HTTPError) Error() string {
	return fmt.Sprintf("github app: %s %s: %d %s", e.Method, e.Route, e.StatusCode, http.StatusText(e.StatusCode))
}

// installation returns the one installation credential for id.
func (a *App) installation(id int64) *installation {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.installationLocked(id)
}

func (a *App) installationLocked(id int64) *installation {
	if in, ok := a.byID[id]; ok {
		return in
	}
	in := &installation{app: a, id: id, label: "installation:" + strconv.FormatInt(id, 10), renewing: make(chan struct{}, 1)}
	in.tr = in.newTransport()
	a.byID[id] = in
	return in
}

// forget drops in from the app's installations, so that its owners are
// looked up again. (A fixed installation stays: there is nothing to look
// up.)
func (a *App) forget(in *installation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byID[in.id] == in {
		delete(a.byID, in.id)
	}
	for owner, v := range a.byOwner {
		if v == in {
			delete(a.byOwner, owner)
		}
	}
}

// installation is one installation's credential.
type installation struct {
	app   *App
	id    int64
	label string

	// renewing holds a token while a Renew runs: Renews run one at a
	// time, and one waiting for its turn stops when its context ends.
	renewing chan struct{}

	mu      sync.Mutex
	tr      *ghinstallation.Transport
	gen     int    // which tr: Renew replaces it
	renewed string // the refused token the last Renew replaced
	failed  *mintFailure
	// token is the token of the last mint that succeeded, and refreshAt
	// when it is due for a refresh (zero: none yet): read from tr after
	// each mint, at least minTokenUse after it. Until then Token answers
	// token and mints nothing, so the app's JWT hold (App.held) does not
	// stop it.
	token     string
	refreshAt time.Time

	// mints runs tr.Token once for all the calls that want a token at
	// once (keyed by gen); see Token for when it cancels a mint.
	mints coalesce.Group[string]
}

// minTokenUse is the least time a minted token is used before the next
// mint. ghinstallation mints again whenever the token it holds expires
// within a minute by this machine's clock: an answer whose expires_at is
// missing or past (a clock more than 59 minutes ahead of GitHub's) would
// otherwise make every request mint a token first, a request of the
// app's that no pacer counts. A token GitHub no longer takes is refused
// with a 401, which renews it (Renew, once per call).
const minTokenUse = time.Minute

// mintRetry is how long a failed mint's error is the answer to every call
// for a token before the next mint: a mint endpoint that refuses costs one
// request per mintRetry, not one per waiting call (each of which holds a
// slot of the installation's pacer). A mint GitHub refused for a rate
// limit is answered so until its RetryAt, if that is later. A transient
// failure (500, 502, 503, 504, a transport error or timeout) is not
// remembered: the client retries it with its backoff (concurrent calls
// still share one mint).
const mintRetry = 5 * time.Second

// mintTimeout bounds one token mint, which runs on after every call
// waiting for it has left (see sharedMint): the app's transport bounds
// only the wait for the answer's headers.
const mintTimeout = 30 * time.Second

// mintFailure is the last mint that failed.
type mintFailure struct {
	until       time.Time // when it stops being the answer
	rateLimited bool      // GitHub refused it for a rate limit
	keyGen      uint64    // the private key's generation it was signed with
	err         error
}

// newMintFailure returns what to remember of a mint that failed with err
// at now, signed with key generation keyGen: nil for a transient failure.
func newMintFailure(err error, now time.Time, keyGen uint64) *mintFailure {
	if Transient(err) {
		return nil
	}
	f := &mintFailure{until: now.Add(mintRetry), keyGen: keyGen, err: err}
	if he, ok := errors.AsType[*HTTPError](err); ok && he.RateLimited {
		f.rateLimited = true
		f.until = later(f.until, he.RetryAt)
	}
	return f
}

// current reports whether f is the answer at now: its time is not over
// and, unless GitHub refused it for a rate limit (which a new key does not
// lift), the private key did not change since (read again here, or by any
// JWT signed meanwhile): a key put right takes effect at once.
func (f *mintFailure) current(now time.Time, s *keySigner) bool {
	if f == nil || !now.Before(f.until) {
		return false
	}
	if f.rateLimited {
		return true
	}
	_, _ = s.reload(false)
	return s.generation() == f.keyGen
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Transient reports whether err, a failure of one of the app's own
// requests (an installation lookup, a token mint), may well not recur:
// an answer of 500, 502, 503 or 504, or no answer for a reason
// netfail.Transient names (a connection dropped, refused or reset, an
// HTTP/2 stream reset, a timeout: mintTimeout and lookupTimeout
// included). TLS and certificate failures are not. The
// upstream client retries a transient failure with its backoff, and Token
// does not remember one (mintRetry).
func Transient(err error) bool {
	if he, ok := errors.AsType[*HTTPError](err); ok {
		switch he.StatusCode {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return netfail.Transient(err)
}

// newTransport returns a Transport with an AppsTransport of its own:
// ghinstallation's refresh writes to the AppsTransport's fields, so two
// Transports sharing one would race.
func (in *installation) newTransport() *ghinstallation.Transport {
	apps, err := ghinstallation.NewAppsTransportWithOptions(in.app.rt, in.app.id, ghinstallation.WithSigner(in.app.signer))
	if err != nil {
		panic("credential: " + err.Error()) // only for a nil signer, which New never leaves
	}
	apps.BaseURL = in.app.base
	tr := ghinstallation.NewFromAppsTransport(apps, in.id)
	tr.BaseURL = in.app.base
	return tr
}

func (in *installation) Label() string { return in.label }

// String names the installation without its tokens (a refused one is kept
// by Renew, and could still be valid).
func (in *installation) String() string { return "credential.installation(" + in.label + ")" }

// GoString names the installation without its tokens, for %#v.
func (in *installation) GoString() string { return in.String() }

// Token returns the installation's token, minting one when there is none
// or when the one it has expires within a minute (but not within
// minTokenUse of the last mint, whatever its expiry). Concurrent callers
// share one mint, which a caller arriving while it runs joins; each stops
// waiting when its context ends. A mint every caller has left runs on
// (sharedMint), bounded by mintTimeout. After a failed mint, Token answers
// that mint's error without minting for mintRetry (unless the private key
// file changed), or, when GitHub refused it for a rate limit, until the
// refusal's RetryAt if that is later; a transient failure is not
// remembered (see mintRetry). While a rate-limit refusal of any of the
// app's JWT requests holds them (App.held), it answers without minting.
func (in *installation) Token(ctx context.Context) (string, error) {
	in.mu.Lock()
	tr, gen, failed, token, refreshAt := in.tr, in.gen, in.failed, in.token, in.refreshAt
	in.mu.Unlock()
	if failed.current(time.Now(), in.app.signer) {
		return "", failed.err
	}
	// The hold is on the app's JWT requests: a token in hand, not due
	// for a refresh, is still used.
	if token != "" && time.Now().Before(refreshAt) {
		return token, nil
	}
	if he := in.app.jwtHeld(time.Now()); he != nil {
		return "", in.held(he)
	}
	res, err := in.mints.Do(ctx, strconv.Itoa(gen), func(ctx context.Context) (string, error) {
		return in.sharedMint(ctx, tr, gen)
	})
	if err != nil {
		return "", fmt.Errorf("credential: waiting for a token of GitHub App installation %d: %w", in.id, err)
	}
	if res.Err != nil {
		return "", res.Err
	}
	return res.Val, nil
}

// sharedMint is Token's mint with tr, the transport of generation gen,
// under ctx, in.mints' context for the call. The mint holds its call
// (coalesce.Hold) for its whole run: a mint is a POST that makes a token
// at GitHub, so one every caller has left runs on to its answer (bounded
// by mintTimeout), later callers join it, and its token is kept, rather
// than the next caller minting another. It remembers what GitHub answered
// (see Token).
func (in *installation) sharedMint(ctx context.Context, tr *ghinstallation.Transport, gen int) (string, error) {
	release, ok := coalesce.Hold(ctx)
	if !ok {
		// Every caller left before the mint began: nothing was sent,
		// and nothing is remembered (a context's end is no mint
		// failure), so the next caller mints.
		return "", fmt.Errorf("credential: mint for GitHub App installation %d not sent: %w", in.id, context.Cause(ctx))
	}
	defer release()
	keyGen := in.app.signer.generation()
	mctx, cancel := context.WithTimeout(ctx, mintTimeout)
	defer cancel()
	tok, err := in.mint(mctx, tr)
	var refresh time.Time
	if err != nil {
		err = in.mintFailed(err)
		in.app.holdJWT(err)
	} else {
		_, refresh, _ = tr.Expiry() // tr.Token runs here only: no race
		refresh = later(refresh, time.Now().Add(minTokenUse))
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.gen == gen {
		in.failed, in.token, in.refreshAt = nil, tok, refresh
		if err != nil {
			in.failed = newMintFailure(err, time.Now(), keyGen)
		}
	}
	return tok, err
}

// held is the error of a mint not sent while he holds the app's JWT
// requests (App.held).
func (in *installation) held(he *HTTPError) error {
	return fmt.Errorf("credential: minting a token for GitHub App installation %d: not sent while GitHub holds the app's requests: %w", in.id, he)
}

// mint mints a token with tr: once more, at once, when GitHub refused the
// app's JWT because this machine's clock is off (keySigner.correctClock).
// An error is mintError's.
func (in *installation) mint(ctx context.Context, tr *ghinstallation.Transport) (string, error) {
	tok, err := tr.Token(ctx)
	if err == nil {
		return tok, nil
	}
	err = mintError(err)
	if he, ok := errors.AsType[*HTTPError](err); ok && in.app.signer.correctClock(he) {
		tok, err = tr.Token(ctx)
		return tok, mintError(err)
	}
	return "", err
}

// mintFailed is the error of a failed token mint (mint's). A mint GitHub answers
// 404 is for an installation that is gone (the app was uninstalled, or
// installed again under a new id): the app forgets it, so that the next
// call for its owners looks them up again, and the error is an
// *UninstalledError, never a 404 that a caller could take for its own
// secret's.
func (in *installation) mintFailed(err error) error {
	if he, ok := errors.AsType[*HTTPError](err); ok && he.StatusCode == http.StatusNotFound {
		in.app.forget(in)
		err = &UninstalledError{InstallationID: in.id}
	}
	return fmt.Errorf("credential: minting a token for GitHub App installation %d: %w", in.id, err)
}

// mintError keeps what ghinstallation's error says of the answer (its
// status and URL; never a token) and what a transport said. It closes the
// answer's body, which ghinstallation leaves open for its caller.
func mintError(err error) error {
	if err == nil {
		return nil
	}
	if he, ok := errors.AsType[*ghinstallation.HTTPError](err); ok && he.Response != nil {
		var body []byte
		if b := he.Response.Body; b != nil {
			// A refusal's body (its message tells a secondary rate
			// limit) holds no token; the rest is read so that the
			// connection is reused.
			body, _ = io.ReadAll(io.LimitReader(b, 64<<10))
			_ = b.Close()
		}
		return newHTTPError(http.MethodPost, "/app/installations/{installation_id}/access_tokens", he.Response, body, time.Now())
	}
	return err
}

// Renew reads the private key again (it may have been rotated) and mints a
// new token, once for every refused token however many calls were
// refused. It fails when the new token is refused again.
//
// Renewals run one at a time, each mint bounded by mintTimeout; a Renew
// waiting for its turn stops, with its context's error, when ctx ends.
// Token never waits for one. While a mint GitHub refused for a rate limit
// is remembered (see Token), Renew answers its error without minting.
func (in *installation) Renew(ctx context.Context, refused string) error {
	select {
	case in.renewing <- struct{}{}:
		defer func() { <-in.renewing }()
	case <-ctx.Done():
		return fmt.Errorf("credential: waiting for another renewal of GitHub App installation %d: %w", in.id, ctx.Err())
	}
	in.mu.Lock()
	done := in.renewed == refused
	failed := in.failed
	in.mu.Unlock()
	if done {
		return nil // another caller renewed it already
	}
	if failed != nil && failed.rateLimited && failed.current(time.Now(), in.app.signer) {
		return failed.err
	}
	if he := in.app.jwtHeld(time.Now()); he != nil {
		return in.held(he)
	}
	if _, err := in.app.signer.reload(true); err != nil {
		return err
	}
	tr := in.newTransport()
	ctx, cancel := context.WithTimeout(ctx, mintTimeout)
	defer cancel()
	tok, err := in.mint(ctx, tr)
	if err != nil {
		err = in.mintFailed(err)
		in.app.holdJWT(err)
		if f := newMintFailure(err, time.Now(), in.app.signer.generation()); f != nil && f.rateLimited {
			in.mu.Lock()
			in.failed = f
			in.mu.Unlock()
		}
		return err
	}
	if tok == refused {
		return fmt.Errorf("credential: GitHub App installation %d: GitHub minted the token it refused", in.id)
	}
	_, refresh, _ := tr.Expiry()
	refresh = later(refresh, time.Now().Add(minTokenUse))
	in.mu.Lock()
	defer in.mu.Unlock()
	in.tr, in.renewed, in.failed, in.token, in.refreshAt = tr, refused, nil, tok, refresh
	in.gen++
	return nil
}

// appCredential is the app's own JWT.
type appCredential struct{ a *App }

func (appCredential) Label() string { return LabelApp }

// Token signs a new JWT for the app (keySigner sets its times).
func (c appCredential) Token(context.Context) (string, error) {
	return c.a.signer.Sign(&jwt.RegisteredClaims{Issuer: strconv.FormatInt(c.a.id, 10)})
}

// JWT times, as GitHub's App documentation recommends: issued 60 s in the
// past, against a clock that runs ahead of GitHub's, and expiring well
// within its 10-minute bound.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 5 * time.Minute
)

// setJWTTimes gives RegisteredClaims the app's JWT times as of now, in
// whole seconds (GitHub refuses fractional ones). ghinstallation's own
// (30 s back, 2 min ahead) leave no room for a clock 30 s fast.
func setJWTTimes(claims jwt.Claims, now time.Time) {
	rc, ok := claims.(*jwt.RegisteredClaims)
	if !ok {
		return
	}
	now = now.Truncate(time.Second)
	rc.IssuedAt = jwt.NewNumericDate(now.Add(-jwtBackdate))
	rc.ExpiresAt = jwt.NewNumericDate(now.Add(jwtLifetime))
}

// Renew reads the private key again; it fails when the key did not change.
func (c appCredential) Renew(context.Context, string) error {
	changed, err := c.a.signer.reload(true)
	if err != nil {
		return err
	}
	if !changed {
		return errors.New("credential: GitHub refused the app's JWT and the private key file holds the same key")
	}
	return nil
}

// keySigner signs the app's JWTs (RS256) with the private key file's key,
// read again when the file changes.
type keySigner struct {
	file watchedFile

	mu  sync.Mutex
	key *rsa.PrivateKey
	gen uint64 // how many times the key changed
	// offset is added to this machine's clock for the JWT's times: GitHub's
	// clock minus ours, once an answer showed them apart (correctClock).
	offset time.Duration
}

// jwtClockTolerance is how far this machine's clock may be from GitHub's
// before a refused JWT is signed again with GitHub's time: well within
// the JWT's backdating (jwtBackdate), and above the Date header's
// one-second resolution and an answer's time on the way.
const jwtClockTolerance = 30 * time.Second

// correctClock takes GitHub's time from he, GitHub's 401 to a request
// signed with the app's JWT, when its Date shows this machine's clock
// more than jwtClockTolerance from GitHub's, as the offset later JWTs are
// signed with (as octokit's auth-app does: GitHub refuses a JWT issued in
// its future or expiring too far ahead of it). It reports whether the
// offset changed, that is whether the refused request is worth sending
// once more.
func (s *keySigner) correctClock(he *HTTPError) bool {
	if he.StatusCode != http.StatusUnauthorized || !he.dated {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if (he.ClockOffset - s.offset).Abs() <= jwtClockTolerance {
		return false // the JWT was signed with GitHub's time: refused for another reason
	}
	s.offset = he.ClockOffset
	return true
}

// generation counts the key's changes.
func (s *keySigner) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// reload reads the key file when it changed (or when force is set) and
// reports whether the key changed. A file that cannot be parsed leaves the
// key it had.
func (s *keySigner) reload(force bool) (bool, error) {
	if s.file.path == "" {
		return false, nil // a fixed key
	}
	b, changed, err := s.file.changed(force)
	if err != nil {
		return false, fmt.Errorf("credential: private key file: %w", err)
	}
	if !changed {
		return false, nil
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(b)
	if err != nil {
		// jwt's errors say what kind of PEM it wanted, never the content.
		return false, fmt.Errorf("credential: private key file %s: %w", s.file.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil && s.key.Equal(key) {
		return false, nil
	}
	s.key = key
	s.gen++
	return true, nil
}

// Sign signs claims with the current key, read again first when the file
// changed, with the app's JWT times (setJWTTimes) on GitHub's clock as
// far as correctClock knows it, whoever made the claims. A file that became unreadable keeps the key it had.
func (s *keySigner) Sign(claims jwt.Claims) (string, error) {
	_, reloadErr := s.reload(false)
	s.mu.Lock()
	key, offset := s.key, s.offset
	s.mu.Unlock()
	setJWTTimes(claims, time.Now().Add(offset))
	if key == nil {
		return "", reloadErr
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("credential: signing the app's JWT: %w", err)
	}
	return tok, nil
}
