package service

import (
	"context"
	"testing"
	"testing/synctest"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/access"
)

// blindWriterPolicy lets token:blind write, not read, the organization's
// Actions secrets, and token:admin do everything.
const blindWriterPolicy = `
rules:
  - callers: ["token:blind"]
    verbs: [write]
    resources: ["orgs/octo-org/actions/secrets/*"]
  - callers: ["token:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`

// TestWriteOnlyCallerLearnsNoSettings: a caller that may write an
// existing organization secret but neither read it nor manage its
// repositories cannot learn its visibility or selection by naming a guess
// in a put: the put is refused (manage_repositories) whether the guess is
// right or wrong, a value-only put (which keeps the settings) goes
// through, and creating a secret with any settings needs write only. Were
// a right guess written and a wrong one refused, each put would tell the
// caller the secret's settings, which GetSecret and
// ListSelectedRepositories (read) would not.
func TestWriteOnlyCallerLearnsNoSettings(t *testing.T) {
	admin := as(context.Background(), "token:admin")
	blind := as(context.Background(), "token:blind")
	name := orgScope + "/secrets/DEPLOY"
	tests := []struct {
		name       string
		visibility string
		repos      []string // the selection sent, by name
		noValue    bool     // a settings-only put
		want       codes.Code
	}{
		{"value only", "", nil, false, codes.OK},
		{"right visibility", "selected", nil, false, codes.PermissionDenied},
		{"wrong visibility", "all", nil, false, codes.PermissionDenied},
		{"right selection", "selected", []string{"docs"}, false, codes.PermissionDenied},
		{"wrong selection", "selected", []string{"docs", "secret-sauce"}, false, codes.PermissionDenied},
		{"right visibility, settings only", "selected", nil, true, codes.PermissionDenied},
		{"wrong visibility, settings only", "private", nil, true, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p, err := access.Parse([]byte(blindWriterPolicy))
				if err != nil {
					t.Fatal(err)
				}
				h := newHarness(t, harnessOpts{authz: p})
				create := plain(name, plantedSecret)
				create.Visibility, create.SelectedRepositoryIds = "selected", []int64{h.repoID(t, "docs")}
				if _, err := h.broker.PutSecret(admin, create); err != nil {
					t.Fatal(err)
				}
				req := plain(name, plantedSecret)
				if tt.noValue {
					req.Payload = nil
				}
				req.Visibility = tt.visibility
				for _, r := range tt.repos {
					req.SelectedRepositoryIds = append(req.SelectedRepositoryIds, h.repoID(t, r))
				}
				_, err = h.broker.PutSecret(blind, req)
				wantCode(t, err, tt.want)
				batch, err := h.broker.BatchPutSecrets(blind, &secretbrokerv1.BatchPutSecretsRequest{
					Requests: []*secretbrokerv1.PutSecretRequest{req}})
				switch {
				case tt.noValue:
					// Not a batch item: a settings-only put is a PutSecret
					// of its own.
				case err != nil:
					t.Fatalf("batch: %v", err)
				case batch.GetResults()[0].GetCode() != code.Code(tt.want):
					t.Fatalf("batch item: %v %s, want %v", batch.GetResults()[0].GetCode(), batch.GetResults()[0].GetMessage(), tt.want)
				}
				ids, err := h.emu.SelectedRepositoryIDs(orgScope, "DEPLOY")
				if err != nil || len(ids) != 1 || ids[0] != h.repoID(t, "docs") {
					t.Fatalf("selection is %v (%v), want only docs", ids, err)
				}
			})
		})
	}
	// Creating a secret names its settings with write alone.
	synctest.Test(t, func(t *testing.T) {
		p, err := access.Parse([]byte(blindWriterPolicy))
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{authz: p})
		req := plain(orgScope+"/secrets/NEW", plantedSecret)
		req.Visibility, req.SelectedRepositoryIds = "selected", []int64{h.repoID(t, "docs")}
		if _, err := h.broker.PutSecret(blind, req); err != nil {
			t.Fatalf("creating with a selection: %v", err)
		}
	})
}
