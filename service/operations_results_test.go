package service

import (
	"path"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// opResult is one result of an operation, or of a synchronous call, as
// these tests compare them.
type opResult struct {
	name    string
	code    code.Code
	message string
	retry   time.Duration
}

// opResultsOf returns an operation's results, of either kind, in the
// order it shows them.
func opResultsOf(op *secretbrokerv1.Operation) []opResult {
	var out []opResult
	for _, r := range op.GetResponse().GetBatchPutResults() {
		out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
	}
	for _, r := range op.GetResponse().GetSyncResults() {
		out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
	}
	return out
}

// TestCancelledOperationResultsEveryItem: a cancelled operation ends with
// one result per item: the items it never ran are CANCELLED, "not run",
// after the ones it finished (a batch's in the order sent, a sync's by
// name), and they count as remaining, not as failed. They had no result.
// A batch names them as sent, as its other failed items (nr_d), a sync as
// stored.
func TestCancelledOperationResultsEveryItem(t *testing.T) {
	names := []string{"NR_A", "NR_B", "NR_C", "nr_d"}
	for _, kind := range []string{"batch", "sync"} {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pacing := upstream.DefaultPacing()
				pacing.WriteInterval = 100 * time.Second
				h := newHarness(t, harnessOpts{pacing: &pacing, ops: OperationOptions{FlushEvery: 1}})
				closeOps(t, h.server)
				ctx := t.Context()
				var op *secretbrokerv1.Operation
				switch kind {
				case "batch":
					req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
					for _, n := range names {
						req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret))
					}
					resp, err := h.broker.BatchPutSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					op = resp.GetOperation()
				case "sync":
					secrets := map[string]string{}
					for _, n := range names {
						secrets[n] = plantedSecret
					}
					req := syncReq(repoScope, "ops", secrets)
					req.Async = true
					resp, err := h.broker.SyncSecrets(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					op = resp.GetOperation()
				}
				time.Sleep(150 * time.Second) // NR_A written at 0 s, NR_B at 100 s
				if _, err := h.broker.CancelOperation(ctx, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); err != nil {
					t.Fatal(err)
				}
				done := waitOp(ctx, t, h.broker, op.GetName(), 0)
				got := opResultsOf(done)
				if len(got) != len(names) {
					t.Fatalf("%d results %v, want one per item (%d)", len(got), got, len(names))
				}
				for i, r := range got {
					want := opResult{name: repoScope + "/secrets/" + strings.ToUpper(names[i]), code: code.Code_OK}
					if i >= 2 {
						want.code, want.message = code.Code_CANCELLED, "not run: the operation was cancelled"
						if kind == "batch" {
							want.name = repoScope + "/secrets/" + names[i]
						}
					}
					if r != want {
						t.Errorf("result %d: %+v, want %+v", i, r, want)
					}
				}
				if m := done.GetMetadata(); m.GetWritten() != 2 || m.GetFailed() != 0 || m.GetRemaining() != 2 || m.GetTotal() != 4 {
					t.Errorf("metadata %v: want 2 written, 0 failed, 2 remaining (not run)", m)
				}
				if puts(h) != 2 {
					t.Errorf("%d PUTs, want the 2 before the cancel", puts(h))
				}
			})
		})
	}
}

// TestAsyncResultRetryAfter: an operation's item that fails with
// UNAVAILABLE (GitHub refused the broker's credentials) carries the
// retry_after the synchronous answer to the same item carries, whether it
// failed as it ran or was refused when the operation was accepted. It had
// none.
func TestAsyncResultRetryAfter(t *testing.T) {
	const secret = "RETRY_A"
	// batch returns the results of a batch of item, answered at once, or
	// of its operation when async.
	batch := func(t *testing.T, h *harness, item *secretbrokerv1.PutSecretRequest, async bool) []opResult {
		resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: async, Requests: []*secretbrokerv1.PutSecretRequest{item}})
		if err != nil {
			t.Fatal(err)
		}
		if async {
			return opResultsOf(waitOp(t.Context(), t, h.broker, resp.GetOperation().GetName(), 0))
		}
		var out []opResult
		for _, r := range resp.GetResults() {
			out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		route string // the route GitHub answers 401 on
		scope string
		run   func(t *testing.T, h *harness, async bool) []opResult
	}{
		{"batch item", emulator.RoutePutRepoSecret, repoScope, func(t *testing.T, h *harness, async bool) []opResult {
			return batch(t, h, plain(repoScope+"/secrets/"+secret, plantedSecret), async)
		}},
		{"batch item refused when accepted", emulator.RouteGetRepo, orgScope, func(t *testing.T, h *harness, async bool) []opResult {
			item := orgPut(orgScope+"/secrets/"+secret, plantedSecret, "selected")
			item.SelectedRepositories = []string{"hello-world"} // its ID is looked up as the batch is accepted
			return batch(t, h, item, async)
		}},
		{"sync item", emulator.RoutePutRepoSecret, repoScope, func(t *testing.T, h *harness, async bool) []opResult {
			req := syncReq(repoScope, "ops", map[string]string{secret: plantedSecret})
			req.Async = async
			resp, err := h.broker.SyncSecrets(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if async {
				return opResultsOf(waitOp(t.Context(), t, h.broker, resp.GetOperation().GetName(), 0))
			}
			var out []opResult
			for _, r := range resp.GetResults() {
				out = append(out, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				h.emu.InjectFault(emulator.Fault{Route: tc.route, Status: 401, Times: 100})
				for _, async := range []bool{false, true} {
					got := tc.run(t, h, async)
					if len(got) != 1 || got[0].name != tc.scope+"/secrets/"+secret || got[0].code != code.Code_UNAVAILABLE || got[0].retry != retryCredentials {
						t.Errorf("async %v: results %+v, want %s UNAVAILABLE with retry_after %v", async, got, secret, retryCredentials)
					}
				}
			})
		})
	}
}

// TestAsyncResultRetryAfterCountsDown: an operation's item result's
// retry_after is the time still to wait when the operation is read, by
// GetOperation or ListOperations, and is left out once that time has
// passed. It was the delay measured from when the item failed, so that a
// caller reading the operation a minute later was told to wait a minute
// that had already passed.
func TestAsyncResultRetryAfterCountsDown(t *testing.T) {
	const secret = "RETRY_A"
	for _, tc := range []struct {
		name  string
		route string // the route GitHub answers 401 on
		start func(t *testing.T, h *harness) string
	}{
		{"batch item", emulator.RoutePutRepoSecret, func(t *testing.T, h *harness) string {
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(repoScope+"/secrets/"+secret, plantedSecret)}})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOperation().GetName()
		}},
		{"batch item refused when accepted", emulator.RouteGetRepo, func(t *testing.T, h *harness) string {
			item := orgPut(orgScope+"/secrets/"+secret, plantedSecret, "selected")
			item.SelectedRepositories = []string{"hello-world"} // its ID is looked up as the batch is accepted
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{item}})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOperation().GetName()
		}},
		{"sync item", emulator.RoutePutRepoSecret, func(t *testing.T, h *harness) string {
			req := syncReq(repoScope, "ops", map[string]string{secret: plantedSecret})
			req.Async = true
			resp, err := h.broker.SyncSecrets(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetOperation().GetName()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				h.emu.InjectFault(emulator.Fault{Route: tc.route, Status: 401, Times: 100})
				name := tc.start(t, h)
				waitOp(t.Context(), t, h.broker, name, 0)
				// read returns the item's retry_after as GetOperation and
				// ListOperations show it now, which must agree.
				read := func() (time.Duration, bool) {
					t.Helper()
					op, err := h.broker.GetOperation(t.Context(), &secretbrokerv1.GetOperationRequest{Name: name})
					if err != nil {
						t.Fatal(err)
					}
					list, err := h.broker.ListOperations(t.Context(), &secretbrokerv1.ListOperationsRequest{})
					if err != nil {
						t.Fatal(err)
					}
					if len(list.GetOperations()) != 1 {
						t.Fatalf("ListOperations: %d operations, want 1", len(list.GetOperations()))
					}
					got, listed := opResultsOf(op), opResultsOf(list.GetOperations()[0])
					if len(got) != 1 || got[0].code != code.Code_UNAVAILABLE || len(listed) != 1 || listed[0] != got[0] {
						t.Fatalf("results %+v, listed %+v; want one UNAVAILABLE, the same in both", got, listed)
					}
					var has bool
					for _, r := range op.GetResponse().GetBatchPutResults() {
						has = r.GetRetryAfter() != nil
					}
					for _, r := range op.GetResponse().GetSyncResults() {
						has = r.GetRetryAfter() != nil
					}
					return got[0].retry, has
				}
				first, ok := read()
				if !ok || first <= 40*time.Second || first > retryCredentials {
					t.Fatalf("retry_after %v (set: %v) once done, want more than 40s and at most %v", first, ok, retryCredentials)
				}
				time.Sleep(40 * time.Second)
				if got, ok := read(); !ok || got != first-40*time.Second {
					t.Errorf("retry_after %v (set: %v) 40s later, want %v", got, ok, first-40*time.Second)
				}
				time.Sleep(first - 40*time.Second)
				if got, ok := read(); ok {
					t.Errorf("retry_after %v once it has passed, want none", got)
				}
			})
		})
	}
}

// TestAsyncBatchNamesItemsAsSync: an async batch names its items as the
// synchronous batch does: a written item as stored (upper-cased), a failed
// one as sent. Its failed items carried the name as stored.
func TestAsyncBatchNamesItemsAsSync(t *testing.T) {
	items := []string{repoScope + "/secrets/lower_fail", repoScope + "/secrets/lower_ok"}
	run := func(t *testing.T, async bool) []opResult {
		var got []opResult
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			closeOps(t, h.server)
			ctx := t.Context()
			// The first PUT to arrive is refused.
			h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Status: 422})
			req := &secretbrokerv1.BatchPutSecretsRequest{Async: async}
			for _, n := range items {
				req.Requests = append(req.Requests, plain(n, plantedSecret))
			}
			resp, err := h.broker.BatchPutSecrets(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if async {
				got = opResultsOf(waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0))
				return
			}
			for _, r := range resp.GetResults() {
				got = append(got, opResult{r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration()})
			}
		})
		return got
	}
	var sync, async []opResult
	t.Run("call", func(t *testing.T) { sync = run(t, false) })
	t.Run("async", func(t *testing.T) { async = run(t, true) })
	// The items run concurrently: either may be the one refused. Whichever
	// it is, it is named as sent, and the other as stored (upper case).
	for _, tc := range []struct {
		what string
		got  []opResult
	}{{"synchronous batch", sync}, {"async batch", async}} {
		var got []string
		failed := 0
		for _, r := range tc.got {
			got = append(got, r.name+" "+r.code.String())
		}
		for _, r := range tc.got {
			sent := slices.IndexFunc(items, func(n string) bool { return strings.EqualFold(n, r.name) })
			switch {
			case sent < 0:
				t.Errorf("%s: result %q names no item sent (results %v)", tc.what, r.name, got)
			case r.code == code.Code_INVALID_ARGUMENT:
				failed++
				if r.name != items[sent] {
					t.Errorf("%s: the refused item is named %q, want %q as sent (results %v)", tc.what, r.name, items[sent], got)
				}
			case r.code == code.Code_OK:
				if stored := repoScope + "/secrets/" + strings.ToUpper(path.Base(items[sent])); r.name != stored {
					t.Errorf("%s: the written item is named %q, want %q as stored (results %v)", tc.what, r.name, stored, got)
				}
			default:
				t.Errorf("%s: result %v, want INVALID_ARGUMENT or OK (results %v)", tc.what, r.code, got)
			}
		}
		if len(tc.got) != len(items) || failed != 1 {
			t.Errorf("%s: results %v, want one refused and one written of %v", tc.what, got, items)
		}
	}
}
