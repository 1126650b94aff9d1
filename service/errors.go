package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/secretbroker/secretbroker/upstream"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo details the
// broker sets.
const ErrorDomain = "secretbroker"

// ReasonGitHubConflict is the ErrorInfo reason of a FAILED_PRECONDITION
// that is GitHub's own 409 Conflict (for example, managing the selected
// repositories of a secret whose visibility is not "selected"), with
// metadata github_status "409". The JSON gateway answers it 409, as GitHub
// did; the broker's own FAILED_PRECONDITION answers are 400.
const ReasonGitHubConflict = "GITHUB_CONFLICT"

// maxUpstreamMessage bounds how much of GitHub's error message a caller sees.
const maxUpstreamMessage = 200

// toStatus is the one way an error leaves the service. It logs the real
// cause and returns a fixed, safe message with the right code. Neither the
// log line nor the message can hold a secret value: values never enter an
// error in this package, and upstream errors carry route templates and
// GitHub's message only (GitHub never sees a plaintext value).
func (s *Server) toStatus(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	st := statusOf(err)
	if sentWhenStopped(err) {
		// A single write (PutSecret, DeleteSecret, a change of a
		// selection) cut short after GitHub was sent it: ABORTED, GitHub
		// may have applied it, as its outcome record says (outcomeCode)
		// and as a batch's item is answered (batchTally.answer). Not
		// CANCELLED, which the drain answers UNAVAILABLE "send it
		// again" (cmd/secretbroker), as if nothing had been sent.
		st = mayHaveApplied(stoppedBy(ctx), "the write")
	}
	level := slog.LevelWarn
	switch {
	case callerFault(err):
		// The caller's mistake or the policy's answer (denials are in the
		// audit trail): nothing for an operator to act on.
		level = slog.LevelDebug
	case st.Code() == codes.Internal || st.Code() == codes.Unavailable || st.Code() == codes.PermissionDenied:
		level = slog.LevelError
	}
	if s.log.Enabled(ctx, level) {
		s.log.Log(ctx, level, "request failed", "op", op, "code", st.Code().String(), "err", err)
	}
	return st.Err()
}

// callerFault reports whether err is the caller's own: a malformed request,
// a denial or a missing identity.
func callerFault(err error) bool {
	var (
		inv *invalidArgError
		den *deniedError
		con *conflictError
		own *notOwnedError
		chg *changedSinceError
		exp *unexpectedDeletesError
	)
	return errors.As(err, &inv) || errors.As(err, &den) || errors.Is(err, errUnauthenticated) ||
		errors.As(err, &con) || errors.As(err, &own) || errors.As(err, &chg) || errors.As(err, &exp)
}

// statusOf maps an error to the status a caller sees, with a fixed, safe
// message.
func statusOf(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	var (
		inv *invalidArgError
		den *deniedError
		aud *auditError
	)
	switch {
	case errors.As(err, &inv):
		return status.New(codes.InvalidArgument, inv.Error())
	case errors.As(err, &den):
		return status.New(codes.PermissionDenied, "permission denied: "+den.Error())
	case errors.Is(err, errUnauthenticated):
		return status.New(codes.Unauthenticated, "authentication required")
	case errors.As(err, &aud):
		return WithRetryInfo(status.New(codes.Unavailable, "the audit log cannot be written, so the broker refuses changes until it can; reads still work"), RetryOutage)
	}
	if ce, ok := errors.AsType[*conflictError](err); ok {
		return status.New(codes.FailedPrecondition, ce.Error())
	}
	if ne, ok := errors.AsType[*notOwnedError](err); ok {
		return status.New(codes.FailedPrecondition, ne.Error())
	}
	if ce, ok := errors.AsType[*changedSinceError](err); ok {
		return status.New(codes.FailedPrecondition, ce.Error())
	}
	if se, ok := errors.AsType[*settingsUnknownError](err); ok {
		return WithRetryInfo(status.New(codes.Unavailable, se.Error()), RetryOutage)
	}
	if ue, ok := errors.AsType[*unexpectedDeletesError](err); ok {
		return status.New(codes.Aborted, ue.Error())
	}
	if _, ok := errors.AsType[*recordsUnreadableError](err); ok {
		return WithRetryInfo(status.New(codes.Unavailable, "the broker's state store cannot be reached, so the sync cannot tell which secrets its owner wrote; nothing was written; try again later"), RetryOutage)
	}
	if oe, ok := errors.AsType[*ownerUnknownError](err); ok {
		return WithRetryInfo(status.New(codes.Unavailable, oe.Error()), RetryOutage)
	}
	if le, ok := errors.AsType[*leaseError](err); ok && !le.callerEnded {
		return WithRetryInfo(status.New(codes.Unavailable, "the state the replicas share cannot be reached, so the broker cannot rule out another replica's write of this secret; try again later"), RetryOutage)
	}
	return classify(err)
}

// leaseError is a write that could not take or keep its secret's write
// lease on every replica (lockWrite, leaseLost): its caller's context
// ended while another replica wrote the secret (callerEnded: the caller's
// own cancellation or deadline), or the shared store could not be reached
// or lost the lease (UNAVAILABLE, whatever err wraps: a dial timeout is
// also context.DeadlineExceeded).
type leaseError struct {
	err         error
	callerEnded bool
}

func (e *leaseError) Error() string { return "the secret's write lease: " + e.err.Error() }

func (e *leaseError) Unwrap() error { return e.err }

// classify maps an error to the status a caller sees. A request whose
// retry was given up because GitHub kept failing (an
// *upstream.BackoffError) is UNAVAILABLE for its failure, with the
// backoff as the retry hint; only waits that GitHub's limits impose are
// RESOURCE_EXHAUSTED.
func classify(err error) *status.Status {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded while talking to GitHub")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	}
	var te *upstream.ThrottledError
	if errors.As(err, &te) {
		msg := "the broker's GitHub budget would not let this through before the call's deadline; try again later"
		if te.Bound != "" {
			msg = "the broker's queue for GitHub is too long or too slow for this call (its bound on waits, --max-queue-wait, or on requests waiting, --upstream-max-queue); try again later"
		}
		return WithRetryInfo(status.New(codes.ResourceExhausted, msg), te.RetryAfter)
	}
	backoff := RetryOutage // GitHub failing without a backoff left (the attempts used up)
	if be, ok := errors.AsType[*upstream.BackoffError](err); ok {
		backoff = be.RetryAfter
	}
	if ni, ok := errors.AsType[*upstream.NotInstalledError](err); ok {
		return status.New(codes.FailedPrecondition, fmt.Sprintf(
			"the broker's GitHub App is not installed on the organization or account %q; install it there, or use a scope it is installed on",
			truncate(ni.Account, maxUpstreamMessage)))
	}
	if no, ok := errors.AsType[*upstream.NotOfferedError](err); ok {
		return status.New(codes.FailedPrecondition, fmt.Sprintf(
			"the broker's GitHub (%s) has no %s; nothing was sent", no.Where, no.What))
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		if isTransport(err) {
			return WithRetryInfo(status.New(codes.Unavailable, "GitHub could not be reached; try again later"), backoff)
		}
		return status.New(codes.Internal, "internal error")
	}
	msg := truncate(ue.Message, maxUpstreamMessage)
	switch {
	case ue.RateLimited:
		return WithRetryInfo(status.New(codes.ResourceExhausted,
			"GitHub's rate limit for the broker's credentials is exhausted; try again later"), ue.RetryAfter)
	case ue.StatusCode == http.StatusNotFound:
		if nf, ok := errors.AsType[*notFoundAt](err); ok {
			return status.New(codes.NotFound, nf.message()) // names the scope or the secret (notfound.go)
		}
		return status.New(codes.NotFound, "not found on GitHub (or the broker's credentials cannot see it)")
	case ue.StatusCode >= 300 && ue.StatusCode <= 399:
		// GitHub redirects a renamed or transferred repository; the
		// broker follows no redirect (upstream.noRedirects).
		return status.New(codes.NotFound, "not found on GitHub under this name: GitHub redirected the request (a renamed or transferred repository is reached by its current name only)")
	case ue.StatusCode == http.StatusConflict:
		return withGitHubConflict(status.New(codes.FailedPrecondition, "GitHub refused the change in the secret's current state: "+msg))
	case ue.StatusCode == http.StatusUnprocessableEntity:
		return status.New(codes.InvalidArgument, "GitHub rejected the request: "+msg)
	case ue.StatusCode == http.StatusUnauthorized:
		return WithRetryInfo(status.New(codes.Unavailable, "GitHub rejected the broker's credentials (401); an operator must renew the broker's upstream token"), retryCredentials)
	case ue.StatusCode == http.StatusForbidden:
		return status.New(codes.PermissionDenied, "the broker's GitHub credentials are not allowed to do this (403)")
	case ue.StatusCode >= 500:
		return WithRetryInfo(status.New(codes.Unavailable, "GitHub is unavailable; try again later"), backoff)
	}
	return status.New(codes.Internal, "GitHub did not accept the broker's request")
}

// How long an UNAVAILABLE answer of the broker's own tells its caller to
// wait (every UNAVAILABLE carries a RetryInfo; GitHub's failures carry
// the client's backoff): RetryShutdown for a call a shutting-down broker
// did not finish (another replica, or this one restarted, takes the next
// at once), RetryOutage while a part of the broker (the audit trail, the
// state the replicas share) cannot be reached, retryCredentials while
// GitHub refuses the broker's credentials, which takes an operator.
const (
	RetryShutdown    = time.Second
	RetryOutage      = 5 * time.Second
	retryCredentials = time.Minute
	// retryOperations is the retry delay of an async call refused
	// because its caller has as many unfinished operations as it may
	// (operation.ErrTooMany): an item takes a second or more.
	retryOperations = time.Minute
)

// Stopped is the answer for a call, or a batch's item (what names which),
// that a shutting-down broker stopped before it finished: UNAVAILABLE,
// to be sent again (to another replica, or to this one restarted), after
// RetryShutdown. The drain gives it to a whole call (cmd/secretbroker) and
// a batch to each item it did not finish (batchTally.add).
func Stopped(what string) *status.Status {
	return WithRetryInfo(status.New(codes.Unavailable,
		"the broker is shutting down and stopped the call before "+what+" finished; send it again"), RetryShutdown)
}

// sentWhenStopped reports whether err is a write (a PUT or a DELETE)
// whose call was stopped (its context cancelled: the shutdown's drain, an
// operation's cancel, the runner's stop) after an attempt of it was sent
// to GitHub and got no answer, or one that does not say it failed (a 5xx,
// a dropped connection): an *upstream.OutcomeUnknownError of a cancelled
// context. GitHub may have applied it.
func sentWhenStopped(err error) bool {
	_, ok := errors.AsType[*upstream.OutcomeUnknownError](err)
	return ok && errors.Is(err, context.Canceled)
}

// sentWhenCut reports whether err is a write that its call's context cut
// short (cancelled or past its deadline) after an attempt of it was sent
// to GitHub whose outcome is unknown: GitHub may have applied it.
func sentWhenCut(err error) bool {
	_, ok := errors.AsType[*upstream.OutcomeUnknownError](err)
	return ok
}

// mayHaveApplied is the answer for a write (what: "this item" of a
// batch or an operation, "the write" of a single call) that stopped
// (why: "the operation was cancelled", ...) cut short after GitHub was
// sent it (sentWhenStopped): ABORTED, GitHub may have applied it. Not
// Stopped's "send it again", which is for a write the stop kept from
// being sent: what this one did is for the caller to find out.
func mayHaveApplied(stopped, what string) *status.Status {
	return status.New(codes.Aborted, stopped+" after GitHub was sent "+what+", whose outcome is unknown: GitHub may have applied it; read or send it again to be sure")
}

// stoppedBy says who stopped a call whose context ctx was cancelled: the
// shutdown's drain (its cause ErrDrained) or its caller.
func stoppedBy(ctx context.Context) string {
	if errors.Is(context.Cause(ctx), ErrDrained) {
		return "the broker is shutting down and stopped the call"
	}
	return "the call was cancelled"
}

// ErrDrained is the cause with which the shutdown's drain ends the
// context of a call in progress (cmd/secretbroker), which answers the
// call Stopped (UNAVAILABLE) when it returns CANCELLED. It is a
// context.Canceled, so that what reads a context's cause (a wait for an
// operation) still finds a cancellation.
var ErrDrained = fmt.Errorf("the broker is shutting down: %w", context.Canceled)

// outcomeCode is the code of the outcome record of a change that ended
// with err (nil: it succeeded): its status's, except for a write cut short
// after GitHub was sent it (sentWhenStopped), which is ABORTED whoever
// stopped it, never CANCELLED: the audit trail does not say a write
// GitHub may have applied was not done. An error that is already the
// caller's status (an operation runner's error mapped by opError) is
// recorded with that status's code, the answer its caller had.
func outcomeCode(err error) codes.Code {
	if sentWhenStopped(err) {
		return codes.Aborted
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return statusOf(err).Code()
}

// withGitHubConflict adds the ErrorInfo that says st is GitHub's 409
// (ReasonGitHubConflict).
func withGitHubConflict(st *status.Status) *status.Status {
	ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonGitHubConflict, Domain: ErrorDomain,
		Metadata: map[string]string{"github_status": "409"}})
	if err != nil {
		return st
	}
	return ds
}

// IsGitHubConflict reports whether st is GitHub's own 409 Conflict, as
// the service answers it (a FAILED_PRECONDITION with the ErrorInfo of
// ReasonGitHubConflict), and not one of the broker's own refusals.
func IsGitHubConflict(st *status.Status) bool {
	if st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == ReasonGitHubConflict && ei.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

// WithRetryInfo adds a RetryInfo detail telling the caller to wait d,
// rounded up to a whole second, when d is positive (the gateway sends it
// as Retry-After too).
func WithRetryInfo(st *status.Status, d time.Duration) *status.Status {
	if d <= 0 {
		return st
	}
	if secs := d.Truncate(time.Second); secs < d {
		d = secs + time.Second
	}
	if ds, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		return ds
	}
	return st
}

// isTransport reports whether err is a network failure rather than an
// answer: every transport error of net/http is a *url.Error, which has
// Timeout, as have net.Error values.
func isTransport(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
