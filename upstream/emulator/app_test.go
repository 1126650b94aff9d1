package emulator_test

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const testAppID = 4711

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// appJWT signs claims for the app with key.
func appJWT(t testing.TB, key *rsa.PrivateKey, iss string, iat, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: iss, IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newAppEnv(t *testing.T, key *rsa.PrivateKey, limits emulator.Limits, lifetime time.Duration, mem bool) *env {
	t.Helper()
	opts := emulator.Options{Limits: limits, App: &emulator.App{
		ID: testAppID, PublicKey: &key.PublicKey, TokenLifetime: lifetime,
		Installations: []emulator.Installation{{ID: 1, Account: "octo-org"}, {ID: 2, Account: "globex"}},
	}}
	var e *env
	if mem {
		e = newMemEnv(t, opts)
	} else {
		e = newEnv(t, opts)
	}
	e.emu.AddOrg("globex")
	return e
}

// The app routes take only a JWT that the app's key signed (RS256), whose
// iss is the app's id and whose exp is in the future but at most 10
// minutes away.
func TestAppJWTVerification(t *testing.T) {
	key, other := rsaKey(t), rsaKey(t)
	e := newAppEnv(t, key, emulator.Limits{}, 0, false)
	now := time.Now()
	id := strconv.Itoa(testAppID)
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer: id, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	}).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth string
		status     int
		msg        string
	}{
		{"valid", "Bearer " + appJWT(t, key, id, now.Add(-30*time.Second), now.Add(2*time.Minute)), 200, ""},
		{"exp at 10 minutes", "Bearer " + appJWT(t, key, id, now, now.Add(10*time.Minute-time.Second)), 200, ""},
		{"bad signature", "Bearer " + appJWT(t, other, id, now, now.Add(time.Minute)), 401, "could not be decoded"},
		{"wrong iss", "Bearer " + appJWT(t, key, "4712", now, now.Add(time.Minute)), 401, "'Issuer' claim"},
		{"exp too far", "Bearer " + appJWT(t, key, id, now, now.Add(11*time.Minute)), 401, "too far in the future"},
		{"expired", "Bearer " + appJWT(t, key, id, now.Add(-5*time.Minute), now.Add(-time.Minute)), 401, "'Expiration time' claim"},
		{"HS256", "Bearer " + hs256, 401, "could not be decoded"},
		{"garbage", "Bearer not.a.jwt", 401, "could not be decoded"},
		{"none", "", 401, "could not be decoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.want(e.do("GET", "/app", nil, "Authorization", tc.auth), tc.status)
			if tc.status == 200 {
				var app struct {
					ID int64 `json:"id"`
				}
				r.json(t, &app)
				if app.ID != testAppID {
					t.Errorf("GET /app id %d, want %d", app.ID, testAppID)
				}
				return
			}
			if msg := r.message(t); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want it to say %q", msg, tc.msg)
			}
		})
	}
	if n := e.emu.AppStats().JWTRejected; n != 7 {
		t.Errorf("JWTRejected = %d, want 7", n)
	}
}

// mint gets an installation token with a fresh JWT.
func mint(t *testing.T, e *env, key *rsa.PrivateKey, installation int64) (string, time.Time) {
	t.Helper()
	now := time.Now()
	jwtAuth := "Bearer " + appJWT(t, key, strconv.Itoa(testAppID), now.Add(-30*time.Second), now.Add(2*time.Minute))
	r := e.want(e.do("POST", "/app/installations/"+strconv.FormatInt(installation, 10)+"/access_tokens", nil, "Authorization", jwtAuth), 201)
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	r.json(t, &tok)
	if !strings.HasPrefix(tok.Token, "ghs_") {
		t.Fatalf("token %q is not an installation token", tok.Token)
	}
	return tok.Token, tok.ExpiresAt
}

// Installations are found per organization, per user and per repository
// (404 for a repository that does not exist); their tokens serve their
// own account only, and are no JWT.
func TestAppInstallations(t *testing.T) {
	key := rsaKey(t)
	e := newAppEnv(t, key, emulator.Limits{}, 0, false)
	now := time.Now()
	jwtAuth := "Bearer " + appJWT(t, key, strconv.Itoa(testAppID), now.Add(-30*time.Second), now.Add(2*time.Minute))
	for _, tc := range []struct {
		path   string
		status int
		id     int64
	}{
		{"/orgs/octo-org/installation", 200, 1},
		{"/orgs/GLOBEX/installation", 200, 2},
		{"/repos/octo-org/hello-world/installation", 200, 1},
		{"/api/v3/orgs/octo-org/installation", 200, 1},
		{"/orgs/initech/installation", 404, 0},
		{"/repos/octo-org/no-such-repo/installation", 404, 0},
		{"/users/globex/installation", 200, 2},
		{"/users/initech/installation", 404, 0},
	} {
		r := e.want(e.do("GET", tc.path, nil, "Authorization", jwtAuth), tc.status)
		if tc.status == 200 {
			var in struct {
				ID int64 `json:"id"`
			}
			r.json(t, &in)
			if in.ID != tc.id {
				t.Errorf("%s: installation %d, want %d", tc.path, in.ID, tc.id)
			}
		}
	}
	e.want(e.do("POST", "/app/installations/99/access_tokens", nil, "Authorization", jwtAuth), 404)

	tok, exp := mint(t, e, key, 1)
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %v, want an hour", d)
	}
	auth := "Bearer " + tok
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", auth), 200)
	e.want(e.do("GET", "/"+repoActs+"/secrets/public-key", nil, "Authorization", "token "+tok), 200)
	if msg := e.want(e.do("GET", "/orgs/globex/actions/secrets/public-key", nil, "Authorization", auth), 403).message(t); !strings.Contains(msg, "not accessible by integration") {
		t.Errorf("other account: %q", msg)
	}
	e.want(e.do("GET", "/app", nil, "Authorization", auth), 401)                               // a token is no JWT
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", jwtAuth), 401) // nor a JWT a token
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil), 401)
}

// An installation token is refused with 401 once its lifetime is over.
func TestAppTokenExpiry(t *testing.T) {
	key := rsaKey(t)
	synctest.Test(t, func(t *testing.T) {
		e := newAppEnv(t, key, emulator.Limits{}, 10*time.Minute, true)
		tok, exp := mint(t, e, key, 1)
		if got := time.Until(exp); got != 10*time.Minute {
			t.Errorf("expires_at in %v, want 10m", got)
		}
		auth := "Bearer " + tok
		time.Sleep(10*time.Minute - time.Second)
		e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", auth), 200)
		time.Sleep(time.Second)
		if msg := e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", auth), 401).message(t); msg != "Bad credentials" {
			t.Errorf("expired token: %q", msg)
		}
		if n := e.emu.AppStats().ExpiredTokens; n != 1 {
			t.Errorf("ExpiredTokens = %d, want 1", n)
		}
		e.emu.ExpireTokens()
		tok2, _ := mint(t, e, key, 1)
		e.emu.ExpireTokens()
		e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", "Bearer "+tok2), 401)
	})
}

// Each installation has its own limits: one installation's primary quota
// used up leaves the other's whole.
func TestAppLimitsPerInstallation(t *testing.T) {
	key := rsaKey(t)
	synctest.Test(t, func(t *testing.T) {
		e := newAppEnv(t, key, emulator.Limits{PrimaryPerHour: 3}, 0, true)
		t1, _ := mint(t, e, key, 1)
		t2, _ := mint(t, e, key, 2)
		for i := range 3 {
			r := e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", "Bearer "+t1), 200)
			if got := r.header.Get("X-Ratelimit-Remaining"); got != strconv.Itoa(2-i) {
				t.Errorf("installation 1 request %d: remaining %s, want %d", i+1, got, 2-i)
			}
		}
		e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "Authorization", "Bearer "+t1), 403)
		r := e.want(e.do("GET", "/orgs/globex/actions/secrets/public-key", nil, "Authorization", "Bearer "+t2), 200)
		if got := r.header.Get("X-Ratelimit-Remaining"); got != "2" {
			t.Errorf("installation 2: remaining %s, want 2", got)
		}
		if st := e.emu.Stats(); st.PrimaryViolations != 1 {
			t.Errorf("PrimaryViolations = %d, want 1", st.PrimaryViolations)
		}
		var rl struct {
			Rate struct {
				Remaining int `json:"remaining"`
			} `json:"rate"`
		}
		e.want(e.do("GET", "/rate_limit", nil, "Authorization", "Bearer "+t2), 200).json(t, &rl)
		if rl.Rate.Remaining != 2 {
			t.Errorf("installation 2's /rate_limit shows %d remaining, want 2", rl.Rate.Remaining)
		}
	})
}

// FuzzAppJWT: whatever the Authorization header holds, GET /app answers
// 200 only for a JWT the app's key signed, and 401 otherwise, never
// panicking.
func FuzzAppJWT(f *testing.F) {
	key := rsaKey(f)
	now := time.Now()
	valid := appJWT(f, key, strconv.Itoa(testAppID), now, now.Add(5*time.Minute))
	for _, s := range []string{"Bearer " + valid, "Bearer " + valid + "x", "token abc", "Bearer a.b.c", "", "Bearer", "Basic Zm9vOmJhcg=="} {
		f.Add(s)
	}
	emu := emulator.New(emulator.Options{App: &emulator.App{ID: testAppID, PublicKey: &key.PublicKey}})
	f.Fuzz(func(t *testing.T, auth string) {
		req := httptest.NewRequest("GET", "/app", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		emu.ServeHTTP(rec, req)
		if auth == "Bearer "+valid {
			// Any one bit of the token flipped is refused, but in the
			// signature's last character, whose low bits base64 leaves
			// unused (golang-jwt decodes them leniently: the same
			// signature, no forgery).
			for i := range (len(valid) - 1) * 8 {
				b := []byte(valid)
				b[i/8] ^= 1 << (i % 8)
				req := httptest.NewRequest("GET", "/app", nil)
				req.Header.Set("Authorization", "Bearer "+string(b))
				rec := httptest.NewRecorder()
				emu.ServeHTTP(rec, req)
				if rec.Code != 401 {
					t.Fatalf("GET /app with the token's bit %d flipped = %d", i, rec.Code)
				}
			}
		}
		switch {
		case rec.Code == 200 && strings.TrimPrefix(auth, "Bearer ") != valid && strings.TrimPrefix(auth, "token ") != valid:
			t.Errorf("GET /app with %q = 200", auth)
		case rec.Code != 200 && rec.Code != 401:
			t.Errorf("GET /app with %q = %d, want 200 or 401", auth, rec.Code)
		}
	})
}
