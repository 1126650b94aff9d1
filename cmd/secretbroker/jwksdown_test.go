package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestJWKSURLCredentialsWhileTheIssuerFails: the JWKS URL holds a user,
// a password, a query token and a fragment, and the issuer is down,
// refuses the broker, or redirects it to a URL with credentials of its
// own. The background reload's log lines and /readyz's reason say why the
// keys are not loaded, and hold none of the credentials.
func TestJWKSURLCredentialsWhileTheIssuerFails(t *testing.T) {
	const (
		user     = "PLANTEDjwksUser"
		password = "PLANTEDjwksPassword-42"
		query    = "PLANTEDjwksQueryToken"
		frag     = "PLANTEDjwksFragment"
		redirect = "PLANTEDjwksRedirectPassword"
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no: "+r.URL.String(), http.StatusUnauthorized)
	}))
	t.Cleanup(refusing.Close)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://u:"+redirect+"@"+closed+"/jwks?k="+redirect, http.StatusFound)
	}))
	t.Cleanup(redirecting.Close)
	creds := "http://" + user + ":" + password + "@"
	path := "/openid/v1/jwks?access_token=" + query + "#" + frag
	for _, tc := range []struct {
		name, url, reason string
	}{
		{"down", creds + closed + path, "connection refused"},
		{"refusing", creds + strings.TrimPrefix(refusing.URL, "http://") + path, "HTTP status 401"},
		{"redirecting to credentials", creds + strings.TrimPrefix(redirecting.URL, "http://") + path, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, securedConfig(t, "--jwt-issuer=https://kubernetes.default.svc",
				"--jwt-audience=secretbroker", "--jwt-jwks-url="+tc.url))
			// The first fetch runs in the background
			// (identity.StartJWTVerifier): its failure is the reason
			// from the moment it is logged, which comes after.
			if !b.logs.waitFor("JWT issuer's keys not loaded", 1, 30*time.Second) {
				t.Fatalf("no failed fetch logged:\n%s", b.logs)
			}
			code, body := b.adminGet(t, "/readyz")
			if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, reasonJWTKeys) || !strings.Contains(body, tc.reason) {
				t.Errorf("GET /readyz = %d %q, want 503 %q with %q", code, body, reasonJWTKeys, tc.reason)
			}
			if !strings.Contains(b.logs.String(), tc.reason) {
				t.Errorf("the log does not say %q:\n%s", tc.reason, b.logs)
			}
			for _, s := range []string{user, password, query, frag, redirect} {
				if strings.Contains(body, s) {
					t.Errorf("/readyz holds %q: %q", s, body)
				}
				if strings.Contains(b.logs.String(), s) {
					t.Errorf("the log holds %q:\n%s", s, b.logs)
				}
			}
		})
	}
}
