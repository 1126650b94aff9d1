package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/secretbroker/secretbroker/upstream/credential"
	"github.com/secretbroker/secretbroker/upstream/netfail"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// do sends r through the pacer and retries it as Pacing says: on a
// rate-limit answer (which pauses the whole credential), on 500, 502,
// 503 and 504, and on a dropped connection; never on a context error or
// another 4xx. Every broker operation is idempotent, so retries are safe.
// Each attempt is admitted by the pacer again, so it is paced and charged
// like any request; the backoff before a retry holds only the failing
// request, not the credential. A request with goneIsDone (DeleteSecret)
// whose earlier attempt had an unknown outcome (a 500, 502, 503, 504 or a
// dropped connection) and whose retry gets 404 succeeded: the earlier
// attempt deleted it. Any other 404, a DELETE's included, is an *Error.
//
// A non-2xx answer is an *Error; a request the pacer can tell would not go
// before ctx's deadline is a *ThrottledError, and so is a retry after a
// rate-limit answer that would wait past it; a failed attempt (500, 502,
// 503, 504 or a dropped connection) whose retry's backoff would end past
// the deadline is a *BackoffError wrapping the failure; other failures are
// wrapped with the route template. No error holds the token or a body's
// secrets.
func (c *Client) do(ctx context.Context, r request) (_ response, err error) {
	unknown := false // an earlier attempt may have taken effect
	defer func() {
		// A write its caller cut short after an attempt that may have
		// taken effect says so.
		if err != nil && unknown && r.method != http.MethodGet && ctx.Err() != nil {
			err = &OutcomeUnknownError{Method: r.method, Route: r.route, Err: err}
		}
	}()
	secrets := append([]string(nil), r.secrets...)
	fail := func(what string, err error) error {
		return fmt.Errorf("github: %s %s: %s: %w", r.method, r.route, what, c.redact(err, secrets))
	}
	u, err := c.url(r)
	if err != nil {
		return response{}, fail("building the URL", err)
	}
	var body []byte // marshalled once; a new reader per attempt
	if r.body != nil {
		if body, err = json.Marshal(r.body); err != nil {
			return response{}, fail("encoding the request body", err)
		}
	}

	var (
		cred credential.Credential // found on the first attempt that can
		cst  *credState
	)
	pr := pace.Request{Caller: callerOf(ctx), Method: r.method, Route: r.route}
	renewed := false // a 401 renews the credential once
	for attempt := 1; ; attempt++ {
		if cred == nil {
			var found credential.Credential
			if found, cst, err = c.credentialFor(ctx, r); err != nil {
				if err := c.credentialRetry(ctx, r, attempt, err); err != nil {
					return response{}, err
				}
				continue
			}
			cred = found
		}
		permit, err := c.acquire(ctx, cst, pr, attempt)
		if err != nil {
			return response{}, c.notAdmitted(ctx, r, err)
		}
		sent := false
		defer func() {
			// A panic (a body func that panics, say) must not keep the
			// permit's place, points and write slot for good. Only a
			// permit's first Report or Unsent counts: after either this
			// does nothing.
			if sent {
				permit.Report(pace.RateLimit{}, 0)
			} else {
				permit.Unsent()
			}
		}()
		if r.method != http.MethodGet && !unknown {
			// Reads are not checked: a coalesced read runs with the
			// context of the call that started it, not the callers'
			// who joined it. Nor is the retry of a write an earlier
			// attempt of which may have taken effect: it was allowed
			// then, and a refusal now would tell the caller it was not
			// done.
			if err := admitCheck(ctx); err != nil {
				permit.Unsent()
				return response{}, err
			}
		}
		if r.auth, err = cred.Token(ctx); err != nil {
			permit.Unsent()
			c.creds.dropIfGone(cst, err)
			if err := c.credentialRetry(ctx, r, attempt, fail("getting the credential's token", c.tokenError(r, err))); err != nil {
				return response{}, err
			}
			continue
		}
		secrets = append(secrets, r.auth)
		payload := body
		if r.makeBody != nil {
			// The body is made now that the request is admitted, so that
			// it uses what the caller knows at the last moment.
			v, extra, err := r.makeBody()
			secrets = append(secrets, extra...)
			if err == nil {
				payload, err = json.Marshal(v)
				if err != nil {
					err = fmt.Errorf("encoding: %w", err)
				}
			}
			if err != nil {
				permit.Unsent()
				return response{}, fail("preparing the request body", err)
			}
		}

		start := time.Now()
		sent = true
		res, out, err := c.send(withAttempt(ctx, attempt), r, u, payload, secrets)
		took := time.Since(start)
		permit.Report(out.rl, took)
		c.metrics.attempt(ctx, r, cst.label, out.rl, err, took)
		if err == nil {
			res.took = took
			return res, nil
		}
		var ge *Error
		isGitHub := errors.As(err, &ge)
		limited := isGitHub && ge.RateLimited
		if limited && ge.RetryAfter <= 0 {
			// GitHub gave no hint; the pause the pacer imposed is one.
			ge.RetryAfter = holdLeft(cst.pacer)
		}
		retry, gone := c.renewAfter401(ctx, r, cred, cst, ge, &renewed)
		if gone != nil {
			return response{}, fail("renewing the credential", gone)
		}
		if retry {
			attempt-- // the retry with the renewed credential is not one of MaxAttempts
			continue
		}

		if ctxErr := ctx.Err(); ctxErr != nil {
			// No retry for a caller that is gone. A failure the context
			// caused says so; an attempt it cut short may have taken
			// effect.
			if !isGitHub {
				unknown = unknown || !out.unsent
				if !errors.Is(err, ctxErr) {
					err = fmt.Errorf("%w: %w", err, ctxErr)
				}
			}
			return response{}, err
		}
		status := 0
		cause := causeTransport
		switch {
		case limited:
			status = ge.StatusCode
			cause = causeRateLimit
			c.logPause(ctx, cst, r, status)
		case isGitHub && retryableStatus(ge.StatusCode):
			status = ge.StatusCode
			cause = causeServerError
			unknown = true
		case isGitHub && ge.StatusCode == http.StatusNotFound && r.goneIsDone && unknown:
			return response{status: http.StatusNoContent, header: out.header}, nil
		case isGitHub:
			return response{}, err
		case netfail.Transient(err):
			unknown = unknown || !out.unsent
		default:
			return response{}, err
		}
		if attempt >= c.pacing.MaxAttempts {
			return response{}, err
		}

		// The retry waits its backoff here, then for the pacer, which
		// holds every request of the credential while GitHub's pause or
		// its primary quota lasts.
		backoff := c.backoff(attempt)
		wait := max(backoff, holdLeft(cst.pacer))
		if deadline, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(deadline) {
			if !limited && time.Now().Add(backoff).After(deadline) {
				// The wait comes from GitHub failing, not from its limits.
				return response{}, &BackoffError{Attempts: attempt, RetryAfter: max(wait, time.Millisecond), Err: err}
			}
			return response{}, c.throttledError(&ThrottledError{
				Method:     r.method,
				Route:      r.route,
				RetryAfter: max(wait, time.Millisecond),
				Reason:     fmt.Sprintf("attempt %d failed (%s) and the retry must wait", attempt, failure(status)),
			})
		}
		c.noteRetry(ctx, r, cause, "", status, attempt, wait)
		if err := sleep(ctx, backoff); err != nil {
			return response{}, fmt.Errorf("github: %s %s: waiting to retry: %w", r.method, r.route, err)
		}
	}
}

// credentialRetry decides what follows a credential failure err on
// attempt, r unsent: an installation lookup or a token mint that failed.
// A transient failure (credential.Transient: 500, 502, 503, 504, a
// dropped connection, a timeout) is retried like a failed attempt: after
// the loop's backoff, within Pacing.MaxAttempts and before ctx's deadline
// (a backoff that would end past it is a *BackoffError wrapping err). It
// returns nil once it has waited the backoff, else the error to return:
// err itself when the failure is not transient (a rate-limit refusal
// among them: the credential package holds that request back until
// GitHub's Retry-After, and err says how long) or ctx has ended.
func (c *Client) credentialRetry(ctx context.Context, r request, attempt int, err error) error {
	if ctx.Err() != nil || attempt >= c.pacing.MaxAttempts {
		return err
	}
	status, cause := 0, causeTransport
	if ge, ok := errors.AsType[*Error](err); ok {
		// credError made GitHub's answer an *Error.
		if !retryableStatus(ge.StatusCode) {
			return err
		}
		status, cause = ge.StatusCode, causeServerError
	} else if !credential.Transient(err) {
		return err
	}
	backoff := c.backoff(attempt)
	if deadline, ok := ctx.Deadline(); ok && time.Now().Add(backoff).After(deadline) {
		return &BackoffError{Attempts: attempt, RetryAfter: max(backoff, time.Millisecond), Err: err}
	}
	c.noteRetry(ctx, r, cause, "credential", status, attempt, backoff)
	if err := sleep(ctx, backoff); err != nil {
		return fmt.Errorf("github: %s %s: waiting to retry: %w", r.method, r.route, err)
	}
	return nil
}

// noteRetry counts, logs and traces the retry of r after attempt failed
// for cause (status: GitHub's answer, 0 for none; failed: what failed
// when it was not r itself, "credential"), wait from now.
func (c *Client) noteRetry(ctx context.Context, r request, cause, failed string, status, attempt int, wait time.Duration) {
	c.retries.Add(1)
	c.metrics.retry(ctx, r, cause)
	attrs := []slog.Attr{
		slog.String("method", r.method),
		slog.String("route", r.route),
		slog.String("reason", cause),
		slog.Int("status", status),
		slog.Int("attempt", attempt),
		slog.Duration("wait", wait),
	}
	if failed != "" {
		attrs = append(attrs, slog.String("failed", failed))
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "github request retried", attrs...)
	trace.SpanFromContext(ctx).AddEvent("github.retry", trace.WithAttributes(
		attribute.Int("attempt", attempt),
		attribute.Int("http.response.status_code", status),
		attribute.Int64("wait_ms", wait.Milliseconds()),
	))
}

// notAdmitted returns the error for a request the pacer did not admit: a
// *ThrottledError for a refusal, else the context's error.
func (c *Client) notAdmitted(ctx context.Context, r request, err error) error {
	if pe, ok := errors.AsType[*pace.ThrottledError](err); ok {
		return c.throttledError(&ThrottledError{Method: r.method, Route: r.route, RetryAfter: pe.RetryAfter, Reason: pe.Detail, Bound: pe.Bound})
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return fmt.Errorf("github: %s %s: not sent: waiting for the pacer: %w", r.method, r.route, ctxErr)
	}
	return fmt.Errorf("github: %s %s: not sent: %w", r.method, r.route, err)
}

// throttledError counts e for PacerStats and returns it.
func (c *Client) throttledError(e *ThrottledError) *ThrottledError {
	c.throttled.Add(1)
	return e
}

// holdLeft returns how long the pacer still holds its credential (a pause
// GitHub imposed, its primary quota used up); 0 when it does not.
func holdLeft(p *pace.Pacer) time.Duration {
	until, _ := p.Hold()
	if until.IsZero() {
		return 0
	}
	return max(time.Until(until), 0)
}

// sleep waits d, or until ctx ends and returns its error.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// backoff returns the wait before the retry that follows attempt (from
// 1): full jitter below BackoffBase doubled per attempt, capped at
// BackoffMax.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.pacing.BackoffBase
	for i := 1; i < attempt && ceiling < c.pacing.BackoffMax; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, c.pacing.BackoffMax)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

// retryableStatus reports whether a status is a server error worth
// retrying.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// failure describes a failed attempt for a message, without values.
func failure(status int) string {
	if status == 0 {
		return "connection failed"
	}
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}
