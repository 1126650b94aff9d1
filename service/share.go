package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
)

// maxReadGenerations bounds how many scopes sharedReads keeps a read
// generation for. Scope names come from callers, so without a bound the map
// would grow with every scope written. When a write would exceed the bound,
// the scope written least recently is dropped; see sharedReads.
const maxReadGenerations = 10000

// sharedCallTimeout bounds a shared upstream call started by a caller
// without a deadline.
const sharedCallTimeout = 30 * time.Second

// share runs fn once for every caller asking for key at the same time
// (an upstream.Group) and hands each caller the one result. The shared
// call outlives the caller that started it, keeping its trace and its
// deadline (or sharedCallTimeout when it had none), so that the pacer can
// still tell when a wait would outlast it. Each waiter keeps its own
// deadline: one whose context ends stops waiting. Later callers join the
// running call while anyone still waits for it; once the last waiter has
// left, the call is cancelled (context.Cause upstream.ErrCallAbandoned),
// so that it stops holding a pacer slot and GitHub's quota for nobody,
// and the key is forgotten, so that the next caller starts afresh. The
// waiters with more time than the shared call had (no deadline, or a
// later one), whose call ran out of time and was shared with others, try
// once more, together: one call
// whose deadline is the latest any waiter of the first call had
// (sharedCallTimeout when one had none), so that one impatient caller
// neither fails the others nor turns their one call into one each.
//
// A panic in fn is recovered: every waiter gets a *sharedPanicError,
// which maps to codes.Internal, and the key is free for the next caller.
func share[T any](ctx context.Context, g *upstream.Group[any], key string, fn func(context.Context) (T, error)) (T, error) {
	r, err := g.Do(ctx, key, func(dctx context.Context) (any, error) {
		// dctx is ctx without its cancellation or deadline; the Group
		// cancels it once every waiter has left.
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(sharedCallTimeout)
		}
		return runShared(dctx, deadline, fn)
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("waiting for a shared GitHub call: %w", err)
	}
	sv, _ := r.Val.(sharedValue)
	if r.Err != nil && r.Shared && outOfTime(r.Err) && ctx.Err() == nil && hasMoreTime(ctx, sv.deadline) {
		latest := r.Latest
		r, err = g.Do(ctx, key+"\x00retry of call "+strconv.FormatUint(r.Call, 10), func(dctx context.Context) (any, error) {
			deadline := latest
			if deadline.IsZero() {
				deadline = time.Now().Add(sharedCallTimeout)
			}
			return runShared(dctx, deadline, fn)
		})
		if err != nil {
			var zero T
			return zero, fmt.Errorf("waiting for a shared GitHub call: %w", err)
		}
	}
	return sharedResult[T](r)
}

// runShared runs fn for a shared call until deadline.
func runShared[T any](ctx context.Context, deadline time.Time, fn func(context.Context) (T, error)) (any, error) {
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	v, err := recovered(sctx, fn)
	return sharedValue{val: v, deadline: deadline}, err
}

// sharedResult is a shared call's result as one waiter gets it.
func sharedResult[T any](r upstream.GroupResult[any]) (T, error) {
	var zero T
	if r.Err != nil {
		return zero, r.Err
	}
	sv, _ := r.Val.(sharedValue)
	v, _ := sv.val.(T) // not ok only for a nil interface value
	return v, nil
}

// sharedValue is what a shared call hands its waiters: fn's value and
// the deadline the call ran under.
type sharedValue struct {
	val      any
	deadline time.Time
}

// hasMoreTime reports whether ctx's deadline, if any, is later than d.
func hasMoreTime(ctx context.Context, d time.Time) bool {
	mine, ok := ctx.Deadline()
	return !ok || mine.After(d)
}

// recovered calls fn, turning a panic into a *sharedPanicError.
func recovered[T any](ctx context.Context, fn func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, &sharedPanicError{typ: fmt.Sprintf("%T", p)}
		}
	}()
	return fn(ctx)
}

// sharedPanicError is a panic recovered in a shared call. It names the
// panic value's type only: the value might have been built from request
// data. It wraps nothing, so that it always maps to codes.Internal.
type sharedPanicError struct{ typ string }

func (e *sharedPanicError) Error() string { return "panic in shared GitHub call: " + e.typ }

// outOfTime reports whether err says a call ran out of time, by its
// deadline, by the pacer's estimate against that deadline, or by a retry
// backoff that would have outlasted it.
func outOfTime(err error) bool {
	var (
		te *upstream.ThrottledError
		be *upstream.BackoffError
	)
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) || errors.As(err, &be)
}

// sharedReads is an Upstream whose reads are coalesced: identical reads in
// flight at the same time (one secret, one page of one list) become one
// GitHub request. Writes pass through, and each write that ends (however
// it ends: a failed one may have taken effect) starts a new generation of
// its scope's reads: a read that began after a write ended never joins
// one that began before, so a caller always sees its own writes. Reads of
// the organization secrets a repository sees follow every write.
//
// A scope's generation is the count of writes anywhere when its latest
// write ended, kept by recordScope (the environment's name folded too),
// so a write under one spelling of a scope ends the generation of reads
// under every spelling (the reads themselves
// are shared only between callers who spell the scope alike: an answer is
// never handed to a caller who asked under another name). At most max
// scopes (maxReadGenerations when 0) are kept; the one written least
// recently, which has the lowest generation, is dropped first, and floor
// remembers the highest generation dropped. A scope not kept is at
// generation floor: at least its latest write's, so a read that begins
// after a write still never joins one that began before it.
type sharedReads struct {
	Upstream
	group upstream.Group[any]

	mu    sync.Mutex
	gens  map[string]uint64 // by recordScope: all when the scope's latest write ended
	order lruOrder          // of gens' keys, least recently written first
	floor uint64            // the highest generation dropped from gens
	all   uint64            // writes ended anywhere
	max   int               // scopes kept in gens; 0 means maxReadGenerations
}

// gen returns the generation of s's reads, for their keys.
func (r *sharedReads) gen(s upstream.Scope) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.gens[recordScope(s)]
	if !ok {
		g = r.floor
	}
	return "#" + strconv.FormatUint(g, 10)
}

// wrote ends the current generation of s's reads.
func (r *sharedReads) wrote(s upstream.Scope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gens == nil {
		r.gens = make(map[string]uint64)
	}
	r.all++
	key := recordScope(s)
	r.gens[key] = r.all
	r.order.touch(key)
	limit := r.max
	if limit <= 0 {
		limit = maxReadGenerations
	}
	for len(r.gens) > limit {
		old, ok := r.order.oldest()
		if !ok {
			return
		}
		r.floor = max(r.floor, r.gens[old])
		r.order.remove(old)
		delete(r.gens, old)
	}
}

func (r *sharedReads) GetSecret(ctx context.Context, s upstream.Scope, name string) (upstream.Secret, error) {
	return share(ctx, &r.group, "secret "+s.Path()+r.gen(s)+"/"+strings.ToUpper(name), func(ctx context.Context) (upstream.Secret, error) {
		return r.Upstream.GetSecret(ctx, s, name)
	})
}

func (r *sharedReads) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	return share(ctx, &r.group, "secrets "+s.Path()+r.gen(s)+pageKey(p), func(ctx context.Context) (upstream.SecretList, error) {
		return r.Upstream.ListSecrets(ctx, s, p)
	})
}

func (r *sharedReads) ListSelectedRepositories(ctx context.Context, s upstream.Scope, name string, p upstream.Page) (upstream.RepositoryList, error) {
	return share(ctx, &r.group, "selected "+s.Path()+r.gen(s)+"/"+strings.ToUpper(name)+pageKey(p), func(ctx context.Context) (upstream.RepositoryList, error) {
		return r.Upstream.ListSelectedRepositories(ctx, s, name, p)
	})
}

func (r *sharedReads) ListRepositoryOrganizationSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	r.mu.Lock()
	all := strconv.FormatUint(r.all, 10)
	r.mu.Unlock()
	return share(ctx, &r.group, "org-secrets "+s.Path()+"#"+all+pageKey(p), func(ctx context.Context) (upstream.SecretList, error) {
		return r.Upstream.ListRepositoryOrganizationSecrets(ctx, s, p)
	})
}

func (r *sharedReads) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	defer r.wrote(s)
	return r.Upstream.PutSecretFunc(ctx, s, name, body)
}

func (r *sharedReads) DeleteSecret(ctx context.Context, s upstream.Scope, name string) error {
	defer r.wrote(s)
	return r.Upstream.DeleteSecret(ctx, s, name)
}

func (r *sharedReads) SetSelectedRepositories(ctx context.Context, s upstream.Scope, name string, ids []int64) error {
	defer r.wrote(s)
	return r.Upstream.SetSelectedRepositories(ctx, s, name, ids)
}

func (r *sharedReads) AddSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error {
	defer r.wrote(s)
	return r.Upstream.AddSelectedRepository(ctx, s, name, id)
}

func (r *sharedReads) RemoveSelectedRepository(ctx context.Context, s upstream.Scope, name string, id int64) error {
	defer r.wrote(s)
	return r.Upstream.RemoveSelectedRepository(ctx, s, name, id)
}

func pageKey(p upstream.Page) string {
	return "?page=" + strconv.Itoa(p.Page) + "&per_page=" + strconv.Itoa(p.PerPage)
}
