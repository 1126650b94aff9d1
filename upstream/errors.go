package upstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// maxMessage bounds Error.Message, in bytes.
const maxMessage = 300

// Error is a non-2xx answer from GitHub. It holds no request values: Route
// is the route template, not the request's path, and nothing of the
// request's headers or body is kept, so an Error is safe to log. Find it
// with errors.As.
type Error struct {
	// Method is the request's HTTP method, e.g. "PUT".
	Method string
	// Route is the route template, e.g. "/orgs/{org}/{app}/secrets/{secret_name}".
	Route string
	// StatusCode is the HTTP status code of GitHub's answer.
	StatusCode int
	// Message is the "message" field of GitHub's JSON error body,
	// truncated to 300 bytes; http.StatusText(StatusCode) when the body has
	// none; for a redirect (3xx), the broker's own (redirectMessage).
	Message string
	// RequestID is the X-GitHub-Request-Id header, when GitHub sent one;
	// GitHub support can trace a request by it.
	RequestID string
	// RateLimited reports whether GitHub refused the request because a
	// primary or secondary rate limit is exhausted: a 429, a 403 with
	// x-ratelimit-remaining: 0, or a 403 or 429 whose message mentions a
	// rate limit.
	RateLimited bool
	// RetryAfter is how long GitHub asks the client to wait: the
	// Retry-After header, else, for a rate limit with
	// x-ratelimit-remaining 0, the time until x-ratelimit-reset and
	// pace.ResetMargin (for the clocks' difference). For a
	// rate limit without either hint the Client sets it to how long its
	// pacer still holds the credential after the answer (at least
	// Pacing.SecondaryPause, unless that is 0); otherwise it is zero when
	// GitHub gave no hint.
	RetryAfter time.Duration
	// RateLimitReset is when the primary rate limit window resets, from
	// x-ratelimit-reset; the zero Time when GitHub did not say.
	RateLimitReset time.Time
}

// Error returns, for example,
// "github: PUT /orgs/{org}/{app}/secrets/{secret_name}: 422 Unprocessable Entity: <message>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("github: ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.Route)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	text := http.StatusText(e.StatusCode)
	if text != "" {
		b.WriteByte(' ')
		b.WriteString(text)
	}
	if e.Message != "" && e.Message != text {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// newError decodes a non-2xx answer. body is at most the first MiB of the
// response body; rl is what pace.ParseRateLimit read from its header when
// it arrived, at now; secrets are strings (the token) that must not
// survive into the message even if a server echoed them.
func newError(method, route string, resp *http.Response, body []byte, rl pace.RateLimit, now time.Time, secrets []string) *Error {
	e := &Error{
		Method:     method,
		Route:      route,
		StatusCode: resp.StatusCode,
		RequestID:  cleanMessage(resp.Header.Get("X-GitHub-Request-Id"), 100),
	}
	var gh struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &gh) == nil {
		msg := gh.Message
		for _, s := range secrets {
			if s != "" {
				msg = strings.ReplaceAll(msg, s, redacted)
			}
		}
		e.Message = cleanMessage(msg, maxMessage)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}

	rl = rl.WithMessage(e.Message)
	e.RateLimited = rl.Refused
	e.RateLimitReset = rl.Reset
	switch {
	case rl.HasRetryAfter:
		e.RetryAfter = rl.RetryAfter
	case rl.Refused && rl.Remaining == 0 && !rl.Reset.IsZero():
		e.RetryAfter = max(rl.Resume().Sub(now), 0)
	}
	return e
}

// cleanMessage makes s fit for one log line: control characters become
// spaces, surrounding space goes, and the result is at most n bytes, cut on
// a rune boundary. Invalid UTF-8 becomes U+FFFD.
func cleanMessage(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ThrottledError reports a request the Client did not send because its
// pacer could tell that GitHub's limits would not let it go before the
// caller's deadline: a pause GitHub imposed, the primary quota until its
// reset, the write spacing times the writes ahead of it, the points
// budget, or the backoff of a retry after a rate-limit answer. A request
// still waiting for its turn when the deadline passes is refused the same
// way. (A retry that a failure rather than a limit would make wait past
// the deadline is a *BackoffError.) It holds no request values and is safe
// to log. Find it with errors.As.
type ThrottledError struct {
	// Method is the request's HTTP method, e.g. "PUT".
	Method string
	// Route is the route template, e.g. "/orgs/{org}/{app}/secrets/{secret_name}".
	Route string
	// RetryAfter is how long until the request could go, as far as the
	// pacer can tell; always positive.
	RetryAfter time.Duration
	// Reason says what holds the request back: upstream/pace's
	// ThrottledError.Detail, or the failed attempt a retry would follow.
	Reason string
	// Bound is "" when the caller's deadline is what the request would
	// miss; otherwise how it is beyond the pacer's queue bounds
	// (Pacing.MaxQueue, MaxQueueWait): upstream/pace's ThrottledError.Bound.
	Bound string
}

// Error returns, for example, "github: PUT
// /repos/{owner}/{repo}/{app}/secrets/{secret_name}: not sent: <reason>;
// the budget allows it in 12s, after the caller's deadline".
func (e *ThrottledError) Error() string {
	end := e.Bound
	if end == "" {
		end = "after the caller's deadline"
	}
	return fmt.Sprintf("github: %s %s: not sent: %s; the budget allows it in %s, %s",
		e.Method, e.Route, e.Reason, pace.RoundWait(e.RetryAfter), end)
}

// BackoffError reports a request that failed, with 500, 502, 503 or 504
// or because GitHub could not be reached, and that the Client did not
// retry because the retry's backoff would end after the caller's
// deadline: GitHub is failing, its limits are not the cause. It wraps the
// last attempt's failure (a *Error, or the transport error), so errors.As
// finds a *Error through it. It holds no request values and is safe to
// log. Find it with errors.As.
type BackoffError struct {
	// Attempts is how many attempts failed.
	Attempts int
	// RetryAfter is how long the retry would have waited; always positive.
	RetryAfter time.Duration
	// Err is the last attempt's failure.
	Err error
}

// Error returns, for example, "github: PUT
// /repos/{owner}/{repo}/{app}/secrets/{secret_name}: 503 Service
// Unavailable (attempt 2; not retried: the retry's backoff of 3s would end
// after the caller's deadline)".
func (e *BackoffError) Error() string {
	return fmt.Sprintf("%v (attempt %d; not retried: the retry's backoff of %s would end after the caller's deadline)",
		e.Err, e.Attempts, pace.RoundWait(e.RetryAfter))
}

func (e *BackoffError) Unwrap() error { return e.Err }

// OutcomeUnknownError is a write (any method but GET) that its caller's
// context cut short after an attempt of it whose outcome is unknown was
// sent: an attempt that got a 500, 502, 503 or 504 or no answer (a
// dropped connection, or the context ending while it was in flight).
// GitHub may have applied the write. Err is what the call returned
// otherwise (it wraps the context's error). It holds no request values
// and is safe to log. Find it with errors.As.
type OutcomeUnknownError struct {
	Method, Route string
	Err           error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("%v (an attempt whose outcome is unknown was sent: GitHub may have applied the %s)", e.Err, e.Method)
}

func (e *OutcomeUnknownError) Unwrap() error { return e.Err }
