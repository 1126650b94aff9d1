package service

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	"github.com/secretbroker/secretbroker/upstream"
)

// TestThrottledStatus: a refusal by the pacer is RESOURCE_EXHAUSTED with
// its RetryInfo; the message says whether the call's deadline or the
// broker's queue bounds refused it.
func TestThrottledStatus(t *testing.T) {
	for _, tc := range []struct {
		name, bound, want string
	}{
		{"the caller's deadline", "", "before the call's deadline"},
		{"the queue bounds", "beyond the pacer's bound on waits (30s)", "--max-queue-wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fmt.Errorf("put: %w", &upstream.ThrottledError{Method: "PUT", Route: "/r", RetryAfter: 40 * time.Second, Reason: "x", Bound: tc.bound})
			st := classify(err)
			if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("classify: %v %q, want ResourceExhausted saying %q", st.Code(), st.Message(), tc.want)
			}
			var retry time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					retry = ri.GetRetryDelay().AsDuration()
				}
			}
			if retry != 40*time.Second {
				t.Fatalf("RetryInfo %v, want 40s", retry)
			}
		})
	}
}
