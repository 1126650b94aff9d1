package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fakeOps is the real service, whose async SyncSecrets runs the sync at
// once (without async) and then shows it as an operation that finishes one
// item per WaitOperation; the operation's estimated completion time is
// t0 plus 10s per item left.
type fakeOps struct {
	*service.Server

	mu       sync.Mutex
	states   []*secretbrokerv1.Operation // what each WaitOperation returns, in turn
	waits    []time.Duration             // the timeout of each WaitOperation
	cancels  int
	block    bool              // WaitOperation waits for the call's end instead
	waitErr  error             // WaitOperation's answer, when set
	endErr   *rpcstatus.Status // the error the operation ends with, when set
	blocking chan struct{}     // closed when a blocked WaitOperation started
}

const fakeOpName = "operations/fake-1"

func (f *fakeOps) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	if !req.GetAsync() {
		return f.Server.SyncSecrets(ctx, req)
	}
	now := proto.CloneOf(req)
	now.Async = false
	resp, err := f.Server.SyncSecrets(ctx, now)
	if err != nil {
		return nil, err
	}
	results := resp.GetResults()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i <= len(results); i++ {
		f.states = append(f.states, fakeOpAt(results, i))
	}
	first := f.states[0]
	f.states = f.states[1:]
	return &secretbrokerv1.SyncSecretsResponse{Operation: first}, nil
}

// fakeOpAt is the operation once the first i results are done.
func fakeOpAt(results []*secretbrokerv1.SyncSecretsResult, i int) *secretbrokerv1.Operation {
	n := len(results)
	md := &secretbrokerv1.OperationMetadata{
		Kind:                    "SyncSecrets",
		Total:                   int32(n),
		Remaining:               int32(n - i),
		EstimatedCompletionTime: timestamppb.New(t0.Add(time.Duration(n-i) * 10 * time.Second)),
	}
	for _, r := range results[:i] {
		switch {
		case r.GetCode() != code.Code_OK:
			md.Failed++
		case r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED,
			r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN: // as the broker counts them
			md.Unchanged++
		default:
			md.Written++
		}
	}
	return &secretbrokerv1.Operation{
		Name:     fakeOpName,
		Metadata: md,
		Done:     i == n,
		Response: &secretbrokerv1.OperationResponse{SyncResults: results[:i]},
	}
}

func (f *fakeOps) WaitOperation(ctx context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	f.mu.Lock()
	f.waits = append(f.waits, req.GetTimeout().AsDuration())
	if f.block {
		close(f.blocking)
		f.block = false
		f.mu.Unlock()
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	defer f.mu.Unlock()
	if f.waitErr != nil {
		return nil, f.waitErr
	}
	if req.GetName() != fakeOpName || len(f.states) == 0 {
		return nil, status.Error(codes.NotFound, "no such operation")
	}
	op := f.states[0]
	if len(f.states) > 1 {
		f.states = f.states[1:]
	}
	if op.GetDone() && f.endErr != nil {
		op = proto.CloneOf(op)
		op.Error = f.endErr
	}
	return op, nil
}

// CancelOperation ends the operation with the first item done.
func (f *fakeOps) CancelOperation(_ context.Context, req *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels++
	last := f.states[len(f.states)-1]
	op := fakeOpAt(last.GetResponse().GetSyncResults(), 1)
	op.Name, op.Done = req.GetName(), true
	op.Error = &rpcstatus.Status{Code: int32(codes.Canceled), Message: "cancelled"}
	return op, nil
}

func startFakeOps(t *testing.T) (*broker, *fakeOps) {
	t.Helper()
	f := &fakeOps{blocking: make(chan struct{})}
	b := startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
		f.Server = s
		return f
	}})
	return b, f
}

// stepClock is a clock that moves on by step at each reading.
func stepClock(step time.Duration) func() time.Time {
	var (
		mu sync.Mutex
		t  = t0
	)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(step)
		return now
	}
}

// TestSyncFollowPlain follows an operation with stdout not a terminal:
// plain lines, at most one every 5s of the (fake) clock and only when the
// count moved, then the last one; each WaitOperation waits 5s; no bar, no
// prompt.
func TestSyncFollowPlain(t *testing.T) {
	b, f := startFakeOps(t)
	file := writeFile(t, "app.env", []byte("A1=a-value\nB2="+plantedValue+"\nC3=c-value\n"))
	// The clock moves 3s at each reading: readings at 0s (0 done), 3s
	// (1 done: too soon), 6s (2 done), 9s (3 done: the end).
	r := ctlClock(t.Context(), t, b.env(), strings.NewReader(""), noTerminal{}, stepClock(3*time.Second),
		"sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	label := "sync " + repoScope + ": "
	var progress []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, label) {
			progress = append(progress, strings.TrimPrefix(l, label))
		}
	}
	want := []string{
		"0/3 done (0 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone), -/s, ETA 30s",
		"2/3 done (2 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone), 0.3/s, ETA 4s",
		"3/3 done (3 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone), 0.3/s, ETA 0s",
	}
	if strings.Join(progress, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant:\n%s\nstdout:\n%s", strings.Join(progress, "\n"), strings.Join(want, "\n"), r.stdout)
	}
	wantContains(t, "stdout", r.stdout, "3 written, 0 deleted, 0 unchanged, 0 failed")
	if strings.Contains(r.all(), "\r") || strings.Contains(r.all(), "[y/N]") {
		t.Errorf("a non-terminal run drew a bar or prompted:\n%s", r.all())
	}
	for _, w := range f.waits {
		if w != waitStepPlain {
			t.Errorf("WaitOperation timeouts %v, want %v each", f.waits, waitStepPlain)
			break
		}
	}
	if len(f.waits) != 3 {
		t.Errorf("%d WaitOperation calls, want 3", len(f.waits))
	}
}

// TestSyncFollowTerminal follows an operation with stdout a terminal: one
// line redrawn in place, ended by a newline.
func TestSyncFollowTerminal(t *testing.T) {
	b, f := startFakeOps(t)
	file := writeFile(t, "app.env", []byte("A1=a-value\nB2="+plantedValue+"\n"))
	r := ctlClock(t.Context(), t, b.env(), strings.NewReader(""), &fakeTerminal{}, stepClock(2*time.Second),
		"sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	want := "\r[------------------------] 0/2  -/s  ETA 20s\x1b[K" +
		"\r[############------------] 1/2  0.5/s  ETA 8s\x1b[K" +
		"\r[########################] 2/2  0.5/s  ETA 0s\x1b[K\n"
	if !strings.Contains(r.stdout, want) {
		t.Errorf("stdout:\n%q\nwant the bar:\n%q", r.stdout, want)
	}
	if len(f.waits) == 0 || f.waits[0] != waitStepTTY {
		t.Errorf("WaitOperation timeouts %v, want %v", f.waits, waitStepTTY)
	}
}

// syncInterrupted runs a sync of three secrets, one of them plantedValue,
// with output, that is interrupted (Ctrl-C) once f blocks following it.
func syncInterrupted(t *testing.T, b *broker, f *fakeOps, output string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-f.blocking
		cancel() // Ctrl-C
	}()
	file := writeFile(t, "app.env", []byte("A1=a-value\nB2="+plantedValue+"\nC3=c-value\n"))
	return ctlClock(ctx, t, b.env(), strings.NewReader(""), noTerminal{}, stepClock(time.Second),
		"sync", "--from-env-file", file, "-o", output, repoScope)
}

// TestSyncInterrupt: an interrupt while following cancels the operation
// (CancelOperation), reports what it finished, and exits 1; in JSON the
// document says so.
func TestSyncInterrupt(t *testing.T) {
	for _, output := range []string{outputTable, outputJSON} {
		t.Run(output, func(t *testing.T) {
			b, f := startFakeOps(t)
			f.block = true
			r := syncInterrupted(t, b, f, output)
			wantCode(t, r, exitFail)
			if f.cancels != 1 {
				t.Errorf("%d CancelOperation calls, want 1", f.cancels)
			}
			wantContains(t, "stderr", r.stderr, "interrupted: cancelling "+fakeOpName, "interrupted; "+fakeOpName+" cancelled after 1 of 3 items")
			if output == outputTable {
				wantContains(t, "stdout", r.stdout, "1 written, 0 deleted, 0 unchanged, 0 failed")
				return
			}
			var doc struct {
				Operation string         `json:"operation"`
				Results   []any          `json:"results"`
				Summary   map[string]int `json:"summary"`
				Error     string         `json:"error"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("not one JSON document: %v\n%s", err, r.stdout)
			}
			if doc.Operation != fakeOpName || len(doc.Results) != 1 || doc.Summary["written"] != 1 || !strings.HasPrefix(doc.Error, "CANCELLED") {
				t.Errorf("JSON: %s", r.stdout)
			}
		})
	}
}

// TestSyncFollowFails: following the operation fails (the operation may
// still run: sync says how to look at it), or the operation ends with an
// error: exit 1 either way.
func TestSyncFollowFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		waitErr error
		endErr  *rpcstatus.Status
		want    []string
		notWant string
	}{
		{
			name:    "wait fails",
			waitErr: status.Error(codes.Unavailable, "connection lost"),
			want:    []string{"UNAVAILABLE: connection lost", fakeOpName + " may still be running: secretbrokerctl op " + fakeOpName},
		},
		{
			name:    "operation fails",
			endErr:  &rpcstatus.Status{Code: int32(codes.Internal), Message: "the store broke"},
			want:    []string{"sync " + repoScope + ": INTERNAL: the store broke"},
			notWant: "may still be running",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, f := startFakeOps(t)
			f.waitErr, f.endErr = tc.waitErr, tc.endErr
			r := ctl(t, b.env(), "", "sync", "--from-env-file", writeFile(t, "a.env", []byte("A1="+plantedValue+"\n")), repoScope)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, tc.want...)
			if tc.notWant != "" && strings.Contains(r.stderr, tc.notWant) {
				t.Errorf("stderr says %q:\n%s", tc.notWant, r.stderr)
			}
		})
	}
}

// TestSyncWithoutOperations: a broker that answers async with
// UNIMPLEMENTED gets the sync in one call.
func TestSyncWithoutOperations(t *testing.T) {
	b := startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
		return noAsync{s}
	}})
	r := ctl(t, b.env(), "", "sync", "--from-env-file", writeFile(t, "a.env", []byte("A1="+plantedValue+"\n")), repoScope)
	wantCode(t, r, exitOK)
	wantContains(t, "stderr", r.stderr, "does not run operations")
	wantContains(t, "stdout", r.stdout, "1 written, 0 deleted, 0 unchanged, 0 failed")
	if b.open(t, repoScope, "A1") != plantedValue {
		t.Error("A1 not written")
	}
}

// noAsync is a broker that runs no operations.
type noAsync struct{ *service.Server }

func (n noAsync) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	if req.GetAsync() {
		return nil, status.Error(codes.Unimplemented, "async: not served")
	}
	return n.Server.SyncSecrets(ctx, req)
}

// waitHook is the real service, signalling the first WaitOperation.
type waitHook struct {
	*service.Server
	once    sync.Once
	waiting chan struct{}
}

func (w *waitHook) WaitOperation(ctx context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	w.once.Do(func() { close(w.waiting) })
	return w.Server.WaitOperation(ctx, req)
}

// TestSyncInterruptRealOperation interrupts sync while the real broker's
// operation waits for GitHub (a PUT that is never answered): the broker
// cancels the operation, which ends CANCELLED with no item written; the
// item whose PUT GitHub was sent is ABORTED (GitHub may have applied it),
// the other not run; and sync exits 1 saying so.
func TestSyncInterruptRealOperation(t *testing.T) {
	w := &waitHook{waiting: make(chan struct{})}
	b := startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
		w.Server = s
		return w
	}})
	// Answered only when the request is abandoned (the item cancelled).
	arrived := make(chan struct{}, 1)
	b.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Latency: time.Hour, Times: 10, Arrived: arrived})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-w.waiting
		<-arrived // GitHub has the first PUT
		cancel()  // Ctrl-C
	}()
	file := writeFile(t, "a.env", []byte("SLOW_ONE="+plantedValue+"\nSLOW_TWO=two-value\n"))
	r := ctlCtx(ctx, t, b.env(), strings.NewReader(""), noTerminal{}, "sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitFail)
	wantContains(t, "stderr", r.stderr, "interrupted: cancelling operations/", "SLOW_ONE (create): ABORTED", "may have applied it", "cancelled after 1 of 2 items")
	wantContains(t, "stdout", r.stdout, "0 written, 0 deleted, 0 unchanged, 1 failed")

	// The broker says the same.
	r = ctl(t, b.env(), "", "ops")
	wantCode(t, r, exitOK)
	wantContains(t, "ops", r.stdout, "cancelled", "1/2")
	for _, name := range []string{"SLOW_ONE", "SLOW_TWO"} {
		if _, err := b.emu.Open(repoScope, name); err == nil {
			t.Errorf("%s was written by a cancelled operation", name)
		}
	}
}

// cancelFails is fakeOps whose CancelOperation fails (the operation goes
// on), or answers the operation still running and then every
// WaitOperation fails (notDone).
type cancelFails struct {
	*fakeOps
	notDone bool
}

func (c cancelFails) CancelOperation(_ context.Context, req *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancels++
	if !c.notDone {
		// The message quotes a value, as a broken broker might.
		return nil, status.Errorf(codes.Unavailable, "connection reset while cancelling %q", plantedValue)
	}
	c.waitErr = status.Error(codes.Unavailable, "connection reset while waiting")
	return c.states[0], nil
}

// TestSyncInterruptCancelFails: Ctrl-C while following, and the cancel
// fails (or the wait for the cancelled operation does): the operation may
// still be running, and sync says so, names it, gives the error and how
// to cancel it, and exits 1; it never says the operation was cancelled.
func TestSyncInterruptCancelFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		notDone bool
		output  string
		want    []string
	}{
		{
			name:   "cancel fails",
			output: outputTable,
			want: []string{
				"interrupted, but CancelOperation of " + fakeOpName + " failed: UNAVAILABLE: connection reset while cancelling \"[redacted]\"",
				fakeOpName + " may still be running: secretbrokerctl cancel " + fakeOpName,
			},
		},
		{
			name:    "wait for the cancelled operation fails",
			notDone: true,
			output:  outputTable,
			want: []string{
				"interrupted, but WaitOperation for the cancelled operation of " + fakeOpName + " failed: UNAVAILABLE: connection reset while waiting",
				fakeOpName + " may still be running: secretbrokerctl cancel " + fakeOpName,
			},
		},
		{
			name:   "cancel fails, JSON",
			output: outputJSON,
			want:   []string{"secretbrokerctl cancel " + fakeOpName},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeOps{blocking: make(chan struct{}), block: true}
			b := startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
				f.Server = s
				return cancelFails{f, tc.notDone}
			}})
			r := syncInterrupted(t, b, f, tc.output)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, tc.want...)
			if strings.Contains(r.stderr, "cancelled after") {
				t.Errorf("sync says the operation was cancelled:\n%s", r.stderr)
			}
			if f.cancels != 1 {
				t.Errorf("%d CancelOperation calls, want 1", f.cancels)
			}
			if tc.output != outputJSON {
				return
			}
			var doc struct {
				Operation string `json:"operation"`
				Error     string `json:"error"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("not one JSON document: %v\n%s", err, r.stdout)
			}
			if doc.Operation != fakeOpName || !strings.Contains(doc.Error, "CancelOperation failed: UNAVAILABLE") ||
				!strings.Contains(doc.Error, "may still be running") || strings.HasPrefix(doc.Error, "CANCELLED") {
				t.Errorf("JSON: %s", r.stdout)
			}
		})
	}
}

// followClient is a client whose WaitOperation answers wait (and may
// interrupt, the interrupt arriving while the answer is on its way), and
// whose CancelOperation answers cancelled.
type followClient struct {
	secretbrokerv1.SecretServiceClient // nil: any other call panics

	mu        sync.Mutex
	interrupt context.CancelFunc
	wait      *secretbrokerv1.Operation
	waitErr   error
	cancels   int
	cancelled *secretbrokerv1.Operation
}

func (f *followClient) WaitOperation(context.Context, *secretbrokerv1.WaitOperationRequest, ...grpc.CallOption) (*secretbrokerv1.Operation, error) {
	f.interrupt()
	return f.wait, f.waitErr
}

func (f *followClient) CancelOperation(context.Context, *secretbrokerv1.CancelOperationRequest, ...grpc.CallOption) (*secretbrokerv1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels++
	return f.cancelled, nil
}

// TestFollowInterruptWithAnswer: the interrupt arrives while
// WaitOperation's answer is on its way. A done answer wins: the operation
// completed, nothing is cancelled. Otherwise the operation is cancelled,
// the newest answer being the one shown until the cancel answers.
func TestFollowInterruptWithAnswer(t *testing.T) {
	results := []*secretbrokerv1.SyncSecretsResult{
		{Name: repoScope + "/secrets/A", Action: secretbrokerv1.SyncAction_SYNC_ACTION_CREATE},
		{Name: repoScope + "/secrets/B", Action: secretbrokerv1.SyncAction_SYNC_ACTION_CREATE},
	}
	cancelledOp := fakeOpAt(results, 1)
	cancelledOp.Done, cancelledOp.Error = true, &rpcstatus.Status{Code: int32(codes.Canceled), Message: "cancelled"}
	for _, tc := range []struct {
		name            string
		wait            *secretbrokerv1.Operation
		waitErr         error
		wantInterrupted bool
		wantCancels     int
		wantResults     int
	}{
		{name: "done answer", wait: fakeOpAt(results, 2), wantResults: 2},
		{name: "running answer", wait: fakeOpAt(results, 1), wantInterrupted: true, wantCancels: 1, wantResults: 1},
		{name: "failed answer", waitErr: status.Error(codes.Canceled, "context canceled"), wantInterrupted: true, wantCancels: 1, wantResults: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			client := &followClient{interrupt: cancel, wait: tc.wait, waitErr: tc.waitErr, cancelled: cancelledOp}
			var stdout, stderr strings.Builder
			c := newCLI(strings.NewReader(""), &stdout, &stderr, func(string) string { return "" }, noTerminal{})
			p := newProgress(&stdout, false, "sync", stepClock(time.Second))
			f := c.follow(ctx, client, fakeOpAt(results, 0), p, waitStepPlain)
			if f.interrupted != tc.wantInterrupted || f.err != nil || client.cancels != tc.wantCancels ||
				len(f.op.GetResponse().GetSyncResults()) != tc.wantResults || !f.op.GetDone() {
				t.Errorf("followed %+v (%d results), %d cancels; want interrupted %v, %d cancels, %d results\nstderr:\n%s",
					f, len(f.op.GetResponse().GetSyncResults()), client.cancels, tc.wantInterrupted, tc.wantCancels, tc.wantResults, stderr.String())
			}
		})
	}
}

// completedOnCancel is fakeOps whose CancelOperation finds the operation
// already completed.
type completedOnCancel struct{ *fakeOps }

func (d completedOnCancel) CancelOperation(context.Context, *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancels++
	return d.states[len(d.states)-1], nil // done, no error
}

// TestSyncInterruptAfterCompletion: Ctrl-C, and the cancel finds the
// operation completed: sync reports the completed sync, exit 0, not a
// cancellation.
func TestSyncInterruptAfterCompletion(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &fakeOps{blocking: make(chan struct{}), block: true}
	b := startBroker(t, brokerOpts{auth: true, wrap: func(s *service.Server) secretbrokerv1.SecretServiceServer {
		f.Server = s
		return completedOnCancel{f}
	}})
	go func() {
		<-f.blocking
		cancel() // Ctrl-C
	}()
	file := writeFile(t, "app.env", []byte("A1=a-value\nB2="+plantedValue+"\n"))
	r := ctlClock(ctx, t, b.env(), strings.NewReader(""), noTerminal{}, stepClock(time.Second),
		"sync", "--from-env-file", file, repoScope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "2 written, 0 deleted, 0 unchanged, 0 failed")
	wantContains(t, "stderr", r.stderr, fakeOpName+" had completed before it could be cancelled")
	if strings.Contains(r.stderr, "cancelled after") {
		t.Errorf("a completed sync is reported cancelled:\n%s", r.stderr)
	}
	if f.cancels != 1 {
		t.Errorf("%d CancelOperation calls, want 1", f.cancels)
	}
}

// startFails is the real service whose async SyncSecrets starts the
// operation and then fails: Ctrl-C arriving before the answer does
// (interrupt), the broker's answer lost (code), or the broker refusing
// before starting anything (refuse).
type startFails struct {
	*service.Server
	cancel  context.CancelFunc
	code    codes.Code
	refuse  bool
	started chan string // the started operation's name
}

func (s startFails) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	if !req.GetAsync() {
		return s.Server.SyncSecrets(ctx, req)
	}
	if s.refuse {
		return nil, status.Error(codes.PermissionDenied, "no")
	}
	resp, err := s.Server.SyncSecrets(ctx, req)
	if err != nil {
		return nil, err
	}
	s.started <- resp.GetOperation().GetName()
	if s.cancel != nil {
		s.cancel() // Ctrl-C
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return nil, status.Errorf(s.code, "lost the answer for %q", req.GetSecrets()["B"])
}

// TestSyncStartFails: the call that starts the sync's operation ends
// without the broker's answer (Ctrl-C, a lost connection): an operation
// may have been accepted, and sync says so and how to find it, exit 1.
// A refusal says nothing of the kind.
func TestSyncStartFails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interrupt bool
		code      codes.Code
		refuse    bool
		want      string
	}{
		{name: "interrupted", interrupt: true, want: "CANCELLED"},
		{name: "connection lost", code: codes.Unavailable, want: `UNAVAILABLE: lost the answer for "[redacted]"`},
		{name: "deadline", code: codes.DeadlineExceeded, want: "DEADLINE_EXCEEDED"},
		{name: "refused", refuse: true, want: "PERMISSION_DENIED: no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			s := startFails{code: tc.code, refuse: tc.refuse, started: make(chan string, 1)}
			if tc.interrupt {
				s.cancel = cancel
			}
			b := startBroker(t, brokerOpts{auth: true, wrap: func(srv *service.Server) secretbrokerv1.SecretServiceServer {
				s.Server = srv
				return s
			}})
			file := writeFile(t, "a.env", []byte("A=one-value\nB="+plantedValue+"\n"))
			r := ctlCtx(ctx, t, b.env(), strings.NewReader(""), noTerminal{}, "sync", "--from-env-file", file, repoScope)
			wantCode(t, r, exitFail)
			wantContains(t, "stderr", r.stderr, "sync "+repoScope+": "+tc.want)
			hint := "the sync may have been accepted as an operation before the call ended: secretbrokerctl ops --not-done lists yours still running"
			if tc.refuse {
				if strings.Contains(r.stderr, "may have been accepted") {
					t.Errorf("a refusal says an operation may have started:\n%s", r.stderr)
				}
				return
			}
			wantContains(t, "stderr", r.stderr, hint)
			// It was: the broker lists it.
			name := <-s.started
			ops := ctl(t, b.env(), "", "ops")
			wantCode(t, ops, exitOK)
			wantContains(t, "ops", ops.stdout, name)
		})
	}
}
