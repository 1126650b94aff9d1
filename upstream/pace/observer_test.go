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

// admission is one Observer.Admitted call, the wait from the test's start.
type admission struct {
	caller string
	wait   time.Duration
	why    Reason
}

// holdSeen is one Observer.Held call, until from the test's start.
type holdSeen struct {
	why   Reason
	until time.Duration
	began bool
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	t0     time.Time
	mu     sync.Mutex
	admits []admission
	holds  []holdSeen
}

func (r *recorder) Admitted(req Request, wait time.Duration, why Reason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admits = append(r.admits, admission{req.Caller, wait, why})
}

func (r *recorder) Held(why Reason, until time.Time, began bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holds = append(r.holds, holdSeen{why, until.Sub(r.t0), began})
}

// send acquires a permit for caller's method, holds it for latency and
// reports status and h; it runs in a goroutine of wg. Called inside a
// synctest bubble only: its sleep is fake time.
func send(t *testing.T, wg *sync.WaitGroup, p *Pacer, caller, method string, latency time.Duration, status int, h http.Header) {
	t.Helper()
	wg.Go(func() {
		pm, err := p.Acquire(t.Context(), Request{Caller: caller, Method: method, Route: "/r/{x}"})
		if err != nil {
			t.Errorf("%s: %v", caller, err)
			return
		}
		time.Sleep(latency)
		pm.Done(status, h, latency)
	})
	synctest.Wait() // queued, or admitted, in the order of the calls
}

// TestObserver: each admission is reported with its wait in the pacer
// and what held its lane back longest; each hold that begins or grows is
// reported, with whether it began.
func TestObserver(t *testing.T) {
	const ok = http.StatusOK
	for _, tc := range []struct {
		name   string
		cfg    Config
		run    func(t *testing.T, wg *sync.WaitGroup, p *Pacer, t0 time.Time)
		admits []admission
		holds  []holdSeen
	}{
		{"admitted at once", Config{MaxInFlight: 10}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			send(t, wg, p, "A", http.MethodGet, time.Second, ok, nil)
			send(t, wg, p, "B", http.MethodPut, time.Second, ok, nil)
		}, []admission{{"A", 0, 0}, {"B", 0, 0}}, nil},
		{"write spacing", Config{MaxInFlight: 10, WriteInterval: time.Second}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			for _, c := range []string{"A", "B", "C"} {
				send(t, wg, p, c, http.MethodPut, 100*time.Millisecond, ok, nil)
			}
		}, []admission{{"A", 0, 0}, {"B", time.Second, ReasonSpacing}, {"C", 2 * time.Second, ReasonSpacing}}, nil},
		{"write slot busy", Config{MaxInFlight: 10, WriteInterval: time.Second}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			send(t, wg, p, "A", http.MethodPut, 3*time.Second, ok, nil)
			send(t, wg, p, "B", http.MethodPut, 0, ok, nil)
		}, []admission{{"A", 0, 0}, {"B", 3 * time.Second, ReasonSpacing}}, nil},
		{"in flight", Config{MaxInFlight: 1}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			send(t, wg, p, "A", http.MethodGet, 300*time.Millisecond, ok, nil)
			send(t, wg, p, "B", http.MethodGet, 0, ok, nil)
		}, []admission{{"A", 0, 0}, {"B", 300 * time.Millisecond, ReasonQueue}}, nil},
		{"points", Config{MaxInFlight: 10, PointsPerMinute: 5}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			for i := range 6 {
				send(t, wg, p, fmt.Sprint("R", i), http.MethodGet, 0, ok, nil)
			}
		}, []admission{{"R0", 0, 0}, {"R1", 0, 0}, {"R2", 0, 0}, {"R3", 0, 0}, {"R4", 0, 0}, {"R5", time.Minute, ReasonBudget}}, nil},
		{"the longest reason wins", Config{MaxInFlight: 1}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			// B waits 1 s for A's place, then 3 s for the pause A's 429 began.
			send(t, wg, p, "A", http.MethodGet, time.Second, http.StatusTooManyRequests, header("Retry-After", "3"))
			send(t, wg, p, "B", http.MethodGet, 0, ok, nil)
		}, []admission{{"A", 0, 0}, {"B", 4 * time.Second, ReasonPause}}, []holdSeen{{ReasonPause, 4 * time.Second, true}}},
		{"a pause that grows", Config{MaxInFlight: 10}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, _ time.Time) {
			send(t, wg, p, "A", http.MethodGet, time.Second, http.StatusTooManyRequests, header("Retry-After", "2"))
			send(t, wg, p, "B", http.MethodGet, 2*time.Second, http.StatusTooManyRequests, header("Retry-After", "5"))
			// A shorter refusal does not move the pause.
			send(t, wg, p, "C", http.MethodGet, 1500*time.Millisecond, http.StatusTooManyRequests, header("Retry-After", "1"))
		}, []admission{{"A", 0, 0}, {"B", 0, 0}, {"C", 0, 0}},
			[]holdSeen{{ReasonPause, 3 * time.Second, true}, {ReasonPause, 7 * time.Second, false}}},
		{"primary, then a backoff", Config{MaxInFlight: 10}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, t0 time.Time) {
			send(t, wg, p, "A", http.MethodGet, 0, ok, header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(t0.Add(30*time.Second).Unix())))
			time.Sleep(time.Second)
			// B is held 28 s by the primary quota, then 11 s by the
			// backoff that replaces it at +29 s: the primary quota held it
			// longest.
			send(t, wg, p, "B", http.MethodGet, 0, ok, nil)
			time.Sleep(28 * time.Second)
			p.Backoff(t0.Add(40 * time.Second))
			p.Backoff(t0.Add(35 * time.Second)) // inside the backoff: nothing
		}, []admission{{"A", 0, 0}, {"B", 39 * time.Second, ReasonPrimary}},
			[]holdSeen{{ReasonPrimary, 30*time.Second + ResetMargin, true}, {ReasonBackoff, 40 * time.Second, true}}},
		{"backoff alone", Config{MaxInFlight: 10}, func(t *testing.T, wg *sync.WaitGroup, p *Pacer, t0 time.Time) {
			p.Backoff(t0.Add(5 * time.Second))
			send(t, wg, p, "A", http.MethodPut, 0, ok, nil)
		}, []admission{{"A", 5 * time.Second, ReasonBackoff}}, []holdSeen{{ReasonBackoff, 5 * time.Second, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{t0: time.Now()}
				cfg := tc.cfg
				cfg.Observer = rec
				p := newPacer(t, cfg)
				var wg sync.WaitGroup
				tc.run(t, &wg, p, rec.t0)
				wg.Wait()
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if !slices.Equal(rec.admits, tc.admits) {
					t.Errorf("admissions %v, want %v", rec.admits, tc.admits)
				}
				if !slices.Equal(rec.holds, tc.holds) {
					t.Errorf("holds %v, want %v", rec.holds, tc.holds)
				}
			})
		})
	}
}

// TestObserverRefusedNotAdmitted: a request refused for its deadline, or
// cancelled while queued, is never reported as admitted.
func TestObserverRefusedNotAdmitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{t0: time.Now()}
		p := newPacer(t, Config{MaxInFlight: 1, Observer: rec})
		first, err := p.Acquire(t.Context(), Request{Caller: "A", Method: http.MethodGet})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := p.Acquire(ctx, Request{Caller: "B", Method: http.MethodGet})
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; err == nil {
			t.Fatal("a cancelled Acquire returned a permit")
		}
		first.Done(http.StatusOK, nil, 0)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if want := []admission{{"A", 0, 0}}; !slices.Equal(rec.admits, want) {
			t.Errorf("admissions %v, want %v", rec.admits, want)
		}
	})
}

// TestStatsPointsUsed: the points in flight and those completed within
// the last Window count; 0 with the budget off.
func TestStatsPointsUsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 10, PointsPerMinute: 900})
		get, err := p.Acquire(t.Context(), Request{Method: http.MethodGet})
		if err != nil {
			t.Fatal(err)
		}
		get.Done(http.StatusOK, nil, 0) // at +0
		put, err := p.Acquire(t.Context(), Request{Method: http.MethodPut})
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			at   time.Duration // from the start
			do   func()
			want int
		}{
			{0, nil, ReadPoints + WritePoints}, // the GET done, the PUT in flight
			{10 * time.Second, func() { put.Done(http.StatusOK, nil, 0) }, ReadPoints + WritePoints}, // both done
			{Window, nil, WritePoints},        // the GET left the window
			{Window + 10*time.Second, nil, 0}, // so did the PUT
		}
		t0 := time.Now()
		for _, s := range steps {
			time.Sleep(time.Until(t0.Add(s.at)))
			if s.do != nil {
				s.do()
			}
			if got := p.Stats().PointsUsed; got != s.want {
				t.Errorf("at +%v: PointsUsed %d, want %d", s.at, got, s.want)
			}
		}

		off := newPacer(t, Config{MaxInFlight: 10})
		pm, err := off.Acquire(t.Context(), Request{Method: http.MethodPut})
		if err != nil {
			t.Fatal(err)
		}
		if got := off.Stats().PointsUsed; got != 0 {
			t.Errorf("budget off: PointsUsed %d, want 0", got)
		}
		pm.Done(http.StatusOK, nil, 0)
	})
}
