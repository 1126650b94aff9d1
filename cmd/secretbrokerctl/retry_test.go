package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// failure is one scripted failure of a call: its code, and a RetryInfo
// of retry when positive.
type failure struct {
	code  codes.Code
	retry time.Duration
}

func shed(d time.Duration) failure { return failure{code: codes.ResourceExhausted, retry: d} }

var (
	unavailable = failure{code: codes.Unavailable}
	// aborted is a write a shutting-down broker cut after GitHub was sent
	// it.
	aborted = failure{code: codes.Aborted}
	// exhaustedBare is RESOURCE_EXHAUSTED without a RetryInfo (a message
	// over a size limit).
	exhaustedBare = failure{code: codes.ResourceExhausted}
)

func times(f failure, n int) []failure {
	out := make([]failure, n)
	for i := range out {
		out[i] = f
	}
	return out
}

// flakyOp is the operation flaky's async sync starts.
const flakyOp = "operations/flaky-1"

// flaky is a fake broker that fails each call, by its key (see key), as
// its script says, one failure per call, then answers; it records every
// call with the time it came, on the synctest bubble's clock. Each
// failure's message quotes the caller's token and the request's values,
// as a broken broker might: the client must print neither.
type flaky struct {
	secretbrokerv1.UnimplementedSecretServiceServer
	start time.Time

	mu     sync.Mutex
	script map[string][]failure
	calls  []flakyCall

	// waitRunning: WaitOperation waits its timeout (or its call's end) and
	// answers the operation still running.
	waitRunning bool
	// cancelBlocks: CancelOperation waits for its call's end;
	// cancelRunning: it answers the operation still running.
	cancelBlocks, cancelRunning bool
	// cancelStarted, when set, is closed as CancelOperation starts.
	cancelStarted chan struct{}
	// cancelEnded is when CancelOperation returned (0: it did not).
	cancelEnded time.Duration
}

type flakyCall struct {
	key string
	at  time.Duration // since start
	req proto.Message
}

func newFlaky(script map[string][]failure) *flaky {
	return &flaky{start: time.Now(), script: script}
}

// answer records a call and returns its scripted failure, if one is left.
func (f *flaky) answer(ctx context.Context, key string, req proto.Message, values ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, flakyCall{key: key, at: time.Since(f.start), req: proto.CloneOf(req)})
	s := f.script[key]
	if len(s) == 0 {
		return nil
	}
	fl := s[0]
	f.script[key] = s[1:]
	st := status.Newf(fl.code, "%s refused for %s %q", key, authOf(ctx), values)
	if fl.retry > 0 {
		var err error
		if st, err = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(fl.retry)}); err != nil {
			panic(err)
		}
	}
	return st.Err()
}

// callsOf returns the calls with key.
func (f *flaky) callsOf(key string) []flakyCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []flakyCall
	for _, c := range f.calls {
		if c.key == key {
			out = append(out, c)
		}
	}
	return out
}

// counts returns how many calls came with each key.
func (f *flaky) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, c := range f.calls {
		out[c.key]++
	}
	return out
}

func (f *flaky) GetSecret(ctx context.Context, req *secretbrokerv1.GetSecretRequest) (*secretbrokerv1.Secret, error) {
	if err := f.answer(ctx, "GetSecret", req); err != nil {
		return nil, err
	}
	return &secretbrokerv1.Secret{Name: req.GetName(), SecretId: shortName(req.GetName())}, nil
}

func (f *flaky) PutSecret(ctx context.Context, req *secretbrokerv1.PutSecretRequest) (*secretbrokerv1.PutSecretResponse, error) {
	if err := f.answer(ctx, "PutSecret", req, req.GetValue()); err != nil {
		return nil, err
	}
	return &secretbrokerv1.PutSecretResponse{Name: req.GetName(), Created: true}, nil
}

func (f *flaky) DeleteSecret(ctx context.Context, req *secretbrokerv1.DeleteSecretRequest) (*emptypb.Empty, error) {
	if err := f.answer(ctx, "DeleteSecret", req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ListSecrets serves two pages; the second one's key is "ListSecrets:p2".
func (f *flaky) ListSecrets(ctx context.Context, req *secretbrokerv1.ListSecretsRequest) (*secretbrokerv1.ListSecretsResponse, error) {
	key := "ListSecrets"
	if req.GetPageToken() != "" {
		key += ":" + req.GetPageToken()
	}
	if err := f.answer(ctx, key, req); err != nil {
		return nil, err
	}
	if req.GetPageToken() == "" {
		return &secretbrokerv1.ListSecretsResponse{Secrets: []*secretbrokerv1.Secret{{Name: req.GetParent() + "/secrets/A", SecretId: "A"}}, NextPageToken: "p2", TotalCount: 2}, nil
	}
	return &secretbrokerv1.ListSecretsResponse{Secrets: []*secretbrokerv1.Secret{{Name: req.GetParent() + "/secrets/B", SecretId: "B"}}, TotalCount: 2}, nil
}

func (f *flaky) BatchPutSecrets(ctx context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	var values []string
	for _, r := range req.GetRequests() {
		values = append(values, r.GetValue())
	}
	if err := f.answer(ctx, "BatchPutSecrets", req, values...); err != nil {
		return nil, err
	}
	resp := &secretbrokerv1.BatchPutSecretsResponse{}
	for _, r := range req.GetRequests() {
		resp.Results = append(resp.Results, &secretbrokerv1.BatchPutSecretsResult{Name: r.GetName(), Code: code.Code_OK, Created: true})
	}
	return resp, nil
}

// syncResults creates every secret of req.
func syncResults(req *secretbrokerv1.SyncSecretsRequest) []*secretbrokerv1.SyncSecretsResult {
	var out []*secretbrokerv1.SyncSecretsResult
	for k := range req.GetSecrets() {
		out = append(out, &secretbrokerv1.SyncSecretsResult{Name: req.GetParent() + "/secrets/" + k, Action: secretbrokerv1.SyncAction_SYNC_ACTION_CREATE})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func flakyOperation(done bool, results []*secretbrokerv1.SyncSecretsResult) *secretbrokerv1.Operation {
	n := int32(len(results))
	op := &secretbrokerv1.Operation{Name: flakyOp, Metadata: &secretbrokerv1.OperationMetadata{Kind: kindSync, Total: n, Remaining: n}}
	if done {
		op.Done = true
		op.Metadata.Remaining, op.Metadata.Written = 0, n
		op.Response = &secretbrokerv1.OperationResponse{SyncResults: results}
	}
	return op
}

// SyncSecrets: its keys are "SyncSecrets:plan" (dry run), "SyncSecrets:async"
// (starts flakyOp) and "SyncSecrets" (the sync in one call).
func (f *flaky) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	key := "SyncSecrets"
	switch {
	case req.GetDryRun():
		key += ":plan"
	case req.GetAsync():
		key += ":async"
	}
	var values []string
	for _, v := range req.GetSecrets() {
		values = append(values, v)
	}
	if err := f.answer(ctx, key, req, values...); err != nil {
		return nil, err
	}
	if req.GetAsync() && !req.GetDryRun() {
		return &secretbrokerv1.SyncSecretsResponse{Operation: flakyOperation(false, syncResults(req))}, nil
	}
	return &secretbrokerv1.SyncSecretsResponse{DryRun: req.GetDryRun(), Results: syncResults(req)}, nil
}

// WaitOperation answers flakyOp done with the results of the last sync
// started, unless waitRunning.
func (f *flaky) WaitOperation(ctx context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	if err := f.answer(ctx, "WaitOperation", req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	running := f.waitRunning
	var started *secretbrokerv1.SyncSecretsRequest
	for _, c := range f.calls {
		if c.key == "SyncSecrets:async" {
			started = c.req.(*secretbrokerv1.SyncSecretsRequest)
		}
	}
	f.mu.Unlock()
	if running {
		t := time.NewTimer(req.GetTimeout().AsDuration())
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return flakyOperation(false, syncResults(started)), nil
	}
	return flakyOperation(true, syncResults(started)), nil
}

func (f *flaky) CancelOperation(ctx context.Context, req *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	f.mu.Lock()
	if f.cancelStarted != nil {
		close(f.cancelStarted)
		f.cancelStarted = nil
	}
	blocks, running := f.cancelBlocks, f.cancelRunning
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.cancelEnded = time.Since(f.start)
		f.mu.Unlock()
	}()
	if err := f.answer(ctx, "CancelOperation", req); err != nil {
		return nil, err
	}
	if blocks {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if running {
		return flakyOperation(false, nil), nil
	}
	return &secretbrokerv1.Operation{Name: req.GetName(), Done: true, Metadata: &secretbrokerv1.OperationMetadata{Kind: kindSync},
		Error: &rpcstatus.Status{Code: int32(codes.Canceled), Message: "cancelled"}}, nil
}

func (f *flaky) GetOperation(ctx context.Context, req *secretbrokerv1.GetOperationRequest) (*secretbrokerv1.Operation, error) {
	if err := f.answer(ctx, "GetOperation", req); err != nil {
		return nil, err
	}
	return flakyOperation(false, nil), nil
}

func (f *flaky) ListOperations(ctx context.Context, req *secretbrokerv1.ListOperationsRequest) (*secretbrokerv1.ListOperationsResponse, error) {
	if err := f.answer(ctx, "ListOperations", req); err != nil {
		return nil, err
	}
	return &secretbrokerv1.ListOperationsResponse{Operations: []*secretbrokerv1.Operation{flakyOperation(false, nil)}}, nil
}

func (f *flaky) DetectDrift(ctx context.Context, req *secretbrokerv1.DetectDriftRequest) (*secretbrokerv1.DetectDriftResponse, error) {
	if err := f.answer(ctx, "DetectDrift", req); err != nil {
		return nil, err
	}
	return &secretbrokerv1.DetectDriftResponse{}, nil
}

// fakeRun is one run of the command against a fake broker over an
// in-memory connection (bufconn), built inside the calling test's synctest
// bubble: every wait, the retries' included, is on the bubble's fake
// clock, exact and instant in wall time.
type fakeRun struct {
	c              *cli
	stdout, stderr *syncBuffer
}

// newFakeRun serves srv (nil: no broker, every dial fails) and returns a
// command line client of it, with the planted token and stdin.
func newFakeRun(t *testing.T, srv secretbrokerv1.SecretServiceServer, stdin string) *fakeRun {
	t.Helper()
	mustRunInBubble(t)
	lis := bufconn.Listen(1 << 20)
	if srv != nil {
		gs := grpc.NewServer()
		secretbrokerv1.RegisterSecretServiceServer(gs, srv)
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = gs.Serve(lis)
		}()
		t.Cleanup(func() {
			gs.Stop()
			<-served
		})
	} else {
		_ = lis.Close()
	}
	r := &fakeRun{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	env := map[string]string{"SECRETBROKER_ADDR": "127.0.0.1:9090", "SECRETBROKER_TOKEN": plantedToken}
	r.c = newCLI(strings.NewReader(stdin), r.stdout, r.stderr, func(k string) string { return env[k] }, noTerminal{})
	r.c.dial = func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }
	return r
}

// result returns what the run printed, with its exit code, and fails the
// test if a planted value or token is in it.
func (r *fakeRun) result(t *testing.T, code int) result {
	t.Helper()
	res := result{code: code, stdout: r.stdout.String(), stderr: r.stderr.String()}
	for _, planted := range []string{plantedValue, plantedToken} {
		if strings.Contains(res.all(), planted) {
			t.Errorf("printed a planted secret:\nstdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
		}
	}
	return res
}

// mustRunInBubble fails the test unless it runs inside synctest.Test.
func mustRunInBubble(t *testing.T) {
	t.Helper()
	defer func() {
		if recover() != nil {
			t.Fatal("run this inside synctest.Test")
		}
	}()
	synctest.Wait() // panics outside a bubble
}

// gap bounds the wait before a retry: [min, max].
type gap struct{ min, max time.Duration }

const flakySecret = "repos/o/r/actions/secrets/TOKEN"

// TestRetry runs each command against a broker that answers
// RESOURCE_EXHAUSTED (with or without a RetryInfo) or UNAVAILABLE a given
// number of times, in fake time: a call is sent again only where that is
// safe, after the RetryInfo's delay (never sooner, at most a fifth later)
// or UNAVAILABLE's jittered backoff, within the bounds (5 attempts, no
// wait over 30s, 1 min of waits in all, the call's deadline), saying on
// stderr what it waits for; no planted value or token is printed.
func TestRetry(t *testing.T) {
	envFile := writeFile(t, "app.env", []byte("A="+plantedValue+"\nB=b-value-2\n"))
	for _, tc := range []struct {
		name   string
		args   []string
		stdin  string
		down   bool // no broker: every dial fails
		script map[string][]failure
		code   int
		calls  map[string]int // how many calls of each key (all keys)
		// gapsOf: the waits between the calls of this key.
		gapsOf string
		gaps   []gap
		stderr []string
		not    []string // must not be on stderr
		check  func(t *testing.T, f *flaky, r result)
	}{
		{
			name:   "get: shed twice, waits the RetryInfo",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": times(shed(3*time.Second), 2)},
			code:   exitOK,
			calls:  map[string]int{"GetSecret": 3},
			gapsOf: "GetSecret",
			gaps:   []gap{{3 * time.Second, 3600 * time.Millisecond}, {3 * time.Second, 3600 * time.Millisecond}},
			stderr: []string{
				`GetSecret: RESOURCE_EXHAUSTED: GetSecret refused for Bearer [redacted] [] (retry after 3s); trying again in 3`,
				"(attempt 2 of 5)", "(attempt 3 of 5)",
			},
		},
		{
			name:   "get: UNAVAILABLE twice, jittered backoff",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": times(unavailable, 2)},
			code:   exitOK,
			calls:  map[string]int{"GetSecret": 3},
			gapsOf: "GetSecret",
			gaps:   []gap{{500 * time.Millisecond, time.Second}, {time.Second, 2 * time.Second}},
			stderr: []string{"GetSecret: UNAVAILABLE: GetSecret refused for Bearer [redacted]", "(attempt 3 of 5)"},
		},
		{
			name:   "get: UNAVAILABLE with a RetryInfo waits it",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": {{code: codes.Unavailable, retry: 4 * time.Second}}},
			code:   exitOK,
			calls:  map[string]int{"GetSecret": 2},
			gapsOf: "GetSecret",
			gaps:   []gap{{4 * time.Second, 4800 * time.Millisecond}},
		},
		{
			name:   "get: UNAVAILABLE always, gives up after 5 attempts",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": times(unavailable, 9)},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 5},
			gapsOf: "GetSecret",
			gaps: []gap{{500 * time.Millisecond, time.Second}, {time.Second, 2 * time.Second},
				{2 * time.Second, 4 * time.Second}, {4 * time.Second, 8 * time.Second}},
			stderr: []string{"GetSecret: giving up after 5 attempts", "get " + flakySecret + ": UNAVAILABLE: GetSecret refused"},
		},
		{
			name:   "get: RESOURCE_EXHAUSTED without a RetryInfo is not retried",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": {exhaustedBare}},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 1},
			not:    []string{"trying again"},
		},
		{
			name:   "get: NOT_FOUND is not retried",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": {{code: codes.NotFound}}},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 1},
			not:    []string{"trying again"},
		},
		{
			name:   "get: a RetryInfo over 30s is not waited for",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": {shed(45 * time.Minute)}},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 1},
			stderr: []string{"not trying again: the broker asks to wait 45m0s, more than 30s"},
		},
		{
			name:   "get: at most 1 min of waits",
			args:   []string{"get", "--timeout", "10m", flakySecret},
			script: map[string][]failure{"GetSecret": times(shed(25*time.Second), 9)},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 3},
			gapsOf: "GetSecret",
			gaps:   []gap{{25 * time.Second, 30 * time.Second}, {25 * time.Second, 30 * time.Second}},
			// The third wait is 25 s to 30 s (jitter): 30 s is one.
			stderr: []string{"GetSecret: giving up after 3 attempts: waiting ", "more would pass 1m0s of waits"},
		},
		{
			name:   "get: not past the call's deadline",
			args:   []string{"get", "--timeout", "5s", flakySecret},
			script: map[string][]failure{"GetSecret": {shed(10 * time.Second)}},
			code:   exitFail,
			calls:  map[string]int{"GetSecret": 1},
			stderr: []string{"not trying again: the call's deadline (--timeout) ends before a wait of 1"},
		},
		{
			name:   "get: broker down",
			args:   []string{"get", flakySecret},
			down:   true,
			code:   exitFail,
			calls:  map[string]int{},
			stderr: []string{"(attempt 5 of 5)", "GetSecret: giving up after 5 attempts", "get " + flakySecret + ": UNAVAILABLE"},
		},
		{
			name:   "put: UNAVAILABLE, the same value sent again",
			args:   []string{"put", flakySecret},
			stdin:  plantedValue,
			script: map[string][]failure{"PutSecret": {unavailable, shed(time.Second)}},
			code:   exitOK,
			calls:  map[string]int{"PutSecret": 3},
			stderr: []string{`PutSecret: UNAVAILABLE: PutSecret refused for Bearer [redacted] ["[redacted]"]`},
			check: func(t *testing.T, f *flaky, r result) {
				for _, c := range f.callsOf("PutSecret") {
					if v := c.req.(*secretbrokerv1.PutSecretRequest).GetValue(); v != plantedValue {
						t.Errorf("attempt sent another value (%d bytes)", len(v))
					}
				}
				wantContains(t, "stdout", r.stdout, "created "+flakySecret)
			},
		},
		{
			name:   "put: ABORTED (cut after GitHub was sent it), the same value sent again",
			args:   []string{"put", flakySecret},
			stdin:  plantedValue,
			script: map[string][]failure{"PutSecret": {aborted}},
			code:   exitOK,
			calls:  map[string]int{"PutSecret": 2},
			stderr: []string{"PutSecret: ABORTED", "trying again in"},
			check: func(t *testing.T, f *flaky, r result) {
				for _, c := range f.callsOf("PutSecret") {
					if v := c.req.(*secretbrokerv1.PutSecretRequest).GetValue(); v != plantedValue {
						t.Errorf("attempt sent another value (%d bytes)", len(v))
					}
				}
				wantContains(t, "stdout", r.stdout, "created "+flakySecret)
			},
		},
		{
			name:   "rm: ABORTED, then NOT_FOUND: the first may have deleted it",
			args:   []string{"rm", flakySecret},
			script: map[string][]failure{"DeleteSecret": {aborted, {code: codes.NotFound}}},
			code:   exitFail,
			calls:  map[string]int{"DeleteSecret": 2},
			stderr: []string{"rm " + flakySecret + ": NOT_FOUND", "an earlier attempt ended ABORTED and may have deleted it"},
		},
		{
			name:   "rm: shed, then deleted",
			args:   []string{"rm", flakySecret},
			script: map[string][]failure{"DeleteSecret": {shed(2 * time.Second)}},
			code:   exitOK,
			calls:  map[string]int{"DeleteSecret": 2},
			gapsOf: "DeleteSecret",
			gaps:   []gap{{2 * time.Second, 2400 * time.Millisecond}},
		},
		{
			name:   "rm: UNAVAILABLE, then NOT_FOUND: the first may have deleted it",
			args:   []string{"rm", flakySecret},
			script: map[string][]failure{"DeleteSecret": {unavailable, {code: codes.NotFound}}},
			code:   exitFail,
			calls:  map[string]int{"DeleteSecret": 2},
			stderr: []string{"rm " + flakySecret + ": NOT_FOUND", "an earlier attempt ended UNAVAILABLE and may have deleted it"},
		},
		{
			name:   "ls: the second page's call sent again with its token",
			args:   []string{"ls", "repos/o/r/actions"},
			script: map[string][]failure{"ListSecrets:p2": {unavailable, shed(time.Second)}},
			code:   exitOK,
			calls:  map[string]int{"ListSecrets": 1, "ListSecrets:p2": 3},
			check: func(t *testing.T, f *flaky, r result) {
				wantContains(t, "stdout", r.stdout, "A ", "B ")
			},
		},
		{
			name:   "put-many: the batch sent again after UNAVAILABLE",
			args:   []string{"put-many", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{"BatchPutSecrets": {unavailable}},
			code:   exitOK,
			calls:  map[string]int{"BatchPutSecrets": 2},
		},
		{
			name: "sync: plan and start sent again after they were shed",
			args: []string{"sync", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{
				"SyncSecrets:plan":  {shed(time.Second), unavailable},
				"SyncSecrets:async": times(shed(2*time.Second), 2),
				"WaitOperation":     {unavailable},
			},
			code:   exitOK,
			calls:  map[string]int{"SyncSecrets:plan": 3, "SyncSecrets:async": 3, "WaitOperation": 2},
			gapsOf: "SyncSecrets:async",
			gaps:   []gap{{2 * time.Second, 2400 * time.Millisecond}, {2 * time.Second, 2400 * time.Millisecond}},
			stderr: []string{"SyncSecrets: RESOURCE_EXHAUSTED", "WaitOperation: UNAVAILABLE"},
			check: func(t *testing.T, f *flaky, r result) {
				wantContains(t, "stdout", r.stdout, "2 written")
			},
		},
		{
			name:   "sync: the start is not sent again after UNAVAILABLE: it may have been accepted",
			args:   []string{"sync", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{"SyncSecrets:async": {unavailable}},
			code:   exitFail,
			calls:  map[string]int{"SyncSecrets:plan": 1, "SyncSecrets:async": 1},
			stderr: []string{"may have been accepted as an operation"},
			not:    []string{"trying again"},
		},
		{
			name: "sync --prune: the start is not sent again after RESOURCE_EXHAUSTED without a RetryInfo",
			args: []string{"sync", "--prune", "--yes", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{
				"SyncSecrets:async": {exhaustedBare},
			},
			code:  exitFail,
			calls: map[string]int{"SyncSecrets:plan": 1, "SyncSecrets:async": 1},
			not:   []string{"trying again", "may have been accepted"},
		},
		{
			name: "sync in one call: sent again when shed, expected_deletes kept",
			args: []string{"sync", "--prune", "--yes", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{
				"SyncSecrets:async": {{code: codes.Unimplemented}},
				"SyncSecrets":       {shed(time.Second)},
			},
			code:  exitOK,
			calls: map[string]int{"SyncSecrets:plan": 1, "SyncSecrets:async": 1, "SyncSecrets": 2},
			check: func(t *testing.T, f *flaky, r result) {
				calls := f.callsOf("SyncSecrets")
				if len(calls) != 2 || !proto.Equal(calls[0].req, calls[1].req) ||
					calls[1].req.(*secretbrokerv1.SyncSecretsRequest).GetExpectedDeletes() == nil {
					t.Errorf("the sync sent again differs, or has no expected_deletes: %v", calls)
				}
			},
		},
		{
			name: "sync in one call: not sent again after UNAVAILABLE",
			args: []string{"sync", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{
				"SyncSecrets:async": {{code: codes.Unimplemented}},
				"SyncSecrets":       {unavailable},
			},
			code:  exitFail,
			calls: map[string]int{"SyncSecrets:plan": 1, "SyncSecrets:async": 1, "SyncSecrets": 1},
			not:   []string{"trying again"},
		},
		{
			name:   "drift",
			args:   []string{"drift", "repos/o/r/actions"},
			script: map[string][]failure{"DetectDrift": {unavailable}},
			code:   exitOK,
			calls:  map[string]int{"DetectDrift": 2},
		},
		{
			name:   "ops",
			args:   []string{"ops"},
			script: map[string][]failure{"ListOperations": {shed(time.Second)}},
			code:   exitOK,
			calls:  map[string]int{"ListOperations": 2},
		},
		{
			name:   "op",
			args:   []string{"op", flakyOp},
			script: map[string][]failure{"GetOperation": {unavailable}},
			code:   exitOK,
			calls:  map[string]int{"GetOperation": 2},
		},
		{
			name:   "cancel",
			args:   []string{"cancel", flakyOp},
			script: map[string][]failure{"CancelOperation": {unavailable}},
			code:   exitOK,
			calls:  map[string]int{"CancelOperation": 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var f *flaky
				var srv secretbrokerv1.SecretServiceServer
				if !tc.down {
					f = newFlaky(tc.script)
					srv = f
				}
				run := newFakeRun(t, srv, tc.stdin)
				r := run.result(t, run.c.main(t.Context(), tc.args))
				if r.code != tc.code {
					t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.code, r.stdout, r.stderr)
				}
				wantContains(t, "stderr", r.stderr, tc.stderr...)
				for _, s := range tc.not {
					if strings.Contains(r.stderr, s) {
						t.Errorf("stderr has %q:\n%s", s, r.stderr)
					}
				}
				if f == nil {
					return
				}
				if got := f.counts(); fmt.Sprint(got) != fmt.Sprint(tc.calls) {
					t.Errorf("calls %v, want %v\nstderr:\n%s", got, tc.calls, r.stderr)
				}
				if tc.gapsOf != "" {
					calls := f.callsOf(tc.gapsOf)
					if len(calls) != len(tc.gaps)+1 {
						t.Fatalf("%d %s calls, want %d", len(calls), tc.gapsOf, len(tc.gaps)+1)
					}
					for i, g := range tc.gaps {
						if d := calls[i+1].at - calls[i].at; d < g.min || d > g.max {
							t.Errorf("wait %d before %s: %s, want %s to %s", i+1, tc.gapsOf, d, g.min, g.max)
						}
					}
				}
				if tc.check != nil {
					tc.check(t, f, r)
				}
			})
		})
	}
}

// TestRetryInterrupted: Ctrl-C while waiting to send a call again ends
// the wait at once; a sync whose start was only ever refused does not say
// an operation may have started.
func TestRetryInterrupted(t *testing.T) {
	envFile := writeFile(t, "app.env", []byte("A="+plantedValue+"\n"))
	for _, tc := range []struct {
		name   string
		args   []string
		script map[string][]failure
		key    string
		stderr []string
		not    []string
	}{
		{
			name:   "get",
			args:   []string{"get", flakySecret},
			script: map[string][]failure{"GetSecret": times(shed(20*time.Second), 9)},
			key:    "GetSecret",
			stderr: []string{"GetSecret: interrupted while waiting to try again", "get " + flakySecret + ": RESOURCE_EXHAUSTED"},
		},
		{
			name:   "sync's start",
			args:   []string{"sync", "--from-env-file", envFile, "repos/o/r/actions"},
			script: map[string][]failure{"SyncSecrets:async": times(shed(20*time.Second), 9)},
			key:    "SyncSecrets:async",
			stderr: []string{"SyncSecrets: interrupted while waiting to try again"},
			not:    []string{"may have been accepted"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFlaky(tc.script)
				run := newFakeRun(t, f, "")
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				go func() {
					time.Sleep(time.Second)
					cancel() // Ctrl-C
				}()
				r := run.result(t, run.c.main(ctx, tc.args))
				if took := time.Since(f.start); took != time.Second {
					t.Errorf("ended %s after the start, want 1s (at the interrupt)", took)
				}
				wantCode(t, r, exitFail)
				if n := len(f.callsOf(tc.key)); n != 1 {
					t.Errorf("%d %s calls, want 1", n, tc.key)
				}
				wantContains(t, "stderr", r.stderr, tc.stderr...)
				for _, s := range tc.not {
					if strings.Contains(r.stderr, s) {
						t.Errorf("stderr has %q:\n%s", s, r.stderr)
					}
				}
			})
		})
	}
}

// TestRetryDelay checks the waits' bounds without a broker: a RetryInfo
// is never shortened, its jitter never passes 30s.
func TestRetryDelay(t *testing.T) {
	withInfo := func(c codes.Code, d time.Duration) error {
		st, err := status.New(c, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name     string
		err      error
		kind     retryKind
		attempt  int
		ok       bool
		min, max time.Duration
	}{
		{"shed", withInfo(codes.ResourceExhausted, 10*time.Second), retryRefused, 1, true, 10 * time.Second, 12 * time.Second},
		{"shed near the cap", withInfo(codes.ResourceExhausted, 29*time.Second), retryRepeatable, 1, true, 29 * time.Second, 30 * time.Second},
		{"shed over the cap (the caller gives up)", withInfo(codes.ResourceExhausted, 40*time.Second), retryRepeatable, 1, true, 40 * time.Second, 40 * time.Second},
		{"bare RESOURCE_EXHAUSTED", status.Error(codes.ResourceExhausted, "too large"), retryRepeatable, 1, false, 0, 0},
		{"UNAVAILABLE, not repeatable", status.Error(codes.Unavailable, "x"), retryRefused, 1, false, 0, 0},
		{"UNAVAILABLE with a RetryInfo, not repeatable", withInfo(codes.Unavailable, time.Second), retryRefused, 1, false, 0, 0},
		{"UNAVAILABLE, 1st", status.Error(codes.Unavailable, "x"), retryRepeatable, 1, true, 500 * time.Millisecond, time.Second},
		{"UNAVAILABLE, 4th", status.Error(codes.Unavailable, "x"), retryRepeatable, 4, true, 4 * time.Second, 8 * time.Second},
		{"UNAVAILABLE, 9th: capped", status.Error(codes.Unavailable, "x"), retryRepeatable, 9, true, 4 * time.Second, 8 * time.Second},
		{"ABORTED, not repeatable", status.Error(codes.Aborted, "x"), retryRefused, 1, false, 0, 0},
		{"ABORTED, 1st", status.Error(codes.Aborted, "x"), retryRepeatable, 1, true, 500 * time.Millisecond, time.Second},
		{"FAILED_PRECONDITION", status.Error(codes.FailedPrecondition, "x"), retryRepeatable, 1, false, 0, 0},
		{"not a status", errors.New("x"), retryRepeatable, 1, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 200 {
				d, _, ok := retryDelay(tc.err, tc.kind, tc.attempt)
				if ok != tc.ok || d < tc.min || d > tc.max {
					t.Fatalf("retryDelay = %s, %v; want %v within %s to %s", d, ok, tc.ok, tc.min, tc.max)
				}
			}
		})
	}
}
