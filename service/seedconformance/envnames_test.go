package seedconformance

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// escapeAll percent-encodes every byte but letters, digits, '-', '_' and
// '.': the environment as a resource name spells it, escaped once.
func escapeAll(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// envNames are environment names that need escaping.
func envNames() []string {
	return []string{"a b", "ü", "100%", "x+y", "semi;colon", "a:b@c", "q?x", "h#x", "tilde~", "comma,x", "amp&eq=", "prod/eu"}
}

// TestEnvironmentNames puts, gets, lists and deletes a secret of
// environments whose names need escaping ("The name must be URL encoded"):
// GitHub sees exactly that environment, and no other.
func TestEnvironmentNames(t *testing.T) {
	for _, envName := range envNames() {
		t.Run(envName, func(t *testing.T) {
			run(t, setup{}, func(t *testing.T, e *env) {
				ctx := context.Background()
				parent, key := "repos/octo-org/hello-world/environments/"+escapeAll(envName), envScope("hello-world", envName)
				name := parent + "/secrets/X"
				e.put(t, name, "v", "")
				e.holds(t, key, "X", "v", "")
				if _, err := e.srv.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: name}); err != nil {
					t.Errorf("GetSecret: %v", err)
				}
				if l, err := e.srv.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: parent}); err != nil || l.GetTotalCount() != 1 {
					t.Errorf("ListSecrets = %v, %v", l, err)
				}
				if _, err := e.srv.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: name}); err != nil {
					t.Errorf("DeleteSecret: %v", err)
				}
				if got := e.gh.scopeKeys(); !slices.Equal(got, []string{key}) || len(e.gh.names(key)) != 0 {
					t.Errorf("GitHub saw scopes %q holding %v, want only %q, empty", got, e.gh.names(key), key)
				}
			})
		})
	}
}

// TestUnknownEnvironment lists the secrets of an environment the
// repository does not have. The seeds document no 404 for it (nor for any
// route); the fake serves every environment of a known repository, the
// emulator only those it holds (AddEnvironment), answering 404 for another
// on purpose, as GitHub does: the broker's NOT_FOUND.
func TestUnknownEnvironment(t *testing.T) {
	run(t, setup{differs: "the emulator has no environment \"nonexistent\""}, func(t *testing.T, e *env) {
		l, err := e.srv.ListSecrets(context.Background(),
			&secretbrokerv1.ListSecretsRequest{Parent: "repos/octo-org/hello-world/environments/nonexistent"})
		if e.emulator() {
			wantCode(t, err, codes.NotFound)
			return
		}
		if err != nil || l.GetTotalCount() != 0 {
			t.Errorf("ListSecrets = %v, %v", l, err)
		}
	})
}
