package identity

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// startVerifier is StartJWTVerifier with the test issuer and audience.
func startVerifier(t *testing.T, ctx context.Context, cfg JWTConfig) *JWTVerifier {
	t.Helper()
	cfg.Issuer, cfg.Audience = testIssuer, testAudience
	v, err := StartJWTVerifier(ctx, cfg)
	if err != nil {
		t.Fatalf("StartJWTVerifier: %v", err)
	}
	return v
}

// loaded reports whether v's keys are loaded.
func loaded(v *JWTVerifier) bool {
	select {
	case <-v.Loaded():
		return true
	default:
		return false
	}
}

// wantNotLoaded fails unless token is refused as not checked, with
// retryAfter.
func wantNotLoaded(t *testing.T, step string, v *JWTVerifier, token string, retryAfter time.Duration) {
	t.Helper()
	caller, err := v.Authenticate(context.Background(), token)
	nl, ok := errors.AsType[*KeysNotLoadedError](err)
	if caller != "" || !ok || nl.RetryAfter != retryAfter {
		t.Errorf("%s: Authenticate = %q, %v; want a KeysNotLoadedError with RetryAfter %v", step, caller, err, retryAfter)
		return
	}
	assertNoTokenMaterial(t, err.Error(), token)
}

// TestStartJWTVerifierRetries: a JWKS URL that fails at start is fetched
// in the background at once, then again after 1 s, 2 s, 4 s ... doubling
// up to a minute, until it works. Meanwhile a token is refused unchecked
// (KeysNotLoadedError, its RetryAfter when the next fetch is due, at least
// a second) and triggers no fetch, a malformed one is still malformed, and
// LoadError says why. Once the JWKS loads, tokens verify and the verifier
// refreshes as one from NewJWTVerifier does (an hour later).
func TestStartJWTVerifierRetries(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	inBubble(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		srv := newJWKSServer(issuer.JWKS())
		srv.status.Store(http.StatusServiceUnavailable)
		var logs bytes.Buffer
		cfg := srv.inMemory(JWTConfig{Leeway: 24 * time.Hour})
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		v := startVerifier(t, ctx, cfg)
		token := issuer.Token(t, claimsAt(t0, nil))

		synctest.Wait()
		srv.assertFetchedAt(t, "at start", t0)
		if err := v.LoadError(); err == nil || !strings.Contains(err.Error(), "HTTP status 503") {
			t.Errorf("LoadError %v, want the 503", err)
		}
		wantNotLoaded(t, "after the first failure", v, token, time.Second)
		if _, err := v.Authenticate(context.Background(), "not.a.jwt"); !errors.Is(err, errTokenMalformed) {
			t.Errorf("a malformed token while not loaded: %v, want %v", err, errTokenMalformed)
		}
		time.Sleep(500 * time.Millisecond)
		wantNotLoaded(t, "half a second later", v, token, time.Second) // at least a second

		// Failures at 0 s, 1 s, 3 s, 7 s, 15 s, 31 s, 63 s, then a minute
		// apart: 123 s, 183 s.
		var want []time.Time
		for _, s := range []int{0, 1, 3, 7, 15, 31, 63, 123, 183} {
			want = append(want, t0.Add(time.Duration(s)*time.Second))
		}
		time.Sleep(183*time.Second - 500*time.Millisecond)
		synctest.Wait()
		srv.assertFetchedAt(t, "failing", want...)
		wantNotLoaded(t, "after 9 failures", v, token, time.Minute)
		if loaded(v) {
			t.Fatal("loaded from a failing JWKS URL")
		}
		if n := strings.Count(logs.String(), "level=WARN"); n != 9 {
			t.Errorf("%d warnings for 9 failed attempts:\n%s", n, logs.String())
		}

		srv.status.Store(http.StatusOK)
		time.Sleep(time.Minute)
		synctest.Wait()
		loadedAt := t0.Add(243 * time.Second)
		srv.assertFetchedAt(t, "working", append(want, loadedAt)...)
		if !loaded(v) || v.LoadError() != nil {
			t.Fatalf("after a working fetch: loaded %v, LoadError %v", loaded(v), v.LoadError())
		}
		if got, err := v.Authenticate(context.Background(), token); err != nil || got != "jwt:"+testSubject {
			t.Fatalf("Authenticate once loaded = %q, %v", got, err)
		}
		if !strings.Contains(logs.String(), "attempts=10") {
			t.Errorf("no log line of the load after 10 attempts:\n%s", logs.String())
		}

		// No more background fetches; the verify path refreshes an hour
		// after the load.
		time.Sleep(jwksURLMaxAge - time.Nanosecond)
		if _, err := v.Authenticate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		srv.assertFetchedAt(t, "1 ns before max age", append(want, loadedAt)...)
		time.Sleep(time.Nanosecond)
		if _, err := v.Authenticate(context.Background(), token); err != nil {
			t.Fatal(err)
		}
		srv.assertFetchedAt(t, "at max age", append(want, loadedAt, loadedAt.Add(jwksURLMaxAge))...)
	})
}

// TestStartJWTVerifierStops: the background retries end with their
// context, and a verifier whose JWKS works at once is loaded after one
// fetch.
func TestStartJWTVerifierStops(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	inBubble(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		srv := newJWKSServer(issuer.JWKS())
		srv.status.Store(http.StatusServiceUnavailable)
		v := startVerifier(t, ctx, srv.inMemory(JWTConfig{}))
		time.Sleep(2 * time.Second)
		cancel()
		time.Sleep(time.Hour)
		synctest.Wait()
		srv.assertFetchedAt(t, "stopped", t0, t0.Add(time.Second))
		if loaded(v) {
			t.Error("loaded")
		}

		ok := newJWKSServer(issuer.JWKS())
		w := startVerifier(t, t.Context(), ok.inMemory(JWTConfig{}))
		synctest.Wait()
		if !loaded(w) {
			t.Fatal("a working JWKS URL not loaded")
		}
		start := time.Now()
		if _, err := w.Authenticate(context.Background(), issuer.Token(t, claimsAt(start, nil))); err != nil {
			t.Fatal(err)
		}
		ok.assertFetchedAt(t, "working at once", start)
	})
}

// TestStartJWTVerifierLoopback: over a real loopback server that fails
// and then works, a verifier that started while it failed refuses tokens
// unchecked and then, the keys loaded by a retry, verifies them.
func TestStartJWTVerifierLoopback(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	srv := newJWKSServer(issuer.JWKS())
	srv.status.Store(http.StatusServiceUnavailable)
	url := srv.listen(t) + "/jwks"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v := startVerifier(t, ctx, JWTConfig{JWKSURL: url})
	token := issuer.Token(t, claimsAt(time.Now(), nil))
	if _, err := v.Authenticate(context.Background(), token); !errors.As(err, new(*KeysNotLoadedError)) {
		t.Fatalf("Authenticate before the keys load: %v, want a KeysNotLoadedError", err)
	}
	srv.status.Store(http.StatusOK)
	select {
	case <-v.Loaded():
	case <-time.After(30 * time.Second):
		t.Fatalf("keys not loaded 30 s after the JWKS URL works (%d fetches; %v)", srv.requests.Load(), v.LoadError())
	}
	if got, err := v.Authenticate(context.Background(), token); err != nil || got != "jwt:"+testSubject {
		t.Fatalf("Authenticate once loaded = %q, %v", got, err)
	}
}

// TestStartJWTVerifierConfigErrors: configuration errors fail at once, a
// JWKS URL that cannot be reached does not, and a JWKS file is loaded
// before StartJWTVerifier returns.
func TestStartJWTVerifierConfigErrors(t *testing.T) {
	issuer := identitytest.NewIssuer(t, "k1")
	tests := []struct {
		name    string
		cfg     JWTConfig
		wantErr string // "" for none
		loaded  bool
	}{
		{"plain http elsewhere", JWTConfig{JWKSURL: "http://issuer.example/jwks"}, "must be https", false},
		{"relative", JWTConfig{JWKSURL: "/jwks"}, "must be absolute", false},
		{"unparsable", JWTConfig{JWKSURL: "https://issuer.example/%zz"}, "not a valid URL", false},
		{"both", JWTConfig{JWKSURL: "https://issuer.example/jwks", JWKSFile: "/jwks.json"}, "only one", false},
		{"no audience", JWTConfig{Audience: "-", JWKSURL: "https://issuer.example/jwks"}, "audience is required", false},
		{"missing file", JWTConfig{JWKSFile: filepath.Join(t.TempDir(), "none.json")}, "read JWKS file", false},
		{"file", JWTConfig{JWKSFile: issuer.WriteJWKSFile(t)}, "", true},
		{"unreachable URL", JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := tt.cfg
			cfg.Issuer, cfg.Audience = testIssuer, testAudience
			if tt.cfg.Audience == "-" {
				cfg.Audience = ""
			}
			v, err := StartJWTVerifier(ctx, cfg)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("StartJWTVerifier = %v, want an error with %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("StartJWTVerifier: %v", err)
			case err == nil && loaded(v) != tt.loaded:
				t.Errorf("loaded %v on return, want %v", loaded(v), tt.loaded)
			}
		})
	}
}
