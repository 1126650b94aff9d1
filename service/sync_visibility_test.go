package service

import (
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestSyncVisibilityMessage: a sync of an organization scope is refused
// with a message that says what is wrong with its visibility: missing, or
// not one of GitHub's three values (as PutSecret says it), never "is
// required" for a value the caller did give.
func TestSyncVisibilityMessage(t *testing.T) {
	for _, tt := range []struct {
		visibility, want string
	}{
		{"", `visibility: is required for an organization scope: "all", "private" or "selected"`},
		{"ALL", `visibility: "ALL" is not one of "all", "private" or "selected"`},
		{"public", `visibility: "public" is not one of "all", "private" or "selected"`},
	} {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			_, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{
				Parent: orgScope, Visibility: tt.visibility, DryRun: true, Secrets: map[string]string{"A": plantedSecret},
			})
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != tt.want {
				t.Errorf("visibility %q: %v %q, want INVALID_ARGUMENT %q", tt.visibility, st.Code(), st.Message(), tt.want)
			}
			if h.emu.TotalRequests() != 0 {
				t.Errorf("visibility %q: %d requests for a refused sync", tt.visibility, h.emu.TotalRequests())
			}
		})
	}
}
