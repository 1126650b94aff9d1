package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// A Group coalesces calls: callers asking for the same key while a call
// for it is running wait for that call instead of starting their own, as
// with golang.org/x/sync/singleflight. Unlike a singleflight.Group, it
// counts the callers still waiting for each call, so that a caller who
// stops waiting does not un-coalesce the call for the others.
//
// A call runs in its own goroutine, detached from its callers: it
// outlives the caller that started it, and it keeps running when every
// caller has stopped waiting. Once the last waiting caller has left, the
// key is forgotten and the next caller starts a new call, as net.Resolver
// does when the lookup it started is not shared (the abandoned call may be
// stuck; its result is dropped). This is what net's lookupIPAddr does
// with ForgetUnshared, except that a Group counts the waiters still there
// rather than whether anyone ever joined: a call that several callers
// joined and all left is forgotten too.
//
// The zero value is ready for use. A Group must not be copied after first
// use.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*groupCall[T]
}

// groupCall is one running or finished call of a Group. Every field but
// done and the results is guarded by the Group's mu; the results are
// written before done is closed and read after.
type groupCall[T any] struct {
	done    chan struct{}
	waiters int  // callers waiting now
	joined  int  // callers that ever waited, the starter included
	shared  bool // joined > 1 when the call finished
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
}

// Do returns the result of fn for key: of a call already running for key,
// or else of a new call of fn that it starts. It waits for the call to
// finish or for ctx to end, whichever comes first; in the second case it
// returns ctx.Err() and the call runs on without this caller. The error
// Do returns is ctx's only: fn's error is the result's Err.
//
// fn runs in a goroutine of its own, with a context that carries the
// starting caller's values (its trace, for one) but neither its
// cancellation nor its deadline: fn must bound itself, typically with
// context.WithTimeout. A panic in fn is recovered and becomes a
// *PanicError for every waiter, and the key is free for the next caller.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (GroupResult[T], error) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if !ok {
		if g.calls == nil {
			g.calls = make(map[string]*groupCall[T])
		}
		c = &groupCall[T]{done: make(chan struct{})}
		g.calls[key] = c
		go g.run(context.WithoutCancel(ctx), key, c, fn)
	}
	c.waiters++
	c.joined++
	g.mu.Unlock()

	select {
	case <-c.done:
		return GroupResult[T]{Val: c.val, Err: c.err, Shared: c.shared}, nil
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 && g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		return GroupResult[T]{}, ctx.Err()
	}
}

// run calls fn for c and hands its result to c's waiters, even when fn
// ends its goroutine with runtime.Goexit.
func (g *Group[T]) run(ctx context.Context, key string, c *groupCall[T], fn func(context.Context) (T, error)) {
	returned := false
	defer func() {
		if !returned {
			c.err = errGoexit
		}
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		c.shared = c.joined > 1
		g.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = recoverCall(ctx, fn)
	returned = true
}

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
