package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// With a 2 s deadline, a GitHub that cannot be reached or keeps failing is
// UNAVAILABLE for what it is, with the backoff as the retry hint; only a
// wait that GitHub's limits impose is RESOURCE_EXHAUSTED.
func TestFailingUpstreamPastTheDeadline(t *testing.T) {
	secondary := `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`
	for _, tc := range []struct {
		name    string
		fault   *emulator.Fault // nil: the connection is refused
		code    codes.Code
		message string
		// retry bounds the RetryInfo delay.
		minRetry, maxRetry time.Duration
	}{
		{"connection refused", nil, codes.Unavailable, "GitHub could not be reached", time.Second, time.Minute},
		{"503 storm", &emulator.Fault{Status: http.StatusServiceUnavailable}, codes.Unavailable, "GitHub is unavailable", time.Second, time.Minute},
		{"secondary limit, retry-after 60", &emulator.Fault{Status: http.StatusForbidden, Body: secondary, Header: http.Header{"Retry-After": {"60"}}},
			codes.ResourceExhausted, "budget would not let this through", time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := upstream.Config{BaseURL: emulatorURL, Token: testToken, HTTPClient: &http.Client{Transport: refusingTransport{}}}
				if tc.fault != nil {
					emu := emulator.New(emulator.Options{Token: testToken})
					emu.SeedDemo()
					f := *tc.fault
					f.Times = 1000
					emu.InjectFault(f)
					cfg.HTTPClient = &http.Client{Transport: newEmulatorTransport(emu)}
				}
				p := upstream.DefaultPacing()
				p.MaxAttempts = upstream.MaxAttemptsLimit // the deadline ends the retries, not their number
				cfg.Pacing = &p
				up, err := upstream.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				_, err = up.GetPublicKey(ctx, upstream.Scope{App: upstream.Actions, Org: "octo-org"})
				if ctx.Err() != nil {
					t.Errorf("the call waited for its deadline instead of failing at once: %v", err)
				}
				st := statusOf(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.message) {
					t.Fatalf("status %v %q, want %v %q (err %v)", st.Code(), st.Message(), tc.code, tc.message, err)
				}
				if strings.Contains(st.Message(), testToken) || strings.Contains(err.Error(), testToken) {
					t.Fatalf("the token leaks: %v; %v", st.Message(), err)
				}
				var retry *errdetails.RetryInfo
				for _, d := range st.Details() {
					if ri, ok := d.(*errdetails.RetryInfo); ok {
						retry = ri
					}
				}
				if retry == nil {
					t.Fatalf("no RetryInfo in %v", st.Details())
				}
				if d := retry.GetRetryDelay().AsDuration(); d < tc.minRetry || d > tc.maxRetry {
					t.Errorf("retry delay %v, want in [%v, %v]", d, tc.minRetry, tc.maxRetry)
				}
			})
		})
	}
}

// An organization the broker's GitHub App is not installed on is
// FAILED_PRECONDITION naming the organization; a 401 from the app's own
// installation lookup is UNAVAILABLE like any refused credential.
func TestNotInstalledIsFailedPrecondition(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"not installed", fmt.Errorf("wrapped: %w", &upstream.NotInstalledError{Account: "initech"}), codes.FailedPrecondition, `not installed on the organization or account "initech"`},
		{"lookup refused", &upstream.Error{Method: "GET", Route: "/orgs/{org}/installation", StatusCode: http.StatusUnauthorized}, codes.Unavailable, "rejected the broker's credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := statusOf(tc.err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("status %v %q, want %v saying %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

// A write that could not take or keep its secret's lease is UNAVAILABLE
// whatever the store's error wraps (a dial that timed out is also
// context.DeadlineExceeded), and the caller's own cancellation or
// deadline when that is what ended it.
func TestLeaseErrorStatus(t *testing.T) {
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("i/o timeout: %w", context.DeadlineExceeded)}
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{"redis refused", &leaseError{err: errors.New("redis: connection refused")}, codes.Unavailable},
		{"redis dial timed out", &leaseError{err: fmt.Errorf("state: redis: taking the secret's write lease: %w", dialTimeout)}, codes.Unavailable},
		{"lease lost", fmt.Errorf("wrapped: %w", &leaseError{err: state.ErrLeaseLost}), codes.Unavailable},
		{"caller's deadline", &leaseError{err: fmt.Errorf("waiting: %w", context.DeadlineExceeded), callerEnded: true}, codes.DeadlineExceeded},
		{"caller cancelled", &leaseError{err: fmt.Errorf("waiting: %w", context.Canceled), callerEnded: true}, codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusOf(tc.err).Code(); got != tc.code {
				t.Errorf("statusOf = %v, want %v", got, tc.code)
			}
		})
	}
}

// A redirect GitHub answered (a renamed or transferred repository; the
// client follows none) is NOT_FOUND for the name given, never the
// repository it became; an unresolvable repository name likewise.
func TestRedirectIsNotFound(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		err := fmt.Errorf("wrapped: %w", &upstream.Error{Method: "PUT", Route: "/repos/{owner}/{repo}/actions/secrets/{secret_name}", StatusCode: code})
		if st := statusOf(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "current name") {
			t.Errorf("%d: status %v %q, want NOT_FOUND saying the repository is reached by its current name", code, st.Code(), st.Message())
		}
		names := &repoNames{get: redirectingGetter{code}, ttl: time.Minute, entries: map[string]repoNameEntry{}}
		if _, err := names.resolve(t.Context(), "octo-org", "old-name"); !errors.As(err, new(*repoNotFoundError)) {
			t.Errorf("%d: resolving a redirected repository name: %v, want a *repoNotFoundError", code, err)
		}
	}
}

type redirectingGetter struct{ code int }

func (g redirectingGetter) GetRepository(context.Context, string, string) (upstream.Repository, error) {
	return upstream.Repository{}, &upstream.Error{Method: "GET", Route: "/repos/{owner}/{repo}", StatusCode: g.code}
}
