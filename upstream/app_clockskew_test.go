package upstream_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	jwt "github.com/golang-jwt/jwt/v4"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/credential"
)

// handlerRT serves requests with a handler, in memory.
type handlerRT struct{ h http.Handler }

func (t handlerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, in)
	return rec.Result(), nil
}

// skewedGitHub is a GitHub whose clock is skew behind this machine's. It
// checks the app's JWT as GitHub does (iat at most a minute in its
// future, exp in its future and at most ten minutes ahead), answers 401
// otherwise, and says its time in Date.
type skewedGitHub struct {
	t              *testing.T
	skew           time.Duration
	refuseAll      bool // refuse every JWT (a wrong key, say)
	jwts, refusals atomic.Int32
}

func (g *skewedGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now().Add(-g.skew)
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/json")
	jwtRoute := r.URL.Path == "/orgs/octo-org/installation" || strings.HasSuffix(r.URL.Path, "/access_tokens")
	if jwtRoute {
		g.jwts.Add(1)
		var c jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), &c); err != nil {
			g.t.Errorf("%s: %v", r.URL.Path, err)
		}
		if g.refuseAll || c.IssuedAt.After(now.Add(time.Minute)) || !c.ExpiresAt.After(now) || c.ExpiresAt.After(now.Add(10*time.Minute)) {
			g.refusals.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"}`))
			return
		}
	}
	switch {
	case r.URL.Path == "/orgs/octo-org/installation":
		_, _ = w.Write([]byte(`{"id":7,"account":{"login":"octo-org"}}`))
	case strings.HasSuffix(r.URL.Path, "/access_tokens"):
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "ghs_clockskewtoken", "expires_at": now.Add(time.Hour).UTC().Format(time.RFC3339)})
	default:
		if r.Header.Get("Authorization") != "Bearer ghs_clockskewtoken" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"key_id":"1","key":"AAAA"}`))
	}
}

// TestAppJWTOnGitHubsClock: when GitHub refuses the app's JWT with a 401
// whose Date shows this machine's clock off by more than the JWT's
// backdating covers, the app signs once more with GitHub's time (as
// octokit's auth-app does) and later JWTs keep it: the installation
// lookup and the token mint succeed. A 401 for another reason is not sent
// again.
func TestAppJWTOnGitHubsClock(t *testing.T) {
	for _, tc := range []struct {
		name      string
		skew      time.Duration // this machine ahead of GitHub
		refuseAll bool
		wantOK    bool
		wantJWTs  int32 // requests signed with the app's JWT
	}{
		{name: "clocks agree", skew: 0, wantOK: true, wantJWTs: 2},
		{name: "3 min ahead", skew: 3 * time.Minute, wantOK: true, wantJWTs: 3},   // the lookup again, then the mint
		{name: "7 min behind", skew: -7 * time.Minute, wantOK: true, wantJWTs: 3}, // exp in GitHub's past
		{name: "30 s ahead, within the backdating", skew: 30 * time.Second, wantOK: true, wantJWTs: 2},
		{name: "refused for another reason", skew: 0, refuseAll: true, wantJWTs: 1},
		{name: "refused for another reason, clock ahead", skew: 3 * time.Minute, refuseAll: true, wantJWTs: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gh := &skewedGitHub{t: t, skew: tc.skew, refuseAll: tc.refuseAll}
				key, _ := newRSAKey(t)
				app, err := credential.NewApp(credential.AppConfig{AppID: appID, PrivateKey: key, BaseURL: memRoot, Transport: handlerRT{gh}})
				if err != nil {
					t.Fatal(err)
				}
				p := upstream.DefaultPacing()
				p.BackoffBase, p.BackoffMax = time.Millisecond, time.Millisecond
				c, err := upstream.New(upstream.Config{BaseURL: memRoot, Credentials: app, HTTPClient: &http.Client{Transport: handlerRT{gh}}, Pacing: &p})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.GetPublicKey(t.Context(), upstream.Scope{App: upstream.Actions, Org: "octo-org"})
				if (err == nil) != tc.wantOK {
					t.Errorf("GetPublicKey: %v", err)
				}
				if got := gh.jwts.Load(); got != tc.wantJWTs {
					t.Errorf("%d requests with the app's JWT (%d refused), want %d", got, gh.refusals.Load(), tc.wantJWTs)
				}
			})
		})
	}
}
