package pace

import (
	"fmt"
	"time"
)

// A Reason is what holds a request back.
type Reason int

// The reasons. Failure reports which come from failed requests rather
// than from GitHub's limits.
const (
	// ReasonQueue: the request waited its turn behind other requests for
	// a place among the MaxInFlight.
	ReasonQueue Reason = iota + 1
	// ReasonSpacing: writes go one at a time, WriteInterval apart, and
	// others go before it.
	ReasonSpacing
	// ReasonBudget: the points budget of GitHub's secondary limit is
	// spent.
	ReasonBudget
	// ReasonPrimary: GitHub's primary quota is used up until its reset.
	ReasonPrimary
	// ReasonPause: a rate-limit answer from GitHub paused the credential,
	// or, once a pause GitHub gave no length for is over, the answer to
	// the one request sent first (the probe) is awaited.
	ReasonPause
	// ReasonBackoff: the credential backs off after failed requests (5xx
	// answers, dropped connections); see Pacer.Backoff.
	ReasonBackoff
	// ReasonContent: GitHub's content-creation limit (writes a minute or
	// an hour, StateLimits.WritesPerMinute and WritesPerHour) is spent.
	ReasonContent
	// ReasonCPU: the budget of response time a Window
	// (Config.CPUPerMinute), the pacer's estimate of GitHub's limit on
	// CPU time, is spent.
	ReasonCPU
)

// Failure reports whether the wait comes from failures (ReasonBackoff), not
// from GitHub's limits: a caller reports the former as unavailable, the
// latter as exhausted.
func (r Reason) Failure() bool { return r == ReasonBackoff }

func (r Reason) String() string {
	switch r {
	case ReasonQueue:
		return "it waited its turn behind other requests"
	case ReasonSpacing:
		return "writes go one at a time, spaced apart"
	case ReasonBudget:
		return "the points budget of GitHub's secondary rate limit is spent"
	case ReasonPrimary:
		return "GitHub's primary rate limit is used up until it resets"
	case ReasonPause:
		return "GitHub's secondary rate limit paused the credential"
	case ReasonBackoff:
		return "the credential backs off after failed requests"
	case ReasonContent:
		return "GitHub's content-creation limit (writes a minute and an hour) is spent"
	case ReasonCPU:
		return "the budget of response time a minute, for GitHub's limit on CPU time, is spent"
	}
	return fmt.Sprintf("pace.Reason(%d)", int(r))
}

// minRetryAfter is the least ThrottledError.RetryAfter: a request whose
// deadline passed while it waited its turn, when it could go by the clock.
const minRetryAfter = time.Second

// ThrottledError reports a request the Pacer did not admit because it
// could tell that the request would not start (and complete) before the
// caller's deadline. It holds no request values (Route is the route
// template) and is safe to log. Find it with errors.As.
type ThrottledError struct {
	// Method is the request's HTTP method, e.g. "PUT".
	Method string
	// Route is the request's route template.
	Route string
	// RetryAfter is how long until the request could start, as far as the
	// pacer can tell; always positive.
	RetryAfter time.Duration
	// Reason is what holds it back. Reason.Failure() tells waits caused
	// by failures from waits caused by GitHub's limits.
	Reason Reason
	// Detail says the same as Reason, with figures (the writes ahead, the
	// budget), and names the pacer's queue bound when one refused it.
	Detail string
	// Bound is "" when the caller's deadline is what the request would
	// miss; otherwise how it is beyond the pacer's queue bounds
	// (Config.MaxQueue, MaxQueueWait), ending Error's message.
	Bound string
}

// Error returns, for example, "pace: PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}:
// not sent: writes go one at a time, 1s apart, and 6 go before it; it
// could start in 7s, after the caller's deadline".
func (e *ThrottledError) Error() string {
	end := e.Bound
	if end == "" {
		end = "after the caller's deadline"
	}
	return fmt.Sprintf("pace: %s %s: not sent: %s; it could start in %s, %s",
		e.Method, e.Route, e.Detail, RoundWait(e.RetryAfter), end)
}

// RoundWait rounds a wait for a message: to the second from a second up,
// to the millisecond below.
func RoundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return max(d.Round(time.Millisecond), time.Millisecond)
}
