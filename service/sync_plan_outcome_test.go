package service

import (
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestSyncPlanFailureHasOutcome: a sync whose plan fails after its intent
// record (the scope's listing fails, its prune's deletes are not the ones
// expected) left that intent without an outcome record: the deferred end
// read a shadowed err, always nil. The call's one outcome record now
// holds the code its caller was answered.
func TestSyncPlanFailureHasOutcome(t *testing.T) {
	tests := []struct {
		name  string
		fault *emulator.Fault
		req   func() *secretbrokerv1.SyncSecretsRequest
		want  string
	}{
		{"listing fails", &emulator.Fault{Route: emulator.RouteListRepoSecrets, Status: 500, Times: 100},
			func() *secretbrokerv1.SyncSecretsRequest {
				return syncReq(repoScope, "team", map[string]string{"S": plantedSecret})
			}, "UNAVAILABLE"},
		{"unexpected deletes", nil, func() *secretbrokerv1.SyncSecretsRequest {
			req := syncReq(repoScope, "team", map[string]string{"S": plantedSecret})
			req.Prune = true
			req.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"NOT_THERE"}}
			return req
		}, "ABORTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var trail syncBuffer
				h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil)})
				if tt.fault != nil {
					h.emu.InjectFault(*tt.fault)
				}
				_, err := h.server.SyncSecrets(t.Context(), tt.req())
				time.Sleep(time.Minute) // nothing the call left runs on
				if got := codeName(status.Code(err)); got != tt.want {
					t.Fatalf("answered %s (%v), want %s", got, err, tt.want)
				}
				var outcomes []string
				for _, r := range trailRecords(t, trail.String()) {
					if r.RPC == rpcSyncSecrets && r.Resource == repoScope && r.Phase == audit.PhaseOutcome {
						outcomes = append(outcomes, r.Outcome)
					}
				}
				if len(outcomes) != 1 || outcomes[0] != tt.want {
					t.Errorf("outcome records of the call %v, want [%s]:\n%s", outcomes, tt.want, trail.String())
				}
			})
		})
	}
}
