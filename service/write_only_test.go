package service

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"

	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// writeAnswer is what a write's answer tells its caller of the broker's
// comparison of the value with its record.
type writeAnswer struct {
	unchanged bool
	drift     bool
	// action is a sync item's ("" for a put or a batch item).
	action string
	// opUnchanged is an operation's metadata count of unchanged items.
	opUnchanged int32
}

func (a writeAnswer) String() string {
	return fmt.Sprintf("unchanged=%t drift=%t action=%q op_unchanged=%d", a.unchanged, a.drift, a.action, a.opUnchanged)
}

// TestWriteOnlyCallerLearnsNoComparison: a caller that may write a secret
// but not read it, sending the value the secret holds (which the broker
// recorded), is never answered unchanged nor drift, by any call, and its
// write goes to GitHub (a dry run's plan says UPDATE); a caller that may
// read it is answered unchanged (or drifted) and, unchanged, nothing is
// written.
func TestWriteOnlyCallerLearnsNoComparison(t *testing.T) {
	const right = "hunter2-" + plantedSecret
	secret := repoScope + "/secrets/DB_PASSWORD"
	syncOf := func(dryRun, async bool) *secretbrokerv1.SyncSecretsRequest {
		return &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin", DryRun: dryRun, Async: async,
			Secrets: map[string]string{"DB_PASSWORD": right}}
	}
	syncAnswer := func(t *testing.T, resp *secretbrokerv1.SyncSecretsResponse) writeAnswer {
		t.Helper()
		r := resultFor(resp, secret)
		if r.GetCode() != code.Code_OK {
			t.Fatalf("sync: %s", resultText(r))
		}
		return writeAnswer{unchanged: r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED, drift: r.GetDrift(),
			action: r.GetAction().String()}
	}
	// opAnswer waits for the operation and returns its one result's answer.
	opAnswer := func(ctx context.Context, t *testing.T, h *harness, op *secretbrokerv1.Operation) writeAnswer {
		t.Helper()
		op = waitOp(ctx, t, h.broker, op.GetName(), 0)
		if !op.GetDone() || op.GetError() != nil {
			t.Fatalf("operation: done=%t error=%v", op.GetDone(), op.GetError())
		}
		a := writeAnswer{opUnchanged: op.GetMetadata().GetUnchanged()}
		if rs := op.GetResponse().GetSyncResults(); len(rs) > 0 {
			s := syncAnswer(t, &secretbrokerv1.SyncSecretsResponse{Results: rs})
			s.opUnchanged = a.opUnchanged
			return s
		}
		rs := op.GetResponse().GetBatchPutResults()
		if len(rs) != 1 || rs[0].GetCode() != code.Code_OK {
			t.Fatalf("batch operation results: %v", rs)
		}
		a.unchanged, a.drift = rs[0].GetUnchanged(), rs[0].GetDrift()
		return a
	}
	calls := []struct {
		name  string
		write bool // not a dry run: a write that is not skipped is sent
		op    bool // answered with an operation
		call  func(ctx context.Context, t *testing.T, h *harness) writeAnswer
	}{
		{"PutSecret", true, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.PutSecret(ctx, plain(secret, right))
			if err != nil {
				t.Fatal(err)
			}
			return writeAnswer{unchanged: resp.GetUnchanged(), drift: resp.GetDrift()}
		}},
		{"BatchPutSecrets", true, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{
				Requests: []*secretbrokerv1.PutSecretRequest{plain(secret, right)}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetResults()[0]
			if r.GetCode() != code.Code_OK {
				t.Fatalf("batch item: %v %s", r.GetCode(), r.GetMessage())
			}
			return writeAnswer{unchanged: r.GetUnchanged(), drift: r.GetDrift()}
		}},
		{"BatchPutSecrets async", true, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(secret, right)}})
			if err != nil {
				t.Fatal(err)
			}
			return opAnswer(ctx, t, h, resp.GetOperation())
		}},
		{"SyncSecrets", true, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.SyncSecrets(ctx, syncOf(false, false))
			if err != nil {
				t.Fatal(err)
			}
			return syncAnswer(t, resp)
		}},
		{"SyncSecrets dry run", false, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.SyncSecrets(ctx, syncOf(true, false))
			if err != nil {
				t.Fatal(err)
			}
			return syncAnswer(t, resp)
		}},
		{"SyncSecrets async", true, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.SyncSecrets(ctx, syncOf(false, true))
			if err != nil {
				t.Fatal(err)
			}
			return opAnswer(ctx, t, h, resp.GetOperation())
		}},
	}
	callers := []struct {
		caller string
		read   bool
	}{
		{"token:rotator", false}, // write on DB_PASSWORD, no read
		{"token:admin", true},
	}
	for _, c := range calls {
		for _, who := range callers {
			for _, drifted := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/drifted=%t", c.name, who.caller, drifted), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
						closeOps(t, h.server)
						if _, err := h.broker.PutSecret(as(t.Context(), "token:admin"), plain(secret, right)); err != nil {
							t.Fatal(err)
						}
						if drifted {
							behindBack(t, h, secret)
						}
						h.emu.ResetCounts()
						got := c.call(as(t.Context(), who.caller), t, h)
						// What the caller may be told, and what goes to GitHub.
						want, wantPuts := writeAnswer{}, 0
						switch {
						case who.read && drifted:
							want.drift, wantPuts = true, 1
						case who.read:
							want.unchanged = true
						default:
							wantPuts = 1
						}
						if !c.write {
							wantPuts = 0
						}
						if c.op && want.unchanged {
							want.opUnchanged = 1 // in the operation's metadata
						}
						if got.unchanged != want.unchanged || got.drift != want.drift || got.opUnchanged != want.opUnchanged {
							t.Errorf("answer %v, want unchanged=%t drift=%t op_unchanged=%d", got, want.unchanged, want.drift, want.opUnchanged)
						}
						if got.action != "" && !who.read && got.action != secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE.String() {
							t.Errorf("sync action %s, want SYNC_ACTION_UPDATE", got.action)
						}
						if n := puts(h); n != wantPuts {
							t.Errorf("%d PUTs, want %d", n, wantPuts)
						}
						if !who.read && c.name == "PutSecret" && h.emu.Count(emulator.RouteGetRepoSecret) != 0 {
							// Written as if nothing were recorded: no GET
							// of the secret first.
							t.Errorf("%d GETs of the secret before a write-only caller's PUT", h.emu.Count(emulator.RouteGetRepoSecret))
						}
						wantStored(t, h, secret, right)
					})
				})
			}
		}
	}
}
