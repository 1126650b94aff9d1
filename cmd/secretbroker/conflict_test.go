package main

import (
	"io"
	"net/http"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
)

// TestGatewayGitHubConflictIs409: GitHub's 409 (managing the selected
// repositories of a secret whose visibility is not "selected") reaches a
// gRPC caller as FAILED_PRECONDITION with an ErrorInfo naming it, and a
// JSON caller as 409, as GitHub answers it, over the real gateway against
// the emulator. The broker's own FAILED_PRECONDITION (a route the
// upstream does not offer) stays 400.
func TestGatewayGitHubConflictIs409(t *testing.T) {
	b := startBroker(t, devConfig(t))
	const secret = "orgs/octo-org/actions/secrets/CONFLICT_ALL"
	if code, m := b.do(t, http.MethodPut, "/v1/"+secret, `{"value":"conflict-value","visibility":"all"}`); code != http.StatusCreated {
		t.Fatalf("PUT = %d %v", code, m)
	}
	for _, tc := range []struct {
		name, method, path, body string
		grpc                     func() error
	}{
		{"add", http.MethodPut, "/v1/" + secret + "/repositories/1296271", "", func() error {
			_, err := secretbrokerv1.NewSecretServiceClient(b.conn).AddSelectedRepository(t.Context(),
				&secretbrokerv1.AddSelectedRepositoryRequest{Name: secret, Repository: "1296271"})
			return err
		}},
		{"remove", http.MethodDelete, "/v1/" + secret + "/repositories/1296271", "", func() error {
			_, err := secretbrokerv1.NewSecretServiceClient(b.conn).RemoveSelectedRepository(t.Context(),
				&secretbrokerv1.RemoveSelectedRepositoryRequest{Name: secret, Repository: "1296271"})
			return err
		}},
		{"set", http.MethodPut, "/v1/" + secret + "/repositories", `{"selected_repository_ids":[1296271]}`, func() error {
			_, err := secretbrokerv1.NewSecretServiceClient(b.conn).SetSelectedRepositories(t.Context(),
				&secretbrokerv1.SetSelectedRepositoriesRequest{Name: secret, SelectedRepositoryIds: []int64{1296271}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := b.do(t, tc.method, tc.path, tc.body)
			if code != http.StatusConflict || m["code"] != float64(codes.FailedPrecondition) {
				t.Errorf("%s %s = %d %v, want 409 with code FAILED_PRECONDITION (9)", tc.method, tc.path, code, m)
			}
			details, _ := m["details"].([]any)
			if len(details) != 1 || field(details[0], "reason") != service.ReasonGitHubConflict ||
				field(details[0], "@type") != "type.googleapis.com/google.rpc.ErrorInfo" {
				t.Errorf("details %v, want one ErrorInfo with reason %s", details, service.ReasonGitHubConflict)
			}
			st := status.Convert(tc.grpc())
			if st.Code() != codes.FailedPrecondition {
				t.Errorf("gRPC: %v, want FAILED_PRECONDITION", st)
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if ei, ok := d.(*errdetails.ErrorInfo); ok {
					info = ei
				}
			}
			if info.GetReason() != service.ReasonGitHubConflict || info.GetDomain() != service.ErrorDomain ||
				info.GetMetadata()["github_status"] != "409" {
				t.Errorf("gRPC ErrorInfo %v, want reason %s, domain %s, github_status 409", info, service.ReasonGitHubConflict, service.ErrorDomain)
			}
		})
	}

	t.Run("the broker's own FAILED_PRECONDITION stays 400", func(t *testing.T) {
		cfg, err := loadConfig([]string{"--dev", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
			"--shutdown-timeout=5s", "--upstream-legacy-routes"}, envMap(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		legacy := startBroker(t, cfg)
		code, m := legacy.do(t, http.MethodGet, "/v1/repos/octo-org/hello-world/actions/organization-secrets", "")
		if code != http.StatusBadRequest || m["code"] != float64(codes.FailedPrecondition) {
			t.Errorf("GET organization-secrets on the older release = %d %v, want 400 with code FAILED_PRECONDITION (9)", code, m)
		}
		if details, _ := m["details"].([]any); len(details) != 0 {
			t.Errorf("details %v, want none", details)
		}
	})
}
