package seedconformance

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestPlantedValueNeverShows writes a planted value through every scope,
// a batch and a sync, and fails writes of it (an unknown organization or
// repository, an invalid visibility or name): the plaintext is in no error,
// no request GitHub received (headers or body: only its sealed box is),
// and no log line (newEnv's cleanup; the token is checked there too).
func TestPlantedValueNeverShows(t *testing.T) {
	run(t, setup{}, func(t *testing.T, e *env) {
		ctx := context.Background()
		for _, sc := range scopeCases() {
			e.put(t, sc.parent+"/secrets/PLANTED", planted, sc.visibility)
			e.holds(t, sc.key, "PLANTED", planted, sc.visibility)
		}
		b, err := e.srv.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
			putReq("repos/octo-org/hello-world/actions/secrets/BATCHED", planted, ""),
			putReq("repos/octo-org/nowhere/actions/secrets/BATCHED", planted, ""),
		}})
		noLeak(t, err)
		for _, r := range b.GetResults() {
			if strings.Contains(r.String(), planted) {
				t.Errorf("a batch result holds the planted value: %v", r)
			}
		}
		sy, err := e.srv.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: "orgs/octo-org/actions", Owner: "o",
			Secrets: map[string]string{"SYNCED": planted}, Visibility: "all"})
		noLeak(t, err)
		if strings.Contains(sy.String(), planted) {
			t.Errorf("a sync result holds the planted value: %v", sy)
		}
		for _, c := range []struct {
			name string
			req  *secretbrokerv1.PutSecretRequest
			code codes.Code
		}{
			{"unknown organization", putReq("orgs/nobody/actions/secrets/X", planted, "all"), codes.NotFound},
			{"unknown repository", putReq("repos/octo-org/nowhere/actions/secrets/X", planted, ""), codes.NotFound},
			{"invalid visibility", putReq("orgs/octo-org/actions/secrets/X", planted, "public"), codes.InvalidArgument},
			{"invalid name", putReq("repos/octo-org/hello-world/actions/secrets/1X", planted, ""), codes.InvalidArgument},
		} {
			_, err := e.srv.PutSecret(ctx, c.req)
			if got := status.Code(err); got != c.code {
				t.Errorf("%s: %v, want %v", c.name, err, c.code)
			}
			noLeak(t, err)
		}

		sealed := 0
		for _, r := range e.gh.requests(0) {
			if strings.Contains(r.wire, planted) {
				t.Errorf("GitHub received the plaintext:\n%s", r.wire)
			}
			if r.method == "PUT" && strings.Contains(r.wire, `"encrypted_value"`) {
				sealed++
			}
		}
		if sealed != len(scopeCases())+2 {
			t.Errorf("%d sealed values reached GitHub, want %d", sealed, len(scopeCases())+2)
		}
	})
}
