package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

const (
	testIssuer   = "https://kubernetes.default.svc.cluster.local"
	testAudience = "secretbroker"
	testSubject  = "system:serviceaccount:ci:deployer"
	// plantedClaim is put in tokens' claims and kids; no error may show it.
	plantedClaim = "PLANTED-jwt-claim-7f3a9c"
	// memJWKSURL is the JWKS URL of an in-memory jwksServer: https, so
	// that checkJWKSURL accepts it, and never dialed.
	memJWKSURL = "https://jwks.test/openid/v1/jwks"
)

// t0 is the fake time at which every synctest bubble starts (midnight UTC
// 2000-01-01, as testing/synctest documents; inBubble checks it).
var t0 = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// inBubble runs f in a synctest bubble (fake time, starting at t0). f must
// not call t.Run.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		if now := time.Now(); !now.Equal(t0) {
			t.Fatalf("bubble starts at %v, want %v", now, t0)
		}
		f(t)
	})
}

// jwksServer is a JWKS endpoint (an http.Handler) that counts its requests
// and records the time of each. inMemory serves it without a socket, for
// synctest bubbles; listen serves it on loopback.
type jwksServer struct {
	body     atomic.Pointer[[]byte]
	status   atomic.Int32
	requests atomic.Int64

	mu        sync.Mutex
	fetchedAt []time.Time
}

func newJWKSServer(jwks []byte) *jwksServer {
	s := &jwksServer{}
	s.Set(jwks)
	s.status.Store(http.StatusOK)
	return s
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	s.fetchedAt = append(s.fetchedAt, time.Now())
	s.mu.Unlock()
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if code := int(s.status.Load()); code != http.StatusOK {
		http.Error(w, "unavailable", code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(*s.body.Load())
}

func (s *jwksServer) Set(jwks []byte) { s.body.Store(&jwks) }

// assertFetchedAt fails unless the JWKS was requested exactly at want.
func (s *jwksServer) assertFetchedAt(t *testing.T, step string, want ...time.Time) {
	t.Helper()
	s.mu.Lock()
	got := slices.Clone(s.fetchedAt)
	s.mu.Unlock()
	if !slices.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("%s: JWKS fetched at %v, want %v", step, got, want)
	}
}

// inMemory returns cfg with s as its JWKS URL, served in memory through
// cfg.HTTPClient (real sockets do not block durably in a synctest bubble).
func (s *jwksServer) inMemory(cfg JWTConfig) JWTConfig {
	cfg.JWKSURL = memJWKSURL
	cfg.HTTPClient = &http.Client{Transport: handlerTransport{s}}
	return cfg
}

// listen serves s on a loopback port until the test ends and returns its
// URL.
func (s *jwksServer) listen(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

// handlerTransport is an http.RoundTripper that calls an http.Handler
// directly.
type handlerTransport struct{ h http.Handler }

func (tr handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	tr.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// keyPair is a signing key and its public JWK.
type keyPair struct {
	alg  jose.SignatureAlgorithm
	priv any
	kid  string
}

func (k keyPair) jwk() jose.JSONWebKey {
	priv := jose.JSONWebKey{Key: k.priv, KeyID: k.kid}
	pub := priv.Public()
	pub.Use = "sig"
	pub.Algorithm = string(k.alg)
	return pub
}

func (k keyPair) sign(t testing.TB, claims map[string]any) string {
	return signToken(t, k.alg, k.priv, k.kid, claims)
}

func newRSAKey(t testing.TB, kid string, bits int) keyPair {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{alg: jose.RS256, priv: key, kid: kid}
}

func newECKey(t testing.TB, kid string) keyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{alg: jose.ES256, priv: key, kid: kid}
}

func newEdKey(t testing.TB, kid string) keyPair {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{alg: jose.EdDSA, priv: key, kid: kid}
}

// signToken signs claims with key and alg, with kid in the header unless
// it is empty.
func signToken(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("signer: %v", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return token
}

// jwksOf returns a JWKS document of keys.
func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mergeJWKS merges JWKS documents.
func mergeJWKS(t testing.TB, docs ...[]byte) []byte {
	t.Helper()
	var all []json.RawMessage
	for _, d := range docs {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(d, &set); err != nil {
			t.Fatal(err)
		}
		all = append(all, set.Keys...)
	}
	data, err := json.Marshal(map[string]any{"keys": all})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// claimsAt returns valid claims for a token issued at now, changed by edit.
func claimsAt(now time.Time, edit func(c map[string]any)) map[string]any {
	c := map[string]any{
		"iss":     testIssuer,
		"aud":     []string{testAudience, "other"},
		"sub":     testSubject,
		"iat":     now.Unix(),
		"nbf":     now.Unix(),
		"exp":     now.Add(10 * time.Minute).Unix(),
		"planted": plantedClaim,
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func newVerifier(t *testing.T, cfg JWTConfig) *JWTVerifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	v, err := NewJWTVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	return v
}

// assertNoTokenMaterial fails if msg shows token, any of its three parts,
// or the planted claim.
func assertNoTokenMaterial(t *testing.T, msg, token string) {
	t.Helper()
	needles := []string{plantedClaim}
	if token != "" {
		needles = append(needles, token)
		for _, part := range strings.Split(token, ".") {
			if len(part) >= 8 {
				needles = append(needles, part)
			}
		}
	}
	for _, n := range needles {
		if strings.Contains(msg, n) {
			t.Errorf("error %q contains token material %q", msg, n)
		}
	}
}

func TestJWTVerifierAuthenticate(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "rsa-1")
	ec := newECKey(t, "ec-1")
	ed := newEdKey(t, "ed-1")
	ps := newRSAKey(t, "ps-1", 2048)
	ps.alg = jose.PS256
	other := newRSAKey(t, "rsa-1", 2048) // an attacker's key under the trusted kid
	jwks := mergeJWKS(t, issuer.JWKS(), jwksOf(t, ec.jwk(), ed.jwk(), ps.jwk()))
	// The RSA public key as PEM: the HMAC secret of the classic algorithm
	// confusion attack.
	var rsaPub jose.JSONWebKeySet
	if err := json.Unmarshal(issuer.JWKS(), &rsaPub); err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(rsaPub.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	valid := claimsAt(t0, nil)
	with := func(edit func(c map[string]any)) map[string]any { return claimsAt(t0, edit) }
	good := issuer.Token(t, valid)
	parts := strings.Split(good, ".")
	unsignedHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"rsa-1"}`))

	tests := []struct {
		name    string
		token   string
		want    string
		wantErr error
	}{
		{name: "valid RS256", token: good, want: "jwt:" + testSubject},
		{name: "valid ES256", token: ec.sign(t, valid), want: "jwt:" + testSubject},
		{name: "valid EdDSA", token: ed.sign(t, valid), want: "jwt:" + testSubject},
		{name: "valid PS256", token: ps.sign(t, valid), want: "jwt:" + testSubject},
		{name: "audience as a string", token: issuer.Token(t, with(func(c map[string]any) { c["aud"] = testAudience })), want: "jwt:" + testSubject},
		{name: "expired within leeway", token: issuer.Token(t, with(func(c map[string]any) { c["exp"] = t0.Add(-59 * time.Second).Unix() })), want: "jwt:" + testSubject},
		{name: "nbf within leeway", token: issuer.Token(t, with(func(c map[string]any) { c["nbf"] = t0.Add(59 * time.Second).Unix() })), want: "jwt:" + testSubject},
		{name: "no nbf and no iat", token: issuer.Token(t, with(func(c map[string]any) { delete(c, "nbf"); delete(c, "iat") })), want: "jwt:" + testSubject},

		{name: "expired beyond leeway", token: issuer.Token(t, with(func(c map[string]any) { c["exp"] = t0.Add(-61 * time.Second).Unix() })), wantErr: errTokenExpired},
		{name: "nbf in the future", token: issuer.Token(t, with(func(c map[string]any) { c["nbf"] = t0.Add(2 * time.Minute).Unix() })), wantErr: errTokenNotYetValid},
		{name: "iat in the future", token: issuer.Token(t, with(func(c map[string]any) { c["iat"] = t0.Add(2 * time.Minute).Unix() })), wantErr: errTokenIssuedLater},
		{name: "missing exp", token: issuer.Token(t, with(func(c map[string]any) { delete(c, "exp") })), wantErr: errTokenNoExpiry},
		{name: "wrong issuer", token: issuer.Token(t, with(func(c map[string]any) { c["iss"] = "https://evil.example" })), wantErr: errTokenIssuer},
		{name: "missing issuer", token: issuer.Token(t, with(func(c map[string]any) { delete(c, "iss") })), wantErr: errTokenIssuer},
		{name: "wrong audience", token: issuer.Token(t, with(func(c map[string]any) { c["aud"] = []string{"vault", "other"} })), wantErr: errTokenAudience},
		{name: "missing audience", token: issuer.Token(t, with(func(c map[string]any) { delete(c, "aud") })), wantErr: errTokenAudience},
		{name: "missing sub", token: issuer.Token(t, with(func(c map[string]any) { delete(c, "sub") })), wantErr: errTokenNoSubject},
		{name: "empty sub", token: issuer.Token(t, with(func(c map[string]any) { c["sub"] = "" })), wantErr: errTokenNoSubject},
		{name: "sub with a newline", token: issuer.Token(t, with(func(c map[string]any) { c["sub"] = "a\nb" })), wantErr: errTokenSubject},
		{name: "sub of the wrong type", token: issuer.Token(t, with(func(c map[string]any) { c["sub"] = 42 })), wantErr: errTokenClaims},
		{name: "exp of the wrong type", token: issuer.Token(t, with(func(c map[string]any) { c["exp"] = plantedClaim })), wantErr: errTokenClaims},

		{name: "HS256 keyed with the RSA public key", token: signToken(t, jose.HS256, pubPEM, "rsa-1", valid), wantErr: errTokenAlgorithm},
		{name: "HS512", token: signToken(t, jose.HS512, []byte(strings.Repeat("k", 64)), "rsa-1", valid), wantErr: errTokenAlgorithm},
		{name: "alg none", token: unsignedHeader + "." + parts[1] + ".", wantErr: errTokenMalformed},
		{name: "signed by another key under the trusted kid", token: other.sign(t, valid), wantErr: errTokenSignature},
		{name: "payload swapped", token: parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2], wantErr: errTokenSignature},
		{name: "RS256 under an EC kid", token: signToken(t, jose.RS256, other.priv, "ec-1", valid), wantErr: errTokenKeyMismatch},
		{name: "RS256 under the PS256 key's kid", token: signToken(t, jose.RS256, ps.priv, "ps-1", valid), wantErr: errTokenKeyMismatch},
		{name: "no kid with several keys", token: signToken(t, jose.RS256, other.priv, "", valid), wantErr: errTokenNoKeyID},
		{name: "garbage", token: "sbt_" + plantedClaim, wantErr: errTokenMalformed},
		{name: "two parts", token: parts[0] + "." + parts[1], wantErr: errTokenMalformed},
		{name: "empty", token: "", wantErr: errTokenEmpty},
		{name: "too large", token: strings.Repeat("A", maxJWTBytes+1), wantErr: errTokenTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				srv := newJWKSServer(jwks)
				v := newVerifier(t, srv.inMemory(JWTConfig{}))
				got, err := v.Authenticate(context.Background(), tt.token)
				// One fetch, at construction: no case above triggers a
				// reload ("no kid" is not an unknown kid, and every kid
				// above is in the JWKS).
				srv.assertFetchedAt(t, tt.name, t0)
				if tt.wantErr == nil {
					if err != nil || got != tt.want {
						t.Fatalf("Authenticate = %q, %v; want %q", got, err, tt.want)
					}
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Authenticate = %q, %v; want error %v", got, err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("Authenticate returned caller %q with an error", got)
				}
				assertNoTokenMaterial(t, err.Error(), tt.token)
			})
		})
	}
}

// TestJWTVerifierLeeway: a token is valid from exactly nbf-leeway to
// exactly exp+leeway, and not a nanosecond outside.
func TestJWTVerifierLeeway(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	path := issuer.WriteJWKSFile(t)
	const (
		nbf = 5 * time.Minute  // after t0
		exp = 15 * time.Minute // after t0
	)
	token := issuer.Token(t, claimsAt(t0, func(c map[string]any) {
		c["nbf"] = t0.Add(nbf).Unix()
		c["exp"] = t0.Add(exp).Unix()
	})) // iat t0
	tests := []struct {
		name    string
		leeway  time.Duration
		at      time.Duration // after t0
		wantErr error
	}{
		{name: "default leeway, exactly 60 s before nbf", at: nbf - time.Minute},
		{name: "default leeway, 1 ns earlier", at: nbf - time.Minute - time.Nanosecond, wantErr: errTokenNotYetValid},
		{name: "default leeway, exactly 60 s after exp", at: exp + time.Minute},
		{name: "default leeway, 1 ns later", at: exp + time.Minute + time.Nanosecond, wantErr: errTokenExpired},
		{name: "5 s leeway, exactly 5 s before nbf", leeway: 5 * time.Second, at: nbf - 5*time.Second},
		{name: "5 s leeway, 1 ns earlier", leeway: 5 * time.Second, at: nbf - 5*time.Second - time.Nanosecond, wantErr: errTokenNotYetValid},
		{name: "5 s leeway, 59 s before nbf", leeway: 5 * time.Second, at: nbf - 59*time.Second, wantErr: errTokenNotYetValid},
		{name: "5 s leeway, exactly 5 s after exp", leeway: 5 * time.Second, at: exp + 5*time.Second},
		{name: "5 s leeway, 1 ns later", leeway: 5 * time.Second, at: exp + 5*time.Second + time.Nanosecond, wantErr: errTokenExpired},
		{name: "5 s leeway, 59 s after exp", leeway: 5 * time.Second, at: exp + 59*time.Second, wantErr: errTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				v := newVerifier(t, JWTConfig{JWKSFile: path, Leeway: tt.leeway})
				time.Sleep(tt.at)
				got, err := v.Authenticate(context.Background(), token)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("at t0+%v: Authenticate = %q, %v; want error %v", tt.at, got, err, tt.wantErr)
				}
				if err == nil && got != "jwt:"+testSubject {
					t.Errorf("caller = %q", got)
				}
				if err != nil {
					assertNoTokenMaterial(t, err.Error(), token)
				}
			})
		})
	}
}

func TestJWTVerifierNoKidSingleKey(t *testing.T) {
	key := newECKey(t, "")
	other := newECKey(t, "")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(t, key.jwk()), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{name: "signed by the only key", token: key.sign(t, claimsAt(t0, nil))},
		{name: "signed by another key", token: other.sign(t, claimsAt(t0, nil)), wantErr: errTokenSignature},
		{name: "algorithm the only key cannot do", token: signToken(t, jose.ES384, mustEC(t, elliptic.P384()), "", claimsAt(t0, nil)), wantErr: errTokenKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				v := newVerifier(t, JWTConfig{JWKSFile: path})
				got, err := v.Authenticate(context.Background(), tt.token)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Authenticate = %q, %v; want error %v", got, err, tt.wantErr)
				}
				if err == nil && got != "jwt:"+testSubject {
					t.Errorf("caller = %q", got)
				}
			})
		})
	}
}

func mustEC(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestJWTVerifierUnknownKidRefresh: a kid not in the cache triggers one
// fetch; once the JWKS URL serves the new key, the token verifies; fetches
// are rate-limited to one per MinRefreshInterval, exactly.
func TestJWTVerifierUnknownKidRefresh(t *testing.T) {
	old := identitytest.NewIssuer(t, "k1")
	rotated := identitytest.NewIssuer(t, "k2")
	const interval = 30 * time.Second
	inBubble(t, func(t *testing.T) {
		srv := newJWKSServer(old.JWKS())
		v := newVerifier(t, srv.inMemory(JWTConfig{MinRefreshInterval: interval}))
		ctx := context.Background()
		newToken := rotated.Token(t, claimsAt(t0, func(c map[string]any) { c["exp"] = t0.Add(time.Hour).Unix() }))

		steps := []struct {
			name        string
			advance     time.Duration
			serve       []byte
			wantErr     error
			wantFetches []time.Time // all so far, the first being the constructor's
		}{
			{name: "before the rotation: one fetch, key still unknown", wantErr: errTokenUnknownKey, wantFetches: []time.Time{t0, t0}},
			{name: "rotation served, 1 ns before the interval: no fetch", serve: mergeJWKS(t, old.JWKS(), rotated.JWKS()), advance: interval - time.Nanosecond, wantErr: errTokenUnknownKey, wantFetches: []time.Time{t0, t0}},
			{name: "exactly the interval: one fetch, verifies", advance: time.Nanosecond, wantFetches: []time.Time{t0, t0, t0.Add(interval)}},
			{name: "cached: no fetch", advance: time.Second, wantFetches: []time.Time{t0, t0, t0.Add(interval)}},
		}
		for _, s := range steps {
			if s.serve != nil {
				srv.Set(s.serve)
			}
			time.Sleep(s.advance)
			got, err := v.Authenticate(ctx, newToken)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: Authenticate = %q, %v; want error %v", s.name, got, err, s.wantErr)
			}
			if err == nil && got != "jwt:"+testSubject {
				t.Errorf("%s: caller = %q", s.name, got)
			}
			if err != nil {
				assertNoTokenMaterial(t, err.Error(), newToken)
			}
			srv.assertFetchedAt(t, s.name, s.wantFetches...)
		}
		// The old key is still served and still verifies.
		if _, err := v.Authenticate(ctx, old.Token(t, claimsAt(t0, nil))); err != nil {
			t.Errorf("old key after rotation: %v", err)
		}
	})
}

// TestJWTVerifierGarbageKidFlood: 100 concurrent tokens with random kids
// cause exactly one fetch per MinRefreshInterval.
func TestJWTVerifierGarbageKidFlood(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	attacker := newECKey(t, "")
	const interval = defaultMinRefreshInterval
	inBubble(t, func(t *testing.T) {
		srv := newJWKSServer(issuer.JWKS())
		v := newVerifier(t, srv.inMemory(JWTConfig{})) // default MinRefreshInterval

		flood := func() {
			t.Helper()
			tokens := make([]string, 100)
			for i := range tokens {
				var kid [12]byte
				_, _ = rand.Read(kid[:])
				tokens[i] = signToken(t, jose.ES256, attacker.priv, plantedClaim+hex.EncodeToString(kid[:]), claimsAt(t0, nil))
			}
			errs := make([]error, len(tokens))
			var wg sync.WaitGroup
			for i, tok := range tokens {
				wg.Go(func() {
					_, errs[i] = v.Authenticate(context.Background(), tok)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, errTokenUnknownKey) {
					t.Fatalf("token %d: error %v, want %v", i, err, errTokenUnknownKey)
				}
				assertNoTokenMaterial(t, err.Error(), tokens[i])
			}
		}

		steps := []struct {
			name        string
			advance     time.Duration
			wantFetches []time.Time
		}{
			{name: "first flood: one refresh", wantFetches: []time.Time{t0, t0}},
			{name: "1 ns before the interval: none", advance: interval - time.Nanosecond, wantFetches: []time.Time{t0, t0}},
			{name: "exactly the interval: one more", advance: time.Nanosecond, wantFetches: []time.Time{t0, t0, t0.Add(interval)}},
			{name: "right after: none", advance: time.Second, wantFetches: []time.Time{t0, t0, t0.Add(interval)}},
		}
		for _, s := range steps {
			time.Sleep(s.advance)
			flood()
			srv.assertFetchedAt(t, s.name, s.wantFetches...)
		}
		// The flood did not disturb the real key.
		if _, err := v.Authenticate(context.Background(), issuer.Token(t, claimsAt(t0, nil))); err != nil {
			t.Errorf("legitimate token after the flood: %v", err)
		}
	})
}

// TestJWTVerifierFileRotation: a changed JWKS file is picked up on the
// verify path exactly MinRefreshInterval after the last check, without an
// unknown kid.
func TestJWTVerifierFileRotation(t *testing.T) {
	old := identitytest.NewIssuer(t, "k1")
	rotated := identitytest.NewIssuer(t, "k2")
	path := old.WriteJWKSFile(t)
	oldToken := old.Token(t, claimsAt(t0, func(c map[string]any) { c["exp"] = t0.Add(time.Hour).Unix() }))
	newToken := rotated.Token(t, claimsAt(t0, func(c map[string]any) { c["exp"] = t0.Add(time.Hour).Unix() }))
	write := func(data []byte) func(t *testing.T) {
		return func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	steps := []struct {
		name     string
		do       func(t *testing.T)
		advance  time.Duration
		oldErr   error
		checkNew bool
		newErr   error
	}{
		{name: "initial", oldErr: nil},
		// The cached key stays until the file is checked: the old token
		// still verifies although the file no longer has its key.
		{name: "rotated, 1 ns before the check", do: write(rotated.JWKS()), advance: defaultMinRefreshInterval - time.Nanosecond, oldErr: nil},
		// Checked: the old key is gone (its kid is now unknown; an
		// unknown-kid reload reads the same file).
		{name: "checked exactly at the interval", advance: time.Nanosecond, oldErr: errTokenUnknownKey, checkNew: true},
		// A broken file keeps the cached keys.
		{name: "broken file", do: write([]byte(`{"keys": [`)), advance: time.Minute, oldErr: errTokenUnknownKey, checkNew: true},
		{name: "file removed", do: func(t *testing.T) { _ = os.Remove(path) }, advance: time.Minute, oldErr: errTokenUnknownKey, checkNew: true},
		{name: "rolled back", do: write(old.JWKS()), advance: time.Minute, oldErr: nil, checkNew: true, newErr: errTokenUnknownKey},
		// A file whose only key has an alg its type cannot verify holds
		// no usable key: the cached keys stay.
		{name: "EC key for RS256 under the old kid", do: write(jwksOf(t, func() jose.JSONWebKey {
			k := newECKey(t, "k1").jwk()
			k.Algorithm = string(jose.RS256)
			return k
		}())), advance: time.Minute, oldErr: nil},
	}
	inBubble(t, func(t *testing.T) {
		v := newVerifier(t, JWTConfig{JWKSFile: path}) // default MinRefreshInterval
		for _, s := range steps {
			if s.do != nil {
				s.do(t)
			}
			time.Sleep(s.advance)
			if _, err := v.Authenticate(context.Background(), oldToken); !errors.Is(err, s.oldErr) {
				t.Fatalf("%s: old token: error %v, want %v", s.name, err, s.oldErr)
			} else if err != nil {
				assertNoTokenMaterial(t, err.Error(), oldToken)
			}
			if s.checkNew {
				if _, err := v.Authenticate(context.Background(), newToken); !errors.Is(err, s.newErr) {
					t.Fatalf("%s: new token: error %v, want %v", s.name, err, s.newErr)
				} else if err != nil {
					assertNoTokenMaterial(t, err.Error(), newToken)
				}
			}
		}
	})
}

// TestJWTVerifierURLMaxAge: a JWKS from a URL is fetched again exactly an
// hour after the last fetch, so a key the issuer removed stops verifying.
func TestJWTVerifierURLMaxAge(t *testing.T) {
	old := identitytest.NewIssuer(t, "k1")
	rotated := identitytest.NewIssuer(t, "k2")
	inBubble(t, func(t *testing.T) {
		srv := newJWKSServer(old.JWKS())
		v := newVerifier(t, srv.inMemory(JWTConfig{Leeway: 24 * time.Hour}))
		token := old.Token(t, claimsAt(t0, nil))

		srv.Set(rotated.JWKS())
		time.Sleep(jwksURLMaxAge - time.Nanosecond)
		if _, err := v.Authenticate(context.Background(), token); err != nil {
			t.Fatalf("1 ns before max age: %v", err)
		}
		srv.assertFetchedAt(t, "1 ns before max age", t0)
		time.Sleep(time.Nanosecond)
		_, err := v.Authenticate(context.Background(), token)
		if !errors.Is(err, errTokenUnknownKey) {
			t.Fatalf("at max age: error %v, want %v", err, errTokenUnknownKey)
		}
		assertNoTokenMaterial(t, err.Error(), token)
		// One age refetch and one unknown-kid refetch, both exactly at the
		// max age.
		at := t0.Add(jwksURLMaxAge)
		srv.assertFetchedAt(t, "at max age", t0, at, at)
	})
}

// TestJWTVerifierRefreshFailure: a failing JWKS endpoint keeps the cached
// keys, and the error says why the kid stayed unknown without the token.
func TestJWTVerifierRefreshFailure(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	inBubble(t, func(t *testing.T) {
		srv := newJWKSServer(issuer.JWKS())
		v := newVerifier(t, srv.inMemory(JWTConfig{}))
		srv.status.Store(http.StatusServiceUnavailable)

		unknown := signToken(t, jose.ES256, newECKey(t, "").priv, "kid-"+plantedClaim, claimsAt(t0, nil))
		_, err := v.Authenticate(context.Background(), unknown)
		if !errors.Is(err, errTokenUnknownKey) || !strings.Contains(err.Error(), "HTTP status 503") {
			t.Fatalf("error %v, want %v with the refresh's cause", err, errTokenUnknownKey)
		}
		assertNoTokenMaterial(t, err.Error(), unknown)
		if got, err := v.Authenticate(context.Background(), issuer.Token(t, claimsAt(t0, nil))); err != nil || got != "jwt:"+testSubject {
			t.Errorf("cached key after a failed refresh: %q, %v", got, err)
		}
		srv.assertFetchedAt(t, "after the failed refresh", t0, t0)
	})
}

func TestNewJWTVerifierConfig(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	// Real loopback servers (no bubble here): the default client's path.
	serve := func(jwks []byte) string { return newJWKSServer(jwks).listen(t) }
	good := serve(issuer.JWKS())
	notFound := newJWKSServer(issuer.JWKS())
	notFound.status.Store(http.StatusNotFound)
	missing := notFound.listen(t)
	weak := serve(jwksOf(t, newRSAKey(t, "weak", 1024).jwk()))
	symmetric := serve(jwksOf(t, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: "HS256"}))
	encryption := serve(func() []byte {
		k := newECKey(t, "enc").jwk()
		k.Use = "enc"
		return jwksOf(t, k)
	}())
	garbage := serve([]byte("<html>"))
	// An unknown key type next to a good key: skipped, not fatal.
	mixed := serve(mergeJWKS(t, []byte(`{"keys":[{"kty":"XYZ","kid":"future"}]}`), issuer.JWKS()))
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(issuer.JWKS()) }))
	t.Cleanup(tlsSrv.Close)
	file := issuer.WriteJWKSFile(t)
	plantedDir := filepath.Join(t.TempDir(), plantedURLSecret)
	if err := os.Mkdir(plantedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A port the test holds and never listens on: the connection is refused.
	refused := "http://jwks:" + plantedURLSecret + "@" + refusingAddr(t) + "/jwks?token=" + plantedURLSecret
	// A redirect the client refuses, to a URL holding credentials.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://jwks.example/keys?token="+plantedURLSecret, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)

	tests := []struct {
		name    string
		cfg     JWTConfig
		wantErr string
	}{
		{name: "http loopback URL", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: good}},
		{name: "https URL", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: tlsSrv.URL, HTTPClient: tlsSrv.Client()}},
		{name: "file", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSFile: file}},
		{name: "unknown key type skipped", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: mixed}},
		{name: "no issuer", cfg: JWTConfig{Audience: "a", JWKSFile: file}, wantErr: "issuer is required"},
		{name: "no audience", cfg: JWTConfig{Issuer: "i", JWKSFile: file}, wantErr: "audience is required"},
		{name: "no JWKS", cfg: JWTConfig{Issuer: "i", Audience: "a"}, wantErr: "one of JWKS URL and JWKS file is required"},
		{name: "both JWKS sources", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: good, JWKSFile: file}, wantErr: "only one"},
		{name: "negative leeway", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSFile: file, Leeway: -time.Second}, wantErr: "must not be negative"},
		{name: "http on a remote host", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: "http://kubernetes.example/openid/v1/jwks"}, wantErr: "must be https"},
		{name: "missing file", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSFile: filepath.Join(t.TempDir(), "none.json")}, wantErr: "read JWKS file"},
		// The path given is a secret, by mistake (a secretKeyRef filling
		// the variable meant for the mounted file's path): not shown.
		{name: "the path is a secret", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSFile: plantedURLSecret}, wantErr: "read JWKS file"},
		{name: "the path is a directory named by a secret", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSFile: plantedDir}, wantErr: "JWKS file: read: is a directory"},
		{name: "HTTP 404", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: missing}, wantErr: "HTTP status 404"},
		// Credentials in the URL never reach an error.
		{name: "HTTP 404, credentials in the URL", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: strings.Replace(missing, "http://", "http://jwks:"+plantedURLSecret+"@", 1) + "?token=" + plantedURLSecret}, wantErr: "HTTP status 404"},
		{name: "connection refused, credentials in the URL", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: refused},
			wantErr: "connection refused"},
		{name: "redirect refused, credentials in its URL", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: redirector.URL + "/jwks?token=" + plantedURLSecret}, wantErr: "must be https"},
		// A password's unescaped "/", "?" or "#" ends the host: its
		// start would be dialled as the port.
		{name: "password misread as a path", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: "http://jwks:4321/" + plantedURLSecret + "@127.0.0.1/jwks"}, wantErr: `"@" outside its user information`},
		{name: "password misread as a query", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: "http://jwks:4321?" + plantedURLSecret + "@127.0.0.1/jwks"}, wantErr: `"@" outside its user information`},
		// An "@" in the user name ("me@127.0.0.1", password "<port>/...")
		// ends the user information there: the password's start is read
		// as the port and its rest as the path, which an error shows.
		{name: "user name with an @, password misread as a path", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: strings.Replace(missing, "http://", "http://me@", 1) + "/" + plantedURLSecret + "@127.0.0.1/jwks"}, wantErr: `"@" outside its user information`},
		{name: "user name with an @, password misread as a query", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: strings.Replace(missing, "http://", "http://me@", 1) + "?" + plantedURLSecret + "@127.0.0.1/jwks"}, wantErr: `"@" outside its user information`},
		// One in the user name or password, before the host: read as
		// written.
		{name: "user name and password with an @, HTTP 404", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: strings.Replace(missing, "http://", "http://me@corp:p@ss"+plantedURLSecret+"@", 1)}, wantErr: "HTTP status 404"},
		{name: "invalid URL with a password", cfg: JWTConfig{Issuer: "i", Audience: "a",
			JWKSURL: "http://jwks:" + plantedURLSecret + "%zz@127.0.0.1/jwks"}, wantErr: "not a valid URL"},
		{name: "RSA 1024 only", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: weak}, wantErr: "no usable signing key"},
		{name: "symmetric key only", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: symmetric}, wantErr: "no usable signing key"},
		{name: "encryption key only", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: encryption}, wantErr: "no usable signing key"},
		{name: "not JSON", cfg: JWTConfig{Issuer: "i", Audience: "a", JWKSURL: garbage}, wantErr: "JWKS:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWTVerifier(context.Background(), tt.cfg)
			if tt.wantErr == "" {
				if err != nil || v == nil {
					t.Fatalf("NewJWTVerifier: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewJWTVerifier error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), plantedURLSecret) {
				t.Errorf("the error quotes the URL's credentials: %v", err)
			}
		})
	}
}

// plantedURLSecret is a password and a query token in JWKS URLs.
const plantedURLSecret = "PLANTED-jwks-pass-51c0"

func TestCheckJWKSURL(t *testing.T) {
	tests := []struct {
		url    string
		wantOK bool
	}{
		{"https://kubernetes.default.svc/openid/v1/jwks", true},
		{"https://203.0.113.7:6443/openid/v1/jwks", true},
		{"http://127.0.0.1:8080/jwks", true},
		{"http://127.5.5.5/jwks", true},
		{"http://[::1]:8080/jwks", true},
		{"http://localhost:8080/jwks", true},
		{"http://kubernetes.default.svc/openid/v1/jwks", false},
		{"http://203.0.113.7/jwks", false},
		{"http://localhost.evil.example/jwks", false},
		{"ftp://127.0.0.1/jwks", false},
		{"file:///etc/jwks.json", false},
		{"/openid/v1/jwks", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkJWKSURL(u); (err == nil) != tt.wantOK {
				t.Errorf("checkJWKSURL(%s) = %v, want ok %v", tt.url, err, tt.wantOK)
			}
		})
	}
}

// TestJWKSRedirectToPlainHTTP: the default client refuses to follow a
// redirect from the JWKS URL to plain http on a remote host.
func TestJWKSRedirectToPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://jwks.example/keys", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	_, err := NewJWTVerifier(context.Background(), JWTConfig{Issuer: "i", Audience: "a", JWKSURL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "must be https") {
		t.Fatalf("NewJWTVerifier error = %v, want the redirect refused", err)
	}
}
