package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func newTestLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// direct is a Server called directly (no gRPC in between, so that names
// that are not valid UTF-8 reach it), talking to the emulator through an
// in-memory transport. It works inside a synctest bubble, where the
// pacer, the emulator and the key cache run on the bubble's fake time (as
// the tests of the key cache's TTL need), and outside one, for tests that
// do not depend on time.
type direct struct {
	emu  *emulator.Server
	srv  *Server
	logs *syncBuffer
}

func newDirect(t *testing.T, keyTTL time.Duration) *direct {
	t.Helper()
	logs := &syncBuffer{}
	logger := newTestLogger(logs)
	emu := emulator.New(emulator.Options{Token: testToken, Logger: logger})
	emu.SeedDemo()
	client, err := upstream.New(upstream.Config{
		BaseURL:    emulatorURL,
		Token:      upstream.Token(testToken),
		HTTPClient: &http.Client{Transport: newEmulatorTransport(emu)},
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &direct{
		emu:  emu,
		srv:  New(client, Options{Logger: logger, KeyTTL: keyTTL}),
		logs: logs,
	}
	t.Cleanup(func() {
		for _, planted := range []string{testToken, plantedSecret} {
			if strings.Contains(logs.String(), planted) {
				t.Errorf("a planted value reached the logs:\n%s", logs.String())
			}
		}
	})
	return d
}

// publicKey returns the scope's key from the broker.
func (d *direct) publicKey(t *testing.T, parent string) *secretbrokerv1.PublicKey {
	t.Helper()
	pk, err := d.srv.GetPublicKey(t.Context(), &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
	if err != nil {
		t.Fatalf("GetPublicKey(%s): %v", parent, err)
	}
	return pk
}

// sealFor seals plaintext to pk as a caller would.
func sealFor(t *testing.T, pk *secretbrokerv1.PublicKey, plaintext string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(pk.GetKey())
	if err != nil || len(raw) != 32 {
		t.Fatalf("public key %q: %v", pk.GetKey(), err)
	}
	sealed, err := box.SealAnonymous(nil, []byte(plaintext), (*[32]byte)(raw), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sealed)
}

func (d *direct) puts() int {
	return d.emu.Count(emulator.RoutePutOrgSecret) + d.emu.Count(emulator.RoutePutRepoSecret) +
		d.emu.Count(emulator.RoutePutEnvSecret)
}

// Hostile input through every method that takes a name: each is refused
// with INVALID_ARGUMENT and a message naming the rule, and GitHub hears
// nothing of it.
func TestHostileInputSendsNothingUpstream(t *testing.T) {
	d := newDirect(t, time.Hour)
	const (
		repo  = "repos/octo-org/hello-world/actions"
		org   = "orgs/octo-org/actions"
		envOf = "repos/octo-org/hello-world/environments/"
	)
	sealedOf := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	okSealed := sealedOf(box.AnonymousOverhead + 16)

	// Names that every method refuses; msg is what the message must say.
	names := []struct {
		name, secret, msg string
	}{
		// Path traversal, raw and escaped, in every segment.
		{"org ..", "orgs/../actions/secrets/X", "organization name"},
		{"org .", "orgs/./actions/secrets/X", "organization name"},
		{"org %2e%2e", "orgs/%2e%2e/actions/secrets/X", "organization name"},
		{"org a/../b", "orgs/a/../b/actions/secrets/X", "is not a scope"},
		{"owner ..", "repos/../hello-world/actions/secrets/X", "owner name"},
		{"owner .", "repos/./hello-world/actions/secrets/X", "owner name"},
		{"owner %2e%2e", "repos/%2e%2e/hello-world/actions/secrets/X", "owner name"},
		{"owner a/../b", "repos/a/../b/hello-world/actions/secrets/X", "is not a scope"},
		{"repo ..", "repos/octo-org/../actions/secrets/X", `not "." or ".."`},
		{"repo .", "repos/octo-org/./actions/secrets/X", `not "." or ".."`},
		{"repo %2e%2e", "repos/octo-org/%2e%2e/actions/secrets/X", "repository name"},
		{"repo a/../b", "repos/octo-org/a/../b/actions/secrets/X", "is not a scope"},
		{"app ..", "orgs/octo-org/../secrets/X", `app ".."`},
		{"app %2e%2e", "orgs/octo-org/%2e%2e/secrets/X", `app "%2e%2e"`},
		{"env ..", envOf + "../secrets/X", `must not be "." or ".."`},
		{"env .", envOf + "./secrets/X", `must not be "." or ".."`},
		{"env %2e%2e", envOf + "%2e%2e/secrets/X", `must not be "." or ".."`},
		{"env %2E%2E", envOf + "%2E%2E/secrets/X", `must not be "." or ".."`},
		{"env %2e", envOf + "%2e/secrets/X", `must not be "." or ".."`},
		{"env %2E", envOf + "%2E/secrets/X", `must not be "." or ".."`},
		{"env a/../b", envOf + "a/../b/secrets/X", "is not a scope"},
		{"env a%2F..%2Fb", envOf + "a%2F..%2Fb/secrets/X", "between slashes"},
		{"env ..%2F..%2Forgs", envOf + "..%2F..%2Forgs/secrets/X", "between slashes"},
		{"secret ..", repo + "/secrets/..", "may hold only letters"},
		{"secret .", repo + "/secrets/.", "may hold only letters"},
		{"secret %2e%2e", repo + "/secrets/%2e%2e", "may hold only letters"},
		{"secret a/../b", repo + "/secrets/a/../b", "may hold only letters"},
		// An escaped slash inside a segment other than the environment.
		{"org %2F", "orgs/octo%2Forg/actions/secrets/X", "organization name"},
		{"owner %2F", "repos/octo%2Forg/hello-world/actions/secrets/X", "owner name"},
		{"repo %2F", "repos/octo-org/hello%2Fworld/actions/secrets/X", "repository name"},
		{"secret %2F", repo + "/secrets/A%2FB", "may hold only letters"},
		// NUL, control bytes and invalid UTF-8.
		{"NUL in secret", repo + "/secrets/A\x00B", "control character U+0000"},
		{"NUL in owner", "repos/octo-org\x00/hello-world/actions/secrets/X", "control character U+0000"},
		{"NUL in env", envOf + "staging\x00/secrets/X", "control character U+0000"},
		{"escaped NUL in env", envOf + "staging%00/secrets/X", "control characters (it holds U+0000)"},
		{"CRLF in env", envOf + "staging%0D%0AX-Injected:%201/secrets/X", "control characters (it holds U+000D)"},
		{"raw CRLF", repo + "/secrets/X\r\nX-Injected: 1", "control character U+000D"},
		{"ESC", envOf + "\x1b[2Jstaging/secrets/X", "control character U+001B"},
		{"DEL", repo + "/secrets/X\x7f", "control character U+007F"},
		{"C1 NEL in env", envOf + "a%C2%85b/secrets/X", "control characters (it holds U+0085)"},
		{"invalid UTF-8", envOf + "\xc0\xae\xc0\xae/secrets/X", "is not valid UTF-8"},
		{"invalid UTF-8 escaped", envOf + "%C0%AE%C0%AE/secrets/X", "valid UTF-8 once unescaped"},
		// Bidi and zero-width characters in environment names.
		{"RLO", envOf + "prod%E2%80%AEue/secrets/X", "it holds U+202E"},
		{"RLO raw", envOf + "prod\u202eue/secrets/X", "it holds U+202E"},
		{"LRI", envOf + "%E2%81%A6staging/secrets/X", "it holds U+2066"},
		{"ZWSP", envOf + "stag%E2%80%8Bing/secrets/X", "it holds U+200B"},
		{"ZWNJ", envOf + "stag%E2%80%8Cing/secrets/X", "it holds U+200C"},
		{"ZWJ raw", envOf + "stag\u200ding/secrets/X", "it holds U+200D"},
		{"WJ", envOf + "stag%E2%81%A0ing/secrets/X", "it holds U+2060"},
		{"BOM", envOf + "%EF%BB%BFstaging/secrets/X", "it holds U+FEFF"},
		// Lengths.
		{"secret name of 256", repo + "/secrets/" + strings.Repeat("S", 256), "secret name is 256 characters; the limit is 255"},
		{"name of 5000 bytes", repo + "/secrets/" + strings.Repeat("S", 5000-len(repo+"/secrets/")), "is 5000 bytes; a resource name is at most 4096 bytes"},
		{"5000 bytes of NUL", strings.Repeat("\x00", 5000), "is 5000 bytes"},
		{"environment of 256", envOf + strings.Repeat("e", 256) + "/secrets/X", "environment name must be 1 to 255"},
	}

	type tcase struct {
		name string
		call func(context.Context) error
		msg  string
	}
	var cases []tcase
	parentCases := 0
	for _, n := range names {
		parent := n.secret
		if i := strings.LastIndex(n.secret, "/secrets/"); i >= 0 {
			parent = n.secret[:i]
		}
		cases = append(cases,
			tcase{n.name + "/PutSecret", func(ctx context.Context) error {
				_, err := d.srv.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: n.secret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}})
				return err
			}, n.msg},
			tcase{n.name + "/GetSecret", func(ctx context.Context) error {
				_, err := d.srv.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: n.secret})
				return err
			}, n.msg},
			tcase{n.name + "/DeleteSecret", func(ctx context.Context) error {
				_, err := d.srv.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: n.secret})
				return err
			}, n.msg},
			tcase{n.name + "/BatchPutSecrets", func(ctx context.Context) error {
				resp, err := d.srv.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
					{Name: n.secret, Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}},
				}})
				if err != nil {
					t.Fatalf("BatchPutSecrets: %v", err)
				}
				r := resp.GetResults()[0]
				return status.Error(codes.Code(r.GetCode()), r.GetMessage())
			}, n.msg},
		)
		// The parent alone, where the rule is in the parent.
		if _, err := parseParent("parent", parent); err != nil && strings.Contains(err.Error(), n.msg) {
			parentCases++
			cases = append(cases,
				tcase{n.name + "/GetPublicKey", func(ctx context.Context) error {
					_, err := d.srv.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: parent})
					return err
				}, n.msg},
				tcase{n.name + "/ListSecrets", func(ctx context.Context) error {
					_, err := d.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: parent})
					return err
				}, n.msg},
			)
		}
	}
	if parentCases < 30 {
		t.Fatalf("only %d names were tried as parents", parentCases)
	}

	put := func(req *secretbrokerv1.PutSecretRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := d.srv.PutSecret(ctx, req)
			return err
		}
	}
	enc := func(v string) *secretbrokerv1.PutSecretRequest_EncryptedValue {
		return &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: v}
	}
	cases = append(cases,
		tcase{"value of 48 KB + 1", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/BIG", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: strings.Repeat("x", 48*1024+1)}}), "value: is 49153 bytes; GitHub's limit is 49152 bytes"},
		tcase{"sealed not base64", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc("not base64!"), KeyId: "1"}), "encrypted_value: must be standard base64"},
		tcase{"sealed URL-safe base64", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb\xff", 40)))), KeyId: "1"}), "encrypted_value: must be standard base64"},
		tcase{"sealed without padding", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(strings.TrimRight(sealedOf(box.AnonymousOverhead+1), "=")), KeyId: "1"}), "encrypted_value: must be standard base64"},
		// encoding/base64 skips line breaks even when strict; checkSealed
		// refuses them itself.
		tcase{"sealed with a newline", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(okSealed[:8] + "\n" + okSealed[8:]), KeyId: "1"}), "encrypted_value: must be standard base64"},
		tcase{"sealed too short", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(sealedOf(box.AnonymousOverhead - 1)), KeyId: "1"}), "encrypted_value: is 47 bytes, shorter than a sealed box"},
		tcase{"sealed empty", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(""), KeyId: "1"}), "encrypted_value: is 0 bytes"},
		tcase{"sealed too long", put(&secretbrokerv1.PutSecretRequest{Name: repo + "/secrets/X", Payload: enc(sealedOf(maxValueBytes + box.AnonymousOverhead + 1)), KeyId: "1"}), "encrypted_value: seals more than 49152 bytes"},
		tcase{"org secret sealed, bad base64", put(&secretbrokerv1.PutSecretRequest{Name: org + "/secrets/X", Payload: enc("%%%"), KeyId: "1", Visibility: "all"}), "encrypted_value: "},
	)

	d.publicKey(t, repo) // cached, as a caller that seals its values has it
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			d.emu.ResetCounts()
			err := tt.call(t.Context())
			wantCode(t, err, codes.InvalidArgument)
			noLeak(t, err)
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q does not contain %q", msg, tt.msg)
			}
			if len(msg) > 1200 {
				t.Errorf("message is %d bytes: it echoes too much of the input", len(msg))
			}
			if n := d.emu.TotalRequests(); n != 0 {
				t.Errorf("%d requests reached GitHub", n)
			}
		})
	}
}

// "%252F" is escaped once for the broker: it names the environment "%2F",
// a literal percent sign and "2F" (GitHub documents no rule against "%").
// The broker treats it as that name everywhere: it is escaped once more
// on the way to GitHub (".../environments/%252F") and formatted back the
// same way, never decoded twice into a slash.
func TestPercentEnvironmentIsALiteralName(t *testing.T) {
	d := newDirect(t, time.Hour)
	d.emu.AddEnvironment("octo-org", "hello-world", "%2F")
	const parent = "repos/octo-org/hello-world/environments/%252F"
	scope, err := parseParent("parent", parent)
	if err != nil || scope.Environment != "%2F" || scopeName(scope) != parent {
		t.Fatalf("parseParent(%q) = %+v (%q), %v", parent, scope, scopeName(scope), err)
	}
	resp, err := d.srv.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{Name: parent + "/secrets/PCT", Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}})
	if err != nil || resp.GetName() != parent+"/secrets/PCT" {
		t.Fatalf("PutSecret = %+v, %v", resp, err)
	}
	if got, err := d.emu.Open(parent, "PCT"); err != nil || string(got) != plantedSecret {
		t.Fatalf("the value is not in environment %%2F: %v", err)
	}
	// Nothing landed in an environment named "/" or in the repository.
	if _, err := d.emu.Open("repos/octo-org/hello-world/actions", "PCT"); err == nil {
		t.Fatal("the secret landed in the repository scope")
	}
	if n := d.emu.Count(emulator.RoutePutEnvSecret); n != 1 {
		t.Fatalf("%d environment PUTs, want 1", n)
	}
	sec, err := d.srv.GetSecret(t.Context(), &secretbrokerv1.GetSecretRequest{Name: parent + "/secrets/PCT"})
	if err != nil || sec.GetName() != parent+"/secrets/PCT" {
		t.Fatalf("GetSecret = %+v, %v", sec, err)
	}
}

// Another scope's key_id is refused. The caller might hold a key newer
// than the cache, so it buys one conditional revalidation of the target
// scope's key (answered 304), and no PUT is sent.
func TestHostileOtherScopesKeyID(t *testing.T) {
	d := newDirect(t, time.Hour)
	const (
		target = "repos/octo-org/hello-world/actions"
		other  = "repos/octo-org/secret-sauce/actions"
	)
	d.publicKey(t, target) // cached
	otherKey := d.publicKey(t, other)
	sealed := sealFor(t, otherKey, plantedSecret)
	d.emu.ResetCounts()
	for range 3 {
		_, err := d.srv.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
			Name: target + "/secrets/CROSS", Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: sealed}, KeyId: otherKey.GetKeyId(),
		})
		wantCode(t, err, codes.InvalidArgument)
		noLeak(t, err)
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "key_id: ") || !strings.Contains(msg, "call GetPublicKey and seal again") {
			t.Fatalf("message %q", msg)
		}
	}
	if n := d.emu.Count(emulator.RouteGetRepoPublicKey); n != 1 {
		t.Errorf("%d key requests, want exactly 1 revalidation", n)
	}
	if st := d.emu.Stats(); st.NotModified != 1 {
		t.Errorf("%d answers were 304, want 1: the revalidation was not conditional", st.NotModified)
	}
	if h := d.emu.LastRequestHeader(emulator.RouteGetRepoPublicKey); h.Get("If-None-Match") == "" {
		t.Error("the revalidation carried no If-None-Match")
	}
	if n := d.emu.TotalRequests(); n != 1 {
		t.Errorf("%d requests in all, want the 1 revalidation", n)
	}
	if n := d.puts(); n != 0 {
		t.Errorf("%d PUTs sent with another scope's key_id", n)
	}
}

// A key_id of a megabyte is not echoed back whole.
func TestHostileLongKeyIDIsNotEchoed(t *testing.T) {
	d := newDirect(t, time.Hour)
	const target = "repos/octo-org/hello-world/actions"
	pk := d.publicKey(t, target)
	long := strings.Repeat("9", 1<<20)
	_, err := d.srv.PutSecret(t.Context(), &secretbrokerv1.PutSecretRequest{
		Name: target + "/secrets/X", Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: sealFor(t, pk, "v")}, KeyId: long,
	})
	wantCode(t, err, codes.InvalidArgument)
	if msg := status.Convert(err).Message(); len(msg) > 300 || !strings.Contains(msg, "key_id: ") {
		t.Fatalf("message of %d bytes: %.200q", len(msg), msg)
	}
}
