package service

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
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
// written. The secret changed behind the broker's back, the write-only
// caller's write sends exactly the requests it sends otherwise, at the
// same times, and the operators are told the drift (the metric, the
// outcome record's drift, the log line) when the call's path holds the
// scope's listing anyway (a sync, an operation): the broker never asks
// GitHub for it on such a caller's behalf.
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
		// listed: the call lists the scope before it writes, whoever its
		// caller (a sync's plan, an operation's executor); a put, or a
		// batch without an item that may be unchanged, does not.
		listed bool
		call   func(ctx context.Context, t *testing.T, h *harness) writeAnswer
	}{
		{"PutSecret", true, false, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.PutSecret(ctx, plain(secret, right))
			if err != nil {
				t.Fatal(err)
			}
			return writeAnswer{unchanged: resp.GetUnchanged(), drift: resp.GetDrift()}
		}},
		{"BatchPutSecrets", true, false, false, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
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
		{"BatchPutSecrets async", true, true, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(secret, right)}})
			if err != nil {
				t.Fatal(err)
			}
			return opAnswer(ctx, t, h, resp.GetOperation())
		}},
		{"SyncSecrets", true, false, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.SyncSecrets(ctx, syncOf(false, false))
			if err != nil {
				t.Fatal(err)
			}
			return syncAnswer(t, resp)
		}},
		{"SyncSecrets dry run", false, false, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
			resp, err := h.broker.SyncSecrets(ctx, syncOf(true, false))
			if err != nil {
				t.Fatal(err)
			}
			return syncAnswer(t, resp)
		}},
		{"SyncSecrets async", true, true, true, func(ctx context.Context, t *testing.T, h *harness) writeAnswer {
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
			// sent is what the call sent GitHub, the secret not drifted
			// (the drifted=false case runs first).
			var sent []upstreamCall
			for _, drifted := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/drifted=%t", c.name, who.caller, drifted), func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						var trail syncBuffer
						reader := sdkmetric.NewManualReader()
						h := newHarness(t, harnessOpts{authz: mustPolicy(t), audit: audit.NewWriter(&trail, nil),
							meters: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
						closeOps(t, h.server)
						if _, err := h.broker.PutSecret(as(t.Context(), "token:admin"), plain(secret, right)); err != nil {
							t.Fatal(err)
						}
						if drifted {
							behindBack(t, h, secret)
						}
						h.emu.ResetCounts()
						before := len(h.upstream.calls(""))
						got := c.call(as(t.Context(), who.caller), t, h)
						calls := h.upstream.calls("")[before:]
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
						// What the operators are told: the drift, when
						// seen without asking for it.
						wantDrifts := 0
						if drifted && c.write && (who.read || c.listed) {
							wantDrifts = 1
						}
						if n := driftsCounted(t, reader); n != wantDrifts {
							t.Errorf("secretbroker_drift_detected_total %d, want %d", n, wantDrifts)
						}
						if n := driftRecords(t, trail.String()); n != wantDrifts {
							t.Errorf("%d outcome records with drift, want %d:\n%s", n, wantDrifts, trail.String())
						}
						if logged := strings.Contains(h.logs.String(), "behind the broker's back"); logged != (wantDrifts == 1) {
							t.Errorf("drift logged %t, want %t", logged, wantDrifts == 1)
						}
						// What GitHub is sent, and when: the same, drift
						// or not, for a caller that may not read.
						switch {
						case !drifted:
							sent = calls
						case who.read:
						case sent == nil:
							t.Log("the drifted=false case did not run: the requests are not compared")
						case !slices.Equal(calls, sent):
							t.Errorf("requests with drift %v, want those without %v", calls, sent)
						}
						wantStored(t, h, secret, right)
					})
				})
			}
		}
	}
}

// driftsCounted is the sum of secretbroker_drift_detected_total's series.
func driftsCounted(t *testing.T, reader *sdkmetric.ManualReader) int {
	t.Helper()
	n := 0.0
	for k, v := range metricstest.Read(t, reader) {
		if strings.HasPrefix(k, "secretbroker_drift_detected_total{") {
			n += v
		}
	}
	return int(n)
}

// driftRecords is how many records of the audit trail trail (JSON lines)
// say drift.
func driftRecords(t *testing.T, trail string) int {
	t.Helper()
	n := 0
	for line := range strings.Lines(strings.TrimSpace(trail)) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Drift {
			n++
		}
	}
	return n
}

// TestWriteOnlyItemRepeatedAfterCrash: an operation item of a caller that
// may write a secret but not read it, which GitHub wrote before a crash
// kept its result from being stored, reports its own write after the
// resume (created), and is not written again: its record is the item's
// own write of the value it sends (ownWrite), so comparing it tells the
// caller nothing. The secret written behind the broker's back meanwhile
// is written again, answered neither drift nor otherwise than when it was
// not (created, as the item's write was): the answer does not tell the
// caller the secret changed; the operators are (the drift log line).
func TestWriteOnlyItemRepeatedAfterCrash(t *testing.T) {
	const value = "hunter2-" + plantedSecret
	secret := repoScope + "/secrets/DB_PASSWORD"
	batch := func(ctx context.Context, t *testing.T, h *harness) string {
		resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true,
			Requests: []*secretbrokerv1.PutSecretRequest{plain(secret, value)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOperation().GetName()
	}
	sync := func(ctx context.Context, t *testing.T, h *harness) string {
		req := syncReq(repoScope, "token:admin", map[string]string{"DB_PASSWORD": value})
		req.Async = true
		resp, err := h.broker.SyncSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOperation().GetName()
	}
	tests := []struct {
		name     string
		start    func(ctx context.Context, t *testing.T, h *harness) string
		drifted  bool // written behind the broker's back between the crash and the resume
		want     string
		wantPuts int
	}{
		{"batch", batch, false, "DB_PASSWORD OK created", 1},
		{"sync", sync, false, "DB_PASSWORD CREATE OK", 1},
		{"batch, drifted meanwhile", batch, true, "DB_PASSWORD OK created", 2},
		{"sync, drifted meanwhile", sync, true, "DB_PASSWORD CREATE OK", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				inner, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				crashing := &crashingStore{Store: inner, crashOn: "/secrets/DB_PASSWORD"}
				policy := mustPolicy(t)
				h := newHarness(t, harnessOpts{state: crashing, authz: policy, ops: OperationOptions{FlushEvery: 1}})
				closeOps(t, h.server)
				ctx := as(t.Context(), "token:rotator")
				name := tt.start(ctx, t, h)
				time.Sleep(5 * time.Second)
				synctest.Wait()
				if !crashing.crashed.Load() {
					t.Fatal("DB_PASSWORD did not run")
				}
				if tt.drifted {
					behindBack(t, h, secret)
				}
				time.Sleep(operation.DefaultLease + time.Second)
				s2 := New(h.client, Options{State: inner, Authorizer: policy, Logger: newTestLogger(h.logs)})
				t.Cleanup(func() { _ = s2.CloseOperations(context.Background()) })
				if n, err := s2.ResumeOperations(t.Context()); err != nil || n != 1 {
					t.Fatalf("ResumeOperations = %d, %v; want 1", n, err)
				}
				// s2 is called directly, not through the harness's gRPC
				// interceptor: the caller goes in the context.
				done, err := s2.WaitOperation(identity.WithCaller(t.Context(), "token:rotator"), &secretbrokerv1.WaitOperationRequest{Name: name})
				if err != nil || !done.GetDone() {
					t.Fatalf("resumed: %v %v; want done", done, err)
				}
				got := batchResultsOf(t, done)
				if sr := done.GetResponse().GetSyncResults(); len(sr) > 0 {
					got = nil
					for n, r := range syncResultsOf(t, done) {
						got = append(got, n+" "+r)
					}
				}
				if !slices.Equal(got, []string{tt.want}) {
					t.Errorf("results after the resume %v, want [%s]", got, tt.want)
				}
				if m := done.GetMetadata(); m.GetWritten() != 1 || m.GetUnchanged() != 0 {
					t.Errorf("metadata %v, want written 1, unchanged 0", m)
				}
				for _, r := range done.GetResponse().GetBatchPutResults() {
					if r.GetDrift() {
						t.Error("a write-only caller's item answered drift")
					}
				}
				for _, r := range done.GetResponse().GetSyncResults() {
					if r.GetDrift() {
						t.Error("a write-only caller's item answered drift")
					}
				}
				if n := puts(h); n != tt.wantPuts {
					t.Errorf("%d PUTs, want %d", n, tt.wantPuts)
				}
				// The operators are told the drift the caller is not.
				if logged := strings.Contains(h.logs.String(), "behind the broker's back"); logged != tt.drifted {
					t.Errorf("drift logged %t, want %t", logged, tt.drifted)
				}
				wantStored(t, h, secret, value)
			})
		})
	}
}
