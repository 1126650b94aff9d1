package pace_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// One attempt of a request: wait for admission, build the body only then
// (a secret is sealed with the key current at that moment), send, report.
func Example() {
	p, err := pace.New(pace.DefaultConfig())
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	permit, err := p.Acquire(ctx, pace.Request{Caller: "token:deployer", Method: http.MethodPut, Route: "/orgs/{org}/actions/secrets/{secret_name}"})
	var te *pace.ThrottledError
	switch {
	case errors.As(err, &te) && te.Reason.Failure():
		fmt.Println("unavailable, retry in", te.RetryAfter)
		return
	case errors.As(err, &te):
		fmt.Println("exhausted, retry in", te.RetryAfter)
		return
	case err != nil:
		fmt.Println(err)
		return
	}
	body, err := sealNow()
	if err != nil {
		permit.Unsent() // its place and its write slot go to the next request
		return
	}
	_ = body // send it; then report GitHub's answer
	permit.Done(http.StatusCreated, http.Header{"X-Ratelimit-Remaining": {"4999"}}, 120*time.Millisecond)
	s := p.Stats()
	s.CPUUsed = s.CPUUsed.Truncate(time.Second) // its latency, at most its time since admission
	fmt.Printf("%+v\n", s)
	// Output: {Queued:0 InFlight:0 PeakInFlight:1 Requests:1 Points:5 Throttled:0 RateLimited:0 PointsUsed:5 CPUUsed:0s}
}

func sealNow() ([]byte, error) { return []byte(`{"encrypted_value":"c2VhbGVk","key_id":"k1"}`), nil }
