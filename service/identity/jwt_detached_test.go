package identity

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A caller that gives up while the JWKS is fetched for its unknown kid
// (any caller can, with or without credentials) does not cut the fetch
// short: the refresh it claimed still loads the issuer's keys, so a valid
// token signed with a rotated key is accepted at once, not refused until
// MinRefreshInterval passes (and refused for ever by a caller who does this
// every interval). The hourly reload, which a verify also runs on the
// caller's behalf, is not cut short either.
func TestJWKSReloadOutlivesTheCallerWhoStartedIt(t *testing.T) {
	for _, due := range []string{"unknown kid", "hourly reload"} {
		t.Run(due, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				old := identitytest.NewIssuer(t, "k1")
				rotated := identitytest.NewIssuer(t, "k2")
				var doc atomic.Value
				doc.Store(old.JWKS())
				var hold atomic.Bool
				var fetches atomic.Int32
				started, release := make(chan struct{}, 1), make(chan struct{})
				rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					fetches.Add(1)
					if hold.Load() {
						started <- struct{}{}
						select { // as a real transport: the request's context ends it
						case <-release:
						case <-r.Context().Done():
							return nil, r.Context().Err()
						}
					}
					return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(doc.Load().([]byte)))}, nil
				})
				v, err := NewJWTVerifier(t.Context(), JWTConfig{Issuer: "iss", Audience: "aud", JWKSURL: "https://issuer.example/jwks",
					HTTPClient: &http.Client{Transport: rt}})
				if err != nil {
					t.Fatal(err)
				}
				doc.Store(append([]byte(nil), rotated.JWKS()...)) // the issuer rotates to k2
				hold.Store(true)
				fetches.Store(0)

				// The first caller's token: an unknown kid, or, for the
				// hourly reload, one of the old key once the reload is due.
				first := identitytest.NewIssuer(t, "zzz").Token(t, map[string]any{"sub": "x"})
				if due == "hourly reload" {
					time.Sleep(jwksURLMaxAge + time.Second)
					first = old.Token(t, map[string]any{"iss": "iss", "aud": "aud", "sub": "x",
						"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() {
					_, _ = v.Authenticate(ctx, first)
					close(done)
				}()
				<-started
				cancel() // the first caller gives up mid-fetch
				<-done
				hold.Store(false)
				close(release) // the issuer answers
				synctest.Wait()

				good := rotated.Token(t, map[string]any{"iss": "iss", "aud": "aud", "sub": "system:serviceaccount:ci:deployer",
					"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
				if caller, err := v.Authenticate(t.Context(), good); err != nil {
					t.Errorf("a valid token of the rotated key after the first caller gave up: %q, %v", caller, err)
				}
				if n := fetches.Load(); n != 1 {
					t.Errorf("%d fetches of the JWKS, want 1: the first caller's, carried through", n)
				}
			})
		})
	}
}
