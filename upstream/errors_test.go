package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

func TestErrors(t *testing.T) {
	now := time.Unix(946_684_800, 0) // 2000-01-01 00:00:00 UTC, when a synctest bubble starts
	reset := now.Add(90 * time.Second)
	resetHeader := fmt.Sprint(reset.Unix())
	long := "a" + strings.Repeat("é", 400) // 801 bytes
	for _, tc := range []struct {
		name  string
		reply reply
		want  Error
	}{{
		name:  "404",
		reply: reply{Status: 404, Body: `{"message":"Not Found","documentation_url":"https://docs.github.com/rest","status":"404"}`},
		want:  Error{StatusCode: 404, Message: "Not Found"},
	}, {
		name:  "409",
		reply: reply{Status: 409, Body: `{"message":"Visibility is not selected"}`},
		want:  Error{StatusCode: 409, Message: "Visibility is not selected"},
	}, {
		name:  "422",
		reply: reply{Status: 422, Body: `{"message":"Validation Failed","errors":[{"resource":"Secret","code":"invalid"}]}`, Header: map[string]string{"X-GitHub-Request-Id": "CAFE:1234"}},
		want:  Error{StatusCode: 422, Message: "Validation Failed", RequestID: "CAFE:1234"},
	}, {
		name:  "401",
		reply: reply{Status: 401, Body: `{"message":"Bad credentials"}`},
		want:  Error{StatusCode: 401, Message: "Bad credentials"},
	}, {
		name:  "403 forbidden",
		reply: reply{Status: 403, Body: `{"message":"Resource not accessible by integration"}`, Header: map[string]string{"X-Ratelimit-Remaining": "4999", "X-Ratelimit-Reset": resetHeader}},
		want:  Error{StatusCode: 403, Message: "Resource not accessible by integration", RateLimitReset: reset},
	}, {
		name:  "403 primary rate limit",
		reply: reply{Status: 403, Body: `{"message":"API rate limit exceeded for installation ID 1."}`, Header: map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": resetHeader}},
		want:  Error{StatusCode: 403, Message: "API rate limit exceeded for installation ID 1.", RateLimited: true, RetryAfter: 90*time.Second + pace.ResetMargin, RateLimitReset: reset},
	}, {
		name:  "403 remaining 0 without message",
		reply: reply{Status: 403, Header: map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": resetHeader}},
		want:  Error{StatusCode: 403, Message: "Forbidden", RateLimited: true, RetryAfter: 90*time.Second + pace.ResetMargin, RateLimitReset: reset},
	}, {
		name:  "403 secondary rate limit",
		reply: reply{Status: 403, Body: `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`, Header: map[string]string{"Retry-After": "60", "X-Ratelimit-Remaining": "4000"}},
		want:  Error{StatusCode: 403, Message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", RateLimited: true, RetryAfter: time.Minute},
	}, {
		name:  "429 with Retry-After",
		reply: reply{Status: 429, Body: `{"message":"slow down"}`, Header: map[string]string{"Retry-After": "17", "X-Ratelimit-Reset": resetHeader}},
		want:  Error{StatusCode: 429, Message: "slow down", RateLimited: true, RetryAfter: 17 * time.Second, RateLimitReset: reset},
	}, {
		name:  "429 with Retry-After date",
		reply: reply{Status: 429, Header: map[string]string{"Retry-After": now.Add(2 * time.Minute).UTC().Format(http.TimeFormat)}},
		want:  Error{StatusCode: 429, Message: "Too Many Requests", RateLimited: true, RetryAfter: 2 * time.Minute},
	}, {
		name:  "429 reset in the past",
		reply: reply{Status: 429, Header: map[string]string{"X-Ratelimit-Reset": fmt.Sprint(now.Add(-time.Minute).Unix())}},
		want:  Error{StatusCode: 429, Message: "Too Many Requests", RateLimited: true, RateLimitReset: now.Add(-time.Minute)},
	}, {
		name:  "500 HTML",
		reply: reply{Status: 500, Body: `<html><body>oops</body></html>`, Header: map[string]string{"Content-Type": "text/html"}},
		want:  Error{StatusCode: 500, Message: "Internal Server Error"},
	}, {
		name:  "502 empty",
		reply: reply{Status: 502},
		want:  Error{StatusCode: 502, Message: "Bad Gateway"},
	}, {
		name:  "503 Retry-After not rate limited",
		reply: reply{Status: 503, Body: `{"message":"Service Unavailable"}`, Header: map[string]string{"Retry-After": "5"}},
		want:  Error{StatusCode: 503, Message: "Service Unavailable", RetryAfter: 5 * time.Second},
	}, {
		name:  "long message truncated on a rune boundary",
		reply: reply{Status: 422, Body: `{"message":"` + long + `"}`},
		want:  Error{StatusCode: 422, Message: long[:299]},
	}, {
		name:  "control characters",
		reply: reply{Status: 422, Body: `{"message":"line1\nline2\u0000"}`},
		want:  Error{StatusCode: 422, Message: "line1 line2"},
	}, {
		name:  "3xx",
		reply: reply{Status: 304},
		want:  Error{StatusCode: 304, Message: "Not Modified"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				if !time.Now().Equal(now) {
					t.Fatalf("the bubble starts at %v, not %v", time.Now(), now)
				}
				s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
					for k, v := range tc.reply.Header {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tc.reply.Status)
					_, _ = io.WriteString(w, tc.reply.Body)
				})
				// One attempt and no pause of its own: the decoded answer
				// as GitHub sent it.
				c := memClient(t, s, Pacing{MaxAttempts: 1})
				_, err := c.PutSecret(t.Context(), orgAgents, "S", PutSecretBody{EncryptedValue: "eA==", KeyID: "k"})
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v (%T), want *Error", err, err)
				}
				want := tc.want
				want.Method, want.Route = "PUT", "/orgs/{org}/{app}/secrets/{secret_name}"
				if !reflect.DeepEqual(*e, want) {
					t.Errorf("got  %#v\nwant %#v", *e, want)
				}
			})
		})
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Method: "PUT", Route: "/orgs/{org}/{app}/secrets/{secret_name}", StatusCode: 422, Message: "Validation Failed"},
			"github: PUT /orgs/{org}/{app}/secrets/{secret_name}: 422 Unprocessable Entity: Validation Failed"},
		{Error{Method: "GET", Route: "/repos/{owner}/{repo}", StatusCode: 404, Message: "Not Found"},
			"github: GET /repos/{owner}/{repo}: 404 Not Found"},
		{Error{Method: "GET", Route: "/x", StatusCode: 599, Message: "weird"},
			"github: GET /x: 599: weird"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestCleanMessage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 300, "plain"},
		{"  a\r\nb\t ", 300, "a  b"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},
		{"\xff\xfeok", 300, "\uFFFDok"},
		{"", 10, ""},
	} {
		if got := cleanMessage(tc.in, tc.n); got != tc.want {
			t.Errorf("cleanMessage(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestBackoffErrorMessage(t *testing.T) {
	cause := &Error{Method: "PUT", Route: "/repos/{owner}/{repo}/{app}/secrets/{secret_name}", StatusCode: 503, Message: "Service Unavailable"}
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{2*time.Second + 400*time.Millisecond, "of 2s would"},
		{1500 * time.Microsecond, "of 2ms would"},
	} {
		e := &BackoffError{Attempts: 2, RetryAfter: tc.after, Err: cause}
		want := "github: PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}: 503 Service Unavailable (attempt 2; not retried: the retry's backoff " + tc.want + " end after the caller's deadline)"
		if got := e.Error(); got != want {
			t.Errorf("Error() = %q\nwant      %q", got, want)
		}
		if got, ok := errors.AsType[*Error](e); !ok || got != cause {
			t.Errorf("errors.As does not find the cause through %v", e)
		}
	}
}
