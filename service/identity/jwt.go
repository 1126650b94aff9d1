package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

const (
	// defaultJWTLeeway is JWTConfig.Leeway's default.
	defaultJWTLeeway = 60 * time.Second
	// defaultMinRefreshInterval is JWTConfig.MinRefreshInterval's default.
	defaultMinRefreshInterval = 10 * time.Second
	// jwksHTTPTimeout is the default JWKS client's timeout.
	jwksHTTPTimeout = 10 * time.Second
	// jwksURLMaxAge is how old a JWKS fetched from a URL may get before the
	// verify path fetches it again, so that a key the issuer removed stops
	// verifying even if no unknown kid ever triggers a refresh.
	jwksURLMaxAge = time.Hour
	// maxJWKSBytes bounds a JWKS document.
	maxJWKSBytes = 1 << 20
	// maxJWTBytes bounds a presented JWT; Kubernetes service-account
	// tokens are around 1 KB.
	maxJWTBytes = 16 << 10
	// minRSABits is the smallest RSA key the verifier trusts.
	minRSABits = 2048
	// maxSubjectLen bounds the sub claim that becomes a caller.
	maxSubjectLen = 1024
	// jwksFirstRetry and jwksMaxRetry bound the wait between two attempts
	// at a JWKS URL's first load in the background (StartJWTVerifier): it
	// doubles from the first to the second.
	jwksFirstRetry = time.Second
	jwksMaxRetry   = time.Minute
)

// Errors of Authenticate. They say why a token was refused and nothing of
// the token itself (not even its kid).
var (
	errTokenEmpty       = errors.New("invalid bearer token: empty")
	errTokenTooLarge    = errors.New("invalid bearer token: too large")
	errTokenMalformed   = errors.New("invalid bearer token: malformed")
	errTokenAlgorithm   = errors.New("invalid bearer token: algorithm not allowed")
	errTokenNoKeyID     = errors.New("invalid bearer token: no key id and no single key")
	errTokenUnknownKey  = errors.New("invalid bearer token: unknown key id")
	errTokenKeyMismatch = errors.New("invalid bearer token: key does not match algorithm")
	errTokenSignature   = errors.New("invalid bearer token: signature")
	errTokenClaims      = errors.New("invalid bearer token: malformed claims")
	errTokenIssuer      = errors.New("invalid bearer token: issuer")
	errTokenAudience    = errors.New("invalid bearer token: audience")
	errTokenNoExpiry    = errors.New("invalid bearer token: missing exp")
	errTokenExpired     = errors.New("invalid bearer token: expired")
	errTokenNotYetValid = errors.New("invalid bearer token: not yet valid")
	errTokenIssuedLater = errors.New("invalid bearer token: issued in the future")
	errTokenNoSubject   = errors.New("invalid bearer token: missing sub")
	errTokenSubject     = errors.New("invalid bearer token: sub not usable")
)

// KeysNotLoadedError is Authenticate's error for a well-formed token that
// could not be checked because the issuer's JWKS has not been loaded yet
// (StartJWTVerifier): the token was neither accepted nor found wrong. The
// caller may try again after RetryAfter, when the next load is due.
type KeysNotLoadedError struct {
	// RetryAfter is how long until the next attempt at the JWKS, at
	// least a second.
	RetryAfter time.Duration
}

func (e *KeysNotLoadedError) Error() string {
	return "bearer token not checked: the JWT issuer's keys are not loaded yet"
}

// allowedAlgorithms are the asymmetric JWS algorithms a JWT may use.
var allowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// parseAlgorithms are the algorithms the parser accepts, so that a
// symmetric one is refused by isAllowedAlgorithm with its own error rather
// than as a malformed token.
var parseAlgorithms = append([]jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}, allowedAlgorithms...)

func isAllowedAlgorithm(alg string) bool {
	for _, a := range allowedAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// Issuer is required; a token's iss claim must equal it.
	Issuer string
	// Audience is required; a token's aud claim must contain it.
	Audience string
	// JWKSURL or JWKSFile (exactly one) is where the issuer's public keys
	// are. The URL must be https, or http on a loopback host.
	JWKSURL  string
	JWKSFile string
	// HTTPClient fetches JWKSURL; the default has a 10 s timeout and
	// follows redirects only to URLs JWKSURL itself could be.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed for exp, nbf and iat; 0 means 60 s.
	Leeway time.Duration
	// MinRefreshInterval is the least time between two JWKS refreshes
	// triggered by unknown kids, and between two checks of JWKSFile for
	// changes; 0 means 10 s.
	MinRefreshInterval time.Duration
	// Logger logs the background loads of StartJWTVerifier: each failed
	// attempt, and the success that ends them. nil: nothing is logged.
	Logger *slog.Logger
}

// JWTVerifier authenticates JWT bearer tokens (for example Kubernetes
// projected service-account tokens) against an issuer's JWKS. It is safe
// for concurrent use.
//
// The JWKS is cached. A token whose kid is not in the cache triggers one
// reload (a fetch of JWKSURL or a read of JWKSFile), at most one per
// MinRefreshInterval however many unknown kids arrive, so garbage kids
// cannot amplify into fetches. A JWKSFile is also checked for changes
// (by content hash) at most once per MinRefreshInterval on the verify
// path, and a JWKSURL is fetched again on the verify path once the cached
// copy is an hour old. A reload that fails or yields no usable key keeps
// the cached keys.
type JWTVerifier struct {
	issuer     string
	audience   string
	leeway     time.Duration
	minRefresh time.Duration
	// checkEvery is how often the verify path reloads unprompted:
	// MinRefreshInterval for a file, jwksURLMaxAge for a URL.
	checkEvery time.Duration
	fetch      func(ctx context.Context) ([]byte, error)

	// loading is a one-slot semaphore: one JWKS load at a time.
	loading chan struct{}
	// loaded is closed once the JWKS has been loaded (Loaded).
	loaded chan struct{}

	mu     sync.RWMutex
	keys   []jose.JSONWebKey // usable public signing keys
	digest [sha256.Size]byte // of the JWKS document keys came from
	// checked is when the JWKS was last loaded, or its load attempted.
	checked time.Time
	// kidRefreshed is when an unknown kid last triggered a reload.
	kidRefreshed time.Time
	// Until loaded is closed: the last failed attempt's error, and when
	// the next attempt is due (StartJWTVerifier).
	loadErr   error
	nextRetry time.Time
}

// NewJWTVerifier returns a verifier for cfg after loading the JWKS once; it
// fails if the JWKS cannot be loaded or holds no usable signing key.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	v, err := newJWTVerifier(cfg)
	if err != nil {
		return nil, err
	}
	if err := v.loadFirst(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// StartJWTVerifier returns a verifier for cfg without waiting for a JWKS
// URL: its first load runs in the background, and a failed one is tried
// again after a second, then after twice as long each time up to a minute,
// until one succeeds or ctx ends. Until then (Loaded) Authenticate refuses
// every well-formed token with a *KeysNotLoadedError, never accepting one
// unchecked, and LoadError says why the keys are not loaded. From the
// first load on, the verifier refreshes the JWKS as one from NewJWTVerifier
// does. A JWKS file, local configuration, is loaded before it returns, as
// NewJWTVerifier does. A configuration error fails at once either way: a
// JWKS URL that does not parse, is not absolute, or is neither https nor
// http on a loopback host.
func StartJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	v, err := newJWTVerifier(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.JWKSURL == "" {
		if err := v.loadFirst(ctx); err != nil {
			return nil, err
		}
		return v, nil
	}
	v.mu.Lock()
	v.nextRetry = time.Now()
	v.mu.Unlock()
	go v.loadInBackground(ctx, cfg.Logger)
	return v, nil
}

// loadFirst loads the JWKS for the first time; the verifier is not yet
// shared.
func (v *JWTVerifier) loadFirst(ctx context.Context) error {
	v.checked = time.Now()
	if err := v.load(ctx); err != nil {
		return err
	}
	close(v.loaded)
	return nil
}

// loadInBackground makes the first load of the JWKS, trying again with
// backoff until it succeeds or ctx ends.
func (v *JWTVerifier) loadInBackground(ctx context.Context, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	wait := jwksFirstRetry
	for attempt := 1; ; attempt++ {
		select {
		case v.loading <- struct{}{}:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		lctx, cancel := context.WithTimeout(ctx, jwksHTTPTimeout)
		err := v.load(lctx)
		cancel()
		v.mu.Lock()
		if err == nil {
			v.checked, v.loadErr = start, nil
			close(v.loaded)
		} else {
			v.loadErr, v.nextRetry = err, time.Now().Add(wait)
		}
		v.mu.Unlock()
		<-v.loading
		if err == nil {
			if attempt > 1 {
				logger.InfoContext(ctx, "JWT issuer's keys loaded", slog.Int("attempts", attempt))
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		logger.WarnContext(ctx, "JWT issuer's keys not loaded; bearer JWTs are refused (UNAVAILABLE) until they are",
			slog.Any("error", err), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, jwksMaxRetry)
	}
}

// Loaded returns a channel closed once the JWKS has been loaded: at once
// for a verifier from NewJWTVerifier.
func (v *JWTVerifier) Loaded() <-chan struct{} { return v.loaded }

// isLoaded reports whether Loaded is closed.
func (v *JWTVerifier) isLoaded() bool {
	select {
	case <-v.loaded:
		return true
	default:
		return false
	}
}

// LoadError returns why the JWKS is not loaded yet: the last failed
// attempt's error; nil once it is loaded, or before the first attempt
// ended.
func (v *JWTVerifier) LoadError() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.loadErr
}

// notLoaded returns Authenticate's error while the JWKS is not loaded.
func (v *JWTVerifier) notLoaded() error {
	v.mu.RLock()
	next := v.nextRetry
	v.mu.RUnlock()
	return &KeysNotLoadedError{RetryAfter: max(time.Until(next), time.Second)}
}

// newJWTVerifier checks cfg and returns a verifier that has loaded
// nothing yet.
func newJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("jwt config: issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("jwt config: audience is required")
	}
	if cfg.Leeway < 0 || cfg.MinRefreshInterval < 0 {
		return nil, errors.New("jwt config: leeway and min refresh interval must not be negative")
	}
	v := &JWTVerifier{
		issuer:     cfg.Issuer,
		audience:   cfg.Audience,
		leeway:     cfg.Leeway,
		minRefresh: cfg.MinRefreshInterval,
		loading:    make(chan struct{}, 1),
		loaded:     make(chan struct{}),
	}
	if v.leeway == 0 {
		v.leeway = defaultJWTLeeway
	}
	if v.minRefresh == 0 {
		v.minRefresh = defaultMinRefreshInterval
	}
	switch {
	case cfg.JWKSURL != "" && cfg.JWKSFile != "":
		return nil, errors.New("jwt config: set only one of JWKS URL and JWKS file")
	case cfg.JWKSURL != "":
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil {
			// url.Parse's error quotes the URL, which may hold a password.
			return nil, errors.New("jwt config: JWKS URL is not a valid URL")
		}
		if credential.MisreadUserInfo(cfg.JWKSURL, u) {
			// A password with an unescaped "/", "?" or "#" ended the
			// host early: its start would be dialled as the port, and
			// an error could show it.
			return nil, errors.New(`jwt config: JWKS URL has an "@" outside its user information: escape "@", "/", "?" and "#" in a user name or password`)
		}
		if err := checkJWKSURL(u); err != nil {
			return nil, fmt.Errorf("jwt config: %w", err)
		}
		client := cfg.HTTPClient
		if client == nil {
			client = defaultJWKSClient()
		}
		v.fetch = func(ctx context.Context) ([]byte, error) { return fetchJWKS(ctx, client, u.String()) }
		v.checkEvery = jwksURLMaxAge
	case cfg.JWKSFile != "":
		path := cfg.JWKSFile
		v.fetch = func(context.Context) ([]byte, error) { return readJWKSFile(path) }
		v.checkEvery = v.minRefresh
	default:
		return nil, errors.New("jwt config: one of JWKS URL and JWKS file is required")
	}
	return v, nil
}

// Authenticate verifies token and returns "jwt:" and its sub claim. The
// token must be signed with an allowed asymmetric algorithm by the JWKS key
// its kid names (or, without a kid, by the JWKS's only key); its iss must
// equal the issuer, its aud contain the audience, its exp (required), nbf
// and iat hold now within the leeway, and its sub be non-empty. ctx
// bounds a JWKS reload the token may trigger. Before the JWKS is first
// loaded (StartJWTVerifier), a token that parses with an allowed algorithm
// gets a *KeysNotLoadedError, and triggers no load. Errors never contain
// any part of the token.
func (v *JWTVerifier) Authenticate(ctx context.Context, token string) (caller string, err error) {
	if token == "" {
		return "", errTokenEmpty
	}
	if len(token) > maxJWTBytes {
		return "", errTokenTooLarge
	}
	jws, err := jose.ParseSignedCompact(token, parseAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return "", errTokenMalformed
	}
	header := jws.Signatures[0].Header
	alg := header.Algorithm
	if !isAllowedAlgorithm(alg) {
		return "", errTokenAlgorithm
	}
	if !v.isLoaded() {
		return "", v.notLoaded()
	}

	v.reloadIfDue(ctx)
	candidates, found := v.candidates(header.KeyID, alg)
	var refreshErr error
	if !found && header.KeyID != "" {
		refreshErr = v.refreshForUnknownKid(ctx)
		candidates, found = v.candidates(header.KeyID, alg)
	}
	switch {
	case !found && header.KeyID == "":
		return "", errTokenNoKeyID
	case !found && refreshErr != nil:
		return "", fmt.Errorf("%w (reloading the JWKS: %w)", errTokenUnknownKey, refreshErr)
	case !found:
		return "", errTokenUnknownKey
	case len(candidates) == 0:
		return "", errTokenKeyMismatch
	}

	var payload []byte
	verified := false
	for _, k := range candidates {
		if p, err := jws.Verify(k.Key); err == nil {
			payload, verified = p, true
			break
		}
	}
	if !verified {
		return "", errTokenSignature
	}

	var claims jwt.Claims
	if err := josejson.Unmarshal(payload, &claims); err != nil {
		return "", errTokenClaims
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        time.Now(),
	}, v.leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "", errTokenIssuer
	case errors.Is(err, jwt.ErrInvalidAudience):
		return "", errTokenAudience
	case errors.Is(err, jwt.ErrExpired):
		return "", errTokenExpired
	case errors.Is(err, jwt.ErrNotValidYet):
		return "", errTokenNotYetValid
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "", errTokenIssuedLater
	default:
		return "", errTokenClaims
	}
	if claims.Expiry == nil {
		return "", errTokenNoExpiry
	}
	if claims.Subject == "" {
		return "", errTokenNoSubject
	}
	if !usableSubject(claims.Subject) {
		return "", errTokenSubject
	}
	return prefixJWT + claims.Subject, nil
}

// usableSubject reports whether sub can name a caller: bounded, valid UTF-8
// and free of control characters.
func usableSubject(sub string) bool {
	if len(sub) > maxSubjectLen || !utf8.ValidString(sub) {
		return false
	}
	return !strings.ContainsFunc(sub, unicode.IsControl)
}

// candidates returns the cached keys that may have signed a token with kid
// and alg. found is false when no key has kid (or, for an empty kid, when
// the JWKS does not hold exactly one key); candidates may be empty when
// keys were found but none fits alg.
func (v *JWTVerifier) candidates(kid, alg string) (candidates []jose.JSONWebKey, found bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if kid == "" {
		if len(v.keys) != 1 {
			return nil, false
		}
		if keyFits(v.keys[0], alg) {
			return []jose.JSONWebKey{v.keys[0]}, true
		}
		return nil, true
	}
	for _, k := range v.keys {
		if k.KeyID != kid {
			continue
		}
		found = true
		if keyFits(k, alg) {
			candidates = append(candidates, k)
		}
	}
	return candidates, found
}

// reloadIfDue reloads the JWKS when it is due for an unprompted check; if
// another load is in flight it does not wait. A failed load keeps the
// cached keys.
func (v *JWTVerifier) reloadIfDue(ctx context.Context) {
	now := time.Now()
	v.mu.RLock()
	due := now.Sub(v.checked) >= v.checkEvery
	v.mu.RUnlock()
	if !due {
		return
	}
	select {
	case v.loading <- struct{}{}:
	default:
		return
	}
	v.mu.Lock()
	if now.Sub(v.checked) < v.checkEvery {
		v.mu.Unlock()
		<-v.loading
		return
	}
	v.checked = now
	v.mu.Unlock()
	_ = v.loadDetached(ctx) // the cached keys stay; an unknown kid reports errors
}

// refreshForUnknownKid reloads the JWKS for a kid not in the cache, unless
// an unknown kid already did within MinRefreshInterval. Callers that arrive
// while a load is in flight wait for it and then see its keys.
func (v *JWTVerifier) refreshForUnknownKid(ctx context.Context) error {
	select {
	case v.loading <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	now := time.Now()
	v.mu.Lock()
	if !v.kidRefreshed.IsZero() && now.Sub(v.kidRefreshed) < v.minRefresh {
		v.mu.Unlock()
		<-v.loading
		return nil
	}
	v.kidRefreshed = now
	v.checked = now
	v.mu.Unlock()
	return v.loadDetached(ctx)
}

// loadDetached runs load, for a caller holding v.loading, on a context
// that the caller's cancellation does not end (bounded by
// jwksHTTPTimeout, whatever the HTTP client's), and waits for it while ctx
// lasts; v.loading is released when the load ends. A caller who gives up
// mid-fetch (any caller can, credentials or not) neither cuts the fetch
// short nor leaves the reload it claimed spent without one: otherwise a
// token with an unknown kid, sent again every MinRefreshInterval and
// dropped mid-fetch, would keep the issuer's new keys from ever loading.
func (v *JWTVerifier) loadDetached(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		defer func() { <-v.loading }()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksHTTPTimeout)
		defer cancel()
		done <- v.load(lctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load reads the JWKS and, if it changed and holds a usable key, makes its
// usable keys the cache. The caller holds v.loading (or is the constructor).
func (v *JWTVerifier) load(ctx context.Context) error {
	data, err := v.fetch(ctx)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	v.mu.RLock()
	same := sum == v.digest && v.keys != nil
	v.mu.RUnlock()
	if same {
		return nil
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys, v.digest = keys, sum
	v.mu.Unlock()
	return nil
}

// parseJWKS returns the usable public signing keys of a JWKS document.
// Keys of unknown or unusable types are skipped (RFC 7517 section 5); a
// document with none left is an error.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []josejson.RawMessage `json:"keys"`
	}
	if err := josejson.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		k = k.Public()
		if usableKey(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS: no usable signing key (RSA of 2048 bits or more, EC P-256/384/521 or Ed25519)")
	}
	return keys, nil
}

// usableKey reports whether k is a public key for signatures with an
// allowed algorithm. A key whose alg is one its type cannot verify (an EC
// key for RS256, a P-256 key for ES384) is not usable: it would verify no
// token.
func usableKey(k jose.JSONWebKey) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	if k.Algorithm != "" && (!isAllowedAlgorithm(k.Algorithm) || !keyFits(k, k.Algorithm)) {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return key.N != nil && key.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return key.Curve == elliptic.P256() || key.Curve == elliptic.P384() || key.Curve == elliptic.P521()
	case ed25519.PublicKey:
		return len(key) == ed25519.PublicKeySize
	}
	return false
}

// keyFits reports whether usable key k can verify a signature made with alg.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.ES256:
			return key.Curve == elliptic.P256()
		case jose.ES384:
			return key.Curve == elliptic.P384()
		case jose.ES512:
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return jose.SignatureAlgorithm(alg) == jose.EdDSA
	}
	return false
}

// checkJWKSURL refuses a JWKS URL that is not https, unless it is http on a
// loopback host.
func checkJWKSURL(u *url.URL) error {
	host := u.Hostname()
	if host == "" {
		return errors.New("JWKS URL must be absolute")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("JWKS URL must be https (http only on a loopback host)")
	}
	return errors.New("JWKS URL must be https (http only on a loopback host)")
}

// defaultJWKSClient has a timeout and follows redirects only to URLs that
// checkJWKSURL allows.
func defaultJWKSClient() *http.Client {
	return &http.Client{
		Timeout: jwksHTTPTimeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return checkJWKSURL(req.URL)
		},
	}
}

// shownURL is rawURL as an error may show it: without its user
// information or query, which may hold credentials. (newJWTVerifier
// refuses a URL whose password, not escaped, url.Parse would misread.)
func shownURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// fetchJWKS GETs the JWKS at rawURL.
func fetchJWKS(ctx context.Context, client *http.Client, rawURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error quotes the URL it failed on (rawURL, or where a
		// redirect led) with its query: show rawURL without credentials.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetch JWKS %s: %w", shownURL(rawURL), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return nil, fmt.Errorf("fetch JWKS %s: HTTP status %d", shownURL(rawURL), resp.StatusCode)
	}
	return readJWKS(resp.Body)
}

// readJWKSFile reads the JWKS file at path.
func readJWKSFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read JWKS file: %w", credential.WithoutPath(err))
	}
	defer func() { _ = f.Close() }()
	data, err := readJWKS(f)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", credential.WithoutPath(err))
	}
	return data, nil
}

// readJWKS reads a JWKS document of at most maxJWKSBytes.
func readJWKS(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return data, nil
}
