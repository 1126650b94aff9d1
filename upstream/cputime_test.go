package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// GitHub's limit on CPU time (90 s per 60 s, which GitHub says response
// time roughly estimates), against the emulator with github.com's limits
// and every answer 2 s late: 100 callers with 100 requests in flight
// would spend 100 s of response time every 2 s. With the client's
// CPU-time budget (80 s by default) the emulator never sees a window
// count its limit, nor more than the budget; without it, it refuses
// requests for its CPU-time limit.
func TestCPUTimeAgainstTheEmulator(t *testing.T) {
	for _, tc := range []struct {
		name string
		cpu  time.Duration
	}{
		{"the CPU-time budget", pace.DefaultCPUPerMinute},
		{"off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.GitHubLimits()})
				emu.AddOrg("octo")
				emu.AddRepo("octo", "app", false)
				emu.InjectFault(emulator.Fault{Latency: 2 * time.Second, Times: 1 << 30})
				pacing := upstream.DefaultPacing()
				pacing.MaxInFlight = upstream.MaxInFlightLimit
				pacing.CPUPerMinute = tc.cpu
				c, err := upstream.New(upstream.Config{BaseURL: "https://github.example", Token: replicaToken,
					HTTPClient: &http.Client{Transport: &emuTransport{h: emu}}, Pacing: &pacing})
				if err != nil {
					t.Fatal(err)
				}
				scope := upstream.Scope{App: upstream.Actions, Owner: "octo", Repo: "app"}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
				defer cancel()
				var wg sync.WaitGroup
				var mu sync.Mutex
				listed := 0
				for range 100 {
					wg.Go(func() {
						for ctx.Err() == nil {
							_, err := c.ListSecrets(ctx, scope, upstream.Page{})
							if _, ok := errors.AsType[*upstream.ThrottledError](err); ok || ctx.Err() != nil {
								return // it would not go before the end
							}
							mu.Lock()
							if err == nil {
								listed++
							}
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				st := emu.Stats()
				t.Logf("%d lists in 5 min; emulator: %d requests, peak %v of response time in a window, %d CPU violations, %d secondary",
					listed, st.Requests, st.PeakCPU, st.CPUViolations, st.SecondaryViolations)
				if tc.cpu == 0 {
					if st.CPUViolations == 0 {
						t.Fatalf("no CPU violation without the budget: the test shows nothing")
					}
					return
				}
				if st.CPUViolations != 0 || st.SecondaryViolations != 0 || st.PeakCPU > tc.cpu {
					t.Errorf("emulator stats %+v: want no violation and a peak of at most %v", st, tc.cpu)
				}
				// The budget is used: about 40 lists of 2 s every 62 s.
				if listed < 150 {
					t.Errorf("%d lists in 5 minutes, want about 190", listed)
				}
			})
		})
	}
}
