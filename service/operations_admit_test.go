package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestRevokedDuringPacerWait: an operation's item re-authorized when it
// started, then waiting in the pacer for its write slot, is checked again
// once admitted: its caller's write access withdrawn meanwhile, its PUT
// does not go out, and it fails PERMISSION_DENIED (found by a review: the
// check came before the wait only).
func TestRevokedDuringPacerWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, authz, staging := revocable(t, nil)
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

// TestAdmitCheckStaysOutOfSharedReads: an item's admit check must not
// travel into the shared key fetch it starts, where another caller who
// joined that fetch would get the item's denial (found by a review).
func TestAdmitCheckStaysOutOfSharedReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		scope, _, err := parseSecretName("name", stagingEnv+"/secrets/X")
		if err != nil {
			t.Fatal(err)
		}
		release := make(chan struct{})
		checked := false
		ctxA := upstream.WithAdmitCheck(as(t.Context(), "token:a"), func(context.Context) error {
			checked = true
			<-release
			return &deniedError{verb: "write", resource: stagingEnv + "/secrets/A_ONLY"}
		})
		var errA, errB error
		doneA, doneB := make(chan struct{}), make(chan struct{})
		go func() { _, errA = h.server.keys.get(ctxA, scope); close(doneA) }()
		synctest.Wait() // A's shared fetch is under way
		go func() { _, errB = h.server.keys.get(as(t.Context(), "token:b"), scope); close(doneB) }()
		synctest.Wait() // B joined A's fetch
		close(release)
		<-doneA
		<-doneB
		if checked {
			t.Error("a read ran the admit check")
		}
		if errA != nil {
			t.Errorf("caller A's key fetch (a read, not checked): %v", errA)
		}
		if errB != nil {
			t.Errorf("caller B (no admit check) got: %v", errB)
		}
	})
}

// TestAdmitDenialOneOutcome: an item refused at admission has one intent
// and one outcome record (found by a review: the check recorded a denial
// of its own beside the change's outcome).
func TestAdmitDenialOneOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var trail syncBuffer
		h, authz, staging := revocable(t, audit.NewWriter(&trail, nil))
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for i, n := range []string{"S1", "S2", "S3"} {
			req.Requests = append(req.Requests, plain(stagingEnv+"/secrets/"+n, fmt.Sprintf("%s-%d", plantedSecret, i)))
		}
		synctest.Wait()
		resp, err := h.broker.BatchPutSecrets(staging, req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		authz.p.Store(parsePolicy(t, revokedPolicy))
		_ = waitOp(staging, t, h.broker, resp.GetOperation().GetName(), 0)
		intents, outcomes := 0, 0
		for line := range strings.Lines(trail.String()) {
			if strings.Contains(line, "secrets/S2") {
				if strings.Contains(line, `"phase":"intent"`) {
					intents++
				} else {
					outcomes++
				}
			}
		}
		if intents != 1 || outcomes != 1 {
			t.Errorf("S2: %d intent, %d outcome records\n%s", intents, outcomes, trail.String())
		}
	})
}

// TestAdmitDenialHasNoAction: a sync item refused when admitted has no
// action, as one refused before it ran (found by a review: it said
// CREATE).
func TestAdmitDenialHasNoAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, authz, staging := revocable(t, nil)
		values := map[string]string{}
		for i, n := range []string{"S1", "S2", "S3"} {
			values[n] = fmt.Sprintf("%s-%d", plantedSecret, i)
		}
		req := syncReq(stagingEnv, "ops", values)
		req.Async = true
		synctest.Wait()
		resp, err := h.broker.SyncSecrets(staging, req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		authz.p.Store(parsePolicy(t, revokedPolicy))
		done := waitOp(staging, t, h.broker, resp.GetOperation().GetName(), 0)
		results := syncResultsOf(t, done)
		for _, n := range []string{"S2", "S3"} {
			if r := results[n]; r != "UNSPECIFIED PERMISSION_DENIED" {
				t.Errorf("%s after the revocation: %q, want UNSPECIFIED PERMISSION_DENIED", n, r)
			}
		}
	})
}

// revocable is a harness whose policy a test can swap, with writes 10 s
// apart (an item waits in the pacer for its slot) and the operations
// runner closed at the test's end; staging is the context of the caller
// the policy lets write the staging environment.
func revocable(t *testing.T, trail *audit.Log) (h *harness, authz *swapAuthorizer, staging context.Context) {
	t.Helper()
	pacing := upstream.DefaultPacing()
	pacing.WriteInterval = 10 * time.Second
	authz = newSwapAuthorizer(mustPolicy(t))
	h = newHarness(t, harnessOpts{authz: authz, pacing: &pacing, audit: trail, ops: OperationOptions{FlushEvery: 1}})
	closeOps(t, h.server)
	return h, authz, as(t.Context(), "token:staging")
}
