package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc/codes"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/metricstest"
)

// Policies the reauthorization tests swap in while an operation runs.
const (
	// revokedPolicy grants token:staging nothing.
	revokedPolicy = `
rules:
  - callers: ["token:admin"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`
	// noDeletePolicy lets token:staging read and write its environment's
	// secrets but no longer delete them.
	noDeletePolicy = `
rules:
  - callers: ["token:staging"]
    verbs: [read, write]
    resources: ["repos/octo-org/hello-world/environments/staging/secrets/*"]
`
)

// swapAuthorizer is an Authorizer whose policy can be replaced while the
// server runs, as access.Watcher's is when the policy file changes.
type swapAuthorizer struct{ p atomic.Pointer[access.Policy] }

func newSwapAuthorizer(p *access.Policy) *swapAuthorizer {
	a := &swapAuthorizer{}
	a.p.Store(p)
	return a
}

func (a *swapAuthorizer) Allow(caller, verb, resource string) bool {
	return a.p.Load().Allow(caller, verb, resource)
}

func (a *swapAuthorizer) AllowSome(caller, verb, scope string) bool {
	return a.p.Load().AllowSome(caller, verb, scope)
}

func (a *swapAuthorizer) AllowEvery(caller, verb, scope string) bool {
	return a.p.Load().AllowEvery(caller, verb, scope)
}

func parsePolicy(t *testing.T, text string) *access.Policy {
	t.Helper()
	p, err := access.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// putHook is an Upstream that calls at (once) right after its atN-th
// successful write returns, before the item that wrote it finishes: the
// next item of an operation starts after it.
type putHook struct {
	Upstream
	mu  sync.Mutex
	n   int
	atN int // 0: never
	at  func()
}

func (u *putHook) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w, err := u.Upstream.PutSecretFunc(ctx, s, name, body)
	if err != nil {
		return w, err
	}
	u.mu.Lock()
	u.n++
	fire := u.n == u.atN
	u.mu.Unlock()
	if fire {
		u.at()
	}
	return w, err
}

// arm makes at run after the n-th write from now.
func (u *putHook) arm(n int, at func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.atN, u.at = u.n+n, at
}

// newReauthHarness is newHarness with an authorizer, an audit trail, a
// metrics reader and a putHook around the upstream client.
func newReauthHarness(t *testing.T, authz Authorizer, trail *syncBuffer, reader *sdkmetric.ManualReader) (*harness, *putHook) {
	t.Helper()
	mustBeInBubble(t)
	logs := &syncBuffer{}
	logger := newTestLogger(logs)
	emu := emulator.New(emulator.Options{Token: testToken, Logger: logger})
	demo := emu.SeedDemo()
	tr := newEmulatorTransport(emu)
	client, err := upstream.New(upstream.Config{
		BaseURL:    emulatorURL,
		Token:      upstream.Token(testToken),
		HTTPClient: &http.Client{Transport: tr},
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hook := &putHook{Upstream: client}
	h := newHarnessWith(t, hook, logs, Options{
		Logger: logger, Authorizer: authz, Audit: audit.NewWriter(trail, nil), State: st,
		Operations:    OperationOptions{FlushEvery: 1},
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	h.emu, h.demo, h.upstream, h.client = emu, demo, tr, client
	closeOps(t, h.server)
	return h, hook
}

// deniedIn returns the resources (last segment) of trail's
// PERMISSION_DENIED outcome records of rpc, checking that each names
// caller and that the trail holds no planted value.
func deniedIn(t *testing.T, trail *syncBuffer, rpc, caller string) []string {
	t.Helper()
	if strings.Contains(trail.String(), plantedSecret) {
		t.Error("the audit trail holds a value")
	}
	var out []string
	for line := range strings.Lines(trail.String()) {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.RPC != rpc || r.Phase != audit.PhaseOutcome || r.Outcome != codeName(codes.PermissionDenied) {
			continue
		}
		if r.Caller != caller || r.UpstreamStatus != 0 {
			t.Errorf("denial record %+v: want %s's, nothing upstream", r, caller)
		}
		_, name, _ := strings.Cut(r.Resource, "/secrets/")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// TestOperationReauthorized: an operation's items are authorized again as
// they run, with the policy as it is then. When the caller loses write
// (or delete) access after two writes, its remaining items fail with
// PERMISSION_DENIED, audited under its name and counted as denials, and
// nothing more reaches GitHub for them; it still sees its own operation.
// A caller whose access is unchanged (the same policy loaded again) is
// unaffected.
func TestOperationReauthorized(t *testing.T) {
	const (
		pruned = "ZOLD" // the prune item: runs last (sync items run in name order)
		owner  = "ops"
	)
	names := []string{"S1", "S2", "S3", "S4", "S5"}
	for _, tc := range []struct {
		name   string
		sync   bool   // an async SyncSecrets with prune (else an async BatchPutSecrets)
		policy string // loaded after the second write
		// want: each item's result, "NAME [ACTION ]CODE".
		want                     []string
		puts, deletes            int
		deniedWrites, deniedDels int
		direct                   codes.Code // a PutSecret of the caller's after the operation
	}{
		{
			name: "batch, write revoked", policy: revokedPolicy,
			want:         []string{"S1 OK", "S2 OK", "S3 PERMISSION_DENIED", "S4 PERMISSION_DENIED", "S5 PERMISSION_DENIED"},
			puts:         2,
			deniedWrites: 3, direct: codes.PermissionDenied,
		},
		{
			name: "batch, access unchanged", policy: testPolicy,
			want: []string{"S1 OK", "S2 OK", "S3 OK", "S4 OK", "S5 OK"},
			puts: 5, direct: codes.OK,
		},
		{
			name: "sync, everything revoked", sync: true, policy: revokedPolicy,
			want: []string{"S1 CREATE OK", "S2 CREATE OK", "S3 UNSPECIFIED PERMISSION_DENIED", "S4 UNSPECIFIED PERMISSION_DENIED",
				"S5 UNSPECIFIED PERMISSION_DENIED", pruned + " UNSPECIFIED PERMISSION_DENIED"},
			puts:         2,
			deniedWrites: 3, deniedDels: 1, direct: codes.PermissionDenied,
		},
		{
			name: "sync, delete revoked", sync: true, policy: noDeletePolicy,
			want: []string{"S1 CREATE OK", "S2 CREATE OK", "S3 CREATE OK", "S4 CREATE OK", "S5 CREATE OK",
				pruned + " UNSPECIFIED PERMISSION_DENIED"},
			puts:       5,
			deniedDels: 1, direct: codes.OK,
		},
		{
			name: "sync, access unchanged", sync: true, policy: testPolicy,
			want: []string{"S1 CREATE OK", "S2 CREATE OK", "S3 CREATE OK", "S4 CREATE OK", "S5 CREATE OK",
				pruned + " DELETE OK"},
			puts: 5, deletes: 1, direct: codes.OK,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				authz := newSwapAuthorizer(mustPolicy(t))
				var trail syncBuffer
				reader := sdkmetric.NewManualReader()
				h, hook := newReauthHarness(t, authz, &trail, reader)
				staging := as(t.Context(), "token:staging")
				values := map[string]string{}
				for i, n := range names {
					values[n] = fmt.Sprintf("%s-%d", plantedSecret, i)
				}
				rpc := rpcBatchPut
				if tc.sync {
					rpc = rpcSyncSecrets
					// The owner's secret the operation prunes.
					if _, err := h.broker.SyncSecrets(staging, syncReq(stagingEnv, owner, map[string]string{pruned: plantedSecret})); err != nil {
						t.Fatal(err)
					}
				}
				synctest.Wait()
				h.emu.ResetCounts()
				trail.mu.Lock()
				trail.buf.Reset()
				trail.mu.Unlock()
				before := metricstest.Read(t, reader)
				hook.arm(2, func() { authz.p.Store(parsePolicy(t, tc.policy)) })

				var opName string
				if tc.sync {
					req := syncReq(stagingEnv, owner, values)
					req.Async, req.Prune = true, true
					resp, err := h.broker.SyncSecrets(staging, req)
					if err != nil {
						t.Fatal(err)
					}
					opName = resp.GetOperation().GetName()
				} else {
					req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
					for _, n := range names {
						req.Requests = append(req.Requests, plain(stagingEnv+"/secrets/"+n, values[n]))
					}
					resp, err := h.broker.BatchPutSecrets(staging, req)
					if err != nil {
						t.Fatal(err)
					}
					opName = resp.GetOperation().GetName()
				}
				// The caller still sees its operation, and how it ended.
				done := waitOp(staging, t, h.broker, opName, 0)
				var got []string
				if tc.sync {
					res := syncResultsOf(t, done)
					for _, n := range slices.Sorted(maps.Keys(res)) {
						got = append(got, n+" "+res[n])
					}
				} else {
					for _, r := range batchResultsOf(t, done) {
						got = append(got, strings.TrimSuffix(r, " created"))
					}
				}
				if !done.GetDone() || !slices.Equal(got, tc.want) {
					t.Errorf("results %v (done %v), want %v", got, done.GetDone(), tc.want)
				}
				if m := done.GetMetadata(); int(m.GetFailed()) != tc.deniedWrites+tc.deniedDels {
					t.Errorf("metadata %v: want %d failed", m, tc.deniedWrites+tc.deniedDels)
				}
				if puts(h) != tc.puts || deletes(h) != tc.deletes {
					t.Errorf("%d PUTs and %d DELETEs reached GitHub, want %d and %d", puts(h), deletes(h), tc.puts, tc.deletes)
				}
				for _, n := range names[:tc.puts] {
					wantStored(t, h, stagingEnv+"/secrets/"+n, values[n])
				}
				if tc.sync && tc.deletes == 0 {
					if _, err := h.emu.Open(stagingEnv, pruned); err != nil {
						t.Errorf("%s was deleted (%v) by a caller that may no longer delete it", pruned, err)
					}
				}

				var wantDenied []string
				for _, r := range tc.want {
					if n, ok := strings.CutSuffix(r, "PERMISSION_DENIED"); ok {
						wantDenied = append(wantDenied, strings.Fields(n)[0])
					}
				}
				if got := deniedIn(t, &trail, rpc, "token:staging"); !slices.Equal(got, wantDenied) {
					t.Errorf("audited denials %v, want %v", got, wantDenied)
				}

				after := metricstest.Read(t, reader)
				for _, c := range []struct {
					verb string
					want int
				}{{verbWrite, tc.deniedWrites}, {verbDelete, tc.deniedDels}} {
					k := "secretbroker_authz_decisions_total{decision=deny,verb=" + c.verb + "}"
					if d := after[k] - before[k]; d != float64(c.want) {
						t.Errorf("%s grew by %v, want %d", k, d, c.want)
					}
				}

				// A direct write agrees with the operation's items.
				_, err := h.broker.PutSecret(staging, plain(stagingEnv+"/secrets/DIRECT", plantedSecret))
				if statusCode(err) != tc.direct {
					t.Errorf("PutSecret after the swap: %v, want %v", err, tc.direct)
				}
			})
		})
	}
}

// TestOperationReauthorizedAfterResume: an operation paused by a shutdown
// resumes under the policy as it is at the restart: a caller revoked
// meanwhile gets PERMISSION_DENIED for the remaining items, audited, and
// nothing more is written.
func TestOperationReauthorizedAfterResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 10 * time.Second
		h := newHarness(t, harnessOpts{pacing: &pacing})
		authz := newSwapAuthorizer(mustPolicy(t))
		dir := t.TempDir()
		key := bytes.Repeat([]byte("k"), state.MinKeyLen)
		ctx := identity.WithCaller(t.Context(), "token:staging")
		open := func(trail *syncBuffer) (*state.Bolt, *Server) {
			st, err := state.OpenBolt(dir, state.Options{HMACKey: key})
			if err != nil {
				t.Fatal(err)
			}
			return st, New(h.client, Options{State: st, Logger: newTestLogger(h.logs), Authorizer: authz,
				Audit: audit.NewWriter(trail, nil), Operations: OperationOptions{FlushEvery: 1}})
		}
		var trail1, trail2 syncBuffer
		st1, s1 := open(&trail1)
		_, name, _ := startBatchFor15s(ctx, t, h, s1, stagingEnv, []string{"R0", "R1", "R2", "R3", "R4"})
		if err := s1.CloseOperations(ctx); err != nil { // the item in flight finishes: 3 written
			t.Fatal(err)
		}
		if err := st1.Close(); err != nil {
			t.Fatal(err)
		}
		if puts(h) != 3 {
			t.Fatalf("%d PUTs before the restart, want 3", puts(h))
		}

		authz.p.Store(parsePolicy(t, revokedPolicy))
		st2, s2 := open(&trail2)
		if n, err := s2.ResumeOperations(ctx); err != nil || n != 1 {
			t.Fatalf("ResumeOperations = %d, %v; want 1", n, err)
		}
		done, err := s2.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range done.GetResponse().GetBatchPutResults() {
			_, n, _ := strings.Cut(r.GetName(), "/secrets/")
			got = append(got, n+" "+r.GetCode().String())
		}
		want := []string{"R0 OK", "R1 OK", "R2 OK", "R3 PERMISSION_DENIED", "R4 PERMISSION_DENIED"}
		if !done.GetDone() || !slices.Equal(got, want) {
			t.Errorf("resumed: %v (done %v), want %v", got, done.GetDone(), want)
		}
		if puts(h) != 3 {
			t.Errorf("%d PUTs, want 3: nothing written after the restart", puts(h))
		}
		if got := deniedIn(t, &trail2, rpcBatchPut, "token:staging"); !slices.Equal(got, []string{"R3", "R4"}) {
			t.Errorf("audited denials after the restart %v, want R3 and R4", got)
		}
		if err := s2.CloseOperations(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st2.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
