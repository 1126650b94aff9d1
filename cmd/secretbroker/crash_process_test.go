package main

// One broker process with its state in a file (--state-dir) is killed
// (SIGKILL) during an async BatchPutSecrets and an async SyncSecrets,
// while the emulator holds one item's PUT (before GitHub has it, or after
// GitHub accepted it, its answer lost), and a new process is started on
// the same directory. The operations were acknowledged (their start), so
// the new process must carry them to the end: every item's value at the
// emulator, one result per item agreeing with it, and no item written
// twice but one in flight at the kill. The rig is
// replicas_process_test.go's, without Redis: the emulator in the test
// process as upstream, putHold holding the PUT.
//
// The new process holds the file's lock, so it takes the operation over
// at its start (it resumes before it serves) instead of waiting for the
// dead process's lease to end. Nothing here asserts a duration: how long
// the new process took to resume the operation is logged.

import (
	"context"
	"crypto/rand"
	"fmt"
	"iter"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// crashScenarioTimeout bounds the scenario, both brokers' starts
// included.
const crashScenarioTimeout = 2 * time.Minute

// crashRig is the scenario's world: an emulator behind a putRecorder and
// the arguments of a broker on one --state-dir.
type crashRig struct {
	bin  string
	args []string
	emu  *emulator.Server
	rec  *putRecorder
}

func newCrashRig(t *testing.T, bin string, hold *putHold) *crashRig {
	t.Helper()
	token := "ghp_" + rand.Text()
	rig := &crashRig{bin: bin}
	rig.emu = emulator.New(emulator.Options{Token: token, Limits: emulator.GitHubLimits()})
	rig.emu.SeedDemo()
	rig.rec = newPutRecorder(rig.emu, hold)
	srv := httptest.NewServer(rig.rec) // 127.0.0.1
	t.Cleanup(srv.Close)
	t.Cleanup(hold.free) // before srv.Close, which waits for the held PUT

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "github-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "state-key")
	if err := os.WriteFile(keyFile, []byte(rand.Text()+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rig.args = append(pacedProcArgs(srv.URL, tokenFile), "--state-dir="+stateDir, "--state-hmac-key-file="+keyFile)
	return rig
}

// start starts a broker on the rig's --state-dir and returns it with a
// client.
func (rig *crashRig) start(t *testing.T, name string) (*procBroker, secretbrokerv1.SecretServiceClient) {
	t.Helper()
	b := startProcBroker(t, name, rig.bin, rig.args...)
	conn, err := grpc.NewClient("passthrough:///"+b.addrs.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return b, secretbrokerv1.NewSecretServiceClient(conn)
}

// waitWritten asks for operation name every procPollInterval until it
// has recorded written items (or is done), and fails t when ctx ends
// first.
func waitWritten(ctx context.Context, t *testing.T, c secretbrokerv1.SecretServiceClient, name string, written int) {
	t.Helper()
	tick := time.NewTicker(procPollInterval)
	defer tick.Stop()
	var last string
	for {
		op, err := c.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: name})
		if err == nil && (op.GetDone() || int(op.GetMetadata().GetWritten()) >= written) {
			return
		}
		last = fmt.Sprintf("%v %v", op.GetMetadata(), err)
		select {
		case <-ctx.Done():
			t.Fatalf("%s never recorded %d items written; last: %s", name, written, last)
		case <-tick.C:
		}
	}
}

// waitDone waits through WaitOperation (again after each of its
// timeouts, or a failed call, every procPollInterval at most) until
// operation name is done, and fails t when ctx ends first.
func waitDone(ctx context.Context, t *testing.T, c secretbrokerv1.SecretServiceClient, name string) *secretbrokerv1.Operation {
	t.Helper()
	tick := time.NewTicker(procPollInterval)
	defer tick.Stop()
	var last string
	for {
		op, err := c.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: name, Timeout: durationpb.New(5 * time.Second)})
		if err == nil && op.GetDone() {
			return op
		}
		last = fmt.Sprintf("%v %v", op.GetMetadata(), err)
		select {
		case <-ctx.Done():
			t.Fatalf("%s never done; last: %s", name, last)
		case <-tick.C:
		}
	}
}

// resumedBeforeServing reports whether a broker's log (JSON lines) says
// it resumed operations before "secretbroker serving".
func resumedBeforeServing(log string) bool {
	for line := range strings.Lines(log) {
		switch {
		case strings.Contains(line, `"msg":"operations resumed"`):
			return true
		case strings.Contains(line, `"msg":"secretbroker serving"`):
			return false
		}
	}
	return false
}

// crashItems returns n items named prefix_0 ... prefix_<n-1> (upper
// case, as stored) with fresh random values.
func crashItems(prefix string, n int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out[fmt.Sprintf("%s_%d", prefix, i)] = "value-" + rand.Text()
	}
	return out
}

// crashResult is one item's result, whatever the operation's kind.
type crashResult struct {
	name, what string
	code       rpccode.Code
}

// TestCrashResume: SIGKILL a broker on a --state-dir during an async
// batch and an async sync, restart it on the same directory, and check
// that the operations it acknowledged complete without losing or
// repeating a write.
func TestCrashResume(t *testing.T) {
	bin := buildBrokerBinary(t)
	const (
		batchItems = 8
		syncItems  = 8
		killAt     = 4 // the held PUT is the 4th of its operation's
	)
	batchScope, syncScope := replicaScopes()[0], replicaScopes()[1]
	tests := []struct {
		name     string
		scope    string // the held PUT's operation's
		accepted bool   // the held PUT is at GitHub, its answer lost
	}{
		{name: "batch item in flight", scope: batchScope},
		{name: "batch item written, answer lost", scope: batchScope, accepted: true},
		{name: "sync item in flight", scope: syncScope},
		{name: "sync item written, answer lost", scope: syncScope, accepted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), crashScenarioTimeout)
			defer cancel()
			hold := &putHold{path: tt.scope, at: killAt, accepted: tt.accepted, held: make(chan struct{}), release: make(chan struct{})}
			rig := newCrashRig(t, bin, hold)
			first, c := rig.start(t, "broker0")

			batchValues, syncValues := crashItems("CRASH_B", batchItems), crashItems("CRASH_S", syncItems)
			req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
			for i := range batchItems {
				name := fmt.Sprintf("CRASH_B_%d", i)
				req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
					Name:    batchScope + "/secrets/" + name,
					Payload: &secretbrokerv1.PutSecretRequest_Value{Value: batchValues[name]},
				})
			}
			bresp, err := c.BatchPutSecrets(ctx, req)
			if err != nil || !strings.HasPrefix(bresp.GetOperation().GetName(), "operations/") {
				t.Fatalf("async BatchPutSecrets: %v %v, want an operation", bresp, err)
			}
			sresp, err := c.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: syncScope, Secrets: syncValues, Async: true})
			if err != nil || !strings.HasPrefix(sresp.GetOperation().GetName(), "operations/") {
				t.Fatalf("async SyncSecrets: %v %v, want an operation", sresp, err)
			}
			batchOp, syncOp := bresp.GetOperation().GetName(), sresp.GetOperation().GetName()
			held, other := batchOp, syncOp
			if tt.scope == syncScope {
				held, other = syncOp, batchOp
			}
			select {
			case <-hold.held:
			case <-ctx.Done():
				t.Fatalf("PUT %d of %s never arrived", killAt, tt.scope)
			}
			// The held operation's items before the held one are
			// recorded (within a FlushInterval), and the other operation
			// is under way.
			waitWritten(ctx, t, c, held, killAt-1)
			waitWritten(ctx, t, c, other, 2)
			first.kill(t)
			killed := time.Now()
			hold.free()

			restarted := time.Now()
			second, c := rig.start(t, "broker1")
			ready := time.Now()
			// This process holds the file's lock, so the runner that
			// leased the operations is dead: the start-up resume, before
			// it serves, takes them over rather than waiting for that
			// lease to end.
			if !resumedBeforeServing(second.log.text()) {
				t.Errorf("%s did not resume the operations before serving (at start-up):\n%s", second.name, second.log.tail())
			}
			bdone := waitDone(ctx, t, c, batchOp)
			sdone := waitDone(ctx, t, c, syncOp)
			finished := time.Now()

			var bres, sres []crashResult
			for _, r := range bdone.GetResponse().GetBatchPutResults() {
				bres = append(bres, crashResult{name: r.GetName(), code: r.GetCode(), what: r.GetMessage()})
			}
			for _, r := range sdone.GetResponse().GetSyncResults() {
				what := r.GetAction().String()
				if r.GetAction() != secretbrokerv1.SyncAction_SYNC_ACTION_CREATE && r.GetAction() != secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE {
					what += ", want CREATE or UPDATE"
				}
				sres = append(sres, crashResult{name: r.GetName(), code: r.GetCode(), what: what + " " + r.GetMessage()})
			}
			rig.checkOperation(t, "batch", bdone, bres, batchScope, batchValues)
			rig.checkOperation(t, "sync", sdone, sres, syncScope, syncValues)
			if st := rig.emu.Stats(); st.SecondaryViolations != 0 || st.ContentViolations != 0 || st.PrimaryViolations != 0 {
				t.Errorf("the emulator counted violations: secondary %d, content %d, primary %d",
					st.SecondaryViolations, st.ContentViolations, st.PrimaryViolations)
			}

			// One accepted PUT per item, but for an item in flight at the
			// kill: the held one when GitHub had accepted it (its answer
			// lost, the new broker may write it again), and one of the
			// other operation's, whose PUT GitHub may have answered just
			// before the kill.
			perItem := map[string]int{}
			var firstAfter time.Time
			for _, p := range rig.rec.accepted() {
				perItem[p.path[strings.LastIndexByte(p.path, '/')+1:]]++
				if firstAfter.IsZero() && p.at.After(killed) {
					firstAfter = p.at
				}
			}
			heldPrefix, heldItem := "CRASH_B_", fmt.Sprintf("CRASH_B_%d", killAt-1)
			if tt.scope == syncScope {
				heldPrefix, heldItem = "CRASH_S_", fmt.Sprintf("CRASH_S_%d", killAt-1)
			}
			var twice []string
			for name := range mapsAll(batchValues, syncValues) {
				switch n := perItem[name]; {
				case n == 1:
				case n == 2 && name == heldItem && tt.accepted:
					t.Logf("%s, in flight at the kill and already at GitHub, was written again", name)
				case n == 2 && !strings.HasPrefix(name, heldPrefix):
					twice = append(twice, name)
				default:
					t.Errorf("the emulator accepted %d PUTs of %s, want 1", n, name)
				}
			}
			if len(twice) > 1 {
				t.Errorf("the emulator accepted 2 PUTs of each of %v, want 1 (at most one in flight at the kill)", twice)
			} else if len(twice) == 1 {
				t.Logf("%s, whose PUT GitHub answered about when the broker was killed, was written again", twice[0])
			}
			for _, b := range []*procBroker{first, second} {
				text := b.log.text()
				for name, v := range mapsAll(batchValues, syncValues) {
					if strings.Contains(text, v) {
						t.Errorf("%s's log holds the value of %s", b.name, name)
					}
				}
			}
			if firstAfter.IsZero() {
				t.Fatal("no PUT was accepted after the kill")
			}
			t.Logf("killed at PUT %d of the %s; the new broker, started %v after the kill, wrote its first item %v after its start (%v after the kill), served %v after its start, and finished both operations %v after its start",
				killAt, tt.scope, restarted.Sub(killed).Round(time.Millisecond), firstAfter.Sub(restarted).Round(time.Millisecond),
				firstAfter.Sub(killed).Round(time.Millisecond), ready.Sub(restarted).Round(time.Millisecond), finished.Sub(restarted).Round(time.Millisecond))
		})
	}
}

// mapsAll yields the entries of every map in ms.
func mapsAll(ms ...map[string]string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for _, m := range ms {
			for k, v := range m {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// checkOperation fails t unless op (of kind what) ended without an error
// with one OK result per item of values, each at the emulator with its
// value.
func (rig *crashRig) checkOperation(t *testing.T, what string, op *secretbrokerv1.Operation, results []crashResult, scope string, values map[string]string) {
	t.Helper()
	if op.GetError() != nil {
		t.Errorf("the %s ended with an error: %v", what, op.GetError())
	}
	if len(results) != len(values) {
		t.Errorf("the %s has %d results, want %d", what, len(results), len(values))
	}
	seen := map[string]bool{}
	for _, res := range results {
		name := res.name[strings.LastIndexByte(res.name, '/')+1:]
		if _, ok := values[name]; !ok || seen[name] {
			t.Errorf("the %s has a result for %q: not one of its items, or twice", what, res.name)
			continue
		}
		seen[name] = true
		got, oerr := rig.emu.Open(scope, name)
		switch {
		case res.code != rpccode.Code_OK || strings.Contains(res.what, "want"):
			t.Errorf("the %s's result for %s: %v %s, want OK", what, name, res.code, res.what)
		case oerr != nil:
			t.Errorf("%s is OK in the %s's results but not at the emulator: %v", name, what, oerr)
		case string(got) != values[name]:
			t.Errorf("%s is OK in the %s's results but the emulator holds another value", name, what)
		}
	}
}
