package pace

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestProbeAfterPauseWithoutHint runs callers against a fake GitHub whose
// secondary limit holds until liftAt and refuses every request that
// arrives before then with a 429 without Retry-After (as the emulator's
// OmitRetryAfter does). The first request is refused at once; the others
// queue behind its pause. Once a pause without a hint ends, one request
// (the probe) goes alone: a refusal pauses again, an answer lets every
// waiting request go, and a probe without an answer hands the role on.
func TestProbeAfterPauseWithoutHint(t *testing.T) {
	const (
		lat   = 100 * time.Millisecond // every answer's latency
		pause = time.Minute            // SecondaryPause
	)
	for _, tc := range []struct {
		name   string
		liftAt time.Duration // when GitHub's limit lifts, from the start
		// retryAfter is the refusals' Retry-After ("": none).
		retryAfter string
		// fail is what happens to the first request sent at or after
		// failAt (0: none): "noanswer" (Done with status 0) or "unsent".
		fail   string
		failAt time.Duration
		// wantSent is when each request was sent, sorted; wantRefused how
		// many were refused.
		wantSent    []time.Duration
		wantRefused int
	}{{
		// Refused at +0.1 s: paused until +60.1 s. The probe is refused
		// (+60.2 s, paused 2 min until +180.2 s) and so is the next one
		// (+180.3 s, 4 min until +420.3 s); the third is answered at
		// +420.4 s, and the three others go then.
		name:   "limit still holds: only the probe is refused",
		liftAt: 200 * time.Second,
		wantSent: []time.Duration{0, 60*time.Second + lat, 180*time.Second + 2*lat,
			420*time.Second + 3*lat, 420*time.Second + 4*lat, 420*time.Second + 4*lat, 420*time.Second + 4*lat},
		wantRefused: 3,
	}, {
		// GitHub said when: every request goes when the pause ends.
		name:   "Retry-After: no probe",
		liftAt: 30 * time.Second, retryAfter: "60",
		wantSent: []time.Duration{0, 60*time.Second + lat, 60*time.Second + lat, 60*time.Second + lat,
			60*time.Second + lat},
		wantRefused: 1,
	}, {
		name:        "limit lifted: the crowd goes right after the probe's answer",
		liftAt:      30 * time.Second,
		wantSent:    []time.Duration{0, 60*time.Second + lat, 60*time.Second + 2*lat, 60*time.Second + 2*lat, 60*time.Second + 2*lat},
		wantRefused: 1,
	}, {
		name:   "probe without an answer: the next request probes",
		liftAt: 30 * time.Second,
		fail:   "noanswer", failAt: time.Minute,
		wantSent: []time.Duration{0, 60*time.Second + lat, 60*time.Second + 2*lat,
			60*time.Second + 3*lat, 60*time.Second + 3*lat, 60*time.Second + 3*lat},
		wantRefused: 1,
	}, {
		name:   "probe never sent: the next request probes",
		liftAt: 30 * time.Second,
		fail:   "unsent", failAt: time.Minute,
		wantSent: []time.Duration{0, 60*time.Second + lat, 60*time.Second + 2*lat,
			60*time.Second + 2*lat, 60*time.Second + 2*lat},
		wantRefused: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, Config{MaxInFlight: 10, SecondaryPause: pause})
				gh := &limitedGitHub{t0: time.Now(), liftAt: tc.liftAt}
				var (
					mu     sync.Mutex
					failed bool
				)
				// call sends one caller's request until GitHub accepts it.
				call := func(caller string) {
					for {
						pm, err := p.Acquire(t.Context(), Request{Caller: caller, Method: http.MethodGet, Route: "/r"})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						fail := tc.fail != "" && !failed && time.Since(gh.t0) >= tc.failAt
						failed = failed || fail
						mu.Unlock()
						if fail && tc.fail == "unsent" {
							pm.Unsent()
							continue
						}
						refuse := gh.send(!fail) // a request without an answer is no refusal
						time.Sleep(lat)
						switch {
						case fail:
							pm.Done(0, nil, lat) // no answer
						case refuse:
							var h http.Header
							if tc.retryAfter != "" {
								h = header("Retry-After", tc.retryAfter)
							}
							pm.Done(http.StatusTooManyRequests, h, lat)
						default:
							pm.Done(http.StatusOK, nil, lat)
							return
						}
					}
				}
				var wg sync.WaitGroup
				wg.Go(func() { call("A") })
				time.Sleep(lat)
				synctest.Wait() // A is refused: the credential is paused
				for _, c := range []string{"B", "C", "D"} {
					wg.Go(func() { call(c) })
				}
				wg.Wait()
				gh.check(t, tc.wantSent, tc.wantRefused)
			})
		})
	}
}

// limitedGitHub is the probe tests' fake GitHub: its secondary limit holds
// until liftAt from t0, refusing what arrives before then. It notes when
// each request was sent and how many it refused.
type limitedGitHub struct {
	t0     time.Time
	liftAt time.Duration

	mu      sync.Mutex
	sent    []time.Duration
	refused int
}

// send notes a request sent now and says whether the limit refuses it,
// counting the refusal when counted.
func (g *limitedGitHub) send(counted bool) (refuse bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	at := time.Since(g.t0)
	g.sent = append(g.sent, at)
	refuse = at < g.liftAt
	if refuse && counted {
		g.refused++
	}
	return refuse
}

// check reports sending times (in any order) or a count of refusals other
// than wanted.
func (g *limitedGitHub) check(t *testing.T, wantSent []time.Duration, wantRefused int) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	sent := slices.Sorted(slices.Values(g.sent))
	if !slices.Equal(sent, wantSent) {
		t.Errorf("sent at %v,\nwant      %v", sent, wantSent)
	}
	if g.refused != wantRefused {
		t.Errorf("%d refused, want %d", g.refused, wantRefused)
	}
}
