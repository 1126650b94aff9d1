package pace

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestParseRateLimit(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	reset := now.Add(90 * time.Second)
	resetHeader := fmt.Sprint(reset.Unix())
	for _, tc := range []struct {
		name   string
		h      http.Header
		status int
		msg    string // GitHub's message, for WithMessage
		want   RateLimit
	}{{
		name: "no answer",
		want: RateLimit{Remaining: -1, Used: -1},
	}, {
		name:   "200 with the primary quota",
		h:      header("X-Ratelimit-Remaining", "4999", "X-Ratelimit-Used", "1", "X-Ratelimit-Reset", resetHeader, "X-Ratelimit-Resource", "core"),
		status: 200,
		want:   RateLimit{Status: 200, Remaining: 4999, Used: 1, Reset: reset, Resource: "core"},
	}, {
		name:   "200 with the quota used up is no refusal",
		h:      header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", resetHeader),
		status: 200,
		want:   RateLimit{Status: 200, Remaining: 0, Used: -1, Reset: reset},
	}, {
		name:   "403 forbidden",
		h:      header("X-Ratelimit-Remaining", "4999", "X-Ratelimit-Reset", resetHeader),
		status: 403,
		msg:    "Resource not accessible by integration",
		want:   RateLimit{Status: 403, Remaining: 4999, Used: -1, Reset: reset},
	}, {
		name:   "403 primary rate limit",
		h:      header("X-Ratelimit-Remaining", " 0 ", "X-Ratelimit-Reset", resetHeader),
		status: 403,
		msg:    "API rate limit exceeded for installation ID 1.",
		want:   RateLimit{Status: 403, Remaining: 0, Used: -1, Reset: reset, Refused: true},
	}, {
		name:   "403 secondary rate limit, told by the message",
		h:      header("X-Ratelimit-Remaining", "4000"),
		status: 403,
		msg:    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
		want:   RateLimit{Status: 403, Remaining: 4000, Used: -1, Refused: true},
	}, {
		name:   "403 content-creation refusal, told by the older abuse-detection message",
		h:      header("Retry-After", "60"),
		status: 403,
		msg:    "You have triggered an abuse detection mechanism and have been temporarily blocked from content creation. Please retry your request again later.",
		want:   RateLimit{Status: 403, Remaining: -1, Used: -1, RetryAfter: time.Minute, HasRetryAfter: true, Refused: true},
	}, {
		name:   "403 with retry-after and no rate-limit message is not a refusal",
		h:      header("Retry-After", "60"),
		status: 403,
		msg:    "Forbidden",
		want:   RateLimit{Status: 403, Remaining: -1, Used: -1, RetryAfter: time.Minute, HasRetryAfter: true},
	}, {
		name:   "429 with Retry-After",
		h:      header("Retry-After", "17", "X-Ratelimit-Reset", resetHeader),
		status: 429,
		msg:    "slow down",
		want:   RateLimit{Status: 429, Remaining: -1, Used: -1, Reset: reset, RetryAfter: 17 * time.Second, HasRetryAfter: true, Refused: true},
	}, {
		name:   "429 with Retry-After 0",
		h:      header("Retry-After", "0"),
		status: 429,
		want:   RateLimit{Status: 429, Remaining: -1, Used: -1, HasRetryAfter: true, Refused: true},
	}, {
		name:   "429 with a Retry-After date",
		h:      header("Retry-After", now.Add(2*time.Minute).UTC().Format(http.TimeFormat)),
		status: 429,
		want:   RateLimit{Status: 429, Remaining: -1, Used: -1, RetryAfter: 2 * time.Minute, HasRetryAfter: true, Refused: true},
	}, {
		name:   "Retry-After date in the past",
		h:      header("Retry-After", now.Add(-time.Minute).UTC().Format(http.TimeFormat)),
		status: 429,
		want:   RateLimit{Status: 429, Remaining: -1, Used: -1, HasRetryAfter: true, Refused: true},
	}, {
		name:   "absurd Retry-After is capped",
		h:      header("Retry-After", "99999999999999"),
		status: 429,
		want:   RateLimit{Status: 429, Remaining: -1, Used: -1, RetryAfter: 24 * time.Hour, HasRetryAfter: true, Refused: true},
	}, {
		name:   "a reset an hour ahead is GitHub's window",
		h:      header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(now.Add(time.Hour).Unix())),
		status: 200,
		want:   RateLimit{Status: 200, Remaining: 0, Used: -1, Reset: now.Add(time.Hour)},
	}, {
		name:   "a reset a year ahead is no window of GitHub's",
		h:      header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(now.Add(365*24*time.Hour).Unix())),
		status: 403,
		want:   RateLimit{Status: 403, Remaining: 0, Used: -1, Refused: true},
	}, {
		name:   "a reset a year ahead of Date is no window of GitHub's",
		h:      header("Date", now.Add(-365*24*time.Hour).UTC().Format(http.TimeFormat), "X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", resetHeader),
		status: 200,
		want:   RateLimit{Status: 200, Remaining: 0, Used: -1},
	}, {
		name:   "malformed values",
		h:      header("Retry-After", "soon", "X-Ratelimit-Remaining", "-3", "X-Ratelimit-Used", "x", "X-Ratelimit-Reset", "0"),
		status: 503,
		want:   RateLimit{Status: 503, Remaining: -1, Used: -1},
	}, {
		name:   "503 with Retry-After is no refusal",
		h:      header("Retry-After", "5"),
		status: 503,
		msg:    "rate limit",
		want:   RateLimit{Status: 503, Remaining: -1, Used: -1, RetryAfter: 5 * time.Second, HasRetryAfter: true},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseRateLimit(tc.h, tc.status, now).WithMessage(tc.msg)
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRateLimitPause(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const secondary = time.Minute
	for _, tc := range []struct {
		name string
		rl   RateLimit
		want time.Duration
		why  Reason
	}{
		{"retry-after first", RateLimit{Remaining: 0, Reset: now.Add(time.Hour), RetryAfter: 7 * time.Second, HasRetryAfter: true}, 7 * time.Second, ReasonPause},
		{"retry-after 0", RateLimit{Remaining: -1, HasRetryAfter: true}, 0, ReasonPause},
		{"until the reset when remaining is 0", RateLimit{Remaining: 0, Reset: now.Add(90 * time.Second)}, 90*time.Second + ResetMargin, ReasonPrimary},
		// GitHub's clock may not have reached a reset just past on this one.
		{"a reset just past: until the margin ends", RateLimit{Remaining: 0, Reset: now.Add(-time.Second)}, ResetMargin - time.Second, ReasonPrimary},
		{"a reset in the past", RateLimit{Remaining: 0, Reset: now.Add(-ResetMargin)}, secondary, ReasonPause},
		{"remaining not 0", RateLimit{Remaining: 10, Reset: now.Add(90 * time.Second)}, secondary, ReasonPause},
		{"no hint", RateLimit{Remaining: -1}, secondary, ReasonPause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, why := tc.rl.Pause(now, secondary)
			if d != tc.want || why != tc.why {
				t.Errorf("Pause = %v, %v; want %v, %v", d, why, tc.want, tc.why)
			}
		})
	}
}

func FuzzParseRateLimit(f *testing.F) {
	f.Add(429, "17", "0", "1700000090", "5000", "core", "slow down")
	f.Add(403, "", " 0 ", "1700000090", "", "", "API rate limit exceeded")
	f.Add(403, "Wed, 21 Oct 2015 07:28:00 GMT", "12", "-1", "x", "search", "You have exceeded a secondary rate limit")
	f.Add(200, "-5", "abc", "99999999999999999999", "7", "\xff\xfe", "")
	f.Add(403, "+7", "+0", "1700003690", "007", strings.Repeat("é", 40), "Rate Limit exceeded")
	f.Add(403, "86401", "1", "1700003661", "-0", " core ", "You have triggered an ABUSE DETECTION mechanism")
	f.Add(429, "0x10", "0 0", "0", "1e3", "graphql", "")
	f.Add(403, "Wed, 21 Oct 2015 07:28:00 UTC", "٣", "1700000000", "", "", "ratelimit")
	f.Fuzz(func(t *testing.T, status int, retryAfter, remaining, reset, used, resource, msg string) {
		now := time.Unix(1_700_000_000, 0)
		h := header("Retry-After", retryAfter, "X-Ratelimit-Remaining", remaining, "X-Ratelimit-Reset", reset,
			"X-Ratelimit-Used", used, "X-Ratelimit-Resource", resource)
		rl := ParseRateLimit(h, status, now).WithMessage(msg)
		switch {
		case rl.Status != status:
			t.Errorf("Status %d, want %d", rl.Status, status)
		case rl.Remaining < -1 || rl.Used < -1:
			t.Errorf("Remaining %d, Used %d", rl.Remaining, rl.Used)
		case rl.RetryAfter < 0 || rl.RetryAfter > maxRetryAfter || (!rl.HasRetryAfter && rl.RetryAfter != 0):
			t.Errorf("RetryAfter %v (has %v)", rl.RetryAfter, rl.HasRetryAfter)
		case rl.Refused && status != 403 && status != 429:
			t.Errorf("a %d answer taken for a refusal", status)
		case status == 429 && !rl.Refused:
			t.Error("a 429 not taken for a refusal")
		case len(rl.Resource) > maxResource:
			t.Errorf("Resource of %d bytes", len(rl.Resource))
		case !rl.Reset.IsZero() && (rl.Reset.Unix() <= 0 || rl.Reset.Sub(now) > maxResetAhead):
			t.Errorf("Reset %v", rl.Reset)
		}
		if d, _ := rl.Pause(now, time.Minute); d < 0 || d > max(maxRetryAfter, maxResetAhead+ResetMargin) {
			t.Errorf("Pause %v", d)
		}
		// Written apart from the parser, from GitHub's documentation: a
		// 429 is a refusal; a 403 is one when the remaining quota is 0
		// or the message says rate limit (or abuse detection); no other
		// answer is.
		lower := strings.ToLower(msg)
		wantRefused := status == 429 || status == 403 &&
			(rl.Remaining == 0 || strings.Contains(lower, "rate limit") || strings.Contains(lower, "abuse detection"))
		if rl.Refused != wantRefused {
			t.Errorf("status %d, remaining %q, message %q: Refused %v", status, remaining, msg, rl.Refused)
		}
		// A header that is a number is read as that number; what is read
		// as a number is one.
		for _, c := range []struct {
			name, v string
			got     int
		}{{"Remaining", remaining, rl.Remaining}, {"Used", used, rl.Used}} {
			digits := strings.TrimSpace(c.v)
			if digits != "" && (digits[0] == '+' || digits[0] == '-') {
				digits = digits[1:] // "-0" is 0
			}
			if n, err := strconv.ParseUint(c.v, 10, 31); err == nil && c.got != int(n) {
				t.Errorf("%s %q read as %d", c.name, c.v, c.got)
			}
			if c.got >= 0 && (digits == "" || strings.Trim(digits, "0123456789") != "") {
				t.Errorf("%s %q read as %d", c.name, c.v, c.got)
			}
		}
		if n, err := strconv.ParseUint(retryAfter, 10, 31); err == nil &&
			(!rl.HasRetryAfter || rl.RetryAfter != min(time.Duration(n)*time.Second, maxRetryAfter)) {
			t.Errorf("Retry-After %q read as %v (has %v)", retryAfter, rl.RetryAfter, rl.HasRetryAfter)
		}
		if r := strings.TrimSpace(resource); !strings.HasPrefix(r, rl.Resource) || utf8.ValidString(r) && !utf8.ValidString(rl.Resource) ||
			len(r) <= maxResource && rl.Resource != r {
			t.Errorf("Resource %q read as %q", resource, rl.Resource)
		}
	})
}

// GitHub's times are read against the answer's Date, so that a clock
// ahead of (or behind) GitHub's waits as long as GitHub means: a reset
// 40 s after Date is 40 s after the answer arrived.
func TestParseRateLimitReadsGitHubsClock(t *testing.T) {
	github := time.Unix(1_700_000_000, 0) // GitHub's clock at the answer
	date := github.UTC().Format(http.TimeFormat)
	reset := fmt.Sprint(github.Add(40 * time.Second).Unix())
	retryAt := github.Add(30 * time.Second).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		name       string
		skew       time.Duration // this machine's clock minus GitHub's
		h          http.Header
		wantReset  time.Duration // after now
		wantRetry  time.Duration
		wantHasRet bool
	}{
		{"same clock", 0, header("Date", date, "X-Ratelimit-Reset", reset, "Retry-After", retryAt), 40 * time.Second, 30 * time.Second, true},
		{"clock 2 minutes ahead", 2 * time.Minute, header("Date", date, "X-Ratelimit-Reset", reset, "Retry-After", retryAt), 40 * time.Second, 30 * time.Second, true},
		{"clock 1 minute behind", -time.Minute, header("Date", date, "X-Ratelimit-Reset", reset, "Retry-After", retryAt), 40 * time.Second, 30 * time.Second, true},
		{"no Date: this clock", 2 * time.Minute, header("X-Ratelimit-Reset", reset), 40*time.Second - 2*time.Minute, 0, false},
		{"unreadable Date: this clock", 0, header("Date", "yesterday", "X-Ratelimit-Reset", reset), 40 * time.Second, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := github.Add(tt.skew)
			rl := ParseRateLimit(tt.h, http.StatusForbidden, now)
			if got := rl.Reset.Sub(now); got != tt.wantReset {
				t.Errorf("reset %v after now, want %v", got, tt.wantReset)
			}
			if rl.RetryAfter != tt.wantRetry || rl.HasRetryAfter != tt.wantHasRet {
				t.Errorf("Retry-After %v (%v), want %v (%v)", rl.RetryAfter, rl.HasRetryAfter, tt.wantRetry, tt.wantHasRet)
			}
		})
	}
}
