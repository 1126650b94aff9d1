package upstream

import "github.com/secretbroker/secretbroker/upstream/internal/coalesce"

// A Group coalesces calls: callers asking for the same key while a call
// for it is running wait for that call instead of starting their own, and
// a call every waiter has left is forgotten and cancelled (its context's
// cause ErrCallAbandoned). It is coalesce.Group, which lives in a package
// of its own so that upstream/credential, which upstream imports, shares
// its calls by the same rule; see coalesce.Group for the details.
//
// The zero value is ready for use. A Group must not be copied after first
// use.
type Group[T any] = coalesce.Group[T]

// GroupResult is the result of a Group's call as handed to one waiter.
type GroupResult[T any] = coalesce.GroupResult[T]

// PanicError is a panic recovered in a Group's call. It names the panic
// value's type only, since the value might have been built from request
// data or a secret; it wraps nothing.
type PanicError = coalesce.PanicError

// ErrCallAbandoned is the cause (context.Cause) of the cancellation of a
// Group's call whose every waiter has left.
var ErrCallAbandoned = coalesce.ErrCallAbandoned
