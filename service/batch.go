package service

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
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
// validated first; items that fail, or that name the same secret as
// another item, are answered without any upstream call. Each scope's key is
// then fetched at most once (none when cached), the values are sealed in
// parallel, and every write goes to the pacer, which decides when it is
// sent. Results keep the order of the requests.
func (s *Server) BatchPutSecrets(ctx context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	const op = "BatchPutSecrets"
	reqs := req.GetRequests()
	if len(reqs) > maxBatch {
		return nil, s.toStatus(ctx, op, invalidArg("requests", "holds %d items; a batch holds at most %d", len(reqs), maxBatch))
	}
	ctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	results := make([]*secretbrokerv1.BatchPutSecretsResult, len(reqs))
	plans := make([]*putPlan, len(reqs))
	secrets := make([]string, len(reqs)) // each valid item's secret, to find repeats
	for i, r := range reqs {
		results[i] = &secretbrokerv1.BatchPutSecretsResult{Name: r.GetName()}
		p, err := parsePut(r)
		if err != nil {
			s.putResult(ctx, results[i], err)
			continue
		}
		plans[i] = &p
		secrets[i] = secretKey(p.scope, p.name)
	}
	for _, i := range repeats(secrets) {
		plans[i] = nil
		s.putResult(ctx, results[i], errRepeated())
	}

	keys := s.batchKeys(ctx, plans)
	sealed := s.sealAll(plans, keys)

	var wg sync.WaitGroup
	for i, p := range plans {
		if p == nil {
			continue
		}
		if k := keys[p.scope.Path()]; k.err != nil {
			s.putResult(ctx, results[i], k.err)
			continue
		}
		if sealed[i].err != nil {
			s.putResult(ctx, results[i], sealed[i].err)
			continue
		}
		wg.Go(func() {
			created, keyID, err := s.batchPut(ctx, *p, keys[p.scope.Path()].key, sealed[i].value)
			r := results[i]
			if err == nil {
				r.Name, r.Created, r.KeyId = secretResourceName(p.scope, p.name), created, string(keyID)
			}
			s.putResult(ctx, r, err)
		})
	}
	wg.Wait()
	return &secretbrokerv1.BatchPutSecretsResponse{Results: results}, nil
}

// batchPut writes one validated item of a batch whose key was fetched and
// whose value (when the broker seals it) was sealed ahead.
func (s *Server) batchPut(ctx context.Context, p putPlan, key sealingKey, v sealedValue) (bool, upstream.KeyID, error) {
	if p.scope.IsOrg() {
		if err := s.completeOrgAccess(ctx, &p); err != nil {
			return false, "", err
		}
	}
	if p.plaintext == nil {
		return s.putSealed(ctx, p, key)
	}
	return s.putPlain(ctx, p, v)
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
			k, err := s.keys.get(ctx, scope)
			mu.Lock()
			keys[path] = scopeKey{k, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return keys
}

// sealResult is one item's value sealed ahead of its write.
type sealResult struct {
	value sealedValue
	err   error
}

// sealAll seals every plaintext value whose scope key is known, in
// parallel across the machine's cores.
func (s *Server) sealAll(plans []*putPlan, keys map[string]scopeKey) []sealResult {
	out := make([]sealResult, len(plans))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, p := range plans {
		if p == nil || p.plaintext == nil || keys[p.scope.Path()].err != nil {
			continue
		}
		g.Go(func() error {
			out[i].err = out[i].value.seal(keys[p.scope.Path()].key, p.plaintext)
			return nil
		})
	}
	_ = g.Wait() // errors are per item, in out
	return out
}

// BatchDeleteSecrets deletes up to maxBatch secrets, one result per name in
// the order sent. Invalid or repeated names are answered without any
// upstream call; the deletes go to the pacer together.
func (s *Server) BatchDeleteSecrets(ctx context.Context, req *secretbrokerv1.BatchDeleteSecretsRequest) (*secretbrokerv1.BatchDeleteSecretsResponse, error) {
	const op = "BatchDeleteSecrets"
	names := req.GetNames()
	if len(names) > maxBatch {
		return nil, s.toStatus(ctx, op, invalidArg("names", "holds %d names; a batch holds at most %d", len(names), maxBatch))
	}
	type target struct {
		scope upstream.Scope
		name  string
	}
	ctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	results := make([]*secretbrokerv1.BatchDeleteSecretsResult, len(names))
	targets := make([]*target, len(names))
	secrets := make([]string, len(names)) // each valid name's secret, to find repeats
	for i, n := range names {
		results[i] = &secretbrokerv1.BatchDeleteSecretsResult{Name: n}
		scope, name, err := parseSecretName("names", n)
		if err != nil {
			s.deleteResult(ctx, results[i], err)
			continue
		}
		targets[i] = &target{scope, name}
		secrets[i] = secretKey(scope, name)
	}
	for _, i := range repeats(secrets) {
		targets[i] = nil
		s.deleteResult(ctx, results[i], errRepeated())
	}
	var wg sync.WaitGroup
	for i, t := range targets {
		if t == nil {
			continue
		}
		wg.Go(func() {
			s.deleteResult(ctx, results[i], s.up.DeleteSecret(ctx, t.scope, t.name))
		})
	}
	wg.Wait()
	return &secretbrokerv1.BatchDeleteSecretsResponse{Results: results}, nil
}

// secretKey identifies a secret the way GitHub does: names are stored
// upper-case.
func secretKey(scope upstream.Scope, name string) string {
	return scope.Path() + "/secrets/" + strings.ToUpper(name)
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

// putResult records err (nil for success) in r.
func (s *Server) putResult(ctx context.Context, r *secretbrokerv1.BatchPutSecretsResult, err error) {
	r.Code, r.Message, r.RetryAfter = s.itemStatus(ctx, "BatchPutSecrets", err)
}

// deleteResult records err (nil for success) in r.
func (s *Server) deleteResult(ctx context.Context, r *secretbrokerv1.BatchDeleteSecretsResult, err error) {
	r.Code, r.Message, r.RetryAfter = s.itemStatus(ctx, "BatchDeleteSecrets", err)
}

// itemStatus is toStatus for one item of a batch: the code, the safe
// message and the retry delay a caller would have had from the single call.
func (s *Server) itemStatus(ctx context.Context, op string, err error) (code.Code, string, *durationpb.Duration) {
	if err == nil {
		return code.Code_OK, "", nil
	}
	st, _ := status.FromError(s.toStatus(ctx, op, err))
	var retry *durationpb.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay()
		}
	}
	c := st.Code()
	if c == codes.OK { // toStatus never maps an error to OK; be safe
		c = codes.Internal
	}
	return code.Code(c), st.Message(), retry
}
