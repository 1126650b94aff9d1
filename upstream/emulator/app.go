package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"
)

// GitHub App routes, served when Options.App is set. They take the app's
// JWT and answer 401 to anything else.
const (
	// RouteGetApp is "Get the authenticated app".
	RouteGetApp = "GET /app"
	// RouteGetOrgInstallation is "Get an organization installation for the
	// authenticated app".
	RouteGetOrgInstallation = "GET /orgs/{org}/installation"
	// RouteGetRepoInstallation is "Get a repository installation for the
	// authenticated app".
	RouteGetRepoInstallation = "GET /repos/{owner}/{repo}/installation"
	// RouteGetUserInstallation is "Get a user installation for the
	// authenticated app".
	RouteGetUserInstallation = "GET /users/{username}/installation"
	// RouteCreateInstallationToken is "Create an installation access token
	// for an app".
	RouteCreateInstallationToken = "POST /app/installations/{installation_id}/access_tokens"
)

// appRoutes returns the routes that take the app's JWT.
func appRoutes() []string {
	return []string{RouteGetApp, RouteGetOrgInstallation, RouteGetRepoInstallation, RouteGetUserInstallation, RouteCreateInstallationToken}
}

// isAppRoute reports whether route is one of appRoutes.
func isAppRoute(route string) bool {
	switch route {
	case RouteGetApp, RouteGetOrgInstallation, RouteGetRepoInstallation, RouteGetUserInstallation, RouteCreateInstallationToken:
		return true
	}
	return false
}

// Defaults of App.
const (
	// DefaultTokenLifetime is how long an installation token lasts, as on
	// GitHub.
	DefaultTokenLifetime = time.Hour
	// maxJWTLifetime is how far in the future GitHub lets a JWT's exp be.
	maxJWTLifetime = 10 * time.Minute
	// jwtClockSkew is how far in the future a JWT's iat may be.
	jwtClockSkew = time.Minute
)

// App registers a GitHub App with the server (Options.App): requests to
// the app routes must carry a JWT the app signed, and the other routes
// accept the installation tokens the server minted for it (as well as
// Options.Token, when set). An installation token serves only its
// installation's account: a request about another owner gets 403
// "Resource not accessible by integration". With an App, Limits apply per
// installation (each installation token has its own points window,
// penalty and primary quota; requests with Options.Token or with the JWT
// share one more), except MaxConcurrent, which counts every request in
// flight.
type App struct {
	// ID is the app's id, the JWT's iss.
	ID int64
	// PublicKey verifies the app's JWTs (RS256).
	PublicKey *rsa.PublicKey
	// Installations are the accounts the app is installed on.
	Installations []Installation
	// TokenLifetime is how long an installation token is accepted after
	// it was minted; 0 means DefaultTokenLifetime (one hour).
	TokenLifetime time.Duration
}

// Installation is one account the app is installed on.
type Installation struct {
	// ID is the installation's id.
	ID int64
	// Account is the organization's or user's login.
	Account string
}

// AppStats counts what the server did as a GitHub App host since New.
type AppStats struct {
	// TokensMinted is how many installation tokens it minted.
	TokensMinted int
	// JWTRejected is how many requests to the app routes it refused for
	// their JWT.
	JWTRejected int
	// ExpiredTokens is how many requests carried an installation token
	// that had expired (and got 401).
	ExpiredTokens int
}

// appState is the app host's state. It lives under s.mu.
type appState struct {
	installs []Installation        // Options.App's, then Install's
	lastID   int64                 // the highest id of an installation removed or given by Install
	tokens   map[string]*instToken // by token
	stats    AppStats
}

// Install installs the app (Options.App) on account and returns the
// installation, a new one with an id never given before (as GitHub's: an
// app installed again after Uninstall is another installation) unless
// account has one already. It returns false when the server has no app.
func (s *Server) Install(account string) (Installation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.App == nil {
		return Installation{}, false
	}
	if in, ok := s.app.installationFor(account); ok {
		return in, true
	}
	id := s.app.lastID + 1
	for _, in := range s.app.installs {
		id = max(id, in.ID+1)
	}
	s.app.lastID = id
	in := Installation{ID: id, Account: account}
	s.app.installs = append(s.app.installs, in)
	return in, true
}

// Uninstall removes the app's installation from account, as GitHub does
// when an owner uninstalls the app: its tokens are refused from then on
// (401), minting one is 404, and looking the account's installation up is
// 404 until Install. It reports whether account had one.
func (s *Server) Uninstall(account string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.app.installationFor(account)
	if !ok {
		return false
	}
	s.app.lastID = max(s.app.lastID, in.ID)
	s.app.installs = slices.DeleteFunc(s.app.installs, func(i Installation) bool { return i.ID == in.ID })
	for tok, t := range s.app.tokens {
		if t.inst.ID == in.ID {
			delete(s.app.tokens, tok)
		}
	}
	return true
}

type instToken struct {
	inst    Installation
	expires time.Time
}

// AppStats returns the app host's counters.
func (s *Server) AppStats() AppStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.stats
}

// ExpireTokens makes every installation token minted so far expired, as
// if its hour had passed: a test hook for a refused token.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.app.tokens {
		t.expires = time.Time{}
	}
}

func (a *App) lifetime() time.Duration {
	if a.TokenLifetime > 0 {
		return a.TokenLifetime
	}
	return DefaultTokenLifetime
}

// installationFor returns account's installation. Callers hold s.mu.
func (a *appState) installationFor(account string) (Installation, bool) {
	for _, in := range a.installs {
		if strings.EqualFold(in.Account, account) {
			return in, true
		}
	}
	return Installation{}, false
}

// installationByID returns installation id. Callers hold s.mu.
func (a *appState) installationByID(id int64) (Installation, bool) {
	for _, in := range a.installs {
		if in.ID == id {
			return in, true
		}
	}
	return Installation{}, false
}

// bearer returns the credential of an Authorization header in the
// "Bearer" or "token" scheme.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || (!strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "token")) {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// answerApp answers a request to an app route: it verifies the JWT, then
// serves the route.
func (s *Server) answerApp(r *http.Request, m match) *response {
	app := s.opts.App
	if app == nil {
		return notFound()
	}
	if resp := s.verifyJWT(r, app); resp != nil {
		s.mu.Lock()
		s.app.stats.JWTRejected++
		s.mu.Unlock()
		return resp
	}
	switch m.Route {
	case RouteGetApp:
		return jsonResponse(http.StatusOK, map[string]any{
			"id": app.ID, "slug": "secretbroker-emulated", "name": "secretbroker (emulated)",
			"owner": map[string]any{"login": "emulator", "type": "Organization"},
		})
	case RouteGetOrgInstallation, RouteGetRepoInstallation, RouteGetUserInstallation:
		// The emulator keeps no users apart from organizations: an
		// installation's account answers on the organization and the user
		// route alike. The repository route answers 404 for a repository
		// that does not exist, as GitHub does.
		account := m.Org
		switch m.Route {
		case RouteGetRepoInstallation:
			account = m.Owner
		case RouteGetUserInstallation:
			account = r.PathValue("username")
		}
		s.mu.Lock()
		in, ok := s.app.installationFor(account)
		if m.Route == RouteGetRepoInstallation && s.findRepo(m.Owner, m.Repo) == nil {
			ok = false
		}
		s.mu.Unlock()
		if !ok {
			return notFound()
		}
		return jsonResponse(http.StatusOK, installationObject(app, in))
	default: // RouteCreateInstallationToken
		id, ok := parseID(r.PathValue("installation_id"))
		if !ok {
			return notFound()
		}
		s.mu.Lock()
		in, ok := s.app.installationByID(id)
		s.mu.Unlock()
		if !ok {
			return notFound()
		}
		tok := mintToken()
		expires := time.Now().Add(app.lifetime())
		s.mu.Lock()
		s.app.forget(time.Now())
		s.app.tokens[tok] = &instToken{inst: in, expires: expires}
		s.app.stats.TokensMinted++
		s.mu.Unlock()
		return jsonResponse(http.StatusCreated, map[string]any{
			"token":                tok,
			"expires_at":           expires.UTC().Format(time.RFC3339),
			"permissions":          map[string]string{"secrets": "write", "organization_secrets": "write", "environments": "write"},
			"repository_selection": "all",
		})
	}
}

// forget drops the tokens that expired before now. Callers hold s.mu.
func (a *appState) forget(now time.Time) {
	for tok, t := range a.tokens {
		if !t.expires.IsZero() && t.expires.Before(now.Add(-time.Hour)) {
			delete(a.tokens, tok)
		}
	}
}

func installationObject(app *App, in Installation) map[string]any {
	return map[string]any{
		"id":                   in.ID,
		"app_id":               app.ID,
		"target_type":          "Organization",
		"account":              map[string]any{"login": in.Account, "type": "Organization"},
		"repository_selection": "all",
		"access_tokens_url":    "/app/installations/" + strconv.FormatInt(in.ID, 10) + "/access_tokens",
	}
}

// mintToken makes an installation token in the shape of GitHub's.
func mintToken() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "ghs_" + hex.EncodeToString(b[:])
}

// verifyJWT checks the app's JWT as GitHub does: RS256, signed with the
// app's key, iss the app's id, exp in the future but at most 10 minutes
// away, iat not in the future. It returns the 401 answer, or nil.
func (s *Server) verifyJWT(r *http.Request, app *App) *response {
	tok, ok := bearer(r)
	if !ok {
		return errorResponse(http.StatusUnauthorized, "A JSON web token could not be decoded")
	}
	claims := &jwt.RegisteredClaims{}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}))
	_, err := parser.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return app.PublicKey, nil })
	now := time.Now()
	switch {
	case err != nil && claims.ExpiresAt != nil && !claims.ExpiresAt.After(now):
		return errorResponse(http.StatusUnauthorized, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case err != nil:
		return errorResponse(http.StatusUnauthorized, "A JSON web token could not be decoded")
	case claims.Issuer != strconv.FormatInt(app.ID, 10):
		return errorResponse(http.StatusUnauthorized, "'Issuer' claim ('iss') must be the app's id")
	case claims.ExpiresAt == nil:
		return errorResponse(http.StatusUnauthorized, "'Expiration time' claim ('exp') is missing")
	case claims.ExpiresAt.After(now.Add(maxJWTLifetime)):
		return errorResponse(http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
	case claims.IssuedAt != nil && claims.IssuedAt.After(now.Add(jwtClockSkew)):
		return errorResponse(http.StatusUnauthorized, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
	}
	return nil
}

// installationOf returns the installation whose token r carries; expired
// reports a token that was minted but is no longer accepted. Callers hold
// s.mu.
func (s *Server) installationOf(r *http.Request) (in Installation, ok, expired bool) {
	if s.opts.App == nil {
		return Installation{}, false, false
	}
	tok, found := bearer(r)
	if !found {
		return Installation{}, false, false
	}
	t := s.app.tokens[tok]
	if t == nil {
		return Installation{}, false, false
	}
	if !time.Now().Before(t.expires) {
		return Installation{}, false, true
	}
	return t.inst, true, false
}

// limitKey is the key of the rate limits a request uses: its
// installation's, or "" for everything else. Callers hold s.mu.
func (s *Server) limitKey(r *http.Request) string {
	if in, ok, _ := s.installationOf(r); ok {
		return "installation:" + strconv.FormatInt(in.ID, 10)
	}
	return ""
}

// limitsFor returns the rate limits' state for key. Callers hold s.mu.
func (s *Server) limitsFor(key string) *limitState {
	if key == "" {
		return &s.lim
	}
	st := s.limBy[key]
	if st == nil {
		st = &limitState{}
		if s.limBy == nil {
			s.limBy = map[string]*limitState{}
		}
		s.limBy[key] = st
	}
	return st
}

// authorizedApp reports whether r carries an installation token that is
// still valid, counting an expired one. ok is false when there is no app.
func (s *Server) authorizedApp(r *http.Request) (ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok, expired := s.installationOf(r)
	if expired {
		s.app.stats.ExpiredTokens++
	}
	return ok
}

// installationScope answers 403 when r carries an installation token and
// is about an owner other than its installation's account.
func (s *Server) installationScope(r *http.Request, m match) *response {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok, _ := s.installationOf(r)
	if !ok {
		return nil
	}
	owner := m.Org
	if owner == "" {
		owner = m.Owner
	}
	if owner == "" && m.RepoID != 0 {
		if rp := s.repos[m.RepoID]; rp != nil {
			owner = rp.org.login
		}
	}
	if owner != "" && !strings.EqualFold(owner, in.Account) {
		return errorResponse(http.StatusForbidden, "Resource not accessible by integration")
	}
	return nil
}

// tokenOK reports whether tok is Options.Token.
func (s *Server) tokenOK(tok string) bool {
	return s.opts.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}
