package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// resultText is everything a sync result tells its caller about a secret.
func resultText(r *secretbrokerv1.SyncSecretsResult) string {
	if r == nil {
		return "<no result>"
	}
	return strings.Join([]string{r.GetAction().String(), r.GetCode().String(), r.GetMessage(),
		"drift=" + map[bool]string{true: "true", false: "false"}[r.GetDrift()],
		"recorded_owner=" + r.GetRecordedOwner(), "key_id=" + r.GetKeyId()}, " | ")
}

// resultFor returns the result naming secret, or nil.
func resultFor(resp *secretbrokerv1.SyncSecretsResponse, secret string) *secretbrokerv1.SyncSecretsResult {
	for _, r := range resp.GetResults() {
		if r.GetName() == secret {
			return r
		}
	}
	return nil
}

// TestSyncNoValueOracle: a sync's answer for a secret the caller may not
// write is the same whatever value it guesses, with or without the owner
// label of the secret's writer, dry run or not, and writes nothing; a
// caller allowed to write still gets UNCHANGED for the value written.
func TestSyncNoValueOracle(t *testing.T) {
	const right = "hunter2-" + plantedSecret
	guesses := []string{"letmein", right, "password"}
	tests := []struct {
		name   string
		caller string
		secret string // in repoScope, written by the admin with value right
		owner  string
		dryRun bool
		// want is the plan answered for every guess; "" when the answer
		// must tell the right guess (wantRight) from the others (wantWrong).
		want, wantRight, wantWrong string
	}{
		{name: "unreadable, dry run, writer's label", caller: "token:pay", secret: "DB_PASSWORD", owner: "token:admin", dryRun: true,
			want: "UNSPECIFIED PERMISSION_DENIED"},
		{name: "unreadable, dry run, no label", caller: "token:pay", secret: "DB_PASSWORD", dryRun: true,
			want: "UNSPECIFIED PERMISSION_DENIED"},
		{name: "unreadable, run, writer's label", caller: "token:pay", secret: "DB_PASSWORD", owner: "token:admin",
			want: "UNSPECIFIED PERMISSION_DENIED"},
		{name: "readable, dry run, writer's label", caller: "token:pay", secret: "PAY_TOKEN", owner: "token:admin", dryRun: true,
			want: "UPDATE PERMISSION_DENIED"},
		{name: "readable, run, writer's label", caller: "token:pay", secret: "PAY_TOKEN", owner: "token:admin",
			want: "UPDATE PERMISSION_DENIED"},
		// May write but not read: a dry run, which writes nothing and
		// is not audited, must not confirm a guess.
		{name: "write-only, dry run", caller: "token:rotator", secret: "DB_PASSWORD", owner: "token:admin", dryRun: true,
			want: "UPDATE OK"},
		{name: "allowed writer", caller: "token:admin", secret: "DB_PASSWORD", owner: "token:admin", dryRun: true,
			wantRight: "UNCHANGED OK", wantWrong: "UPDATE OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
				secret := repoScope + "/secrets/" + tt.secret
				if _, err := h.broker.PutSecret(as(t.Context(), "token:admin"), plain(secret, right)); err != nil {
					t.Fatal(err)
				}
				h.emu.ResetCounts()
				caller := as(t.Context(), tt.caller)
				answers := map[string]string{}
				for _, guess := range guesses {
					resp, err := h.broker.SyncSecrets(caller, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: tt.owner,
						DryRun: tt.dryRun, Secrets: map[string]string{tt.secret: guess}})
					if err != nil {
						t.Fatal(err)
					}
					r := resultFor(resp, secret)
					answers[guess] = resultText(r)
					plan := planOf(t, resp)[tt.secret]
					want := tt.want
					switch {
					case want != "":
					case guess == right:
						want = tt.wantRight
					default:
						want = tt.wantWrong
					}
					if plan != want {
						t.Errorf("guess %q: %s, want %s", guess, plan, want)
					}
					if tt.want != "" && (r.GetRecordedOwner() != "" || strings.Contains(r.GetMessage(), "token:admin")) {
						t.Errorf("guess %q: the refused item names its owner: %s", guess, answers[guess])
					}
				}
				if tt.want != "" {
					for _, guess := range guesses[1:] {
						if answers[guess] != answers[guesses[0]] {
							t.Errorf("the answer tells guesses apart:\n %q: %s\n %q: %s", guesses[0], answers[guesses[0]], guess, answers[guess])
						}
					}
					if puts(h) != 0 {
						t.Errorf("%d PUTs for a refused item", puts(h))
					}
				}
				wantStored(t, h, secret, right)
			})
		})
	}
}

// TestSyncNamesConfinedToReadSet: whatever owner label, prune or list a
// caller sends, a sync's answer names no secret outside what the caller
// may read, and its refused items name no owner and tell an existing
// secret from a missing one only when the caller may read them.
func TestSyncNamesConfinedToReadSet(t *testing.T) {
	policy := mustPolicy(t)
	tests := []struct {
		name   string
		caller string
		req    *secretbrokerv1.SyncSecretsRequest
		want   map[string]string // planOf
	}{
		{name: "prune dry run under the writer's label", caller: "token:pay",
			req:  &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin", Prune: true, DryRun: true},
			want: map[string]string{"PAY_OLD": "DELETE PERMISSION_DENIED"}},
		{name: "prune run under the writer's label", caller: "token:pay",
			req: &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin", Prune: true,
				ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{}}, // PAY_OLD is refused, not deleted
			want: map[string]string{"PAY_OLD": "DELETE PERMISSION_DENIED"}},
		{name: "prune under another label", caller: "token:pay",
			req:  &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "someone", Prune: true, DryRun: true},
			want: map[string]string{"PAY_OLD": "FOREIGN OK"}},
		{name: "listed names, existing and not", caller: "token:pay",
			req: &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, DryRun: true,
				Secrets: map[string]string{"HIDDEN": "x", "NO_SUCH": "x", "PAY_OLD": "x", "PAY_NEW": "x"}},
			want: map[string]string{"HIDDEN": "UNSPECIFIED PERMISSION_DENIED", "NO_SUCH": "UNSPECIFIED PERMISSION_DENIED",
				"PAY_OLD": "UPDATE PERMISSION_DENIED", "PAY_NEW": "CREATE PERMISSION_DENIED"}},
		{name: "listed names under the writer's label", caller: "token:pay",
			req: &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin", DryRun: true,
				Secrets: map[string]string{"HIDDEN": "x", "NO_SUCH": "x"}},
			want: map[string]string{"HIDDEN": "UNSPECIFIED PERMISSION_DENIED", "NO_SUCH": "UNSPECIFIED PERMISSION_DENIED"}},
		{name: "allowed: prune under the writer's label", caller: "token:admin",
			req:  &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin", Prune: true, DryRun: true},
			want: map[string]string{"PAY_OLD": "DELETE OK", "HIDDEN": "DELETE OK"}},
		{name: "allowed: another owner's name is a conflict", caller: "token:admin",
			req: &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "someone", DryRun: true,
				Secrets: map[string]string{"HIDDEN": "x"}},
			want: map[string]string{"HIDDEN": "CONFLICT FAILED_PRECONDITION", "PAY_OLD": "FOREIGN OK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
				admin := as(t.Context(), "token:admin")
				for _, n := range []string{"PAY_OLD", "HIDDEN"} {
					if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+n, plantedSecret)); err != nil {
						t.Fatal(err)
					}
				}
				h.emu.ResetCounts()
				resp, err := h.broker.SyncSecrets(as(t.Context(), tt.caller), tt.req)
				if err != nil {
					t.Fatal(err)
				}
				wantPlan(t, tt.name, resp, tt.want)
				for _, r := range resp.GetResults() {
					_, name, _ := strings.Cut(r.GetName(), "/secrets/")
					_, listed := tt.req.GetSecrets()[name]
					if !listed && !policy.Allow(tt.caller, verbRead, r.GetName()) {
						t.Errorf("the answer names %s, which %s may not read", r.GetName(), tt.caller)
					}
					if r.GetCode() == 0 || r.GetCode().String() == "FAILED_PRECONDITION" { // OK, or allowed to write it
						continue
					}
					if r.GetRecordedOwner() != "" || strings.Contains(r.GetMessage(), "token:admin") {
						t.Errorf("refused item %s names its owner: %s", name, resultText(r))
					}
				}
				if tt.caller == "token:pay" && puts(h)+deletes(h) != 0 {
					t.Errorf("%d writes for a caller who may write nothing", puts(h)+deletes(h))
				}
				if _, both := tt.req.GetSecrets()["NO_SUCH"]; both {
					if a, b := resultText(resultFor(resp, repoScope+"/secrets/HIDDEN")), resultText(resultFor(resp, repoScope+"/secrets/NO_SUCH")); a != strings.ReplaceAll(b, "NO_SUCH", "HIDDEN") {
						t.Errorf("an existing unreadable name and a missing one answer differently:\n %s\n %s", a, b)
					}
				}
			})
		})
	}
}

// TestSyncPruneKeepsOthersRecords: a prune drops the record of a secret
// gone from GitHub only when the caller may delete that secret, and the
// drop is audited (intent and outcome) under the caller's name.
func TestSyncPruneKeepsOthersRecords(t *testing.T) {
	const gone = repoScope + "/secrets/GONE_LATER"
	tests := []struct {
		name     string
		caller   string
		wantKept bool
	}{
		{name: "caller who may not delete it", caller: "token:pay", wantKept: true},
		{name: "caller who may delete it", caller: "token:admin", wantKept: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st, err := state.NewMemory(state.Options{})
				if err != nil {
					t.Fatal(err)
				}
				var trail syncBuffer
				h := newHarness(t, harnessOpts{authz: mustPolicy(t), state: st, audit: audit.NewWriter(&trail, nil)})
				if _, err := h.broker.PutSecret(as(t.Context(), "token:admin"), plain(gone, plantedSecret)); err != nil {
					t.Fatal(err)
				}
				// Deleted behind the broker's back: only the record is left.
				if err := h.client.DeleteSecret(t.Context(), upstream.Scope{App: upstream.Actions, Owner: "octo-org", Repo: "hello-world"}, "GONE_LATER"); err != nil {
					t.Fatal(err)
				}
				before := len(trail.String())
				if _, err := h.broker.SyncSecrets(as(t.Context(), tt.caller), &secretbrokerv1.SyncSecretsRequest{
					Parent: repoScope, Owner: "token:admin", Prune: true, ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{}}); err != nil {
					t.Fatal(err)
				}
				_, err = st.GetRecord(t.Context(), gone)
				switch {
				case tt.wantKept && err != nil:
					t.Fatalf("the record of another owner's secret is gone after %s's prune: %v", tt.caller, err)
				case !tt.wantKept && !errors.Is(err, state.ErrNotFound):
					t.Fatalf("the record survived a prune allowed to drop it: %v", err)
				}
				phases := map[string]int{}
				for line := range strings.Lines(trail.String()[before:]) {
					var r audit.Record
					if err := json.Unmarshal([]byte(line), &r); err != nil {
						t.Fatal(err)
					}
					if r.Resource != gone {
						continue
					}
					if r.RPC != rpcSyncSecrets || r.Caller != tt.caller {
						t.Errorf("record of the drop %+v: want %s's SyncSecrets", r, tt.caller)
					}
					phases[r.Phase+" "+r.Outcome]++
				}
				want := map[string]int{"intent ": 1, "outcome OK": 1}
				if tt.wantKept {
					want = map[string]int{}
				}
				if len(phases) != len(want) || phases["intent "] != want["intent "] || phases["outcome OK"] != want["outcome OK"] {
					t.Errorf("audit records of %s: %v, want %v", gone, phases, want)
				}
			})
		})
	}
}

// TestGetPublicKeyNeedsWrite: the key exists to seal a value, so a caller
// that may only read in a scope is refused it (and nothing is fetched),
// and one that may write some secret of the scope gets it.
func TestGetPublicKeyNeedsWrite(t *testing.T) {
	tests := []struct {
		caller, parent string
		want           codes.Code
	}{
		{"token:pay", repoScope, codes.PermissionDenied},          // reads PAY_* only
		{"token:pay", orgScope, codes.PermissionDenied},           // reads PAY_* only
		{"token:writer", orgScope, codes.OK},                      // reads and writes organization secrets
		{"token:writer", repoScope, codes.PermissionDenied},       // nothing in the repository
		{"token:staging", stagingEnv, codes.OK},                   // reads, writes and deletes staging
		{"token:admin", repoScope, codes.OK},                      // everything
		{"token:staging", repoScope, codes.PermissionDenied},      // another scope
		{"token:nobody", stagingEnv, codes.PermissionDenied},      // no rule
		{"token:pay", repoScope + "/../x", codes.InvalidArgument}, // malformed first
	}
	for _, tt := range tests {
		t.Run(tt.caller+" "+tt.parent, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{authz: mustPolicy(t)})
				key, err := h.broker.GetPublicKey(as(t.Context(), tt.caller), &secretbrokerv1.GetPublicKeyRequest{Parent: tt.parent})
				if got := statusCode(err); got != tt.want {
					t.Fatalf("GetPublicKey: %v (%v), want %v", got, err, tt.want)
				}
				if tt.want == codes.OK && (key.GetKey() == "" || key.GetKeyId() == "") {
					t.Errorf("key %v: want the scope's key", key)
				}
				if tt.want != codes.OK && h.emu.TotalRequests() != 0 {
					t.Errorf("%d requests upstream for a refused key", h.emu.TotalRequests())
				}
			})
		})
	}
}

// TestAsyncSyncPlanConfirmsNoGuess: an async sync's plan is answered at
// once, and its caller may cancel the operation before any item runs. A
// caller that may write a secret but not read it must learn nothing of a
// guessed value from that plan (no UNCHANGED among the first results, the
// item pending as for any other guess), or it could guess again and again
// and cancel each time, with nothing ever written.
func TestAsyncSyncPlanConfirmsNoGuess(t *testing.T) {
	const right = "hunter2-" + plantedSecret
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), ops: OperationOptions{MaxRunning: 1}})
		closeOps(t, h.server)
		admin, rotator := as(t.Context(), "token:admin"), as(t.Context(), "token:rotator")
		secret := repoScope + "/secrets/DB_PASSWORD"
		if _, err := h.broker.PutSecret(admin, plain(secret, right)); err != nil {
			t.Fatal(err)
		}
		// The one running operation: the admin's long batch.
		busy := batchOf(repoScope, "BUSY", 50)
		busy.Async = true
		if _, err := h.broker.BatchPutSecrets(admin, busy); err != nil {
			t.Fatal(err)
		}
		answers := map[string]string{}
		for _, guess := range []string{"letmein", right, "password"} {
			resp, err := h.broker.SyncSecrets(rotator, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "token:admin",
				Async: true, Secrets: map[string]string{"DB_PASSWORD": guess}})
			if err != nil {
				t.Fatal(err)
			}
			op, err := h.broker.GetOperation(rotator, &secretbrokerv1.GetOperationRequest{Name: resp.GetOperation().GetName()})
			if err != nil {
				t.Fatal(err)
			}
			m := op.GetMetadata()
			answers[guess] = fmt.Sprintf("done=%t unchanged=%d remaining=%d results=%d", op.GetDone(), m.GetUnchanged(), m.GetRemaining(),
				len(op.GetResponse().GetSyncResults()))
			for _, r := range op.GetResponse().GetSyncResults() {
				answers[guess] += " " + resultText(r)
			}
			if _, err := h.broker.CancelOperation(rotator, &secretbrokerv1.CancelOperationRequest{Name: op.GetName()}); err != nil {
				t.Fatal(err)
			}
		}
		want := "done=false unchanged=0 remaining=1 results=0"
		for guess, got := range answers {
			if got != want {
				t.Errorf("guess %q: the accepted operation says %s, want %s", guess, got, want)
			}
		}
		wantStored(t, h, secret, right)
	})
}
