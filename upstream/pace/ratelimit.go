package pace

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps a Retry-After hint, so that an absurd value does not
// overflow time.Duration.
const maxRetryAfter = 24 * time.Hour

// maxResetAhead is the furthest ahead an x-ratelimit-reset is believed:
// GitHub's primary window is an hour, so a reset later than an hour (and
// a margin for the clocks) from the answer is not GitHub's window. Taken
// as it is, one such answer would hold the credential until then (a
// reset a year ahead: a year) or, with quota left, pin a window that no
// real answer could replace, so that the pacer ignored GitHub's next
// "remaining 0".
const maxResetAhead = time.Hour + time.Minute

// maxResource bounds RateLimit.Resource, in bytes.
const maxResource = 64

// RateLimit is what one GitHub answer says about the credential's rate
// limits. ParseRateLimit reads it from the answer's header; it is the one
// reader of GitHub's rate-limit headers.
type RateLimit struct {
	// Status is the answer's HTTP status code; 0 when there was no answer.
	Status int
	// Remaining is x-ratelimit-remaining, the requests left in the
	// primary window; -1 when absent or not a non-negative integer.
	Remaining int
	// Used is x-ratelimit-used; -1 when absent or not a non-negative
	// integer.
	Used int
	// Reset is x-ratelimit-reset, when the primary window resets; the
	// zero Time when absent, not a positive integer of Unix seconds, or
	// more than an hour (maxResetAhead) ahead, which no window of GitHub's
	// is.
	Reset time.Time
	// Resource is x-ratelimit-resource ("core", "search", ...), trimmed
	// and cut to 64 bytes.
	Resource string
	// RetryAfter is the Retry-After header, in delay-seconds or as an
	// HTTP date (a date in the past is 0), capped at 24 h. It is
	// meaningful only when HasRetryAfter.
	RetryAfter time.Duration
	// HasRetryAfter reports whether the answer carried a usable
	// Retry-After header.
	HasRetryAfter bool
	// Refused reports that GitHub refused the request because a primary
	// or secondary rate limit is exhausted: a 429, or a 403 with
	// x-ratelimit-remaining 0, or (see WithMessage) a 403 or 429 whose
	// message says it is a rate limit.
	Refused bool
}

// maxClockSkew is how far this machine's clock may be from GitHub's (as
// an answer's Date tells it) before ParseRateLimit reads GitHub's times
// against Date.
const maxClockSkew = 2 * time.Second

// ResetMargin is how long after Reset a credential whose primary quota is
// used up waits before it sends again (RateLimit.Resume). Reset is
// GitHub's reset on this clock only as well as the clocks are known to
// agree: within maxClockSkew GitHub's times are taken as they are, so
// GitHub's clock may be up to that much behind this one; read against
// Date, a reset may come up to half a second early. A request that
// reaches GitHub before its window has reset is refused (a violation of
// the primary limit, which then pauses the credential for the secondary
// pause, its reset being past on this clock).
const ResetMargin = maxClockSkew

// ParseRateLimit reads GitHub's rate-limit headers from an answer with
// status; now is when the answer arrived (it turns an HTTP-date
// Retry-After into a delay). h may be nil (no answer).
//
// GitHub's times (x-ratelimit-reset, an HTTP-date Retry-After) are on
// GitHub's clock. When the answer's Date header says this machine's clock
// is more than maxClockSkew off GitHub's, they are read against Date, not
// against this clock: a reset 40 s after Date is 40 s after now (a clock
// ahead would otherwise resume before GitHub's reset, and be refused).
// Within maxClockSkew (Date counts whole seconds, and the answer took its
// time) they are taken as they are, so that every answer of one window
// names the same reset.
func ParseRateLimit(h http.Header, status int, now time.Time) RateLimit {
	rl := RateLimit{Status: status, Remaining: -1, Used: -1} // h may be nil: Get finds nothing
	rl.Remaining = nonNegative(h.Get("X-Ratelimit-Remaining"))
	rl.Used = nonNegative(h.Get("X-Ratelimit-Used"))
	github := now // GitHub's clock when it answered, as well as it is known
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		if skew := now.Sub(d); skew > maxClockSkew || skew < -maxClockSkew {
			// Whole seconds: Date's own resolution.
			github = now.Add(-skew.Round(time.Second))
		}
	}
	if v := strings.TrimSpace(h.Get("X-Ratelimit-Reset")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 {
			if ahead := time.Unix(secs, 0).Sub(github); ahead <= maxResetAhead {
				rl.Reset = now.Add(ahead)
			}
		}
	}
	rl.Resource = cut(strings.TrimSpace(h.Get("X-Ratelimit-Resource")), maxResource)
	rl.RetryAfter, rl.HasRetryAfter = parseRetryAfter(h.Get("Retry-After"), github)
	switch status {
	case http.StatusTooManyRequests:
		rl.Refused = true
	case http.StatusForbidden:
		rl.Refused = rl.Remaining == 0
	}
	return rl
}

// WithMessage returns rl with Refused set when the answer is a 403 or 429
// whose message (the "message" field of GitHub's error body) says it is a
// rate limit, as GitHub's secondary-limit answers do even when they carry
// no header that says so: "rate limit" (primary and secondary), or the
// older "abuse detection mechanism" of content-creation refusals.
func (rl RateLimit) WithMessage(message string) RateLimit {
	if rl.Status != http.StatusForbidden && rl.Status != http.StatusTooManyRequests {
		return rl
	}
	m := strings.ToLower(message)
	if strings.Contains(m, "rate limit") || strings.Contains(m, "abuse detection") {
		rl.Refused = true
	}
	return rl
}

// Resume returns when, on this clock, GitHub's primary window that the
// answer names has surely reset: Reset plus ResetMargin. It is the zero
// Time when Reset is. A credential whose quota this answer says is used
// up sends nothing before then.
func (rl RateLimit) Resume() time.Time {
	if rl.Reset.IsZero() {
		return time.Time{}
	}
	return rl.Reset.Add(ResetMargin)
}

// Pause returns how long a refusal (Refused) pauses the credential,
// following GitHub's guidance, and why: Retry-After when present; else,
// when x-ratelimit-remaining is 0 and the reset is ahead, until the reset
// (ReasonPrimary, until Resume); else secondary (ReasonPause).
func (rl RateLimit) Pause(now time.Time, secondary time.Duration) (time.Duration, Reason) {
	switch {
	case rl.HasRetryAfter:
		return rl.RetryAfter, ReasonPause
	case rl.primaryUsedUp(now):
		return rl.Resume().Sub(now), ReasonPrimary
	}
	return secondary, ReasonPause
}

// Hinted reports whether the answer says how long to wait: a Retry-After,
// or a primary quota used up with its reset ahead. A refusal that is not
// hinted pauses for the secondary pause (Pause).
func (rl RateLimit) Hinted(now time.Time) bool { return rl.HasRetryAfter || rl.primaryUsedUp(now) }

// primaryUsedUp reports whether the answer says the primary quota is used
// up until a reset still ahead (Resume).
func (rl RateLimit) primaryUsedUp(now time.Time) bool {
	return rl.Remaining == 0 && rl.Resume().After(now)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or,
// leniently, an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) { // now: on GitHub's clock
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

// nonNegative parses a non-negative decimal integer header value; -1 when
// it is not one.
func nonNegative(v string) int {
	if v = strings.TrimSpace(v); v == "" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// cut returns s cut to at most n bytes, on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
