package service

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// The NOT_FOUND messages of GitHub's 404, by what the call asked for.
func scopeKeyNotFound(scope string) string {
	return "the scope " + scope + " (or its public key) was not found on GitHub, or the broker's credentials cannot see it"
}

func scopeNotFound(scope string) string {
	return "the scope " + scope + " was not found on GitHub, or the broker's credentials cannot see it"
}

func secretNotFound(secret string) string {
	return "the secret " + secret + " was not found on GitHub (nor perhaps its scope), or the broker's credentials cannot see it"
}

func selectionNotFound(secret string) string {
	return "the organization secret " + secret + " (whose selected repositories were asked for) was not found on GitHub (nor perhaps its organization), or the broker's credentials cannot see it"
}

// A NOT_FOUND from GitHub names what was missing, by its resource name:
// a scope that does not exist (its public key fetch 404s, for a put, a
// batch item or a sync item, synchronous or not), or a secret that does
// not exist (read, deleted, its selection listed), so that a caller can
// tell a wrong scope (or one the credentials cannot see) from a missing
// secret. No value and no token is in any message.
func TestNotFoundNamesTheResource(t *testing.T) {
	const (
		org  = "orgs/octo-org/actions"
		repo = "repos/octo-org/hello-world/actions"
	)
	put := func(name, visibility string) func(context.Context, *testing.T, *harness) *status.Status {
		return func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: name,
				Payload: &secretbrokerv1.PutSecretRequest_Value{Value: plantedSecret}, Visibility: visibility})
			return status.Convert(err)
		}
	}
	// batchItem sends a batch of name and an item that succeeds, and
	// returns name's result.
	batchItem := func(name string, async bool) func(context.Context, *testing.T, *harness) *status.Status {
		return func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: async,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(name, plantedSecret), plain(repo+"/secrets/FINE", plantedSecret)}})
			if err != nil {
				t.Fatal(err)
			}
			results := resp.GetResults()
			if async {
				results = waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0).GetResponse().GetBatchPutResults()
			}
			var got *status.Status
			for _, r := range results {
				switch r.GetName() {
				case name:
					got = status.New(codes.Code(r.GetCode()), r.GetMessage())
				case repo + "/secrets/FINE":
					if r.GetCode() != 0 {
						t.Errorf("the other item: %v %q", r.GetCode(), r.GetMessage())
					}
				}
			}
			if got == nil {
				t.Fatalf("no result for %s in %v", name, results)
			}
			return got
		}
	}
	// syncItem syncs FOO into parent and returns its result.
	syncItem := func(parent string, async bool) func(context.Context, *testing.T, *harness) *status.Status {
		return func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			req := &secretbrokerv1.SyncSecretsRequest{Parent: parent, Async: async, Secrets: map[string]string{"FOO": plantedSecret}}
			if strings.HasPrefix(parent, "orgs/") {
				req.Visibility = "all"
			}
			resp, err := h.broker.SyncSecrets(ctx, req)
			if err != nil {
				return status.Convert(err)
			}
			results := resp.GetResults()
			if async {
				results = waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0).GetResponse().GetSyncResults()
			}
			if len(results) != 1 || results[0].GetName() != parent+"/secrets/FOO" {
				t.Fatalf("results %v, want FOO's only", results)
			}
			return status.New(codes.Code(results[0].GetCode()), results[0].GetMessage())
		}
	}
	for _, tc := range []struct {
		name  string
		fault *emulator.Fault
		call  func(context.Context, *testing.T, *harness) *status.Status
		want  string
	}{
		{name: "put, organization missing", call: put("orgs/no-such-org/actions/secrets/FOO", "all"),
			want: scopeKeyNotFound("orgs/no-such-org/actions")},
		{name: "put, repository missing", call: put("repos/octo-org/no-such-repo/actions/secrets/FOO", ""),
			want: scopeKeyNotFound("repos/octo-org/no-such-repo/actions")},
		{name: "put, environment missing", call: put("repos/octo-org/hello-world/environments/no-such-env/secrets/FOO", ""),
			want: scopeKeyNotFound("repos/octo-org/hello-world/environments/no-such-env")},
		{name: "put, escaped environment missing", call: put("repos/octo-org/hello-world/environments/no%2Fsuch/secrets/foo", ""),
			want: scopeKeyNotFound("repos/octo-org/hello-world/environments/no%2Fsuch")},
		// The key fetched, then the PUT 404s (the scope went meanwhile).
		{name: "put, PUT 404", fault: &emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: http.StatusNotFound, Times: 100},
			call: put(repo+"/secrets/FOO", ""), want: scopeNotFound(repo)},
		{name: "get, secret missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: org + "/secrets/missing"})
			return status.Convert(err)
		}, want: secretNotFound(org + "/secrets/MISSING")},
		{name: "get, repository missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.GetSecret(ctx, &secretbrokerv1.GetSecretRequest{Name: "repos/octo-org/no-such-repo/actions/secrets/FOO"})
			return status.Convert(err)
		}, want: secretNotFound("repos/octo-org/no-such-repo/actions/secrets/FOO")},
		{name: "delete, secret missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: repo + "/secrets/MISSING"})
			return status.Convert(err)
		}, want: secretNotFound(repo + "/secrets/MISSING")},
		{name: "selected repositories, secret missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.ListSelectedRepositories(ctx, &secretbrokerv1.ListSelectedRepositoriesRequest{Name: org + "/secrets/MISSING"})
			return status.Convert(err)
		}, want: selectionNotFound(org + "/secrets/MISSING")},
		{name: "add a selected repository, secret missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.AddSelectedRepository(ctx, &secretbrokerv1.AddSelectedRepositoryRequest{Name: org + "/secrets/MISSING", RepositoryId: 1296269})
			return status.Convert(err)
		}, want: "the organization secret " + org + "/secrets/MISSING, or repository 1296269, was not found on GitHub (nor perhaps its organization), or the broker's credentials cannot see it"},
		{name: "list, repository missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			_, err := h.broker.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: "repos/octo-org/no-such-repo/actions"})
			return status.Convert(err)
		}, want: scopeNotFound("repos/octo-org/no-such-repo/actions")},
		{name: "batch delete item, secret missing", call: func(ctx context.Context, t *testing.T, h *harness) *status.Status {
			resp, err := h.broker.BatchDeleteSecrets(ctx, &secretbrokerv1.BatchDeleteSecretsRequest{Names: []string{repo + "/secrets/MISSING"}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetResults()[0]
			return status.New(codes.Code(r.GetCode()), r.GetMessage())
		}, want: secretNotFound(repo + "/secrets/MISSING")},
		{name: "batch item, environment missing", call: batchItem("repos/octo-org/hello-world/environments/no-such-env/secrets/FOO", false),
			want: scopeKeyNotFound("repos/octo-org/hello-world/environments/no-such-env")},
		{name: "async batch item, organization missing", call: batchItem("orgs/no-such-org/actions/secrets/FOO", true),
			want: scopeKeyNotFound("orgs/no-such-org/actions")},
		{name: "sync, repository missing", call: syncItem("repos/octo-org/no-such-repo/actions", false),
			want: scopeNotFound("repos/octo-org/no-such-repo/actions")},
		// The scope listed, then its key 404s (the scope went meanwhile).
		{name: "sync item, key fetch 404", fault: &emulator.Fault{Route: emulator.RouteGetRepoPublicKey, Status: http.StatusNotFound, Times: 100},
			call: syncItem(repo, false), want: scopeKeyNotFound(repo)},
		{name: "async sync item, key fetch 404", fault: &emulator.Fault{Route: emulator.RouteGetOrgPublicKey, Status: http.StatusNotFound, Times: 100},
			call: syncItem(org, true), want: scopeKeyNotFound(org)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				if tc.fault != nil {
					h.emu.InjectFault(*tc.fault)
				}
				st := tc.call(t.Context(), t, h)
				if st.Code() != codes.NotFound || st.Message() != tc.want {
					t.Errorf("status %v %q,\nwant NOT_FOUND %q", st.Code(), st.Message(), tc.want)
				}
				noLeak(t, st.Err())
			})
		})
	}
}
