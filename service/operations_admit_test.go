package service

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestRevokedDuringPacerWait: an operation's item re-authorized when it
// started, then waiting in the pacer for its write slot, is checked again
// once admitted: its caller's write access withdrawn meanwhile, its PUT
// does not go out, and it fails PERMISSION_DENIED (found by a review: the
// check came before the wait only).
func TestRevokedDuringPacerWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 10 * time.Second
		authz := newSwapAuthorizer(mustPolicy(t))
		h := newHarness(t, harnessOpts{authz: authz, pacing: &pacing, ops: OperationOptions{FlushEvery: 1}})
		closeOps(t, h.server)
		staging := as(t.Context(), "token:staging")
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for i, n := range []string{"S1", "S2", "S3"} {
			req.Requests = append(req.Requests, plain(stagingEnv+"/secrets/"+n, fmt.Sprintf("%s-%d", plantedSecret, i)))
		}
		synctest.Wait()
		h.emu.ResetCounts()
		resp, err := h.broker.BatchPutSecrets(staging, req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // S1 written; S2 authorized, waiting for its slot
		synctest.Wait()
		before := puts(h)
		authz.p.Store(parsePolicy(t, revokedPolicy))
		done := waitOp(staging, t, h.broker, resp.GetOperation().GetName(), 0)
		if after := puts(h); after != before {
			t.Errorf("%d PUTs reached GitHub after the caller's write access was revoked", after-before)
		}
		results := done.GetResponse().GetBatchPutResults()
		if len(results) != 3 {
			t.Fatalf("%d results, want 3", len(results))
		}
		for _, r := range results[1:] {
			if codes.Code(r.GetCode()) != codes.PermissionDenied {
				t.Errorf("%s after the revocation: %v, want PERMISSION_DENIED", r.GetName(), r.GetCode())
			}
		}
	})
}
