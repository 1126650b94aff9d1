package service

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/upstream"
)

// TestEveryUnavailableCarriesRetryInfo: the broker's UNAVAILABLE answers
// tell their caller when to try again (the gateway sends it as
// Retry-After, as the README says of every 503): its own outages and a
// refused credential did not.
func TestEveryUnavailableCarriesRetryInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"audit trail", &auditError{err: errors.New("disk full")}},
		{"owner unknown", &ownerUnknownError{}},
		{"shared state", &leaseError{err: errors.New("redis down")}},
		{"GitHub 401", &upstream.Error{StatusCode: http.StatusUnauthorized}},
		{"GitHub 503", &upstream.Error{StatusCode: http.StatusServiceUnavailable}},
		{"GitHub unreachable, retries left", &upstream.BackoffError{Attempts: 2, RetryAfter: 2e9, Err: &url.Error{Op: "Put", URL: "https://api.github.com/", Err: syscall.ECONNREFUSED}}},
		{"GitHub unreachable, attempts used up", &url.Error{Op: "Put", URL: "https://api.github.com/", Err: syscall.ECONNREFUSED}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := statusOf(tc.err)
			if st.Code() != codes.Unavailable {
				t.Fatalf("code %s, want UNAVAILABLE", st.Code())
			}
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
					return
				}
			}
			t.Errorf("%q has no RetryInfo", st.Message())
		})
	}
}

// TestDrainedBatchItemIsUnavailable: a batch item stopped because the
// shutdown's drain ended the call's context (its cause ErrDrained) is
// UNAVAILABLE with a retry delay, as a single call the drain stops, not
// CANCELLED as if its caller had cancelled it; one whose caller cancelled
// the call stays CANCELLED. Neither counts as the broker's fault.
func TestDrainedBatchItemIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause error
		want  codes.Code
		retry time.Duration
	}{
		{"drain", ErrDrained, codes.Unavailable, RetryShutdown},
		{"caller", context.Canceled, codes.Canceled, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call, cancel := context.WithCancelCause(t.Context())
			cancel(tc.cause)
			tally := batchTally{call: call}
			c, msg, retry := tally.add(context.Canceled)
			if codes.Code(c) != tc.want || retry.AsDuration() != tc.retry {
				t.Errorf("a stopped item: %s %q, retry %v; want %s, retry %s", codes.Code(c), msg, retry, tc.want, tc.retry)
			}
			if tally.fault != nil {
				t.Errorf("a stopped item counts as the broker's fault: %v", tally.fault)
			}
		})
	}
}
