package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/identity/identitytest"
)

// Bearer tokens of the test callers; the callers file holds their hashes.
const (
	deployerToken = "deployer-token-PLANTED-5d1c"
	adminToken    = "admin-token-PLANTED-77aa"
	accessValue   = "PLANTED-access-value-31c9"
)

const (
	stagingSecret = "repos/octo-org/hello-world/environments/staging/secrets/DB_PASSWORD"
	prodSecret    = "repos/octo-org/hello-world/environments/prod%2Feu/secrets/DB_PASSWORD"
)

// accessPolicy allows each kind of deployer identity the staging
// environment only, and the admin everything.
const accessPolicy = `
rules:
  - callers: ["token:deployer", "x509:spiffe://example.org/ns/ci/sa/deployer", "jwt:system:serviceaccount:ci:deployer"]
    verbs: [read, write, delete]
    resources: ["repos/octo-org/hello-world/environments/staging/secrets/*"]
  - callers: ["token:deployer"]
    verbs: [read]
    resources: ["repos/octo-org/hello-world/actions/secrets/PAY_*"]
  - callers: ["token:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// securedConfig is a dev broker (the emulator as GitHub) whose callers
// must authenticate, with the access policy and args added.
func securedConfig(t *testing.T, args ...string) Config {
	t.Helper()
	return securedConfigWith(t, writeFile(t, "policy.yaml", accessPolicy), args...)
}

// securedConfigWith is securedConfig with the policy file at policy.
func securedConfigWith(t *testing.T, policy string, args ...string) Config {
	t.Helper()
	base := []string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-timeout=5s",
		"--upstream-write-interval=10ms", "--policy-file=" + policy}
	cfg, err := loadConfig(append(base, args...), envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func withBearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// httpDo sends a JSON request to the gateway with an optional bearer token
// and returns the status and the body.
func httpDo(t *testing.T, c *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBearerTokensOnBothListeners: without valid credentials every call is
// UNAUTHENTICATED (401), before anything else; a deployer confined to one
// environment cannot touch another; health stays open, reflection does
// not; the audit trail records the changes with the value's HMAC only.
func TestBearerTokensOnBothListeners(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+
		"\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	hmacKey := strings.Repeat("k", 32)
	keyFile := writeFile(t, "audit.key", hmacKey)
	b := startBroker(t, securedConfig(t, "--callers-file="+callers, "--audit-log="+auditPath, "--audit-hmac-key-file="+keyFile))
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()
	put := &secretbrokerv1.PutSecretRequest{Name: stagingSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}}

	// gRPC: no token, a wrong token, a malformed header.
	for _, c := range []context.Context{ctx, withBearer(ctx, "wrong"), metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+deployerToken)} {
		_, err := svc.PutSecret(c, put)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("PutSecret without valid credentials: %v, want Unauthenticated", err)
		}
		// Malformed requests are still UNAUTHENTICATED first.
		_, err = svc.GetSecret(c, &secretbrokerv1.GetSecretRequest{Name: "not a name"})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("malformed GetSecret without credentials: %v, want Unauthenticated", err)
		}
	}
	// With the deployer's token: malformed is INVALID_ARGUMENT, then the policy decides.
	dep := withBearer(ctx, deployerToken)
	if _, err := svc.GetSecret(dep, &secretbrokerv1.GetSecretRequest{Name: "not a name"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("malformed GetSecret: %v, want InvalidArgument", err)
	}
	if _, err := svc.PutSecret(dep, put); err != nil {
		t.Fatalf("deployer PutSecret in staging: %v", err)
	}
	prodPut := &secretbrokerv1.PutSecretRequest{Name: prodSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}}
	if _, err := svc.PutSecret(dep, prodPut); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("deployer PutSecret in prod: %v, want PermissionDenied", err)
	}

	// Health is open; reflection needs credentials.
	hr, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without credentials: %v %v", hr, err)
	}
	if err := listServices(ctx, b.conn); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reflection without credentials: %v, want Unauthenticated", err)
	}
	if err := listServices(dep, b.conn); err != nil {
		t.Fatalf("reflection with credentials: %v", err)
	}

	// The gateway: the same answers, with the caller's own credentials.
	base := "http://" + b.httpAddr + "/v1/"
	if code, body := httpDo(t, b.http, http.MethodGet, base+stagingSecret, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET without a token: %d %s, want 401", code, body)
	}
	if code, _ := httpDo(t, b.http, http.MethodGet, base+stagingSecret, "wrong", ""); code != http.StatusUnauthorized {
		t.Fatalf("GET with a wrong token: %d, want 401", code)
	}
	if code, body := httpDo(t, b.http, http.MethodGet, base+stagingSecret, deployerToken, ""); code != http.StatusOK {
		t.Fatalf("deployer GET staging: %d %s", code, body)
	}
	if code, _ := httpDo(t, b.http, http.MethodPut, base+prodSecret, deployerToken, `{"value":"`+accessValue+`"}`); code != http.StatusForbidden {
		t.Fatalf("deployer PUT prod: %d, want 403", code)
	}
	// Gateway metadata cannot be forged from outside.
	req, _ := http.NewRequest(http.MethodGet, base+prodSecret, nil)
	req.Header.Set("Grpc-Metadata-X-Secretbroker-X509", "x509:spiffe://example.org/ns/ci/sa/deployer")
	req.Header.Set("Grpc-Metadata-X-Secretbroker-Gateway", "guess")
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged gateway metadata: %d, want 401", resp.StatusCode)
	}
	if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer realm="secretbroker"`; got != want {
		t.Errorf("401 with WWW-Authenticate %q, want %q", got, want)
	}
	// The admin may read prod; the secret is not there, since the
	// deployer's put was denied.
	if code, _ := httpDo(t, b.http, http.MethodGet, base+prodSecret, adminToken, ""); code != http.StatusNotFound {
		t.Fatalf("admin GET prod: %d, want 404", code)
	}

	// The audit trail: the put's intent and outcome with the value's HMAC,
	// the denials, and never the value or a token.
	trail, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, planted := range []string{accessValue, deployerToken, adminToken} {
		if strings.Contains(string(trail), planted) || strings.Contains(b.logs.String(), planted) {
			t.Fatalf("a planted value reached the audit trail or the logs")
		}
	}
	mac := hmac.New(sha256.New, []byte(hmacKey))
	mac.Write([]byte(accessValue))
	wantHMAC := hex.EncodeToString(mac.Sum(nil))
	var intents, denials int
	for _, line := range strings.Split(strings.TrimSpace(string(trail)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		switch {
		case r["phase"] == "intent" && r["resource"] == stagingSecret:
			intents++
			if r["value_hmac"] != wantHMAC || r["caller"] != "token:deployer" || r["rpc"] != "/secretbroker.v1.SecretService/PutSecret" {
				t.Errorf("intent record %v", r)
			}
		case r["outcome"] == "PERMISSION_DENIED":
			denials++
			if r["caller"] != "token:deployer" || r["resource"] != prodSecret {
				t.Errorf("denial record %v", r)
			}
		}
	}
	if intents != 1 || denials != 2 {
		t.Fatalf("%d intents for the staging put and %d denials, want 1 and 2:\n%s", intents, denials, trail)
	}
}

func listServices(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	// A stream the server has already ended makes Send return io.EOF; its
	// status comes from Recv.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
		return err
	}
	_, err = stream.Recv()
	return err
}

// TestMTLSOnBothListeners: with a client CA, every connection needs a
// certificate from it, and the certificate's URI SAN names the caller.
func TestMTLSOnBothListeners(t *testing.T) {
	ca := identitytest.NewCA(t)
	certFile, keyFile := ca.ServerCert(t)
	b := startBrokerTLS(t, securedConfig(t, "--tls-cert-file="+certFile, "--tls-key-file="+keyFile,
		"--tls-client-ca-file="+ca.WriteCertFile(t)))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	deployer := ca.ClientCert(t, "spiffe://example.org/ns/ci/sa/deployer", "", "")
	other := ca.ClientCert(t, "spiffe://example.org/ns/ci/sa/other", "", "")

	dial := func(certs ...tls.Certificate) secretbrokerv1.SecretServiceClient {
		conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, ServerName: "127.0.0.1"})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return secretbrokerv1.NewSecretServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	put := &secretbrokerv1.PutSecretRequest{Name: stagingSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}}
	if _, err := dial().PutSecret(ctx, put); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC without a client certificate: %v, want the handshake refused", err)
	}
	if _, err := dial(deployer).PutSecret(ctx, put); err != nil {
		t.Fatalf("deployer's certificate: %v", err)
	}
	if _, err := dial(other).PutSecret(ctx, put); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another certificate: %v, want PermissionDenied", err)
	}
	// A plaintext client gets nowhere.
	plain, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := secretbrokerv1.NewSecretServiceClient(plain).GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: stagingSecret}); err == nil {
		t.Fatal("a plaintext gRPC call succeeded against a TLS listener")
	}

	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	url := "https://" + b.httpAddr + "/v1/" + stagingSecret
	if _, err := client().Get(url); err == nil {
		t.Fatal("HTTPS without a client certificate succeeded")
	}
	if code, body := httpDo(t, client(deployer), http.MethodGet, url, "", ""); code != http.StatusOK {
		t.Fatalf("deployer over HTTPS: %d %s", code, body)
	}
	if code, _ := httpDo(t, client(other), http.MethodGet, url, "", ""); code != http.StatusForbidden {
		t.Fatalf("another certificate over HTTPS: %d, want 403", code)
	}
}

// startBrokerTLS is startBroker for a broker whose listeners serve TLS:
// the plaintext connection startBroker makes is never used.
func startBrokerTLS(t *testing.T, cfg Config) *broker {
	t.Helper()
	return startBroker(t, cfg)
}

// TestJWTOnBothListeners: a JWT from the configured issuer names the caller
// by its subject; expired or foreign tokens are refused.
func TestJWTOnBothListeners(t *testing.T) {
	iss := identitytest.NewIssuer(t, "k1")
	foreign := identitytest.NewIssuer(t, "k1")
	b := startBroker(t, securedConfig(t, "--jwt-issuer=https://kubernetes.default.svc", "--jwt-audience=secretbroker",
		"--jwt-jwks-file="+iss.WriteJWKSFile(t)))
	now := time.Now()
	claims := func(sub string, exp time.Time) map[string]any {
		return map[string]any{"iss": "https://kubernetes.default.svc", "aud": []string{"secretbroker"}, "sub": sub,
			"iat": now.Unix(), "exp": exp.Unix()}
	}
	good := iss.Token(t, claims("system:serviceaccount:ci:deployer", now.Add(time.Hour)))
	expired := iss.Token(t, claims("system:serviceaccount:ci:deployer", now.Add(-time.Hour)))
	forged := foreign.Token(t, claims("system:serviceaccount:ci:deployer", now.Add(time.Hour)))
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	put := &secretbrokerv1.PutSecretRequest{Name: stagingSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}}
	ctx := t.Context()
	for name, tok := range map[string]string{"expired": expired, "another issuer's key": forged} {
		if _, err := svc.PutSecret(withBearer(ctx, tok), put); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s token: %v, want Unauthenticated", name, err)
		}
		if code, _ := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+stagingSecret, tok, ""); code != http.StatusUnauthorized {
			t.Fatalf("%s token over HTTP: %d, want 401", name, code)
		}
	}
	if _, err := svc.PutSecret(withBearer(ctx, good), put); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if code, body := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+stagingSecret, good, ""); code != http.StatusOK {
		t.Fatalf("good token over HTTP: %d %s", code, body)
	}
	if code, _ := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+prodSecret, good, ""); code != http.StatusForbidden {
		t.Fatalf("good token on another environment: %d, want 403", code)
	}
	if strings.Contains(b.logs.String(), good) {
		t.Fatal("a JWT reached the logs")
	}
}

// TestInboundLimits: a caller over its rate is refused at once with
// RESOURCE_EXHAUSTED and a RetryInfo over gRPC, 429 and Retry-After over
// HTTP; an oversized request is INVALID_ARGUMENT, not a retryable code.
func TestInboundLimits(t *testing.T) {
	gh := newFakeGitHub(t)
	gh.unblock()
	cfg := prodConfig(t, gh.URL, 5*time.Second)
	cfg.CallerRPS, cfg.CallerBurst = 0.001, 2 // two calls, then one per 1,000 s
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()
	get := &secretbrokerv1.GetSecretRequest{Name: "not a name"} // answered without GitHub
	for range 2 {
		if _, err := svc.GetSecret(ctx, get); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("within the burst: %v", err)
		}
	}
	_, err := svc.GetSecret(ctx, get)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v, want ResourceExhausted", err)
	}
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	if retry < 900*time.Second {
		t.Fatalf("RetryInfo %v, want about 1,000 s", retry)
	}
	// The JSON caller from the same address shares the bucket: 429 with
	// the delay in a Retry-After header.
	resp, err := b.http.Get("http://" + b.httpAddr + "/v1/repos/octo-org/hello-world/actions/secrets/X")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("JSON over the rate: %d, want 429", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 900 {
		t.Fatalf("Retry-After %q, want about 1000", resp.Header.Get("Retry-After"))
	}
	// Neither refusal reached the service or the gateway: the front door
	// counts them.
	fams, _ := b.scrape(t)
	for _, listener := range []string{"grpc", "http"} {
		labels := map[string]string{"listener": listener, "reason": "rate"}
		if v, ok := metricValue(fams, "secretbroker_calls_refused_total", labels); !ok || v != 1 {
			t.Errorf("secretbroker_calls_refused_total%v = %v (found %t), want 1", labels, v, ok)
		}
	}
}

// TestRefusedCredentialsCounted: calls without valid credentials, refused
// before the service or the gateway sees them, are counted by listener,
// and logged at DEBUG (a flood of them must not flood the log), the JSON
// one as the gRPC one, without the token.
func TestRefusedCredentialsCounted(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	b := startBroker(t, securedConfigWith(t, writeFile(t, "policy.yaml", accessPolicy), "--callers-file="+callers, "--log-level=debug"))
	const wrong = "planted-wrong-token-9c1"
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	for range 2 {
		if _, err := svc.GetSecret(withBearer(t.Context(), wrong), &secretbrokerv1.GetSecretRequest{Name: prodSecret}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("gRPC with a wrong token: %v", err)
		}
	}
	if code, _ := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+prodSecret, wrong, ""); code != http.StatusUnauthorized {
		t.Fatalf("JSON with a wrong token: %d, want 401", code)
	}
	fams, _ := b.scrape(t)
	for listener, want := range map[string]float64{"grpc": 2, "http": 1} {
		labels := map[string]string{"listener": listener, "reason": "credentials"}
		if v, ok := metricValue(fams, "secretbroker_calls_refused_total", labels); !ok || v != want {
			t.Errorf("secretbroker_calls_refused_total%v = %v (found %t), want %v", labels, v, ok, want)
		}
	}
	logs := b.logs.String()
	if n := strings.Count(logs, `"level":"DEBUG","msg":"call refused: no valid credentials"`); n != 3 {
		t.Errorf("%d DEBUG lines of refused credentials, want 3:\n%s", n, logs)
	}
	if strings.Contains(logs, wrong) {
		t.Error("a refused token reached the logs")
	}
}

// TestOversizedRequestIsInvalid: a request over the 16 MiB limit is
// INVALID_ARGUMENT naming the limit, never a code that invites a retry.
func TestOversizedRequestIsInvalid(t *testing.T) {
	gh := newFakeGitHub(t)
	gh.unblock()
	b := startBroker(t, prodConfig(t, gh.URL, 5*time.Second))
	ctx := t.Context()
	big := &secretbrokerv1.BatchPutSecretsRequest{}
	for range 20 {
		big.Requests = append(big.Requests, &secretbrokerv1.PutSecretRequest{Name: "repos/o/r/actions/secrets/X",
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: strings.Repeat("v", 1<<20)}})
	}
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = secretbrokerv1.NewSecretServiceClient(conn).BatchPutSecrets(ctx, big)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "16 MiB") {
		t.Fatalf("oversized request: %v, want InvalidArgument naming the 16 MiB limit", err)
	}
}

// TestPolicyReloadsOnSIGHUP: a policy change takes effect on SIGHUP; a
// broken file keeps the last good policy.
func TestPolicyReloadsOnSIGHUP(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	policy := writeFile(t, "policy.yaml", accessPolicy)
	b := startBroker(t, securedConfigWith(t, policy, "--callers-file="+callers))
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := withBearer(t.Context(), deployerToken)
	get := &secretbrokerv1.GetSecretRequest{Name: prodSecret}
	if _, err := svc.GetSecret(ctx, get); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("before the change: %v, want PermissionDenied", err)
	}
	replace := func(content string) {
		tmp := policy + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policy); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	loaded := "access policy loaded"
	replace(strings.ReplaceAll(accessPolicy, "environments/staging/secrets/*", "environments/*/secrets/*"))
	if !b.logs.waitFor(loaded, 1, 10*time.Second) {
		t.Fatal("the policy was not reloaded on SIGHUP")
	}
	if _, err := svc.GetSecret(ctx, get); status.Code(err) != codes.NotFound {
		t.Fatalf("after the reload: %v, want NotFound (allowed; the secret does not exist)", err)
	}
	replace("rules: [this is not a rule")
	if !b.logs.waitFor("keeping the last good policy", 1, 10*time.Second) {
		t.Fatal("a broken policy file was not reported")
	}
	if _, err := svc.GetSecret(ctx, get); status.Code(err) != codes.NotFound {
		t.Fatalf("after a broken file: %v, want the last good policy (NotFound)", err)
	}
}

// TestAuditUnwritableAtStart: a broker whose audit trail cannot be opened
// still starts and serves reads, but refuses every change with
// UNAVAILABLE (503 over JSON).
func TestAuditUnwritableAtStart(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	b := startBroker(t, securedConfig(t, "--callers-file="+callers,
		"--audit-log="+filepath.Join(t.TempDir(), "missing-dir", "audit.log")))
	if !strings.Contains(b.logs.String(), "the audit log cannot be written") {
		t.Fatalf("no error logged at start:\n%s", b.logs)
	}
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := withBearer(t.Context(), adminToken)
	if _, err := svc.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "repos/octo-org/hello-world/actions"}); err != nil {
		t.Fatalf("a read with the audit trail down: %v", err)
	}
	put := &secretbrokerv1.PutSecretRequest{Name: stagingSecret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}}
	if _, err := svc.PutSecret(ctx, put); status.Code(err) != codes.Unavailable {
		t.Fatalf("a change with the audit trail down: %v, want Unavailable", err)
	}
	code, _ := httpDo(t, b.http, http.MethodDelete, "http://"+b.httpAddr+"/v1/"+stagingSecret, adminToken, "")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("DELETE over JSON with the audit trail down: %d, want 503", code)
	}
}

// TestConfinedCallerOnBothListeners: a caller allowed one environment is
// refused every RPC on another environment, and on the organization's and
// repository's secrets, over gRPC and JSON alike; batch items are judged
// one by one, and lists hold only what it may read.
func TestConfinedCallerOnBothListeners(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+
		"\n  - name: admin\n    token_sha256: "+sha256Hex(adminToken)+"\n")
	b := startBroker(t, securedConfig(t, "--callers-file="+callers))
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	dep := withBearer(t.Context(), deployerToken)
	admin := withBearer(t.Context(), adminToken)
	const (
		prodEnv  = "repos/octo-org/hello-world/environments/prod%2Feu"
		stageEnv = "repos/octo-org/hello-world/environments/staging"
		orgName  = "orgs/octo-org/actions/secrets/ORG_TOKEN"
		repo     = "repos/octo-org/docs/actions"
		payRepo  = "repos/octo-org/hello-world/actions"
	)
	value := &secretbrokerv1.PutSecretRequest_Value{Value: accessValue}
	for _, n := range []string{prodEnv + "/secrets/A", stageEnv + "/secrets/MINE", stageEnv + "/secrets/ALSO_MINE",
		payRepo + "/secrets/PAY_A", payRepo + "/secrets/OTHER", payRepo + "/secrets/PAY_B"} {
		if _, err := svc.PutSecret(admin, &secretbrokerv1.PutSecretRequest{Name: n, Payload: value}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.PutSecret(admin, &secretbrokerv1.PutSecretRequest{Name: orgName, Payload: value, Visibility: "selected"}); err != nil {
		t.Fatal(err)
	}

	grpcCalls := map[string]func() error{
		"GetPublicKey": func() error {
			_, err := svc.GetPublicKey(dep, &secretbrokerv1.GetPublicKeyRequest{Parent: prodEnv})
			return err
		},
		"ListSecrets": func() error {
			_, err := svc.ListSecrets(dep, &secretbrokerv1.ListSecretsRequest{Parent: prodEnv})
			return err
		},
		"GetSecret": func() error {
			_, err := svc.GetSecret(dep, &secretbrokerv1.GetSecretRequest{Name: prodEnv + "/secrets/A"})
			return err
		},
		"PutSecret": func() error {
			_, err := svc.PutSecret(dep, &secretbrokerv1.PutSecretRequest{Name: prodEnv + "/secrets/A", Payload: value})
			return err
		},
		"DeleteSecret": func() error {
			_, err := svc.DeleteSecret(dep, &secretbrokerv1.DeleteSecretRequest{Name: prodEnv + "/secrets/A"})
			return err
		},
		"ListSelectedRepositories": func() error {
			_, err := svc.ListSelectedRepositories(dep, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: orgName})
			return err
		},
		"SetSelectedRepositories": func() error {
			_, err := svc.SetSelectedRepositories(dep, &secretbrokerv1.SetSelectedRepositoriesRequest{Name: orgName, SelectedRepositoryIds: []int64{1296269}})
			return err
		},
		"AddSelectedRepository": func() error {
			_, err := svc.AddSelectedRepository(dep, &secretbrokerv1.AddSelectedRepositoryRequest{Name: orgName, RepositoryId: 1296269})
			return err
		},
		"RemoveSelectedRepository": func() error {
			_, err := svc.RemoveSelectedRepository(dep, &secretbrokerv1.RemoveSelectedRepositoryRequest{Name: orgName, RepositoryId: 1296269})
			return err
		},
		"ListRepositoryOrganizationSecrets": func() error {
			_, err := svc.ListRepositoryOrganizationSecrets(dep, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: repo})
			return err
		},
	}
	for rpc, call := range grpcCalls {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("gRPC %s outside the caller's environment: %v, want PermissionDenied", rpc, err)
		}
	}

	v1 := "http://" + b.httpAddr + "/v1/"
	put := `{"value":"` + accessValue + `"}`
	httpCalls := []struct{ method, path, body string }{
		{http.MethodGet, prodEnv + "/secrets/public-key", ""},
		{http.MethodGet, prodEnv + "/secrets", ""},
		{http.MethodGet, prodEnv + "/secrets/A", ""},
		{http.MethodPut, prodEnv + "/secrets/A", put},
		{http.MethodDelete, prodEnv + "/secrets/A", ""},
		{http.MethodGet, orgName + "/repositories", ""},
		{http.MethodPut, orgName + "/repositories", `{"selected_repository_ids":[1296269]}`},
		{http.MethodPut, orgName + "/repositories/1296269", ""},
		{http.MethodDelete, orgName + "/repositories/1296269", ""},
		{http.MethodGet, repo + "/organization-secrets", ""},
	}
	for _, c := range httpCalls {
		if code, body := httpDo(t, b.http, c.method, v1+c.path, deployerToken, c.body); code != http.StatusForbidden {
			t.Errorf("JSON %s %s: %d %s, want 403", c.method, c.path, code, body)
		}
	}

	// Batches over both listeners: the prod item is denied, the staging one goes.
	batch, err := svc.BatchPutSecrets(dep, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
		{Name: prodEnv + "/secrets/A", Payload: value}, {Name: stageEnv + "/secrets/MINE", Payload: value},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c0, c1 := batch.GetResults()[0].GetCode().String(), batch.GetResults()[1].GetCode().String(); c0 != "PERMISSION_DENIED" || c1 != "OK" {
		t.Fatalf("gRPC batch put codes %s, %s", c0, c1)
	}
	code, body := httpDo(t, b.http, http.MethodPost, v1+"secrets:batchDelete", deployerToken,
		`{"names":["`+prodEnv+`/secrets/A","`+stageEnv+`/secrets/ALSO_MINE"]}`)
	if code != http.StatusOK || !strings.Contains(body, `"PERMISSION_DENIED"`) || !strings.Contains(body, `"OK"`) {
		t.Fatalf("JSON batch delete: %d %s", code, body)
	}
	if _, err := svc.GetSecret(admin, &secretbrokerv1.GetSecretRequest{Name: prodEnv + "/secrets/A"}); err != nil {
		t.Fatalf("the denied items touched prod: %v", err)
	}

	// Lists hold only what the caller may read: PAY_* of the repository's
	// Actions secrets, not OTHER.
	resp, err := svc.ListSecrets(dep, &secretbrokerv1.ListSecretsRequest{Parent: payRepo})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetSecrets() {
		names = append(names, s.GetSecretId())
	}
	if resp.GetTotalCount() != 2 || strings.Join(names, ",") != "PAY_A,PAY_B" {
		t.Fatalf("gRPC list: total_count %d, %v; want 2, PAY_A and PAY_B", resp.GetTotalCount(), names)
	}
	code, body = httpDo(t, b.http, http.MethodGet, v1+payRepo+"/secrets", deployerToken, "")
	if code != http.StatusOK || !strings.Contains(body, `"total_count":2`) || strings.Contains(body, "OTHER") {
		t.Fatalf("JSON list: %d %s; want PAY_A and PAY_B only", code, body)
	}
}
