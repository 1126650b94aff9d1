package upstream_test

// Replicas sharing one credential's pacing State: a call held by the
// shared State waits as idle (the front door's --max-working-calls does
// not count it), and the replicas together keep to GitHub's limit on
// requests in flight.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// secondaryLimitBody is GitHub's answer to a request past its secondary
// rate limit.
const secondaryLimitBody = `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`

// sharedMemoryStates returns a StateFunc whose replicas share one
// MemoryState per credential, as replicas share one in Redis.
func sharedMemoryStates() upstream.StateFunc {
	var mu sync.Mutex
	states := map[string]*pace.MemoryState{}
	return func(credential string, lim pace.StateLimits) (pace.State, error) {
		mu.Lock()
		defer mu.Unlock()
		if states[credential] == nil {
			states[credential] = pace.NewMemoryState(lim)
		}
		return states[credential], nil
	}
}

// sharedStateCase is one way replicas share their pacing state: in
// memory, or through a real redis-server (redistest; the case skips
// without one).
type sharedStateCase struct {
	name   string
	redis  bool
	shared func(t *testing.T) upstream.StateFunc
}

// sharedStateCases returns the memory and Redis cases of a replicas test;
// the Redis keys' credential starts with prefix.
func sharedStateCases(prefix string) []sharedStateCase {
	return []sharedStateCase{
		{name: "memory", shared: func(*testing.T) upstream.StateFunc { return sharedMemoryStates() }},
		{name: "redis", redis: true, shared: func(t *testing.T) upstream.StateFunc {
			srv := redistest.Start(t)
			return func(credential string, lim pace.StateLimits) (pace.State, error) {
				rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1,
					DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
				t.Cleanup(func() { _ = rc.Close() })
				return redisstate.New(redisstate.Options{Client: rc, Credential: prefix + "-" + credential,
					Limits: lim, ExpectedReplicas: 2})
			}
		}},
	}
}

// replicaClients returns n clients (replicas) of pacing whose pacers share
// their state through shared.
func replicaClients(t *testing.T, n int, tr http.RoundTripper, pacing upstream.Pacing, shared upstream.StateFunc) []*upstream.Client {
	t.Helper()
	var clients []*upstream.Client
	for range n {
		c, err := upstream.New(upstream.Config{BaseURL: "https://github.example", Token: replicaToken,
			HTTPClient: &http.Client{Transport: tr}, Pacing: &pacing, SharedState: shared})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	return clients
}

type atomicIdler struct{ idle, resumed atomic.Int64 }

func (c *atomicIdler) Idle()   { c.idle.Add(1) }
func (c *atomicIdler) Resume() { c.resumed.Add(1) }

// A call that replica A's own pacer admits at once and the shared State
// then holds for a pause replica B heard of waits out the pause as idle:
// it tells its Idler once, and resumes once when it goes.
func TestSharedPauseWaitIsIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: replicaToken})
		emu.AddOrg("octo")
		pacing := upstream.DefaultPacing()
		pacing.MaxAttempts = 1
		clients := replicaClients(t, 2, &emuTransport{h: emu}, pacing, sharedMemoryStates())
		scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
		emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgPublicKey, Status: http.StatusTooManyRequests,
			Body: secondaryLimitBody, Header: http.Header{"Retry-After": {"60"}}})
		if _, err := clients[1].GetPublicKey(t.Context(), scope); err == nil {
			t.Fatal("replica B's call was not refused")
		}
		idler := &atomicIdler{}
		start := time.Now()
		if _, err := clients[0].GetPublicKey(upstream.WithIdler(t.Context(), idler), scope); err != nil {
			t.Fatalf("replica A's call: %v", err)
		}
		if waited := time.Since(start); waited < time.Minute {
			t.Errorf("replica A's call went after %v, within the pause of 1m0s", waited)
		}
		if idle, resumed := idler.idle.Load(), idler.resumed.Load(); idle != 1 || resumed != 1 {
			t.Errorf("replica A's call waited out the shared pause with %d Idle and %d Resume calls, want 1 and 1", idle, resumed)
		}
	})
}

// Two replicas of --upstream-max-in-flight=60 (valid: 1 to 100) sharing
// one credential's State put at most GitHub's 100 requests in flight at
// once between them, in memory and through Redis alike.
func TestReplicasKeepToGitHubsConcurrencyLimit(t *testing.T) {
	const perReplica = 60
	for _, tt := range sharedStateCases("concurrency") {
		t.Run(tt.name, func(t *testing.T) {
			shared := tt.shared(t)
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken,
					Limits: emulator.Limits{MaxConcurrent: pace.MaxConcurrent, PointsPerMinute: 900, SecondaryPenalty: -1}})
				emu.AddOrg("octo")
				pacing := upstream.DefaultPacing()
				pacing.MaxInFlight = perReplica
				pacing.MaxAttempts = 1
				clients := replicaClients(t, 2, &emuTransport{h: emu}, pacing, shared)
				scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
				if tt.redis {
					seedSharedStates(t, scope, clients...)
				}
				emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgPublicKey, Latency: 5 * time.Second, Times: 2 * perReplica})
				var mu sync.Mutex
				var failed []error
				var wg sync.WaitGroup
				for _, c := range clients {
					for range perReplica {
						wg.Go(func() {
							if _, err := c.GetPublicKey(t.Context(), scope); err != nil {
								mu.Lock()
								failed = append(failed, err)
								mu.Unlock()
							}
						})
					}
				}
				wg.Wait()
				st := emu.Stats()
				if st.PeakInFlight > pace.MaxConcurrent || st.SecondaryViolations > 0 {
					t.Errorf("GitHub saw %d requests in flight at once (limit %d) and %d secondary violations",
						st.PeakInFlight, pace.MaxConcurrent, st.SecondaryViolations)
				}
				if len(failed) > 0 {
					t.Errorf("%d calls failed, first: %v", len(failed), failed[0])
				}
			})
		})
	}
}

// Two replicas sharing one credential's State, with GitHub's clock 5 s
// behind theirs, use up the primary quota and GitHub refuses none of
// their requests: read against the answers' Date, the resets of one
// window come a second apart from answer to answer (Date counts whole
// seconds), and the shared State takes them as one window, in memory and
// through Redis alike. (Taken as two windows, the last answer's
// "remaining 0" was lost when its reset came a second before an earlier
// answer's, and the other replica sent on.)
func TestReplicasShareThePrimaryQuotaOnGitHubsClock(t *testing.T) {
	const quota = 40
	for _, tt := range sharedStateCases("skewed") {
		t.Run(tt.name, func(t *testing.T) {
			shared := tt.shared(t)
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.Limits{PrimaryPerHour: quota}})
				emu.AddOrg("octo")
				// Answers land on every tenth of a second.
				gh := &behindGitHub{h: emu, behind: 5 * time.Second,
					latency: func(n int) time.Duration { return time.Duration(n*137%1000) * time.Millisecond }}
				pacing := upstream.DefaultPacing()
				pacing.MaxAttempts = 1
				clients := replicaClients(t, 2, gh, pacing, shared)
				scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
				if tt.redis {
					seedSharedStates(t, scope, clients...)
				}
				var wg sync.WaitGroup
				for _, c := range clients {
					for range 4 {
						wg.Go(func() {
							for range 8 {
								ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
								_, err := c.GetPublicKey(ctx, scope)
								cancel()
								if _, throttled := errors.AsType[*upstream.ThrottledError](err); err != nil && !throttled {
									t.Errorf("a call failed, not refused by the pacer: %v", err)
								}
							}
						})
					}
				}
				wg.Wait()
				if st := emu.Stats(); st.PrimaryViolations != 0 || st.Points != quota {
					t.Errorf("GitHub refused %d requests past the primary quota and answered %d of its %d (%+v)", st.PrimaryViolations, st.Points, quota, st)
				}
			})
		})
	}
}

// limitedUntil is a GitHub (the emulator behind it) that refuses every
// request with a secondary rate limit and no Retry-After until until,
// and records when (after start) each request arrived, and from which
// replica (replicaHeader).
type limitedUntil struct {
	next         http.RoundTripper
	start, until time.Time

	mu       sync.Mutex
	arrivals []string
}

func (l *limitedUntil) RoundTrip(r *http.Request) (*http.Response, error) {
	l.mu.Lock()
	l.arrivals = append(l.arrivals, fmt.Sprintf("%s at +%v", r.Header.Get("X-Replica"), time.Since(l.start)))
	l.mu.Unlock()
	if time.Now().Before(l.until) {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusForbidden)
		_, _ = rec.WriteString(secondaryLimitBody)
		return rec.Result(), nil
	}
	return l.next.RoundTrip(r)
}

// replicaHeader names the replica in a header of its requests.
type replicaHeader struct {
	name string
	next http.RoundTripper
}

func (h replicaHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Replica", h.name)
	return h.next.RoundTrip(r)
}

// A secondary limit without Retry-After that goes on pauses the credential
// longer each time (GitHub: "an exponentially increasing amount of time"),
// and every replica sharing its State keeps to that: after replica A's
// second refusal in a row (a pause of 2 min), replica B's call waits for
// A's pause, not for the 1 min pause of a refusal alone, and GitHub
// refuses nothing more (the probe after the pause, A's or B's, is
// answered).
func TestSharedPauseEscalates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		emu := emulator.New(emulator.Options{Token: replicaToken})
		emu.AddOrg("octo")
		start := time.Now()
		gh := &limitedUntil{next: &emuTransport{h: emu}, start: start, until: start.Add(150 * time.Second)}
		pacing := upstream.DefaultPacing()
		pacing.BackoffBase, pacing.BackoffMax = time.Millisecond, time.Millisecond
		shared := sharedMemoryStates()
		a := replicaClients(t, 1, replicaHeader{"A", gh}, pacing, shared)[0]
		b := replicaClients(t, 1, replicaHeader{"B", gh}, pacing, shared)[0]
		scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
		var wg sync.WaitGroup
		wg.Go(func() {
			// Refused at +0 (a 1 min pause) and at +1 min (2 min more):
			// answered at +3 min.
			if _, err := a.GetPublicKey(t.Context(), scope); err != nil {
				t.Errorf("replica A: %v", err)
			}
		})
		time.Sleep(61 * time.Second)
		if _, err := b.GetPublicKey(t.Context(), scope); err != nil {
			t.Errorf("replica B: %v", err)
		}
		// At the pause's end one request probes, A's or B's: B's call is
		// answered then, or, after A's probe, when it asks again.
		if got, end := time.Since(start), 3*time.Minute; got != end && got != end+pace.SlotPoll {
			t.Errorf("replica B's call was answered at +%v, want at the end of A's pause, +%v, or SlotPoll after", got, end)
		}
		wg.Wait()
		gh.mu.Lock()
		defer gh.mu.Unlock()
		if len(gh.arrivals) != 4 {
			t.Errorf("GitHub saw %d requests, want A's two refused and one answered, and B's answered: %v", len(gh.arrivals), gh.arrivals)
		}
	})
}

// probeWatch is a GitHub (the emulator behind it) that refuses every
// request with a secondary rate limit and no Retry-After until until,
// answers each request lat after it arrived, and records every request
// that arrived while another was at GitHub after a refusal and before any
// answer that was no refusal: out of a pause GitHub gave no length for,
// one request (the probe) goes alone, whichever replica sends it.
type probeWatch struct {
	next  http.RoundTripper
	lat   time.Duration
	start time.Time

	mu       sync.Mutex
	until    time.Time // refuses before
	arrivals []string
	refused  int
	inFlight int
	probing  bool // a refusal was answered, and no success since
	overlaps []string
}

// limit refuses every request from now until d from now.
func (w *probeWatch) limit(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start, w.until, w.arrivals = time.Now(), time.Now().Add(d), nil
}

func (w *probeWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	w.mu.Lock()
	at := fmt.Sprintf("%s at +%v", r.Header.Get("X-Replica"), time.Since(w.start))
	w.arrivals = append(w.arrivals, at)
	if w.probing && w.inFlight > 0 {
		w.overlaps = append(w.overlaps, fmt.Sprintf("%s with %d at GitHub", at, w.inFlight))
	}
	w.inFlight++
	refuse := time.Now().Before(w.until)
	if refuse {
		w.refused++
	}
	w.mu.Unlock()
	time.Sleep(w.lat)
	var resp *http.Response
	if refuse {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(http.StatusForbidden)
		_, _ = rec.WriteString(secondaryLimitBody)
		resp = rec.Result()
	} else {
		var err error
		if resp, err = w.next.RoundTrip(r); err != nil {
			return nil, err
		}
	}
	w.mu.Lock()
	w.inFlight--
	w.probing = refuse
	w.mu.Unlock()
	return resp, nil
}

// Replicas sharing one credential's State send one probe between them,
// not one each, when a pause GitHub gave no length for ends: the probe
// goes alone, and every replica's requests go once it is answered; when
// it is refused, every replica pauses again, and one probe goes after
// that pause. In memory and through Redis alike.
func TestReplicasSendOneProbe(t *testing.T) {
	const (
		replicas = 3
		calls    = 3 // per replica, after the first refusal
		lat      = 120 * time.Millisecond
	)
	tests := []struct {
		name        string
		limitFor    time.Duration // GitHub refuses every request for that long
		wantRefused int
	}{
		// Replica A's call is refused at +0: a 1 min pause. The probe
		// after it is answered.
		{"limit lifted after the pause", 30 * time.Second, 1},
		// The first probe is refused too (a 2 min pause, the second
		// refusal in a row); the second is answered.
		{"limit outlasts the first probe", 90 * time.Second, 2},
	}
	for _, tt := range sharedStateCases("probe") {
		for _, tc := range tests {
			t.Run(tt.name+"/"+tc.name, func(t *testing.T) {
				shared := tt.shared(t)
				synctest.Test(t, func(t *testing.T) {
					emu := emulator.New(emulator.Options{Token: replicaToken})
					emu.AddOrg("octo")
					gh := &probeWatch{next: &emuTransport{h: emu}, lat: lat}
					pacing := upstream.DefaultPacing()
					pacing.BackoffBase, pacing.BackoffMax = time.Millisecond, time.Millisecond
					var clients []*upstream.Client
					for i := range replicas {
						name := string(rune('A' + i))
						clients = append(clients, replicaClients(t, 1, replicaHeader{name, gh}, pacing, shared)[0])
					}
					scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
					if tt.redis {
						seedSharedStates(t, scope, clients...)
					}
					gh.limit(tc.limitFor)
					var wg sync.WaitGroup
					call := func(c *upstream.Client) {
						if _, err := c.GetPublicKey(t.Context(), scope); err != nil {
							t.Errorf("a call failed: %v", err)
						}
					}
					wg.Go(func() { call(clients[0]) })
					time.Sleep(lat)
					synctest.Wait() // refused: the credential is paused
					for _, c := range clients {
						for range calls {
							wg.Go(func() { call(c) })
						}
					}
					wg.Wait()
					gh.mu.Lock()
					defer gh.mu.Unlock()
					if len(gh.overlaps) > 0 {
						t.Errorf("requests went while a probe was at GitHub: %v", gh.overlaps)
					}
					if gh.refused != tc.wantRefused {
						t.Errorf("GitHub refused %d requests, want %d: %v", gh.refused, tc.wantRefused, gh.arrivals)
					}
					if want := 1 + replicas*calls + tc.wantRefused; len(gh.arrivals) != want {
						t.Errorf("GitHub saw %d requests, want %d: %v", len(gh.arrivals), want, gh.arrivals)
					}
				})
			})
		}
	}
}
