// Package coalesce coalesces concurrent calls for one key into one call,
// which it cancels when every caller waiting for it has left. It is a
// package of its own so that upstream (whose Group is this one) and
// upstream/credential, which upstream imports, can both use it.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// A Group coalesces calls: callers asking for the same key while a call
// for it is running wait for that call instead of starting their own, as
// with golang.org/x/sync/singleflight. Unlike a singleflight.Group, it
// counts the callers still waiting for each call, so that a caller who
// stops waiting does not un-coalesce the call for the others.
//
// A call runs in its own goroutine, with a context of its own: it
// outlives the caller that started it, and later callers join it, for as
// long as anyone waits for it. Once the last waiting caller has left, the
// key is forgotten, so that the next caller starts a new call, and the
// call's context is cancelled (its cause ErrCallAbandoned), so that a call
// nobody waits for stops holding what it holds (a pacer slot, a request
// to GitHub); its result is dropped. This is what net's lookupIPAddr does
// with ForgetUnshared and the cancel of its lookup group's context, except
// that a Group counts the waiters still there rather than whether anyone
// ever joined: a call that several callers joined and all left is
// forgotten and cancelled too, and one that any caller still waits for
// runs on.
//
// A call may hold itself (Hold) from the moment its work would be worth
// keeping for the next caller: a request that creates something at
// GitHub, once it may have reached GitHub. A held call is neither
// forgotten nor cancelled when its last waiter leaves; later callers join
// it, and it runs to its end.
//
// The zero value is ready for use. A Group must not be copied after first
// use.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*groupCall[T]
	seq   uint64 // calls started
}

// groupCall is one running or finished call of a Group. Every field but
// done and the results is guarded by the Group's mu; the results are
// written before done is closed and read after.
type groupCall[T any] struct {
	done    chan struct{}
	cancel  context.CancelCauseFunc // cancels fn's context; set once, safe without mu
	id      uint64
	waiters int       // callers waiting now
	holds   int       // Holds not released yet
	gone    bool      // abandoned: forgotten and cancelled
	joined  int       // callers that ever waited, the starter included
	latest  time.Time // the latest deadline of those callers
	endless bool      // one of those callers had no deadline
	shared  bool      // joined > 1 when the call finished
	last    time.Time // latest when the call finished; zero if endless
	val     T
	err     error
}

// GroupResult is the result of a Group's call as handed to one waiter.
type GroupResult[T any] struct {
	Val T
	Err error // fn's error
	// Shared reports whether more than one caller waited for this call,
	// counting those that stopped waiting before it finished.
	Shared bool
	// Call identifies the call among the Group's calls.
	Call uint64
	// Latest is the latest deadline of the callers that waited for the
	// call (those that stopped waiting too); zero when one of them had
	// none.
	Latest time.Time
}

// Do returns the result of fn for key: of a call already running for key,
// or else of a new call of fn that it starts. It waits for the call to
// finish or for ctx to end, whichever comes first; in the second case it
// returns ctx.Err(), and the call runs on for the callers still waiting
// for it, or is cancelled when there are none and it does not hold
// itself (Hold). The error Do returns is ctx's only: fn's error is the
// result's Err.
//
// fn runs in a goroutine of its own, with a context that carries the
// starting caller's values (its trace, for one) but neither its
// cancellation nor its deadline: it is cancelled only when the call's
// last waiter leaves while fn does not hold it (see Hold; context.Cause
// is then ErrCallAbandoned), and after fn returns. fn must bound itself, typically with context.WithTimeout,
// for a waiter without a deadline may wait for ever. A panic in fn is
// recovered and becomes a *PanicError for every waiter, and the key is
// free for the next caller.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (GroupResult[T], error) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if !ok {
		if g.calls == nil {
			g.calls = make(map[string]*groupCall[T])
		}
		g.seq++
		cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		c = &groupCall[T]{done: make(chan struct{}), cancel: cancel, id: g.seq}
		g.calls[key] = c
		cctx = context.WithValue(cctx, callKey{}, holdable(callRef[T]{g, key, c}))
		go g.run(cctx, key, c, fn)
	}
	c.waiters++
	c.joined++
	if d, ok := ctx.Deadline(); !ok {
		c.endless = true
	} else if d.After(c.latest) {
		c.latest = d
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		return GroupResult[T]{Val: c.val, Err: c.err, Shared: c.shared, Call: c.id, Latest: c.last}, nil
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		g.abandonIdleLocked(key, c)
		g.mu.Unlock()
		return GroupResult[T]{}, ctx.Err()
	}
}

// abandonIdleLocked forgets and cancels c when nobody waits for it and it
// does not hold itself: a later caller starts afresh, and the call stops
// (cancelling a call that has finished does nothing). The caller holds
// g.mu.
func (g *Group[T]) abandonIdleLocked(key string, c *groupCall[T]) {
	if c.waiters > 0 || c.holds > 0 || c.gone {
		return
	}
	c.gone = true
	if g.calls[key] == c {
		delete(g.calls, key)
	}
	c.cancel(ErrCallAbandoned)
}

// callKey is the context key of the call a context belongs to.
type callKey struct{}

// holdable is a call of a Group of any type, as Hold finds it.
type holdable interface {
	hold() bool
	release()
}

// callRef is one call of g, for Hold.
type callRef[T any] struct {
	g   *Group[T]
	key string
	c   *groupCall[T]
}

func (r callRef[T]) hold() bool {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	if r.c.gone {
		return false
	}
	r.c.holds++
	return true
}

func (r callRef[T]) release() {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	r.c.holds--
	r.g.abandonIdleLocked(r.key, r.c)
}

// Hold keeps the call that ctx belongs to (the context a Group handed its
// fn, or one made from it) from being abandoned until release is called:
// meanwhile the call stays its key's, which later callers join, and it is
// not cancelled when its last waiter leaves. Release lets go (once; later
// calls do nothing): the call is then forgotten and cancelled at once
// when nobody waits for it any more. Hold reports false, and holds
// nothing, when the call was abandoned already (ctx is then cancelled,
// its cause ErrCallAbandoned) or when ctx belongs to no call.
//
// A call holds itself from the moment its work would be worth keeping
// for the next caller, which would otherwise do it again: a request that
// creates something at GitHub, once the request may have reached GitHub.
// It still bounds itself (see Do).
func Hold(ctx context.Context) (release func(), ok bool) {
	h, found := ctx.Value(callKey{}).(holdable)
	if !found || !h.hold() {
		return func() {}, false
	}
	var once sync.Once
	return func() { once.Do(h.release) }, true
}

// run calls fn for c and hands its result to c's waiters, even when fn
// ends its goroutine with runtime.Goexit.
func (g *Group[T]) run(ctx context.Context, key string, c *groupCall[T], fn func(context.Context) (T, error)) {
	returned := false
	defer func() {
		c.cancel(nil) // releases the context; a no-op once abandoned
		if !returned {
			c.err = errGoexit
		}
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		c.shared = c.joined > 1
		if !c.endless {
			c.last = c.latest
		}
		g.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = recoverCall(ctx, fn)
	returned = true
}

// ErrCallAbandoned is the cause (context.Cause) of the cancellation of a
// Group's call whose every waiter has left.
var ErrCallAbandoned = errors.New("upstream: every caller waiting for the shared call has left")

// errGoexit is the error of a call whose fn called runtime.Goexit.
var errGoexit = errors.New("upstream: shared call ended by runtime.Goexit")

// recoverCall calls fn, turning a panic into a *PanicError.
func recoverCall[T any](ctx context.Context, fn func(context.Context) (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			v, err = zero, &PanicError{Type: fmt.Sprintf("%T", p)}
		}
	}()
	return fn(ctx)
}

// PanicError is a panic recovered in a Group's call. It names the panic
// value's type only, since the value might have been built from request
// data or a secret; it wraps nothing.
type PanicError struct {
	Type string // the panic value's type, as %T prints it
}

func (e *PanicError) Error() string { return "upstream: panic in a shared call: " + e.Type }
