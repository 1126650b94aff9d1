package main

// One broker process with its state in a file (--state-dir) is killed
// (SIGKILL) during an async BatchPutSecrets, while the emulator holds one
// item's PUT, and a new process is started on the same directory. The
// operation was acknowledged (its start), so the new process must carry
// it to the end: every item's value at the emulator, one result per item
// agreeing with it, and no item written twice but the one in flight at
// the kill. The rig is replicas_process_test.go's, without Redis: the
// emulator in the test process as upstream, putHold holding the PUT.
//
// The new process holds the file's lock, so it takes the operation over
// at its start (it resumes before it serves) instead of waiting for the
// dead process's lease to end. Nothing here asserts a duration: how long
// the new process took to resume the operation is logged.

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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
	lim := emulator.GitHubLimits()
	rig.args = []string{
		"--upstream-url=" + srv.URL,
		"--upstream-token-file=" + tokenFile,
		"--state-dir=" + stateDir,
		"--state-hmac-key-file=" + keyFile,
		"--allow-unauthenticated",
		"--upstream-write-interval=" + replicaWriteInterval.String(),
		"--upstream-points-per-minute=" + strconv.Itoa(lim.PointsPerMinute),
		"--upstream-writes-per-minute=" + strconv.Itoa(lim.WritesPerMinute),
		"--upstream-writes-per-hour=" + strconv.Itoa(lim.WritesPerHour),
		"--shutdown-timeout=2s",
	}
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
// has recorded written items, and fails t when ctx ends first.
func waitWritten(ctx context.Context, t *testing.T, c secretbrokerv1.SecretServiceClient, name string, written int) {
	t.Helper()
	tick := time.NewTicker(procPollInterval)
	defer tick.Stop()
	var last string
	for {
		op, err := c.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: name})
		if err == nil && int(op.GetMetadata().GetWritten()) >= written {
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

// TestCrashResume: SIGKILL a broker on a --state-dir during an async
// batch, restart it on the same directory, and check that the operation
// it acknowledged completes without losing or repeating a write.
func TestCrashResume(t *testing.T) {
	bin := buildBrokerBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), crashScenarioTimeout)
	defer cancel()
	const (
		items  = 8
		killAt = 4 // the 4th item's PUT is held, and the broker killed while it is
	)
	scope := replicaScopes()[0]
	hold := &putHold{path: scope, at: killAt, held: make(chan struct{}), release: make(chan struct{})}
	rig := newCrashRig(t, bin, hold)

	first, c := rig.start(t, "broker0")
	req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
	values := map[string]string{} // by upper-case name
	for i := range items {
		name := fmt.Sprintf("CRASH_%d", i)
		values[name] = "value-" + rand.Text()
		req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
			Name:    scope + "/secrets/" + name,
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: values[name]},
		})
	}
	resp, err := c.BatchPutSecrets(ctx, req)
	if err != nil || !strings.HasPrefix(resp.GetOperation().GetName(), "operations/") {
		t.Fatalf("async BatchPutSecrets: %v %v, want an operation", resp, err)
	}
	opName := resp.GetOperation().GetName()
	select {
	case <-hold.held:
	case <-ctx.Done():
		t.Fatalf("PUT %d never arrived", killAt)
	}
	// The items before the held one are recorded (within a
	// FlushInterval): the kill must not repeat them.
	waitWritten(ctx, t, c, opName, killAt-1)
	first.kill(t)
	killed := time.Now()
	hold.free()

	second, c := rig.start(t, "broker1")
	ready := time.Now()
	// This process holds the file's lock, so the runner that leased the
	// operation is dead: the start-up resume, before it serves, takes it
	// over rather than waiting for that lease to end.
	if !resumedBeforeServing(second.log.text()) {
		t.Errorf("%s did not resume the operation before serving (at start-up):\n%s", second.name, second.log.tail())
	}
	op := waitDone(ctx, t, c, opName)
	finished := time.Now()

	if op.GetError() != nil {
		t.Errorf("the operation ended with an error: %v", op.GetError())
	}
	results := op.GetResponse().GetBatchPutResults()
	if len(results) != items {
		t.Fatalf("the operation has %d results, want %d", len(results), items)
	}
	for i, res := range results {
		name := fmt.Sprintf("CRASH_%d", i)
		got, oerr := rig.emu.Open(scope, name)
		switch {
		case res.GetName() != name && !strings.HasSuffix(res.GetName(), "/"+name):
			t.Errorf("result %d names %q, want %s", i, res.GetName(), name)
		case res.GetCode() != rpccode.Code_OK:
			t.Errorf("result %d (%s): %v %s, want OK", i, name, res.GetCode(), res.GetMessage())
		case oerr != nil:
			t.Errorf("%s is OK in the results but not at the emulator: %v", name, oerr)
		case string(got) != values[name]:
			t.Errorf("%s is OK in the results but the emulator holds another value", name)
		}
	}
	if st := rig.emu.Stats(); st.SecondaryViolations != 0 || st.ContentViolations != 0 || st.PrimaryViolations != 0 {
		t.Errorf("the emulator counted violations: secondary %d, content %d, primary %d",
			st.SecondaryViolations, st.ContentViolations, st.PrimaryViolations)
	}

	// One accepted PUT per item: the held one was never passed to the
	// emulator, so the item in flight at the kill counts once too.
	perItem := map[string]int{}
	var firstAfter time.Time
	for _, p := range rig.rec.accepted() {
		perItem[p.path[strings.LastIndexByte(p.path, '/')+1:]]++
		if firstAfter.IsZero() && p.at.After(killed) {
			firstAfter = p.at
		}
	}
	for name := range values {
		if perItem[name] != 1 {
			t.Errorf("the emulator accepted %d PUTs of %s, want 1", perItem[name], name)
		}
	}
	for _, b := range []*procBroker{first, second} {
		text := b.log.text()
		for name, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("%s's log holds the value of %s", b.name, name)
			}
		}
	}
	if firstAfter.IsZero() {
		t.Fatal("no PUT was accepted after the kill")
	}
	t.Logf("killed at PUT %d of %d; the new broker was ready %v after the kill, wrote its first item %v after it was ready (%v after the kill), and finished the operation %v after it was ready",
		killAt, items, ready.Sub(killed).Round(time.Millisecond), firstAfter.Sub(ready).Round(time.Millisecond),
		firstAfter.Sub(killed).Round(time.Millisecond), finished.Sub(ready).Round(time.Millisecond))
}
