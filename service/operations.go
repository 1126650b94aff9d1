package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// Long-running operations (AIP-151): SyncSecrets and BatchPutSecrets with
// async run on one operation.Runner per Server, on the state store, so an
// accepted operation survives a restart (ResumeOperations) and stops
// cleanly at shutdown (CloseOperations). Each item runs through an
// Executor, one per running operation, with the starting caller's
// identity in its context (audit records name that caller; the pacer
// queues its writes in that caller's lane), and is authorized again just
// before it runs, with the policy as it is then: a caller whose access is
// revoked gets PERMISSION_DENIED for its remaining items.
//
// Who sees an operation: without an Authorizer, everyone (as every secret).
// With one, the caller that started it, and a caller the policy lets read
// every secret the operation names (and, for a sync, some secret of its
// scope). Anyone else gets NOT_FOUND, as for a missing operation.
// CancelOperation of another caller's operation needs write on every
// secret it names. ListOperations lists the caller's own operations only
// (others' it may read are reachable by name).

// The operation RPCs' full method names, for audit records.
const (
	rpcCancelOperation = secretbrokerv1.SecretService_CancelOperation_FullMethodName
)

// operationPrefix starts an operation's resource name.
const operationPrefix = "operations/"

// operationKey is the context key of the operation a change is part of.
type operationKey struct{}

// withOperation returns ctx for the work of operation name
// ("operations/{id}"), which its audit records name.
func withOperation(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, operationKey{}, name)
}

// operationOf returns the operation ctx's work is part of, or "".
func operationOf(ctx context.Context) string {
	name, _ := ctx.Value(operationKey{}).(string)
	return name
}

// OperationOptions tune the runner of long-running operations. The zero
// value is usable.
type OperationOptions struct {
	// MaxRunning bounds how many operations run at once; zero means
	// operation.DefaultMaxRunning.
	MaxRunning int
	// FlushEvery bounds how many finished items may be unrecorded at once
	// (what a crash repeats); zero means operation.DefaultFlushEvery.
	FlushEvery int
	// MaxWait bounds one wait of WaitOperation's (it waits again until its
	// timeout or deadline); zero means operation.DefaultMaxWait.
	MaxWait time.Duration
	// MaxPerCaller bounds how many unfinished operations one caller may
	// have in this Server's runner (operation.Options.MaxPerCaller): one
	// more is RESOURCE_EXHAUSTED. The caller is the identity in the
	// call's context (identity.CallerFrom); an unauthenticated call's
	// operations are counted by its client address (the front door's fairness key, upstream.WithCaller),
	// apart from any identity's, and all of those with none as one. The
	// count is this runner's, not the state store's. Zero (or negative)
	// means operation.DefaultMaxPerCaller.
	MaxPerCaller int
	// Estimate returns how long an operation's remaining items take, for
	// its estimated completion time. Default: the upstream client's
	// pacing (upstream.Pacing.WritesDuration) when the Upstream has a
	// Pacing method, else none.
	Estimate func(remaining int) time.Duration
	// Volatile says the state store lives in this process's memory (no
	// --state-dir or --redis-url): an operation that shutdown cuts is
	// lost, not resumed after a restart, and the runner's log says so.
	Volatile bool
	// Sole says no other process uses the state store while this one
	// does (--state-dir: the file is locked by its one process): the
	// operations a killed process left leased to its runner are taken
	// over by the first resume, without waiting for their lease to end
	// (operation.Options.Sole). Never with a store replicas share.
	Sole bool
}

// operations is the Server's runner and the executors of the operations
// it runs.
type operations struct {
	runner *operation.Runner
	// maxPerCaller is the runner's bound on one caller's unfinished
	// operations, for the answer that refuses one more.
	maxPerCaller int

	mu     sync.Mutex
	execs  map[string]*Executor
	closed bool
}

// newOperations returns the runner of s's operations on store.
func newOperations(s *Server, up Upstream, store state.Store, o OperationOptions) *operations {
	ops := &operations{execs: map[string]*Executor{}, maxPerCaller: operation.DefaultMaxPerCaller}
	if o.MaxPerCaller > 0 {
		ops.maxPerCaller = o.MaxPerCaller
	}
	est := o.Estimate
	if p, ok := up.(interface{ Pacing() upstream.Pacing }); ok && est == nil {
		pacing := p.Pacing()
		est = pacing.WritesDuration
	}
	r, err := operation.New(operation.Options{
		Store:      store,
		Exec:       s.execItem,
		Estimate:   est,
		Finish:     s.finishOperation,
		Recorded:   s.recordedItems,
		Logger:     s.log,
		MaxRunning: max(o.MaxRunning, 0),
		FlushEvery: max(o.FlushEvery, 0),
		MaxWait:    max(o.MaxWait, 0),
		Volatile:   o.Volatile,
		Sole:       o.Sole,

		MaxPerCaller: ops.maxPerCaller,
	})
	if err != nil {
		// Only a nil store or exec, or a negative option, fails: none here.
		panic(fmt.Sprintf("service: operation runner: %v", err))
	}
	ops.runner = r
	return ops
}

// ResumeOperations runs the operations a previous process left unfinished
// in the state store; call it once at start-up. It returns how many it
// resumed.
func (s *Server) ResumeOperations(ctx context.Context) (int, error) {
	n, err := s.ops.runner.Resume(ctx)
	if err != nil {
		return n, fmt.Errorf("service: resume operations: %w", err)
	}
	return n, nil
}

// CloseOperations stops the operation runner at shutdown, before the
// state store closes: no item starts after it, async calls answer
// UNAVAILABLE, and waiting WaitOperation calls return the operation as it
// is. It waits for the items in flight to finish and be recorded, or
// until ctx ends (they are then cut, and run again after the restart).
func (s *Server) CloseOperations(ctx context.Context) error {
	s.ops.mu.Lock()
	s.ops.closed = true
	s.ops.mu.Unlock()
	if err := s.ops.runner.Close(ctx); err != nil {
		return fmt.Errorf("service: close operations: %w", err)
	}
	return nil
}

// execItem runs one item of op as op's caller: the operation runner's
// Exec. The item is authorized again first, with the policy as it is now
// (Executor.reauthorize): a caller whose access was revoked after the
// operation was accepted gets PERMISSION_DENIED for its remaining items,
// also when the operation resumes after a restart.
func (s *Server) execItem(ctx context.Context, op *state.Operation, item state.PendingItem) state.ItemResult {
	if op.Caller != "" {
		ctx = identity.WithCaller(ctx, op.Caller)
	}
	ctx = upstream.WithoutQueueLimit(upstream.WithCaller(ctx, "operations:"+op.Caller)) // waits for GitHub's budgets on purpose
	ctx = withOperation(ctx, operationPrefix+op.ID)
	s.ops.mu.Lock()
	x := s.ops.execs[op.ID]
	if x == nil {
		x = s.NewExecutor(op.Kind, op.Owner, op.Force)
		x.reauthorize = true
		s.ops.execs[op.ID] = x
	}
	s.ops.mu.Unlock()
	return x.Execute(ctx, item)
}

// recordedItems counts items of op in the batch metrics once the state
// store has recorded their results (the runner's Recorded): each item
// once, also when it ran again after a restart because its result was
// lost with the process, and also when it ended without running (its
// value lost, DATA_LOSS) or its run panicked (INTERNAL). Items that ended
// as op was accepted count then (startOperation).
func (s *Server) recordedItems(ctx context.Context, op *state.Operation, results []state.ItemResult) {
	if op.Caller != "" {
		ctx = identity.WithCaller(ctx, op.Caller)
	}
	for _, r := range results {
		s.metrics.batchItemsEnded(ctx, string(op.Kind), r.Code, 1)
	}
}

// finishOperation drops the executor of an operation this process stopped
// running, after reading back what it wrote.
func (s *Server) finishOperation(ctx context.Context, id string) {
	s.ops.mu.Lock()
	x := s.ops.execs[id]
	delete(s.ops.execs, id)
	s.ops.mu.Unlock()
	if x != nil {
		x.Finish(ctx)
	}
}

// startOperation stores op and runs it; the answer carries it.
func (s *Server) startOperation(ctx context.Context, rpcName string, op *state.Operation) (*secretbrokerv1.Operation, error) {
	started, err := s.ops.runner.Start(ctx, op)
	if err != nil {
		return nil, s.opError(ctx, rpcName, err)
	}
	// Its items, and those that ended as it was accepted (refused,
	// unchanged), count in the batch metrics as a synchronous call's do;
	// the others count as their results are recorded (recordedItems).
	s.metrics.batchSized(ctx, rpcName, len(op.Results)+len(op.Pending))
	for _, r := range op.Results {
		s.metrics.batchItemsEnded(ctx, rpcName, r.Code, 1)
	}
	return toOperation(started), nil
}

// opError maps an error of the operation runner to the status a caller
// sees, and logs it. What is not the caller's (a missing operation, a bad
// name, its own deadline or cancel) nor a stored operation that does not
// decode is the state store failing (Redis unreachable, or its own
// timeout; a file store's I/O error; a store closed at shutdown):
// UNAVAILABLE with a retry delay, as the README promises while the state
// the replicas share cannot be reached, so that a caller polling an
// operation tries again instead of giving it up.
func (s *Server) opError(ctx context.Context, op string, err error) error {
	var st *status.Status
	switch {
	case errors.Is(err, state.ErrNotFound):
		st = status.New(codes.NotFound, "operation not found")
	case errors.Is(err, state.ErrInvalid):
		st = status.New(codes.InvalidArgument, "name: not an operation name (operations/{id})")
	case errors.Is(err, operation.ErrClosed):
		st = WithRetryInfo(status.New(codes.Unavailable, "the broker is shutting down; try again"), RetryShutdown)
	case errors.Is(err, operation.ErrTooMany):
		st = WithRetryInfo(status.New(codes.ResourceExhausted, fmt.Sprintf(
			"the caller has %d unfinished operations, the most the broker keeps for one caller; wait for one to end (WaitOperation) or cancel one, then try again",
			s.ops.maxPerCaller)), retryOperations)
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		st = classify(err)
	case errors.Is(err, state.ErrCorrupt):
		st = status.New(codes.Internal, "internal error")
	default:
		st = WithRetryInfo(status.New(codes.Unavailable, "the broker's state store cannot be reached; try again later"), RetryOutage)
	}
	if st.Code() == codes.Internal || st.Code() == codes.Unavailable {
		s.log.ErrorContext(ctx, "request failed", "op", op, "code", st.Code().String(), "err", err)
	}
	return st.Err()
}

// opVisible is who may see which operation in ctx's call (see the top of
// this file); nil lets everything through.
func (s *Server) opVisible(ctx context.Context) operation.Visible {
	if s.authz == nil {
		return nil
	}
	c := callerOf(ctx)
	return func(op *state.Operation) bool {
		return c != "" && (op.Caller == c || s.mayAllOf(c, verbRead, op))
	}
}

// mayAllOf reports whether caller may apply verb to every secret op names
// (and, for a sync, to some secret of its scope), op naming something.
func (s *Server) mayAllOf(caller, verb string, op *state.Operation) bool {
	named := false
	if op.Parent != "" {
		if !s.authz.AllowSome(caller, verb, op.Parent) {
			return false
		}
		named = true
	}
	for _, r := range op.Results {
		if !s.authz.Allow(caller, verb, r.Name) {
			return false
		}
		named = true
	}
	for _, p := range op.Pending {
		if !s.authz.Allow(caller, verb, p.Name) {
			return false
		}
		named = true
	}
	return named
}

// operationID returns the ID of the operation named name.
func operationID(name string) (string, error) {
	id, ok := strings.CutPrefix(name, operationPrefix)
	if !ok || !validOperationID(id) {
		return "", invalidArg("name", "must be operations/{id}")
	}
	return id, nil
}

// validOperationID reports whether id can be an operation's ID (see
// state.NewOperationID): 1 to 128 letters, digits, "_" or "-".
func validOperationID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// GetOperation returns a long-running operation the caller may see.
func (s *Server) GetOperation(ctx context.Context, req *secretbrokerv1.GetOperationRequest) (*secretbrokerv1.Operation, error) {
	id, err := operationID(req.GetName())
	if err != nil {
		return nil, s.toStatus(ctx, "GetOperation", err)
	}
	op, err := s.ops.runner.Get(ctx, id, s.opVisible(ctx))
	if err != nil {
		return nil, s.opError(ctx, "GetOperation", err)
	}
	return toOperation(op), nil
}

// ListOperations lists one page of the caller's operations, oldest first.
func (s *Server) ListOperations(ctx context.Context, req *secretbrokerv1.ListOperationsRequest) (*secretbrokerv1.ListOperationsResponse, error) {
	size := req.GetPageSize()
	switch {
	case size < 0:
		return nil, s.toStatus(ctx, "ListOperations", invalidArg("page_size", "must not be negative"))
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize // AIP-158: coerce to the maximum
	}
	f := state.OperationFilter{NotDone: req.GetNotDone(), Limit: int(size)}
	if s.authz != nil {
		f.Caller = callerOf(ctx)
		if f.Caller == "" {
			return nil, s.toStatus(ctx, "ListOperations", errUnauthenticated)
		}
	}
	if t := req.GetPageToken(); t != "" {
		after, _, ok := decodeOperationToken(t, f.NotDone)
		if !ok {
			return nil, s.toStatus(ctx, "ListOperations", invalidArg("page_token", "is not a token this list returned (with this not_done)"))
		}
		f.After = after
	}
	ops, next, err := s.ops.runner.List(ctx, f, nil)
	if err != nil {
		return nil, s.opError(ctx, "ListOperations", err)
	}
	resp := &secretbrokerv1.ListOperationsResponse{Operations: make([]*secretbrokerv1.Operation, 0, len(ops))}
	for _, op := range ops {
		resp.Operations = append(resp.Operations, toOperation(op))
	}
	if next != "" {
		resp.NextPageToken = operationToken(next, int(size), f.NotDone)
	}
	return resp, nil
}

// opTokenVersion starts an operations page token.
const opTokenVersion = "o1"

// operationToken returns the page token that lists operations after the
// ID after, issued by a page of size for not_done. The size only tells
// what the token was issued for: the next page may ask for another
// (AIP-158; the list resumes after an ID, whatever the size), and a
// broker that did bind it to its size still reads it with the same size.
func operationToken(after string, size int, notDone bool) string {
	return encodeToken(opTokenVersion + ":" + after + ":" + strconv.Itoa(size) + ":" + strconv.FormatBool(notDone))
}

// decodeOperationToken returns the ID a token lists after, and the page
// size it was issued by, when it was issued for this not_done.
func decodeOperationToken(token string, notDone bool) (after string, size int, ok bool) {
	raw, ok := decodeToken(token)
	if !ok {
		return "", 0, false
	}
	parts := strings.Split(raw, ":")
	if len(parts) != 4 || parts[0] != opTokenVersion || !validOperationID(parts[1]) || parts[3] != strconv.FormatBool(notDone) {
		return "", 0, false
	}
	size, err := strconv.Atoi(parts[2])
	if err != nil || size < 1 || size > maxPageSize || parts[2] != strconv.Itoa(size) {
		return "", 0, false
	}
	return parts[1], size, true
}

// CancelOperation asks an operation to stop. The caller that started it
// may cancel it; another caller needs write on every secret it names.
func (s *Server) CancelOperation(ctx context.Context, req *secretbrokerv1.CancelOperationRequest) (*secretbrokerv1.Operation, error) {
	const op = "CancelOperation"
	id, err := operationID(req.GetName())
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	visible := s.opVisible(ctx)
	cur, err := s.ops.runner.Get(ctx, id, visible)
	if err != nil {
		return nil, s.opError(ctx, op, err)
	}
	if s.authz != nil && cur.Caller != callerOf(ctx) && !s.mayAllOf(callerOf(ctx), verbWrite, cur) {
		return nil, s.toStatus(ctx, op, s.deny(ctx, rpcCancelOperation, nil, verbWrite, operationPrefix+id))
	}
	// Cancelling changes what is written: audited like any change, and
	// refused when the intent cannot be recorded.
	ctx, ch, err := s.begin(ctx, rpcCancelOperation, nil, operationPrefix+id, nil)
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	defer ch.endOnPanic(ctx)
	done, err := s.ops.runner.Cancel(ctx, id, visible)
	if err != nil {
		err = s.opError(ctx, op, err) // the outcome record says what the caller is told
	}
	ch.end(ctx, err)
	if err != nil {
		return nil, err
	}
	return toOperation(done), nil
}

// WaitOperation waits until an operation is done, its timeout passes or
// the call's deadline nears (a little before it, to answer in time), and
// returns it as it is then. Without a timeout it waits until done or the
// deadline. While the broker shuts down it answers at once.
func (s *Server) WaitOperation(ctx context.Context, req *secretbrokerv1.WaitOperationRequest) (*secretbrokerv1.Operation, error) {
	const op = "WaitOperation"
	id, err := operationID(req.GetName())
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	var until time.Time // zero: no timeout of its own
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return nil, s.toStatus(ctx, op, invalidArg("timeout", "must be a duration of zero or more"))
		}
		until = time.Now().Add(t.AsDuration())
	}
	wctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	if d, ok := wctx.Deadline(); ok && (until.IsZero() || d.Before(until)) {
		until = d
	}
	visible := s.opVisible(ctx)
	for {
		var left time.Duration // zero: the runner's longest wait
		if !until.IsZero() {
			if left = time.Until(until); left <= 0 {
				break
			}
		}
		got, err := s.ops.runner.Wait(wctx, id, left, visible)
		switch {
		case err != nil && ctx.Err() == nil && wctx.Err() != nil:
			// The margin before the caller's deadline: answer with the
			// latest state below.
		case err != nil:
			return nil, s.opError(ctx, op, err)
		case got.Done || s.opsClosed():
			return toOperation(got), nil
		}
		if wctx.Err() != nil {
			break
		}
	}
	got, err := s.ops.runner.Get(ctx, id, visible)
	if err != nil {
		return nil, s.opError(ctx, op, err)
	}
	return toOperation(got), nil
}

// opsClosed reports whether CloseOperations was called.
func (s *Server) opsClosed() bool {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	return s.ops.closed
}

// toOperation is a stored operation as the API shows it. Sync results are
// sorted by name; batch results are in the order they were decided: the
// items refused when the batch was accepted first, then the others, each
// in the order of the request, those an operation ended without running
// (CANCELLED, "not run") last. A done operation has one result per item.
// A batch's result names its secret as stored when written (or
// unchanged), as sent otherwise, as a batch answered at once does.
func toOperation(op *state.Operation) *secretbrokerv1.Operation {
	now := time.Now() // a result's retry_after is the wait left from now
	m := op.Metadata
	out := &secretbrokerv1.Operation{
		Name: operationPrefix + op.ID,
		Done: op.Done,
		Metadata: &secretbrokerv1.OperationMetadata{
			Kind:      string(op.Kind),
			Total:     int32(m.Total),
			Written:   int32(m.Written),
			Unchanged: int32(m.Unchanged),
			Failed:    int32(m.Failed),
			Remaining: int32(m.Remaining),
		},
	}
	if !m.EstimatedCompletion.IsZero() {
		out.Metadata.EstimatedCompletionTime = timestamppb.New(m.EstimatedCompletion)
	}
	if !op.CreateTime.IsZero() {
		out.Metadata.CreateTime = timestamppb.New(op.CreateTime)
	}
	if !op.UpdateTime.IsZero() {
		out.Metadata.UpdateTime = timestamppb.New(op.UpdateTime)
	}
	if op.Error != nil {
		out.Error = &spb.Status{Code: int32(op.Error.Code), Message: op.Error.Message}
	}
	if len(op.Results) == 0 && !op.Done {
		return out
	}
	resp := &secretbrokerv1.OperationResponse{}
	switch op.Kind {
	case state.KindSyncSecrets:
		for _, r := range op.Results {
			resp.SyncResults = append(resp.SyncResults, &secretbrokerv1.SyncSecretsResult{
				Name: r.Name, Action: SyncActionOf(r.Action), Code: code.Code(r.Code), Message: r.Message, Drift: r.Drift,
				KeyId: r.KeyID, RecordedOwner: r.RecordedOwner, RetryAfter: retryAfter(r, now),
			})
		}
		slices.SortStableFunc(resp.SyncResults, func(a, b *secretbrokerv1.SyncSecretsResult) int {
			return strings.Compare(a.GetName(), b.GetName())
		})
	default:
		for _, r := range op.Results {
			name := r.Name
			if r.Code != codes.OK && r.Sent != "" {
				name = r.Sent // as a batch answered at once names a failed item
			}
			resp.BatchPutResults = append(resp.BatchPutResults, &secretbrokerv1.BatchPutSecretsResult{
				Name: name, Code: code.Code(r.Code), Message: r.Message, Unchanged: r.Unchanged, Drift: r.Drift, KeyId: r.KeyID,
				RetryAfter: retryAfter(r, now),
				// A result stored before Created was kept has only its
				// action (create only when it was one).
				Created: r.Code == codes.OK && (r.Created || r.Action == syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CREATE]),
			})
		}
	}
	out.Response = resp
	return out
}

// retryAfter is a stored result's retry_after as a reader is shown it at
// now: the time still to wait until its RetryAt, nil once that has
// passed (never negative) and when it has none. A result without a
// RetryAt (stored, before it was kept, in an operation without times)
// shows its RetryAfter, the delay as it was answered.
func retryAfter(r state.ItemResult, now time.Time) *durationpb.Duration {
	d := r.RetryAfter
	if !r.RetryAt.IsZero() {
		d = r.RetryAt.Sub(now)
	}
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

// retryOf is an item's retry delay as an operation's result keeps it:
// st's (retryAfterOf) and the instant it ends, counted from now, when
// the item failed; zero without one.
func retryOf(st *status.Status) (time.Duration, time.Time) {
	d := retryAfterOf(st).AsDuration()
	if d <= 0 {
		return 0, time.Time{}
	}
	return d, time.Now().Add(d)
}

// itemResultOf is a sync item decided when the sync was accepted (not
// run): unchanged, foreign, or refused. Foreign items count as unchanged
// in the operation's metadata: nothing is done with them.
func itemResultOf(it *syncItem) state.ItemResult {
	st := statusOf(it.err)
	retry, retryAt := retryOf(st)
	return state.ItemResult{
		Name: it.res, Code: st.Code(), Message: st.Message(), RetryAfter: retry, RetryAt: retryAt,
		Drift: it.drift, Action: syncActionName[it.action],
		RecordedOwner: it.recordedOwner,
		Unchanged: it.err == nil && (it.action == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED ||
			it.action == secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN),
	}
}
