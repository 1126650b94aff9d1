package pace

import (
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestProbeHoldsRequestsWaitingOnTheState runs two pacers that share a
// State against a fake GitHub whose secondary limit holds until liftAt
// and refuses what arrives before then with a 429 without Retry-After.
// The other replica's request is refused first; three requests wait in
// this pacer's queue, held by a backoff of its own, and when it ends the
// pump, which knows nothing of the pause yet, admits them all, and the
// State holds them for the other replica's pause. When that
// pause ends they must not all go: one probes and the others wait for its
// answer, as requests queued in the pacer do.
func TestProbeHoldsRequestsWaitingOnTheState(t *testing.T) {
	const (
		lat   = 100 * time.Millisecond // every answer's latency
		pause = time.Minute            // SecondaryPause
	)
	for _, tc := range []struct {
		name   string
		liftAt time.Duration // when GitHub's limit lifts, from the start
		// wantSent is when each request was sent, sorted (the other
		// replica's first); wantRefused how many were refused.
		wantSent    []time.Duration
		wantRefused int
	}{{
		// The other replica's request is refused at +0.1 s: the State
		// pauses until +60.1 s. The probe is refused (+60.2 s), the second
		// refusal in a row of the credential's, if the first of this
		// pacer's: paused 2 min, until +180.2 s; the next probe is
		// answered at +180.3 s and the two others go then.
		name:        "limit still holds: only the probe is refused",
		liftAt:      90 * time.Second,
		wantSent:    []time.Duration{0, 60*time.Second + lat, 180*time.Second + 2*lat, 180*time.Second + 3*lat, 180*time.Second + 3*lat},
		wantRefused: 2,
	}, {
		name:        "limit lifted: the others go right after the probe's answer",
		liftAt:      30 * time.Second,
		wantSent:    []time.Duration{0, 60*time.Second + lat, 60*time.Second + 2*lat, 60*time.Second + 2*lat},
		wantRefused: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := NewMemoryState(StateLimits{SecondaryPause: pause, MaxInFlight: MaxConcurrent})
				cfg := Config{MaxInFlight: 10, SecondaryPause: pause, State: st}
				other, p := newPacer(t, cfg), newPacer(t, cfg)
				gh := &limitedGitHub{t0: time.Now(), liftAt: tc.liftAt}
				// call sends one caller's request through pacer until
				// GitHub accepts it (once only for the other replica's).
				call := func(pacer *Pacer, caller string) {
					for {
						pm, err := pacer.Acquire(t.Context(), Request{Caller: caller, Method: http.MethodGet, Route: "/r"})
						if err != nil {
							t.Error(err)
							return
						}
						refuse := gh.send(true)
						time.Sleep(lat)
						if !refuse {
							pm.Done(http.StatusOK, nil, lat)
							return
						}
						pm.Done(http.StatusTooManyRequests, nil, lat)
						if pacer == other {
							return
						}
					}
				}
				var wg sync.WaitGroup
				p.Backoff(gh.t0.Add(time.Second)) // B, C and D queue until +1 s
				wg.Go(func() { call(other, "A") })
				time.Sleep(lat)
				synctest.Wait() // A is refused: the State pauses every replica
				for _, c := range []string{"B", "C", "D"} {
					wg.Go(func() { call(p, c) })
				}
				time.Sleep(time.Second)
				synctest.Wait()
				if s := p.Stats(); s.InFlight != 3 {
					t.Errorf("%d in flight on this pacer, want 3 admitted and held by the State", s.InFlight)
				}
				wg.Wait()
				gh.check(t, tc.wantSent, tc.wantRefused)
			})
		})
	}
}
