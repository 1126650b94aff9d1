package service

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// maxBatch is the most items one batch call may hold.
const maxBatch = 1000

// BatchPutSecrets creates or updates up to maxBatch secrets. Every item is
// validated and authorized first; items that fail, or that name the same
// secret as another item, are answered without any upstream call. Each
// allowed item's intent is then audited, each scope's key fetched at most
// once (none when cached), and every write goes to the pacer, which
// decides when it is sent, batchWorkers items at a time; each value is
// sealed when its write is admitted. Results keep the order
// of the requests; the batch logs one summary line. Only the first
// maxItemEvents items that write have spans of their own (itemContext).
func (s *Server) BatchPutSecrets(ctx context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	const op = "BatchPutSecrets"
	if req.GetAsync() {
		return s.batchAsync(ctx, req)
	}
	reqs := req.GetRequests()
	if len(reqs) > maxBatch {
		return nil, s.toStatus(ctx, op, invalidArg("requests", "holds %d items; a batch holds at most %d", len(reqs), maxBatch))
	}
	ctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	tally := batchTally{call: ctx}
	events := newItemEvents(ctx)
	results := make([]*secretbrokerv1.BatchPutSecretsResult, len(reqs))
	changes := make([]*change, len(reqs))
	itemCtx := make([]context.Context, len(reqs))
	// answered fills in item i's result: st, its answer for err.
	answered := func(i int, err error, st *status.Status) {
		r := results[i]
		r.Code, r.Message, r.RetryAfter = tally.count(err, st)
		events.item(i, r.Name, r.Code)
	}
	fail := func(i int, err error) { answered(i, err, tally.answer(err)) }
	// end ends item i's change, which ended with err, with the outcome
	// record of its answer, and returns the answer.
	end := func(i int, err error, v verdict) *status.Status {
		st := tally.answer(err)
		changes[i].endAnswered(itemCtx[i], st, v)
		return st
	}
	plans := make([]*putPlan, len(reqs))
	secrets := make([]string, len(reqs)) // each valid item's secret, to find repeats
	for i, r := range reqs {
		results[i] = &secretbrokerv1.BatchPutSecretsResult{Name: r.GetName()}
		p, err := parsePut(r, nil)
		if err != nil {
			s.rejected(ctx, rpcBatchPut, indexOf(i), r.GetName(), err)
			fail(i, err)
			continue
		}
		plans[i] = &p
		secrets[i] = secretKey(p.scope, p.name)
	}
	for _, i := range repeats(secrets) {
		s.rejected(ctx, rpcBatchPut, indexOf(i), reqs[i].GetName(), errRepeated())
		plans[i] = nil
		fail(i, errRepeated())
	}
	for i, p := range plans {
		if p == nil {
			continue
		}
		res := secretResourceName(p.scope, p.name)
		err := s.check(ctx, rpcBatchPut, indexOf(i), verbWrite, res, s.may(ctx, verbWrite, res))
		if err == nil {
			itemCtx[i], changes[i], err = s.begin(ctx, rpcBatchPut, indexOf(i), res, p.plaintext)
		}
		if err != nil {
			plans[i] = nil
			fail(i, err)
		}
	}

	for i, err := range s.resolveBatchNames(ctx, plans) {
		plans[i] = nil
		answered(i, err, end(i, err, verdict{}))
	}
	// Unchanged items are answered from the records and one listing of
	// each scope that may hold one, before any key is fetched.
	owner := ownerOf(ctx, "")
	judged := s.judgeBatch(ctx, plans, func(i int) bool { return reqs[i].GetForce() })
	for i, j := range judged {
		if plans[i] == nil {
			continue
		}
		if j.unchanged {
			s.metrics.skipped(ctx, rpcShort(rpcBatchPut))
			changes[i].endWith(itemCtx[i], nil, j.verdict)
			r := results[i]
			r.Name, r.KeyId, r.Unchanged = secretResourceName(plans[i].scope, plans[i].name), j.rec.KeyID, true
			r.Code, r.Message, r.RetryAfter = tally.add(nil)
			events.item(i, r.Name, r.Code)
			plans[i] = nil
			continue
		}
		if j.driftSeen {
			s.noteDrift(ctx, rpcBatchPut, secretResourceName(plans[i].scope, plans[i].name))
		}
	}
	keys := s.batchKeys(ctx, plans)
	var runnable []int
	for i, p := range plans {
		if p == nil {
			continue
		}
		if err := keys[p.scope.Path()].err; err != nil {
			answered(i, err, end(i, err, judged[i].verdict))
			continue
		}
		runnable = append(runnable, i)
	}
	for k, i := range runnable {
		itemCtx[i] = events.itemContext(itemCtx[i], k)
	}
	var written writtenSet
	eachItem(runnable, func(i int) {
		p := plans[i]
		j := judged[i]
		var (
			w     upstream.Written
			keyID upstream.KeyID
		)
		err := s.safely(ctx, op, func() (err error) {
			w, keyID, err = s.lockAndWrite(itemCtx[i], p, keys[p.scope.Path()].key, recordOf{prints: j.prints, havePrints: j.havePrints, owner: owner})
			return err
		})
		st := end(i, err, j.verdict)
		if err == nil {
			written.add(p.scope, p.name, j.prints.value)
			r := results[i]
			r.Name, r.Created, r.KeyId, r.Drift = secretResourceName(p.scope, p.name), w.Created, string(keyID), j.drift
		}
		answered(i, err, st)
	})
	written.readBack(ctx, s)
	events.summary(len(reqs), &tally)
	s.logBatch(ctx, op, len(reqs), &tally)
	return &secretbrokerv1.BatchPutSecretsResponse{Results: results}, nil
}

// batchPut writes one validated item of a batch whose scope's key was
// fetched for the whole batch. On return p holds the settings written.
func (s *Server) batchPut(ctx context.Context, p *putPlan, key sealingKey) (upstream.Written, upstream.KeyID, error) {
	if p.scope.IsOrg() {
		if err := s.checkAccessChange(ctx, *p); err != nil {
			return upstream.Written{}, "", err
		}
		if err := s.completeOrgAccess(ctx, p); err != nil {
			return upstream.Written{}, "", err
		}
	}
	if p.settingsOnly {
		return s.putSettings(ctx, *p)
	}
	if p.plaintext == nil {
		return s.putSealed(ctx, *p, key)
	}
	return s.putPlain(ctx, *p, key)
}

// keepTimeToReply returns a context whose deadline comes a little before
// ctx's, so that a batch stops admitting items in time to send its
// results before the caller's deadline: a tenth of the time left, at most
// 2 s. Without a deadline, ctx is returned as it is.
func keepTimeToReply(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(deadline)/10, 2*time.Second)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// scopeKey is one scope's key for a batch, or why it could not be had.
type scopeKey struct {
	key sealingKey
	err error
}

// batchKeys gets the key of every scope the plans write to, each once and
// all at the same time.
func (s *Server) batchKeys(ctx context.Context, plans []*putPlan) map[string]scopeKey {
	scopes := map[string]upstream.Scope{}
	for _, p := range plans {
		if p != nil {
			scopes[p.scope.Path()] = p.scope
		}
	}
	var (
		mu   sync.Mutex
		keys = make(map[string]scopeKey, len(scopes))
		wg   sync.WaitGroup
	)
	for path, scope := range scopes {
		wg.Go(func() {
			var k sealingKey
			err := s.safely(ctx, "key fetch", func() (err error) {
				k, err = s.keys.get(ctx, scope)
				return err
			})
			mu.Lock()
			keys[path] = scopeKey{k, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return keys
}

// batchWorkers is how many items of one batch are in progress at once:
// enough to keep the pacer's write slot and in-flight requests busy, few
// enough that a thousand-item batch costs dozens of goroutines, not
// thousands. Items waiting their turn hold no goroutine and no sealed value.
const batchWorkers = 32

// eachItem calls fn for every index in items, batchWorkers at a time, and
// returns when all calls have returned.
func eachItem(items []int, fn func(i int)) {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(batchWorkers, len(items)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(items) {
					return
				}
				fn(items[k])
			}
		})
	}
	wg.Wait()
}

// BatchDeleteSecrets deletes up to maxBatch secrets, one result per name in
// the order sent. Invalid, repeated or denied names are answered without
// any upstream call; the deletes go to the pacer together. Only the first
// maxItemEvents deletes have spans of their own (itemContext).
func (s *Server) BatchDeleteSecrets(ctx context.Context, req *secretbrokerv1.BatchDeleteSecretsRequest) (*secretbrokerv1.BatchDeleteSecretsResponse, error) {
	const op = "BatchDeleteSecrets"
	names := req.GetNames()
	if len(names) > maxBatch {
		return nil, s.toStatus(ctx, op, invalidArg("names", "holds %d names; a batch holds at most %d", len(names), maxBatch))
	}
	type target struct {
		scope upstream.Scope
		name  string
		ctx   context.Context
		ch    *change
	}
	ctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	tally := batchTally{call: ctx}
	events := newItemEvents(ctx)
	results := make([]*secretbrokerv1.BatchDeleteSecretsResult, len(names))
	// answered fills in item i's result: st, its answer for err.
	answered := func(i int, err error, st *status.Status) {
		r := results[i]
		r.Code, r.Message, r.RetryAfter = tally.count(err, st)
		events.item(i, r.Name, r.Code)
	}
	fail := func(i int, err error) { answered(i, err, tally.answer(err)) }
	targets := make([]*target, len(names))
	secrets := make([]string, len(names)) // each valid name's secret, to find repeats
	for i, n := range names {
		results[i] = &secretbrokerv1.BatchDeleteSecretsResult{Name: n}
		scope, name, err := parseSecretName("names", n)
		if err != nil {
			s.rejected(ctx, rpcBatchDelete, indexOf(i), n, err)
			fail(i, err)
			continue
		}
		targets[i] = &target{scope: scope, name: name}
		secrets[i] = secretKey(scope, name)
	}
	for _, i := range repeats(secrets) {
		s.rejected(ctx, rpcBatchDelete, indexOf(i), names[i], errRepeated())
		targets[i] = nil
		fail(i, errRepeated())
	}
	for i, t := range targets {
		if t == nil {
			continue
		}
		res := secretResourceName(t.scope, t.name)
		err := s.check(ctx, rpcBatchDelete, indexOf(i), verbDelete, res, s.may(ctx, verbDelete, res))
		if err == nil {
			t.ctx, t.ch, err = s.begin(ctx, rpcBatchDelete, indexOf(i), res, nil)
		}
		if err != nil {
			targets[i] = nil
			fail(i, err)
		}
	}
	var runnable []int
	for i, t := range targets {
		if t != nil {
			t.ctx = events.itemContext(t.ctx, len(runnable))
			runnable = append(runnable, i)
		}
	}
	eachItem(runnable, func(i int) {
		t := targets[i]
		err := s.safely(ctx, op, func() error {
			return s.deleteRecorded(t.ctx, t.scope, t.name, nil)
		})
		st := tally.answer(err)
		t.ch.endAnswered(t.ctx, st, verdict{})
		answered(i, err, st)
	})
	events.summary(len(names), &tally)
	s.logBatch(ctx, op, len(names), &tally)
	return &secretbrokerv1.BatchDeleteSecretsResponse{Results: results}, nil
}

// secretKey identifies a secret the way GitHub does: the organization,
// owner, repository and environment names in any case (recordScope),
// secret names upper-case. Two items of a batch with the same secretKey
// are repeats, writes with the same secretKey share a write lock
// (secretLocks), and the broker's record of a secret is kept under its
// secretKey (record.go), so that a write, a selection change or a sync
// under one spelling of a scope sees the record another spelling left.
// Policy checks, audit records and answers use the caller's spelling
// (secretResourceName), never the key.
func secretKey(scope upstream.Scope, name string) string {
	return recordScope(scope) + "/secrets/" + strings.ToUpper(name)
}

// recordScope is foldedScope with the environment's name folded too, as
// GitHub matches environment names without case ("Environment names are
// not case sensitive", GitHub's docs, "Managing environments for
// deployment"): the prefix of the secretKeys of scope's secrets. Two spellings of one
// environment must share their secrets' records and write locks, or a
// sync by one owner under "Staging" would overwrite another's under
// "staging" without a conflict. The key cache keeps foldedScope, which
// leaves environments as spelled: there a spelling too many costs one
// more key fetch, never a wrong answer.
func recordScope(s upstream.Scope) string {
	s.Environment = lowerASCII(s.Environment)
	return foldedScope(s)
}

// repeats returns the indexes of the keys that stand more than once in
// keys ("" is no key): every item naming a secret another item names is
// refused, since which of them should win is not for the broker to guess.
func repeats(keys []string) []int {
	seen := make(map[string]int, len(keys))
	for _, k := range keys {
		if k != "" {
			seen[k]++
		}
	}
	var out []int
	for i, k := range keys {
		if k != "" && seen[k] > 1 {
			out = append(out, i)
		}
	}
	return out
}

func errRepeated() error {
	return invalidArg("name", "names the same secret as another item of the batch; send one item per secret")
}

// batchTally turns each item's error into its result fields, without a
// log line per item, and counts the codes for the batch's one summary line.
type batchTally struct {
	// call is the call's context less its time to reply
	// (keepTimeToReply): an item it stopped before the item was sent is
	// told so (notSentInTime). Nil: none.
	call context.Context

	mu     sync.Mutex
	counts map[codes.Code]int
	fault  error // one server-side failure, for the summary
}

// retryNotSent is the retry_after of an item the call's deadline stopped
// before it was sent (notSentInTime): its turn came, or nearly, as the
// deadline passed; the pacer's shortest retry.
const retryNotSent = time.Second

// notSentInTime is the answer for a batch's item that the call's deadline
// (less its time to reply) stopped before GitHub was sent it: its turn
// came as the deadline passed (the write slot freed by a write the
// deadline cut), or it waited for something else. As the pacer answers an
// item whose turn it can tell would come too late, RESOURCE_EXHAUSTED
// with a retry_after, never DEADLINE_EXCEEDED, which says nothing of
// whether GitHub was sent it and is what an item cut short on its way to
// GitHub is answered.
func notSentInTime() *status.Status {
	return WithRetryInfo(status.New(codes.ResourceExhausted,
		"the call's deadline came before this item could be sent to GitHub; nothing was sent: try again later"), retryNotSent)
}

// answer returns the status a caller is answered for an item that ended
// with err (nil for success): the status the single call would have had,
// except that an item the shutdown's drain (the call's context cancelled
// with ErrDrained) stopped before GitHub was sent it is UNAVAILABLE, as a
// single call it stops (Stopped), and one a cancel (the drain's or the
// caller's) cut short after GitHub was sent it is ABORTED
// (mayHaveApplied); an item its caller's cancel stopped before GitHub was
// sent it stays CANCELLED. An item the call's deadline stopped before
// GitHub was sent it is RESOURCE_EXHAUSTED (notSentInTime), one it cut
// short after, DEADLINE_EXCEEDED. An item with an outcome record is
// answered once, and its record holds that answer's code
// (change.endAnswered): the call's deadline may pass between two looks.
func (t *batchTally) answer(err error) *status.Status {
	st := statusOf(err)
	cancelled := st.Code() == codes.Canceled
	switch {
	case cancelled && sentWhenStopped(err):
		// The call's context ended while the item's write was on its way
		// to GitHub (or its retry waited): GitHub may have applied it.
		if t.drained() {
			return mayHaveApplied("the broker is shutting down and stopped the call", "this item")
		}
		return mayHaveApplied("the call was cancelled", "this item")
	case cancelled && t.drained():
		// The shutdown's drain stopped the call while the item ran or
		// waited, and the call still answers. The item, never sent, is
		// to be sent again, as a single call stopped so is told. (An
		// item whose caller cancelled the call stays CANCELLED: its
		// caller left.)
		return Stopped("this item")
	case st.Code() == codes.DeadlineExceeded && t.call != nil && t.call.Err() != nil && !sentWhenCut(err):
		return notSentInTime()
	}
	return st
}

// drained reports whether the shutdown's drain ended the call's context
// (its cause ErrDrained), not its caller.
func (t *batchTally) drained() bool {
	return t.call != nil && errors.Is(context.Cause(t.call), ErrDrained)
}

// add returns the result fields of an item that ended with err (nil for
// success), answered as answer says, and counts its code.
func (t *batchTally) add(err error) (code.Code, string, *durationpb.Duration) {
	return t.count(err, t.answer(err))
}

// count returns the code, the safe message and the retry delay of st, the
// answer (answer) of an item that ended with err, and counts its code
// for the batch's summary.
func (t *batchTally) count(err error, st *status.Status) (code.Code, string, *durationpb.Duration) {
	drained := statusOf(err).Code() == codes.Canceled
	retry := retryAfterOf(st)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[codes.Code]int)
	}
	t.counts[st.Code()]++
	if t.fault == nil && !drained && serverFault(st.Code()) {
		t.fault = err
	}
	return code.Code(st.Code()), st.Message(), retry
}

// retryAfterOf is the retry delay of st's RetryInfo, nil without one: an
// item's retry_after.
func retryAfterOf(st *status.Status) *durationpb.Duration {
	var retry *durationpb.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay()
		}
	}
	return retry
}

// serverFault reports whether an item's code means the broker or GitHub
// failed. A caller's mistake, a denial, a cancellation, a deadline or the
// pacer's refusal to send past it are the ordinary outcomes of a batch.
func serverFault(c codes.Code) bool {
	switch c {
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// logBatch writes a batch's one summary line: how many items ended with
// each code, and one server-side cause when there was any. A batch with
// failures the broker or GitHub caused logs at WARN, one with other
// failures at INFO, a clean one at DEBUG.
func (s *Server) logBatch(ctx context.Context, op string, n int, t *batchTally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.metrics.batch(ctx, op, n, t.counts)
	level := slog.LevelDebug
	if t.counts[codes.OK] != n {
		level = slog.LevelInfo
	}
	if t.fault != nil {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	byCode := make([]any, 0, len(t.counts))
	for c, k := range t.counts {
		byCode = append(byCode, slog.Int(c.String(), k))
	}
	attrs := []any{"op", op, "items", n, slog.Group("codes", byCode...)}
	if t.fault != nil {
		attrs = append(attrs, "first_fault", t.fault)
	}
	s.log.Log(ctx, level, "batch finished", attrs...)
}
