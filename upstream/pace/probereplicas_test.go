package pace

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// probeGitHub is a fake GitHub whose secondary limit holds until liftAt
// (from t0) and refuses what arrives before then with a 429 without
// Retry-After. It records when each request arrived, and every request
// that arrived while another was at GitHub after a refusal and before any
// answer that was no refusal: once a pause GitHub gave no length for is
// over, one request (the probe) goes alone, whichever replica sends it.
type probeGitHub struct {
	t0     time.Time
	liftAt time.Duration

	mu       sync.Mutex
	sent     []time.Duration
	refused  int
	inFlight int
	probing  bool // a refusal was answered, and no success since
	overlaps []string
}

// arrive records a request's arrival and returns whether it is refused.
func (g *probeGitHub) arrive(who string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	at := time.Since(g.t0)
	g.sent = append(g.sent, at)
	if g.probing && g.inFlight > 0 {
		g.overlaps = append(g.overlaps, fmt.Sprintf("%s at +%v with %d at GitHub", who, at, g.inFlight))
	}
	g.inFlight++
	refuse := at < g.liftAt
	if refuse {
		g.refused++
	}
	return refuse
}

// answer records the answer to a request that arrived.
func (g *probeGitHub) answer(refused bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	g.probing = refused
}

// TestOneProbeAcrossReplicas runs three pacers (replicas) that share a
// State against a fake GitHub whose secondary limit holds until liftAt.
// The first replica's request is refused without Retry-After; then every
// replica has three callers waiting. When the pause ends, one request
// goes alone, the probe of every replica, not one per replica: its answer
// lets every replica's requests go, its refusal pauses every replica
// again (for the escalation of the credential's refusals in a row), and a
// probe whose replica dies before it is sent hands the role on when its
// ProbeLease ends.
func TestOneProbeAcrossReplicas(t *testing.T) {
	const (
		lat      = 120 * time.Millisecond // every answer's latency, off SlotPoll's beat
		pause    = time.Minute            // SecondaryPause
		replicas = 3
		callers  = 3 // per replica
	)
	// The first refusal is answered at +lat: paused until +60.12 s.
	end := pause + lat
	for _, tc := range []struct {
		name   string
		liftAt time.Duration
		dies   bool // the first probe's replica dies before it sends it
		// wantSent is when each request was sent, sorted; wantRefused how
		// many were refused.
		wantSent    []time.Duration
		wantRefused int
	}{{
		// The probe is answered at +60.24 s: the two others of its
		// replica go then, those of the other replicas at their next
		// ask, +60.27 s (every SlotPoll from +60.12 s).
		name:   "limit lifted: one probe, then every replica",
		liftAt: 30 * time.Second,
		wantSent: append([]time.Duration{0, end, end + lat, end + lat},
			slices.Repeat([]time.Duration{end + 3*SlotPoll}, 2*callers)...),
		wantRefused: 1,
	}, {
		// The probe is refused at +60.24 s, the credential's second
		// refusal in a row: every replica pauses 2 min, until +180.24 s,
		// whichever replica sent the probe; the next probe is answered
		// at +180.36 s.
		name:   "limit still holds: one probe refused, then one more",
		liftAt: 90 * time.Second,
		wantSent: append([]time.Duration{0, end, 3*pause + 2*lat, 3*pause + 3*lat, 3*pause + 3*lat},
			slices.Repeat([]time.Duration{3*pause + 2*lat + 3*SlotPoll}, 2*callers)...),
		wantRefused: 2,
	}, {
		// The first probe's replica dies with it unsent: the two others
		// wait for its lease, then one probes and, once it is answered,
		// the others go.
		name:   "the probe's replica dies: the role passes after ProbeLease",
		liftAt: 30 * time.Second,
		dies:   true,
		wantSent: append([]time.Duration{0, end + ProbeLease, end + ProbeLease + lat, end + ProbeLease + lat},
			slices.Repeat([]time.Duration{end + ProbeLease + 3*SlotPoll}, callers)...),
		wantRefused: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := NewMemoryState(StateLimits{SecondaryPause: pause, MaxInFlight: MaxConcurrent})
				cfg := Config{MaxInFlight: 10, SecondaryPause: pause, State: st}
				gh := &probeGitHub{t0: time.Now(), liftAt: tc.liftAt}
				var (
					pacers  []*Pacer
					kills   []context.CancelFunc
					ctxs    []context.Context
					mu      sync.Mutex
					dead    = -1 // the replica that died
					dying   bool
					deathAt time.Duration
				)
				for range replicas {
					pacers = append(pacers, newPacer(t, cfg))
					ctx, cancel := context.WithCancel(t.Context())
					ctxs, kills = append(ctxs, ctx), append(kills, cancel)
				}
				// call sends one caller's request through replica r
				// until GitHub accepts it (once only when once).
				call := func(r int, caller string, once bool) {
					for {
						pm, err := pacers[r].Acquire(ctxs[r], Request{Caller: caller, Method: http.MethodGet, Route: "/r"})
						if err != nil {
							mu.Lock()
							isDead := r == dead
							mu.Unlock()
							if !isDead {
								t.Errorf("replica %d: %v", r, err)
							}
							return
						}
						mu.Lock()
						die := tc.dies && !dying && time.Since(gh.t0) >= end
						if die {
							// The first request out of the pause, the
							// probe, never goes: its replica dies.
							dying, dead, deathAt = true, r, time.Since(gh.t0)
						}
						mu.Unlock()
						if die {
							kills[r]()
							return
						}
						refused := gh.arrive(fmt.Sprintf("replica %d %s", r, caller))
						time.Sleep(lat)
						gh.answer(refused)
						if !refused {
							pm.Done(http.StatusOK, nil, lat)
							return
						}
						pm.Done(http.StatusTooManyRequests, nil, lat)
						if once {
							return
						}
					}
				}
				var wg sync.WaitGroup
				wg.Go(func() { call(0, "first", true) })
				time.Sleep(lat)
				synctest.Wait() // refused: the credential is paused
				for r := range replicas {
					for c := range callers {
						wg.Go(func() { call(r, fmt.Sprint("c", c), false) })
					}
				}
				wg.Wait()
				slices.Sort(gh.sent)
				if !slices.Equal(gh.sent, tc.wantSent) {
					t.Errorf("sent at %v,\nwant      %v", gh.sent, tc.wantSent)
				}
				if gh.refused != tc.wantRefused {
					t.Errorf("%d refused, want %d", gh.refused, tc.wantRefused)
				}
				if len(gh.overlaps) > 0 {
					t.Errorf("requests went with a probe at GitHub: %v", gh.overlaps)
				}
				if tc.dies && deathAt != end {
					t.Errorf("the probe's replica died at +%v, want at the pause's end, +%v", deathAt, end)
				}
			})
		})
	}
}
