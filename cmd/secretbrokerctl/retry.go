package main

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retries. A call marked with retry(kind) is sent again when the broker
// answers it RESOURCE_EXHAUSTED with a RetryInfo (it shed the call, or
// the caller's rate is exceeded: nothing was done) and, for a call safe to
// run twice (retryRepeatable), UNAVAILABLE (the broker is shutting down or
// restarting, or cannot be reached) and ABORTED (a shutting-down broker
// cut the write after GitHub was sent it: GitHub may have applied it, and
// sending it again ends as the first would have). A RetryInfo's delay is waited (with
// up to a fifth more, so that callers shed together do not come back
// together); UNAVAILABLE without one waits an exponential backoff with
// jitter. Every wait is said on standard error; Ctrl-C ends it at once.
// The bounds: retryMaxAttempts attempts, no single wait longer than
// retryMaxWait (a broker that asks for more is not waited for), at most
// retryMaxTotalWait of waiting in all, and never past the call's own
// deadline (--timeout covers a call and its retries). An UNAVAILABLE no
// retry mends is not retried: a TLS setup refused (connectionMisconfigured),
// or a plaintext connection to a broker that serves TLS (plaintextToTLS).
// A call not marked is never retried (grpc-go's transparent retry of a
// request that never left the client aside).
const (
	retryMaxAttempts  = 5
	retryMaxWait      = 30 * time.Second
	retryMaxTotalWait = time.Minute
	// retryFirstBackoff is UNAVAILABLE's first backoff, doubled after each
	// attempt up to retryMaxBackoff; each is jittered down to half.
	retryFirstBackoff = time.Second
	retryMaxBackoff   = 8 * time.Second
)

// retryKind says which failures of a call are answered by sending it
// again.
type retryKind int

const (
	// retryRefused: RESOURCE_EXHAUSTED with a RetryInfo only, the broker's
	// refusal before doing anything. For a call that must not be carried
	// out twice: one that starts an operation, or a sync, whose second run
	// after a first one cut off would be refused or misreported.
	retryRefused retryKind = iota + 1
	// retryRepeatable: UNAVAILABLE and ABORTED too, which may come after
	// the call was carried out (the answer lost, or a write cut after
	// GitHub was sent it): for reads, a put of the same value, a delete, a
	// cancel.
	retryRepeatable
)

// retryCall is the call option that marks a call as retried; the unary
// interceptor (cli.retryInterceptor) reads it.
type retryCall struct {
	grpc.EmptyCallOption
	kind retryKind
	// trace, when set, records the attempts.
	trace *retryTrace
	// beforeNotice, when set, runs before a notice is written (a progress
	// bar ends its line).
	beforeNotice func()
}

// retryTrace is what one call's attempts answered.
type retryTrace struct {
	codes []codes.Code // each failed attempt's code, in order
	// interrupted: ctx ended while waiting to try again; the error
	// returned is the last attempt's.
	interrupted bool
}

// sawCode reports whether an attempt failed with code.
func (t *retryTrace) sawCode(code codes.Code) bool {
	for _, c := range t.codes {
		if c == code {
			return true
		}
	}
	return false
}

// retry marks a call as retried for the failures kind allows.
func retry(kind retryKind) grpc.CallOption { return retryCall{kind: kind} }

// retryTraced is retry that records the attempts in trace.
func retryTraced(kind retryKind, trace *retryTrace) grpc.CallOption {
	return retryCall{kind: kind, trace: trace}
}

// retryInterceptor sends a call marked with retry again after the
// failures its kind allows, within the bounds above.
func (c *cli) retryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var rc retryCall
	for _, o := range opts {
		if r, ok := o.(retryCall); ok {
			rc = r
		}
	}
	if rc.kind == 0 || c.maxAttempts <= 1 {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	name := method[strings.LastIndex(method, "/")+1:]
	notice := func(format string, a ...any) {
		if rc.beforeNotice != nil {
			rc.beforeNotice()
		}
		c.errorf("%s: "+format, append([]any{name}, a...)...)
	}
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			return nil
		}
		if rc.trace != nil {
			rc.trace.codes = append(rc.trace.codes, status.Code(err))
		}
		delay, asked, ok := retryDelay(err, rc.kind, attempt)
		if !ok || ctx.Err() != nil || c.plaintextToTLS(ctx, err) {
			// A plaintext connection to a TLS broker ends at once too:
			// describe says to pass --tls or --tls-ca-file.
			return err
		}
		deadline, hasDeadline := ctx.Deadline()
		switch {
		case attempt >= c.maxAttempts:
			notice("giving up after %d attempts", attempt)
			return err
		case asked > retryMaxWait:
			notice("%s; not trying again: the broker asks to wait %s, more than %s", c.describe(err), roundWait(asked), retryMaxWait)
			return err
		case waited+delay > retryMaxTotalWait:
			notice("giving up after %d attempts: waiting %s more would pass %s of waits", attempt, roundWait(delay), retryMaxTotalWait)
			return err
		case hasDeadline && time.Until(deadline) <= delay:
			notice("%s; not trying again: the call's deadline (--timeout) ends before a wait of %s", c.describe(err), roundWait(delay))
			return err
		}
		notice("%s; trying again in %s (attempt %d of %d)", c.describe(err), roundWait(delay), attempt+1, c.maxAttempts)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if rc.trace != nil {
				rc.trace.interrupted = true
			}
			notice("interrupted while waiting to try again")
			return err
		case <-t.C:
		}
		waited += delay
	}
}

// retryDelay returns how long to wait before sending a call again after
// err, its attempt-th attempt's failure, the delay err's RetryInfo asks
// for (0 without one), and whether to send it again at all:
// RESOURCE_EXHAUSTED with a RetryInfo, and for retryRepeatable calls
// UNAVAILABLE and ABORTED, are retried; nothing else is.
func retryDelay(err error, kind retryKind, attempt int) (wait, asked time.Duration, ok bool) {
	st := status.Convert(err)
	asked = retryInfoDelay(st)
	switch st.Code() {
	case codes.ResourceExhausted:
		// Without a RetryInfo it is not the broker shedding load: a
		// message over a size limit, which no retry changes.
		if asked <= 0 {
			return 0, 0, false
		}
	case codes.Unavailable, codes.Aborted:
		if kind != retryRepeatable || connectionMisconfigured(st) {
			return 0, 0, false
		}
		if asked <= 0 {
			d := min(retryFirstBackoff<<(attempt-1), retryMaxBackoff)
			return d/2 + rand.N(d/2+1), 0, true
		}
	default:
		return 0, 0, false
	}
	// Never sooner than asked; the jitter not past retryMaxWait.
	return max(asked, min(asked+rand.N(asked/5+1), retryMaxWait)), asked, true
}

// connectionMisconfigured reports whether st, an UNAVAILABLE, is
// grpc-go's own for a connection that no retry makes: a TLS handshake
// that failed (a certificate this side does not trust, or that the broker
// refuses) or a broker address that does not resolve. Only its message
// tells; the broker's own UNAVAILABLE answers carry a RetryInfo. Over
// TLS 1.3 the client ends its side of the handshake before the broker
// checks the client's certificate, and hears of a refusal (none sent, one
// it does not trust, expired) as the broker's alert on the first read:
// "error reading server preface: remote error: tls: certificate
// required", not "authentication handshake failed". Any alert but
// internal_error (a fault of the broker's, which may pass) refuses this
// client's TLS setup.
func connectionMisconfigured(st *status.Status) bool {
	msg := st.Message()
	for _, s := range []string{"authentication handshake failed", "name resolver error", "no such host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	_, alert, ok := strings.Cut(msg, "remote error: tls: ")
	return ok && !strings.HasPrefix(alert, "internal error")
}

// retryInfoDelay is the delay of st's RetryInfo detail; 0 without one.
func retryInfoDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// roundWait rounds a wait for a message: "1.2s", "45m0s".
func roundWait(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
