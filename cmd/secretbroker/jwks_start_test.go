package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// flakyJWKS is a JWKS endpoint on loopback that answers 503 until it is
// told to work, and tells each request it gets on fetched.
type flakyJWKS struct {
	jwks    []byte
	works   atomic.Bool
	fetched chan struct{}
}

func (f *flakyJWKS) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	select {
	case f.fetched <- struct{}{}:
	default:
	}
	if !f.works.Load() {
		http.Error(w, "issuer down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f.jwks)
}

// TestJWKSUnreachableAtStart: a broker whose JWKS URL fails at start
// starts all the same; until the keys load, a call with a JWT is refused
// with UNAVAILABLE and a RetryInfo (503 and Retry-After over JSON), never
// served, a call with a static token is served, a bearer that is no JWT
// is still UNAUTHENTICATED, /readyz is 503 and gRPC health NOT_SERVING.
// Once the JWKS URL works, the background retry loads the keys: the
// health Watch sees SERVING, /readyz is 200 and the JWT is served.
func TestJWKSUnreachableAtStart(t *testing.T) {
	iss := identitytest.NewIssuer(t, "k1")
	jwks := &flakyJWKS{jwks: iss.JWKS(), fetched: make(chan struct{}, 1)}
	srv := httptest.NewServer(jwks)
	t.Cleanup(srv.Close)
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	b := startBroker(t, securedConfig(t, "--callers-file="+callers, "--jwt-issuer=https://kubernetes.default.svc",
		"--jwt-audience=secretbroker", "--jwt-jwks-url="+srv.URL+"/openid/v1/jwks"))
	select {
	case <-jwks.fetched:
	case <-time.After(30 * time.Second):
		t.Fatal("the broker never fetched the JWKS")
	}

	now := time.Now()
	good := iss.Token(t, map[string]any{"iss": "https://kubernetes.default.svc", "aud": []string{"secretbroker"},
		"sub": "system:serviceaccount:ci:deployer", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()
	get := &secretbrokerv1.GetSecretRequest{Name: stagingSecret}
	hc := healthpb.NewHealthClient(b.conn)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: svcName})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("keys not loaded", func(t *testing.T) {
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health Watch = %v %v, want NOT_SERVING", resp, err)
		}
		if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health Check = %v %v, want NOT_SERVING", resp, err)
		}
		code, body := b.adminGet(t, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, reasonJWTKeys) {
			t.Errorf("GET /readyz = %d %q, want 503 %q", code, body, reasonJWTKeys)
		}

		_, err := svc.GetSecret(withBearer(ctx, good), get)
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || retryInfo(st) <= 0 {
			t.Errorf("a JWT before the keys load: %v (details %v), want UNAVAILABLE with a RetryInfo", err, st.Details())
		}
		req, err := http.NewRequest(http.MethodGet, "http://"+b.httpAddr+"/v1/"+stagingSecret, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+good)
		resp, err := b.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusServiceUnavailable || err != nil || ra < 1 {
			t.Errorf("a JWT over JSON before the keys load: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}

		if _, err := svc.GetSecret(withBearer(ctx, "not-a-jwt"), get); status.Code(err) != codes.Unauthenticated {
			t.Errorf("a bearer that is no JWT: %v, want UNAUTHENTICATED", err)
		}
		if _, err := svc.GetSecret(withBearer(ctx, deployerToken), get); status.Code(err) == codes.Unavailable || status.Code(err) == codes.Unauthenticated {
			t.Errorf("a static token while the JWT keys are not loaded: %v, want it served", err)
		}
	})

	jwks.works.Store(true)
	for {
		resp, err := watch.Recv()
		if err != nil {
			t.Fatalf("health Watch while the keys load: %v", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	wcancel()

	t.Run("keys loaded", func(t *testing.T) {
		if code, body := b.adminGet(t, "/readyz"); code != http.StatusOK {
			t.Errorf("GET /readyz = %d %q, want 200", code, body)
		}
		if _, err := svc.GetSecret(withBearer(ctx, good), get); status.Code(err) == codes.Unavailable || status.Code(err) == codes.Unauthenticated {
			t.Errorf("a JWT once the keys loaded: %v, want it served", err)
		}
		fams, _ := b.scrape(t)
		labels := map[string]string{"listener": "grpc", "reason": refusedJWTKeys}
		if v, ok := metricValue(fams, "secretbroker_calls_refused_total", labels); !ok || v != 1 {
			t.Errorf("secretbroker_calls_refused_total%v = %v (found %t), want 1", labels, v, ok)
		}
		if strings.Contains(b.logs.String(), good) {
			t.Error("a JWT reached the logs")
		}
	})
}

// TestJWKSURLMalformed: a JWKS URL that is a configuration error still
// stops the start, with an error that says what is wrong.
func TestJWKSURLMalformed(t *testing.T) {
	tests := []struct {
		url, want string
	}{
		{"http://issuer.example/jwks", "JWKS URL must be https"},
		{"/openid/v1/jwks", "JWKS URL must be absolute"},
		{"https://issuer.example/%zz", "JWKS URL is not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg := securedConfig(t, "--jwt-issuer=https://kubernetes.default.svc", "--jwt-audience=secretbroker", "--jwt-jwks-url="+tt.url)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err := run(ctx, cfg, slog.New(slog.DiscardHandler), nil, func(string, string, string) { t.Error("the broker started") })
			if err == nil || !strings.Contains(err.Error(), "JWT bearer tokens") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// fakeKeys is a keyLoader whose keys load when the test says.
type fakeKeys struct {
	loaded chan struct{}
	err    atomic.Pointer[error]
}

func (k *fakeKeys) Loaded() <-chan struct{} { return k.loaded }

func (k *fakeKeys) LoadError() error {
	if p := k.err.Load(); p != nil {
		return *p
	}
	return nil
}

// TestReadinessJWTKeys: readiness (and the gRPC health that follows it)
// waits for the JWT keys after the credential, with the last load error
// in the reason, and turns ready once they load.
func TestReadinessJWTKeys(t *testing.T) {
	r := newReadiness(true)
	var told []bool
	r.follow(func(ready bool) { told = append(told, ready) })
	keys := &fakeKeys{loaded: make(chan struct{})}
	r.setJWTKeys(keys)
	r.setServing()
	if got := r.state(); got != reasonUnverified {
		t.Errorf("state %q, want %q first", got, reasonUnverified)
	}
	r.setCredential("")
	if got := r.state(); got != reasonJWTKeys {
		t.Errorf("state %q, want %q", got, reasonJWTKeys)
	}
	fetchErr := errors.New("fetch JWKS https://issuer.example/jwks: HTTP status 503")
	keys.err.Store(&fetchErr)
	if got, want := r.state(), reasonJWTKeys+": "+fetchErr.Error(); got != want {
		t.Errorf("state %q, want %q", got, want)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.awaitJWTKeys(t.Context())
	}()
	close(keys.loaded)
	<-done
	if got := r.state(); got != "" {
		t.Errorf("state %q once the keys loaded, want ready", got)
	}
	if want := []bool{false, true}; !slices.Equal(told, want) {
		t.Errorf("the follower was told %v, want %v", told, want)
	}

	loaded := &fakeKeys{loaded: make(chan struct{})}
	close(loaded.loaded)
	r2 := newReadiness(false)
	r2.setJWTKeys(loaded)
	r2.setServing()
	if got := r2.state(); got != "" {
		t.Errorf("keys loaded already: state %q, want ready", got)
	}
}
