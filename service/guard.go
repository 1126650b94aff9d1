package service

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secretbroker/secretbroker/service/access"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/identity"
	"github.com/secretbroker/secretbroker/upstream"
)

// Authorizer decides what a caller may do with a resource; the verbs are
// access.Read, access.Write, access.Delete and access.ManageRepositories.
// *access.Watcher and *access.Policy satisfy it.
type Authorizer interface {
	// Allow reports whether caller may apply verb to the resource.
	Allow(caller, verb, resource string) bool
	// AllowSome reports whether caller may apply verb to some secret of
	// the scope.
	AllowSome(caller, verb, scope string) bool
	// AllowEvery reports whether caller may apply verb to every secret of
	// the scope.
	AllowEvery(caller, verb, scope string) bool
}

// deniedError is a call or batch item the policy does not allow. Its
// message names the verb and the resource, never the rules.
type deniedError struct{ verb, resource string }

func (e *deniedError) Error() string {
	return fmt.Sprintf("the caller may not %s %s", e.verb, e.resource)
}

// errUnauthenticated is a call that reached an authorizing service without
// an authenticated caller: the front door let it through by mistake.
var errUnauthenticated = errors.New("the call carries no authenticated caller")

// auditError is a mutating call refused because its intent record could
// not be written.
type auditError struct{ err error }

func (e *auditError) Error() string { return "audit log: " + e.err.Error() }
func (e *auditError) Unwrap() error { return e.err }

// errPanic is what a caller gets for work that panicked.
var errPanic = errors.New("internal error")

// callerOf returns the authenticated caller of ctx's call, or "".
func callerOf(ctx context.Context) string {
	c, _ := identity.CallerFrom(ctx)
	return c
}

// anonymousAddrOf returns the client address of ctx's call when its
// caller is unauthenticated (no identity.WithCaller: no authentication is
// configured), else "": the pacer's fairness key the front door gave the
// call (upstream.WithCaller), which for such a call is its IP address (for
// a call through the JSON gateway, the HTTP client's). The bound on one
// caller's unfinished operations (OperationOptions.MaxPerCaller) counts
// such a caller's operations by it, as the front door's own per-caller
// bounds count its calls. It is not an identity: it decides neither what
// the call may do nor who sees or cancels its operations.
func anonymousAddrOf(ctx context.Context) string {
	if callerOf(ctx) != "" {
		return ""
	}
	return upstream.CallerOf(ctx)
}

// may reports whether the caller may apply verb to resource. Without an
// Authorizer every call is allowed (no authentication is configured).
func (s *Server) may(ctx context.Context, verb, resource string) bool {
	return s.decide(ctx, verb, true, func(c string) bool { return s.authz.Allow(c, verb, resource) })
}

// maySome reports whether the caller may apply verb to some secret of scope.
func (s *Server) maySome(ctx context.Context, verb, scope string) bool {
	return s.decide(ctx, verb, true, func(c string) bool { return s.authz.AllowSome(c, verb, scope) })
}

// mayEvery reports whether the caller may apply verb to every secret of
// scope. It only picks a list's fast path, so it is not counted as a
// decision.
func (s *Server) mayEvery(ctx context.Context, verb, scope string) bool {
	return s.decide(ctx, verb, false, func(c string) bool { return s.authz.AllowEvery(c, verb, scope) })
}

// decide applies allow to the call's caller; a call without one is never
// allowed when an Authorizer is set. counted decisions go to the metrics.
func (s *Server) decide(ctx context.Context, verb string, counted bool, allow func(caller string) bool) bool {
	if s.authz == nil {
		return true
	}
	c := callerOf(ctx)
	ok := c != "" && allow(c)
	if counted {
		s.metrics.decision(ctx, verb, ok, c != "")
	}
	return ok
}

// deny records a denied call or item in the audit trail and returns its
// error.
func (s *Server) deny(ctx context.Context, rpc string, item *int, verb, resource string) error {
	err := &deniedError{verb: verb, resource: resource}
	if s.authz != nil && callerOf(ctx) == "" {
		return errUnauthenticated
	}
	s.note(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: rpc, Item: item, Resource: resource,
		Outcome: codeName(codes.PermissionDenied)})
	return err
}

// check returns nil when ok, else deny's error.
func (s *Server) check(ctx context.Context, rpc string, item *int, verb, resource string, ok bool) error {
	if ok {
		return nil
	}
	return s.deny(ctx, rpc, item, verb, resource)
}

// change is one audited mutation: a mutating call or one batch item.
type change struct {
	s        *Server
	rpc      string
	item     *int
	resource string
	status   *upstream.StatusRecorder
	ended    bool // its outcome record was written
}

// begin writes the intent record of a mutation of resource, with the
// value's HMAC for a plaintext value, and returns a context that records
// GitHub's answers for the outcome record. When the intent record cannot
// be written the mutation must not go on: begin returns an *auditError,
// which callers see as UNAVAILABLE, and nothing goes upstream.
func (s *Server) begin(ctx context.Context, rpc string, item *int, resource string, plaintext []byte) (context.Context, *change, error) {
	ch := &change{s: s, rpc: rpc, item: item, resource: resource}
	if s.audit == nil {
		return ctx, ch, nil
	}
	ctx, ch.status = upstream.WithStatusRecorder(ctx)
	r := audit.Record{Phase: audit.PhaseIntent, RPC: rpc, Item: item, Resource: resource}
	if plaintext != nil {
		r.ValueHMAC = s.audit.ValueHMAC(plaintext)
	}
	// Bounded by the call: a trail that is stuck refuses the change
	// when the call's deadline passes, as one that fails does at once.
	if err := s.writeRecord(ctx, r, true); err != nil {
		s.log.ErrorContext(ctx, "audit log cannot be written; refusing the change", "rpc", rpc, "err", err)
		if cerr := ctx.Err(); cerr != nil {
			// The call ended (its deadline, its cancel, the drain, an
			// operation's stop) before its intent was written: refused
			// as a call that ended is, nothing sent, so that an
			// operation's item stays pending (operation.Interrupted)
			// and a batch's item is "not sent in time".
			return ctx, nil, fmt.Errorf("the intent record was not written before the call ended: %w", cerr)
		}
		return ctx, nil, &auditError{err: err}
	}
	return ctx, ch, nil
}

// end writes the outcome record of the mutation, err being its result.
func (c *change) end(ctx context.Context, err error) { c.endWith(ctx, err, verdict{}) }

// endWith writes the outcome record of a write the broker judged v
// (unchanged: not sent; driftSeen: changed behind its back, whether or
// not its caller is told).
func (c *change) endWith(ctx context.Context, err error, v verdict) {
	code := outcomeCode(err)
	if code == codes.Canceled && errors.Is(context.Cause(ctx), ErrDrained) {
		// The shutdown's drain stopped the call, which it answers
		// Stopped (UNAVAILABLE), not CANCELLED: its caller did not
		// cancel it.
		code = codes.Unavailable
	}
	c.endCode(ctx, code, v)
}

// endAnswered writes the outcome record of a batch's or a synchronous
// sync's item whose caller is answered st for it (batchTally.answer),
// which is not always its error's status: an item the shutdown's drain
// or the call's deadline kept from being sent is answered UNAVAILABLE or
// RESOURCE_EXHAUSTED, and its record says so, not CANCELLED or
// DEADLINE_EXCEEDED.
func (c *change) endAnswered(ctx context.Context, st *status.Status, v verdict) {
	c.endCode(ctx, st.Code(), v)
}

func (c *change) endCode(ctx context.Context, outcome codes.Code, v verdict) {
	if c == nil || c.s.audit == nil || c.ended {
		return
	}
	c.ended = true
	c.s.record(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: c.rpc, Item: c.item, Resource: c.resource,
		Outcome: codeName(outcome), UpstreamStatus: c.status.Status(),
		Unchanged: v.unchanged && outcome == codes.OK, Drift: v.driftSeen})
}

// endOnPanic, deferred right after begin, writes the outcome record
// (INTERNAL) of a change whose code panicked before it wrote one, so that
// no intent record is left without its outcome, and lets the panic go on
// to the recovery that answers the call.
func (c *change) endOnPanic(ctx context.Context) {
	if r := recover(); r != nil {
		c.end(ctx, status.Error(codes.Internal, "internal error"))
		panic(r)
	}
}

// rejected writes the outcome record of a mutating call or item refused
// before it began (a malformed request).
func (s *Server) rejected(ctx context.Context, rpc string, item *int, resource string, err error) {
	// The name is as the caller sent it, which may be megabytes: the trail
	// keeps no more of it than a valid name can hold.
	s.note(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: rpc, Item: item, Resource: truncate(resource, maxResourceNameLen),
		Outcome: codeName(statusOf(err).Code())})
}

// readDone records a successful read when reads are audited.
func (s *Server) readDone(ctx context.Context, rpc, resource string) {
	if s.auditReads {
		s.note(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: rpc, Resource: resource, Outcome: codeName(codes.OK)})
	}
}

// record writes an outcome record; a record that cannot be written is
// logged, since the change it reports has already happened. It waits for
// the trail however long it takes: the record of a change made is not
// given up.
func (s *Server) record(ctx context.Context, r audit.Record) {
	s.recordBounded(ctx, r, false)
}

// note writes the outcome record of a call or item that changed nothing
// (a denial, a malformed request, a read), giving up when ctx ends while
// the trail is stuck, so that a stuck trail does not hold the broker's
// refusals and reads past their deadlines.
func (s *Server) note(ctx context.Context, r audit.Record) {
	s.recordBounded(ctx, r, true)
}

func (s *Server) recordBounded(ctx context.Context, r audit.Record, bounded bool) {
	if s.audit == nil {
		return
	}
	if err := s.writeRecord(ctx, r, bounded); err != nil {
		s.log.ErrorContext(ctx, "audit record lost", "rpc", r.RPC, "resource", r.Resource, "outcome", r.Outcome, "err", err)
	}
}

// writeRecord fills in the caller and the trace and writes r; bounded,
// it gives up when ctx ends while the trail is busy (audit.WriteContext).
func (s *Server) writeRecord(ctx context.Context, r audit.Record, bounded bool) error {
	r.Caller = callerOf(ctx)
	r.Operation = operationOf(ctx)
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.TraceID = sc.TraceID().String()
	}
	if bounded {
		return s.audit.WriteContext(ctx, r)
	}
	return s.audit.Write(r)
}

// safely runs fn, turning a panic into errPanic. The panic's value might
// have been built from request data, so only its type and the stack are
// logged.
func (s *Server) safely(ctx context.Context, what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(ctx, "panic", "in", what, "panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
			err = errPanic
		}
	}()
	return fn()
}

// codeName is a gRPC code's canonical name, as in google.rpc.Code:
// "PERMISSION_DENIED" where codes.Code's String says "PermissionDenied".
func codeName(c codes.Code) string { return code.Code(c).String() }

// indexOf returns a pointer to a batch item's index for its audit records.
func indexOf(i int) *int { return &i }

// Verbs, re-exported for the service's own use.
const (
	verbRead   = access.Read
	verbWrite  = access.Write
	verbDelete = access.Delete
	verbManage = access.ManageRepositories
)
