package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// The start-up choices that decide who is served: authentication without
// a policy, and the two flags that open listeners to callers without
// credentials.

// loggedWarning reports whether the broker's JSON log holds a WARN line
// whose message starts with prefix.
func loggedWarning(t *testing.T, logs, prefix string) bool {
	t.Helper()
	for line := range strings.Lines(logs) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" && strings.HasPrefix(rec.Msg, prefix) {
			return true
		}
	}
	return false
}

// TestNoPolicyDeniesEverything: with callers but no --policy-file, an
// authenticated caller may do nothing, over gRPC and JSON, and the start
// log says why.
func TestNoPolicyDeniesEverything(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
		"--shutdown-timeout=5s", "--callers-file=" + callers}, envMap(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := withBearer(t.Context(), deployerToken)
	const scope = "repos/octo-org/hello-world/actions"
	const secret = scope + "/secrets/FAILSAFE_ONE"
	calls := []struct {
		name string
		call func() error
	}{
		{"PutSecret", func() error {
			_, err := svc.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: secret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}})
			return err
		}},
		{"GetSecret", func() error { _, err := svc.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: secret}); return err }},
		{"DeleteSecret", func() error {
			_, err := svc.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: secret})
			return err
		}},
		{"GetPublicKey", func() error {
			_, err := svc.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: scope})
			return err
		}},
	}
	for _, c := range calls {
		if got := status.Code(c.call()); got != codes.PermissionDenied {
			t.Errorf("%s without a policy: %v, want PermissionDenied", c.name, got)
		}
	}
	if code, body := httpDo(t, b.http, http.MethodGet, "http://"+b.httpAddr+"/v1/"+scope+"/secrets/public-key", deployerToken, ""); code != http.StatusForbidden {
		t.Errorf("gateway GET public-key without a policy: %d %s, want 403", code, body)
	}
	// Without a token the call is refused before the policy is asked.
	if _, err := svc.GetPublicKey(t.Context(), &secretbrokerv1.GetPublicKeyRequest{Parent: scope}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetPublicKey without a token: %v, want Unauthenticated", err)
	}
	if !loggedWarning(t, b.logs.String(), "no --policy-file") {
		t.Errorf("no WARN line about the missing --policy-file in:\n%s", b.logs.String())
	}
}

// TestOpenListenerFlags: --allow-unauthenticated serves callers without
// credentials and warns at start; --reflection-unauthenticated opens
// reflection, and only reflection, to them.
func TestOpenListenerFlags(t *testing.T) {
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	tests := []struct {
		name           string
		cfg            func(t *testing.T) Config
		wantReflection codes.Code
		wantKey        codes.Code // an anonymous GetPublicKey
		wantWarning    bool
	}{
		{"authenticated", func(t *testing.T) Config { return securedConfig(t, "--callers-file="+callers) }, codes.Unauthenticated, codes.Unauthenticated, false},
		{"reflection open", func(t *testing.T) Config {
			return securedConfig(t, "--callers-file="+callers, "--reflection-unauthenticated")
		}, codes.OK, codes.Unauthenticated, false},
		{"allow unauthenticated", func(t *testing.T) Config {
			// Not --dev, which is unauthenticated anyway and does not warn:
			// a broker of an emulator over loopback.
			const token = "ghp_PLANTEDfailsafeTOKEN0123456789abcdef"
			emu := emulator.New(emulator.Options{Token: token})
			emu.SeedDemo()
			hs := httptest.NewServer(emu)
			t.Cleanup(hs.Close)
			cfg, err := loadConfig([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
				"--upstream-url=" + hs.URL, "--shutdown-timeout=5s", "--allow-unauthenticated"},
				envMap(map[string]string{"GITHUB_TOKEN": token}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}, codes.OK, codes.OK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, tt.cfg(t))
			if got := reflectionCode(t, b); got != tt.wantReflection {
				t.Errorf("anonymous reflection: %v, want %v", got, tt.wantReflection)
			}
			_, err := secretbrokerv1.NewSecretServiceClient(b.conn).GetPublicKey(t.Context(),
				&secretbrokerv1.GetPublicKeyRequest{Parent: "repos/octo-org/hello-world/actions"})
			if got := status.Code(err); got != tt.wantKey {
				t.Errorf("anonymous GetPublicKey: %v, want %v", err, tt.wantKey)
			}
			if got := loggedWarning(t, b.logs.String(), "--allow-unauthenticated"); got != tt.wantWarning {
				t.Errorf("WARN about --allow-unauthenticated logged: %v, want %v", got, tt.wantWarning)
			}
		})
	}
}

// reflectionCode is the status of an anonymous reflection request for the
// API's service: OK when it is answered.
func reflectionCode(t *testing.T, b *broker) codes.Code {
	t.Helper()
	stream, err := b.conn.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName)
	if err != nil {
		return status.Code(err)
	}
	req := &reflectionv1.ServerReflectionRequest{
		MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "secretbroker.v1.SecretService"},
	}
	if err := stream.SendMsg(req); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	resp := new(reflectionv1.ServerReflectionResponse)
	if err := stream.RecvMsg(resp); err != nil {
		return status.Code(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("reflection answered without a file: %v", resp)
	}
	return codes.OK
}

// TestStateStoreWarnings: async calls are accepted whatever the state
// store; outside --dev, a store in memory warns at start that a restart
// loses the operations in progress, and a file store without
// --state-hmac-key-file that the fingerprints' key lies beside them.
func TestStateStoreWarnings(t *testing.T) {
	const token = "ghp_PLANTEDasyncTOKEN0123456789abcdefgh"
	emu := emulator.New(emulator.Options{Token: token})
	emu.SeedDemo()
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	prod := func(extra ...string) func(t *testing.T) Config {
		return func(t *testing.T) Config {
			cfg, err := loadConfig(append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
				"--upstream-url=" + hs.URL, "--shutdown-timeout=5s", "--upstream-write-interval=10ms"}, extra...),
				envMap(map[string]string{"GITHUB_TOKEN": token}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			return cfg
		}
	}
	keyFile := func(t *testing.T) string {
		return writeFile(t, "state.key", strings.Repeat("k", 32))
	}
	tests := []struct {
		name                string
		cfg                 func(t *testing.T) Config
		wantMemory, wantKey bool // the two warnings
	}{
		{"memory", prod(), true, false},
		{"state dir", func(t *testing.T) Config { return prod("--state-dir=" + t.TempDir())(t) }, false, true},
		{"state dir and key file", func(t *testing.T) Config {
			return prod("--state-dir="+t.TempDir(), "--state-hmac-key-file="+keyFile(t))(t)
		}, false, false},
		{"dev", devConfig, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBroker(t, tt.cfg(t))
			svc := secretbrokerv1.NewSecretServiceClient(b.conn)
			resp, err := svc.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{{Name: "repos/octo-org/hello-world/actions/secrets/ASYNC_ONE",
					Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}}}})
			if err != nil || !strings.HasPrefix(resp.GetOperation().GetName(), "operations/") {
				t.Fatalf("async BatchPutSecrets: %v %v, want an operation", resp, err)
			}
			logs := b.logs.String()
			if got := loggedWarning(t, logs, "state store in memory"); got != tt.wantMemory {
				t.Errorf("warning about the store in memory: %v, want %v", got, tt.wantMemory)
			}
			if got := loggedWarning(t, logs, "state store: no --state-hmac-key-file"); got != tt.wantKey {
				t.Errorf("warning about the fingerprint key: %v, want %v", got, tt.wantKey)
			}
		})
	}
}
