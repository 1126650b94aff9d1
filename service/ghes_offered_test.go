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
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// newGHESHarness is newHarness with the client's base URL under /api/v3
// (GitHub Enterprise Server), legacy routes or not.
func newGHESHarness(t *testing.T, legacy bool) *harness {
	t.Helper()
	logs := &syncBuffer{}
	logger := newTestLogger(logs)
	emu := emulator.New(emulator.Options{Token: testToken, LegacyRoutes: legacy, Logger: logger})
	demo := emu.SeedDemo()
	tr := newEmulatorTransport(emu)
	client, err := upstream.New(upstream.Config{
		BaseURL:      emulatorURL + "/api/v3",
		Token:        upstream.Token(testToken),
		LegacyRoutes: legacy,
		HTTPClient:   &http.Client{Transport: tr},
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, client, logs, Options{Logger: logger})
	h.emu, h.demo, h.upstream, h.client = emu, demo, tr, client
	return h
}

// GitHub Enterprise Server's reference pages (3.21's and the older
// release's, with the legacy routes) document no Agents secrets, and the
// older one no route listing a repository's organization secrets: the
// broker refuses those calls with FAILED_PRECONDITION and sends nothing,
// rather than report GitHub's 404 as a secret not found. Actions calls
// still go.
func TestGHESRefusesWhatItHasNot(t *testing.T) {
	cases := []struct {
		name    string
		legacy  bool
		call    func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error
		offered bool
	}{
		{"ghes3.21 org agents PutSecret", false, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: "orgs/octo-org/agents/secrets/MODEL_KEY",
				Payload: &secretbrokerv1.PutSecretRequest_Value{Value: "v"}, Visibility: "all"})
			return err
		}, false},
		{"ghes3.21 repo agents GetPublicKey", false, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "repos/octo-org/hello-world/agents"})
			return err
		}, false},
		{"legacy repo agents ListSecrets", true, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: "repos/octo-org/hello-world/agents"})
			return err
		}, false},
		{"legacy ListRepositoryOrganizationSecrets", true, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "repos/octo-org/hello-world/actions"})
			return err
		}, false},
		{"ghes3.21 repo actions GetPublicKey", false, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "repos/octo-org/hello-world/actions"})
			return err
		}, true},
		{"ghes3.21 ListRepositoryOrganizationSecrets", false, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.ListRepositoryOrganizationSecrets(ctx, &secretbrokerv1.ListRepositoryOrganizationSecretsRequest{Parent: "repos/octo-org/hello-world/actions"})
			return err
		}, true},
		{"legacy environment ListSecrets", true, func(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
			_, err := c.ListSecrets(ctx, &secretbrokerv1.ListSecretsRequest{Parent: "repos/octo-org/hello-world/environments/staging"})
			return err
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newGHESHarness(t, tc.legacy)
				err := tc.call(t.Context(), h.broker)
				sent := h.upstream.calls("")
				if tc.offered {
					if err != nil || len(sent) == 0 {
						t.Errorf("%v after %d requests; want it served", err, len(sent))
					}
					return
				}
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "GitHub Enterprise Server) has no") {
					t.Errorf("%v; want FAILED_PRECONDITION naming what GitHub Enterprise Server has not", err)
				}
				if len(sent) > 0 {
					t.Errorf("sent %d request(s) GitHub Enterprise Server does not have (first %s %s -> %d); want none", len(sent), sent[0].method, sent[0].path, sent[0].status)
				}
			})
		})
	}
}
