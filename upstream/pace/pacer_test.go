package pace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func newPacer(t *testing.T, cfg Config) *Pacer {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// got is what one Acquire returned, and when (from the test's start).
type got struct {
	permit *Permit
	err    error
	at     time.Duration
}

// acquire calls Acquire in a goroutine and waits until it has returned
// or blocks; the channel delivers its result.
func acquire(ctx context.Context, p *Pacer, t0 time.Time, caller, method string) <-chan got {
	ch := make(chan got, 1)
	go func() {
		pm, err := p.Acquire(ctx, Request{Caller: caller, Method: method, Route: "/r/{x}"})
		ch <- got{pm, err, time.Since(t0)}
	}()
	synctest.Wait()
	return ch
}

// admitted returns the result in ch if Acquire has returned; ok false
// when it still waits.
func ready(ch <-chan got) (got, bool) {
	select {
	case g := <-ch:
		return g, true
	default:
		return got{}, false
	}
}

func mustPermit(t *testing.T, ch <-chan got) got {
	t.Helper()
	g, ok := ready(ch)
	if !ok {
		t.Fatal("Acquire still waits")
	}
	if g.err != nil {
		t.Fatalf("Acquire: %v", g.err)
	}
	return g
}

func mustWait(t *testing.T, ch <-chan got) {
	t.Helper()
	select {
	case g := <-ch:
		t.Fatalf("Acquire returned (%v) at +%v; want it to wait", g.err, g.at)
	default:
	}
}

func throttled(t *testing.T, err error) *ThrottledError {
	t.Helper()
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *ThrottledError", err)
	}
	return te
}

func TestConfigValidation(t *testing.T) {
	mod := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"MaxInFlight 0 is 10", mod(func(c *Config) { c.MaxInFlight = 0 }), true},
		{"MaxInFlight 100", mod(func(c *Config) { c.MaxInFlight = 100 }), true},
		{"MaxInFlight 101", mod(func(c *Config) { c.MaxInFlight = 101 }), false},
		{"MaxInFlight -1", mod(func(c *Config) { c.MaxInFlight = -1 }), false},
		{"WriteInterval 0", mod(func(c *Config) { c.WriteInterval = 0 }), true},
		{"WriteInterval negative", mod(func(c *Config) { c.WriteInterval = -1 }), false},
		{"points off", mod(func(c *Config) { c.PointsPerMinute = 0 }), true},
		{"points 4", mod(func(c *Config) { c.PointsPerMinute = 4 }), false},
		{"points 5", mod(func(c *Config) { c.PointsPerMinute = 5 }), true},
		{"SecondaryPause negative", mod(func(c *Config) { c.SecondaryPause = -1 }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if tc.ok != (err == nil) {
				t.Fatalf("New: %v, want ok %v", err, tc.ok)
			}
			if tc.ok && (p.maxInFlight < 1 || p.maxInFlight > MaxConcurrent) {
				t.Errorf("MaxInFlight %d", p.maxInFlight)
			}
		})
	}
}

// Writes start exactly an interval apart, or when the write before
// completes if it takes longer, one at a time.
func TestWritesSpacedAndSerialized(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		latency  time.Duration
		want     []time.Duration
	}{
		{"1s apart", time.Second, 300 * time.Millisecond, []time.Duration{0, time.Second, 2 * time.Second}},
		{"slow writes", time.Second, 1300 * time.Millisecond, []time.Duration{0, 1300 * time.Millisecond, 2600 * time.Millisecond}},
		{"unspaced", 0, 300 * time.Millisecond, []time.Duration{0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, Config{MaxInFlight: 10, WriteInterval: tc.interval})
				t0 := time.Now()
				var mu sync.Mutex
				var starts []time.Duration
				inFlight, peak := 0, 0
				var wg sync.WaitGroup
				for i := range 3 {
					wg.Go(func() {
						pm, err := p.Acquire(t.Context(), Request{Caller: fmt.Sprint(i % 2), Method: http.MethodPut, Route: "/r"})
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						starts = append(starts, time.Since(t0))
						inFlight++
						peak = max(peak, inFlight)
						mu.Unlock()
						time.Sleep(tc.latency)
						mu.Lock()
						inFlight--
						mu.Unlock()
						pm.Done(http.StatusNoContent, nil, tc.latency)
					})
				}
				wg.Wait()
				slices.Sort(starts)
				if !slices.Equal(starts, tc.want) {
					t.Errorf("writes started at %v, want %v", starts, tc.want)
				}
				if wantPeak := map[bool]int{true: 1, false: 3}[tc.interval > 0]; peak != wantPeak {
					t.Errorf("%d writes in flight at once, want %d", peak, wantPeak)
				}
			})
		})
	}
}

// A points budget of 10 admits ten reads at once and the 11th exactly
// when the first's 60 s after its completion have passed.
func TestPointsBudgetAdmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 100, PointsPerMinute: 10})
		t0 := time.Now()
		var mu sync.Mutex
		var starts []time.Duration
		var wg sync.WaitGroup
		for range 11 {
			wg.Go(func() {
				pm, err := p.Acquire(t.Context(), Request{Caller: "A", Method: http.MethodGet, Route: "/r"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				starts = append(starts, time.Since(t0))
				mu.Unlock()
				time.Sleep(300 * time.Millisecond)
				pm.Done(http.StatusOK, nil, 300*time.Millisecond)
			})
		}
		wg.Wait()
		slices.Sort(starts)
		want := append(slices.Repeat([]time.Duration{0}, 10), time.Minute+300*time.Millisecond)
		if !slices.Equal(starts, want) {
			t.Errorf("reads started at %v, want %v", starts, want)
		}
		if st := p.Stats(); st.Points != 11 || st.Requests != 11 || st.PeakInFlight != 10 {
			t.Errorf("stats %+v: want 11 points, 11 requests, a peak of 10", st)
		}
	})
}

// A rate-limit answer holds every request: for Retry-After, else until
// the reset (and ResetMargin) when the quota is used up, else
// SecondaryPause; a 2xx with the quota used up holds them until the reset
// and ResetMargin.
func TestHoldsRelease(t *testing.T) {
	const answered = 100 * time.Millisecond // the first request's latency
	for _, tc := range []struct {
		name   string
		status int
		h      func(t0 time.Time) http.Header
		want   time.Duration // when the next request goes, from the start
		why    Reason        // of the hold; 0: none
	}{
		{"retry-after 7s", 429, func(time.Time) http.Header { return header("Retry-After", "7") }, answered + 7*time.Second, ReasonPause},
		{"secondary, remaining 0", 403, func(t0 time.Time) http.Header {
			return header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(t0.Add(30*time.Second).Unix()))
		}, 30*time.Second + ResetMargin, ReasonPrimary},
		{"secondary without hints", 429, func(time.Time) http.Header { return nil }, answered + 45*time.Second, ReasonPause},
		{"403 without hints is no refusal", 403, func(time.Time) http.Header { return nil }, answered, 0},
		{"primary used up", 200, func(t0 time.Time) http.Header {
			return header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(t0.Add(300*time.Second).Unix()))
		}, 300*time.Second + ResetMargin, ReasonPrimary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, Config{MaxInFlight: 10, SecondaryPause: 45 * time.Second})
				t0 := time.Now()
				ctx := t.Context()
				first := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
				time.Sleep(answered)
				first.permit.Done(tc.status, tc.h(t0), answered)
				until, why := p.Hold()
				if wantUntil := t0.Add(tc.want); (tc.why != 0 && !until.Equal(wantUntil)) || (tc.why == 0 && !until.IsZero()) || why != tc.why {
					t.Errorf("Hold = +%v, %v; want +%v, %v", until.Sub(t0), why, tc.want, tc.why)
				}
				g := <-acquire(ctx, p, t0, "B", http.MethodGet)
				if g.err != nil {
					t.Fatal(g.err)
				}
				if g.at != tc.want {
					t.Errorf("next request went at +%v, want +%v", g.at, tc.want)
				}
				g.permit.Done(http.StatusOK, nil, 0)
			})
		})
	}
}

// With one request at a time, two callers' queued requests go in exact
// round robin.
func TestRoundRobinBetweenCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1, WriteInterval: 0})
		t0 := time.Now()
		ctx := t.Context()
		blocker := mustPermit(t, acquire(ctx, p, t0, "X", http.MethodGet))
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		for _, name := range []string{"A1", "A2", "A3", "B1", "B2", "B3"} {
			wg.Go(func() {
				pm, err := p.Acquire(ctx, Request{Caller: name[:1], Method: http.MethodPut, Route: "/r"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				pm.Done(http.StatusNoContent, nil, 0)
			})
			synctest.Wait() // queued in this order
		}
		if st := p.Stats(); st.Queued != 6 {
			t.Fatalf("%d queued, want 6", st.Queued)
		}
		blocker.permit.Done(http.StatusOK, nil, 0)
		wg.Wait()
		if got, want := strings.Join(order, " "), "A1 B1 A2 B2 A3 B3"; got != want {
			t.Errorf("order %s, want %s", got, want)
		}
	})
}

// While a write is in flight, a read of the same caller passes the
// caller's waiting write and goes at once; the write goes when the slot
// frees and its interval has passed.
func TestReadPassesWaitingWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 10, WriteInterval: time.Second})
		t0 := time.Now()
		ctx := t.Context()
		w1 := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodPut))
		w2 := acquire(ctx, p, t0, "A", http.MethodDelete)
		r := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
		if r.at != 0 {
			t.Errorf("read went at +%v, want at once", r.at)
		}
		mustWait(t, w2)
		time.Sleep(1500 * time.Millisecond) // the slot is busy past the interval
		mustWait(t, w2)
		w1.permit.Done(http.StatusNoContent, nil, 1500*time.Millisecond)
		synctest.Wait()
		if g := mustPermit(t, w2); g.at != 1500*time.Millisecond {
			t.Errorf("second write went at +%v, want +1.5s, when the first completed", g.at)
		}
		r.permit.Done(http.StatusOK, nil, 0)
	})
}

// A request whose estimated start, plus the latency allowance, is after
// its deadline is refused when it is queued, with RetryAfter the time
// until its estimated start and the reason that holds it back.
func TestRefusedAtEnqueue(t *testing.T) {
	type setup func(t *testing.T, p *Pacer, t0 time.Time)
	// answer admits a request and answers it at once.
	answer := func(p *Pacer, method string, status int, h http.Header, latency time.Duration) {
		pm, err := p.Acquire(context.Background(), Request{Caller: "setup", Method: method, Route: "/r"})
		if err != nil {
			panic(err)
		}
		pm.Done(status, h, latency)
	}
	for _, tc := range []struct {
		name     string
		cfg      Config
		setup    setup
		method   string
		deadline time.Duration
		want     time.Duration // the estimated start, from t0; 0: admitted or queued, not refused
		why      Reason
		detail   string
	}{
		{
			name: "writes ahead",
			cfg:  Config{MaxInFlight: 10, WriteInterval: time.Second},
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				mustPermit(t, acquire(t.Context(), p, t0, "A", http.MethodPut)) // in flight
				acquire(t.Context(), p, t0, "B", http.MethodPut)
				acquire(t.Context(), p, t0, "D", http.MethodPut)
			},
			method: http.MethodPut, deadline: 2500 * time.Millisecond,
			want: 3 * time.Second, why: ReasonSpacing, detail: "writes go one at a time, 1s apart, and 2 go before it",
		},
		{
			name: "writes ahead, in time",
			cfg:  Config{MaxInFlight: 10, WriteInterval: time.Second},
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				mustPermit(t, acquire(t.Context(), p, t0, "A", http.MethodPut))
				acquire(t.Context(), p, t0, "B", http.MethodPut)
				acquire(t.Context(), p, t0, "D", http.MethodPut)
			},
			method: http.MethodPut, deadline: 3 * time.Second,
		},
		{
			name: "reads are not spaced",
			cfg:  Config{MaxInFlight: 10, WriteInterval: time.Hour},
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				mustPermit(t, acquire(t.Context(), p, t0, "A", http.MethodPut))
			},
			method: http.MethodGet, deadline: time.Second,
		},
		{
			name: "points in flight",
			cfg:  Config{MaxInFlight: 10, PointsPerMinute: 5},
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				mustPermit(t, acquire(t.Context(), p, t0, "A", http.MethodPut))
			},
			method: http.MethodGet, deadline: 59 * time.Second,
			want: time.Minute, why: ReasonBudget, detail: "the budget of 5 points a minute is spent",
		},
		{
			name: "points spent",
			cfg:  Config{MaxInFlight: 10, PointsPerMinute: 5},
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				answer(p, http.MethodDelete, http.StatusNoContent, nil, 0)
				time.Sleep(20 * time.Second)
			},
			method: http.MethodGet, deadline: 59 * time.Second,
			want: time.Minute, why: ReasonBudget, detail: "the budget of 5 points a minute is spent",
		},
		{
			name: "primary quota",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				answer(p, http.MethodGet, http.StatusOK, header("X-Ratelimit-Remaining", "0", "X-Ratelimit-Reset", fmt.Sprint(t0.Add(300*time.Second).Unix())), 0)
			},
			method: http.MethodGet, deadline: 100 * time.Second,
			want: 300*time.Second + ResetMargin, why: ReasonPrimary, detail: ReasonPrimary.String(),
		},
		{
			name: "pause",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				answer(p, http.MethodGet, http.StatusTooManyRequests, header("Retry-After", "7"), 0)
			},
			method: http.MethodGet, deadline: 5 * time.Second,
			want: 7 * time.Second, why: ReasonPause, detail: ReasonPause.String(),
		},
		{
			name: "pause then spacing",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				answer(p, http.MethodPut, http.StatusTooManyRequests, header("Retry-After", "7"), 0)
				acquire(t.Context(), p, t0, "A", http.MethodPut)
			},
			method: http.MethodPut, deadline: 7500 * time.Millisecond,
			want: 8 * time.Second, why: ReasonSpacing, detail: "writes go one at a time, 1s apart, and 1 go before it",
		},
		{
			name: "backoff after failures",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				p.Backoff(t0.Add(3 * time.Second))
			},
			method: http.MethodGet, deadline: 2 * time.Second,
			want: 3 * time.Second, why: ReasonBackoff, detail: ReasonBackoff.String(),
		},
		{
			name: "latency allowance",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				for range 9 {
					answer(p, http.MethodGet, http.StatusOK, nil, 2*time.Second)
				}
				answer(p, http.MethodGet, http.StatusOK, nil, 10*time.Second) // above the 90th percentile
				p.Backoff(t0.Add(time.Second))
			},
			method: http.MethodGet, deadline: 2900 * time.Millisecond,
			want: time.Second, why: ReasonBackoff, detail: ReasonBackoff.String(),
		},
		{
			name: "latency allowance, in time",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				for range 9 {
					answer(p, http.MethodGet, http.StatusOK, nil, 2*time.Second)
				}
				answer(p, http.MethodGet, http.StatusOK, nil, 10*time.Second)
				p.Backoff(t0.Add(time.Second))
			},
			method: http.MethodGet, deadline: 3 * time.Second,
		},
		{
			name:   "no allowance before any latency",
			cfg:    DefaultConfig(),
			setup:  func(t *testing.T, p *Pacer, t0 time.Time) { p.Backoff(t0.Add(time.Second)) },
			method: http.MethodGet, deadline: 1001 * time.Millisecond,
		},
		{
			name: "a request that may go now is never refused",
			cfg:  DefaultConfig(),
			setup: func(t *testing.T, p *Pacer, t0 time.Time) {
				answer(p, http.MethodGet, http.StatusOK, nil, time.Minute)
			},
			method: http.MethodGet, deadline: time.Millisecond,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, tc.cfg)
				t0 := time.Now()
				tc.setup(t, p, t0)
				now := time.Since(t0)
				ctx, cancel := context.WithDeadline(t.Context(), t0.Add(tc.deadline))
				defer cancel()
				before := p.Stats().Throttled
				ch := acquire(ctx, p, t0, "C", tc.method)
				if tc.want == 0 {
					if g, ok := ready(ch); ok && g.err != nil {
						t.Fatalf("refused: %v", g.err)
					}
					return
				}
				g, ok := ready(ch)
				if !ok {
					t.Fatal("not refused at once")
				}
				te := throttled(t, g.err)
				if te.RetryAfter != tc.want-now || te.Reason != tc.why || te.Detail != tc.detail {
					t.Errorf("refused with RetryAfter %v, %v, %q; want %v, %v, %q", te.RetryAfter, te.Reason, te.Detail, tc.want-now, tc.why, tc.detail)
				}
				if te.Reason.Failure() != (tc.why == ReasonBackoff) {
					t.Errorf("Failure() = %v for %v", te.Reason.Failure(), te.Reason)
				}
				if te.Method != tc.method || te.Route != "/r/{x}" {
					t.Errorf("method %q route %q", te.Method, te.Route)
				}
				if p.Stats().Throttled != before+1 {
					t.Error("the refusal is not counted")
				}
			})
		})
	}
}

// Cancelling a queued request lets the one it held back go at the same
// instant: here a write kept its points from the reads behind it.
func TestCancelLetsNextGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 10, PointsPerMinute: 10})
		t0 := time.Now()
		ctx := t.Context()
		for range 6 {
			g := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
			g.permit.Done(http.StatusOK, nil, 0)
		}
		wctx, cancelWrite := context.WithCancel(ctx)
		w := acquire(wctx, p, t0, "W", http.MethodPut) // 5 points; 4 left
		r := acquire(ctx, p, t0, "R", http.MethodGet)  // 1 point, but the write keeps 5
		mustWait(t, w)
		mustWait(t, r)
		time.Sleep(10 * time.Second)
		cancelWrite()
		synctest.Wait()
		if g := <-w; !errors.Is(g.err, context.Canceled) || g.at != 10*time.Second {
			t.Errorf("cancelled write: %v at +%v, want context.Canceled at +10s", g.err, g.at)
		}
		if g := mustPermit(t, r); g.at != 10*time.Second {
			t.Errorf("read went at +%v, want +10s, when the write was cancelled", g.at)
		}
		if st := p.Stats(); st.Queued != 0 || st.InFlight != 1 {
			t.Errorf("stats %+v: want nothing queued, the read in flight", st)
		}
	})
}

// A cancelled request in the middle of the queue is skipped: when
// capacity frees, the next goes at that instant.
func TestCancelledSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1})
		t0 := time.Now()
		ctx := t.Context()
		first := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
		xctx, cancel := context.WithCancel(ctx)
		x := acquire(xctx, p, t0, "A", http.MethodGet)
		y := acquire(ctx, p, t0, "A", http.MethodGet)
		time.Sleep(time.Second)
		cancel()
		synctest.Wait()
		if g := <-x; !errors.Is(g.err, context.Canceled) {
			t.Errorf("cancelled: %v", g.err)
		}
		mustWait(t, y)
		time.Sleep(time.Second)
		first.permit.Done(http.StatusOK, nil, 2*time.Second)
		synctest.Wait()
		if g := mustPermit(t, y); g.at != 2*time.Second {
			t.Errorf("next went at +%v, want +2s", g.at)
		}
	})
}

// A pause that begins while requests wait refuses at once those whose
// deadline it makes them miss; the others go when it ends.
func TestHoldRefusesQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1})
		t0 := time.Now()
		ctx := t.Context()
		first := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
		short, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		b := acquire(short, p, t0, "B", http.MethodGet)
		c := acquire(ctx, p, t0, "C", http.MethodGet)
		long, cancel2 := context.WithTimeout(ctx, time.Hour)
		defer cancel2()
		d := acquire(long, p, t0, "D", http.MethodGet)
		time.Sleep(time.Second)
		first.permit.Done(http.StatusTooManyRequests, header("Retry-After", "60"), time.Second)
		synctest.Wait()
		g, ok := ready(b)
		if !ok {
			t.Fatal("the request the pause makes miss its deadline still waits")
		}
		if te := throttled(t, g.err); te.RetryAfter != time.Minute || te.Reason != ReasonPause || g.at != time.Second {
			t.Errorf("refused at +%v with %v, %v; want at +1s, 1m0s, pause", g.at, te.RetryAfter, te.Reason)
		}
		mustWait(t, c)
		mustWait(t, d)
		gc := <-c
		if gc.err != nil || gc.at != 61*time.Second {
			t.Fatalf("C: %v at +%v, want admitted at +61s", gc.err, gc.at)
		}
		gc.permit.Done(http.StatusOK, nil, 0)
		if gd := <-d; gd.err != nil || gd.at != 61*time.Second {
			t.Errorf("D: %v at +%v, want admitted at +61s", gd.err, gd.at)
		}
		if st := p.Stats(); st.Throttled != 1 || st.RateLimited != 1 {
			t.Errorf("stats %+v: want 1 throttled, 1 rate limited", st)
		}
	})
}

// A request whose deadline passes while it waits its turn is refused
// then, unsent.
func TestDeadlineWhileQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1, WriteInterval: time.Second})
		t0 := time.Now()
		ctx := t.Context()
		first := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r := acquire(dctx, p, t0, "B", http.MethodGet)
		g := <-r
		te := throttled(t, g.err)
		if g.at != 5*time.Second || te.Reason != ReasonQueue || te.RetryAfter != time.Second {
			t.Errorf("refused at +%v with %v, %v; want +5s, queue, 1s", g.at, te.Reason, te.RetryAfter)
		}
		first.permit.Done(http.StatusOK, nil, 0)
		if st := p.Stats(); st.Queued != 0 || st.InFlight != 0 || st.Throttled != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// An unsent write gives back its place, its points and its place in the
// spacing: the next write goes at once.
func TestUnsent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1, WriteInterval: time.Second, PointsPerMinute: 5})
		t0 := time.Now()
		ctx := t.Context()
		w1 := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodPut))
		w2 := acquire(ctx, p, t0, "A", http.MethodPut)
		mustWait(t, w2)
		w1.permit.Unsent()
		w1.permit.Unsent() // a second time changes nothing
		w1.permit.Done(http.StatusOK, nil, 0)
		synctest.Wait()
		g := mustPermit(t, w2)
		if g.at != 0 {
			t.Errorf("next write went at +%v, want at once", g.at)
		}
		g.permit.Done(http.StatusNoContent, nil, 0)
		g.permit.Done(http.StatusNoContent, nil, 0)
		if st := p.Stats(); st.InFlight != 0 || st.Requests != 1 || st.Points != 5 {
			t.Errorf("stats %+v: want nothing in flight, 1 request of 5 points", st)
		}
	})
}

// A write held back by the points budget is not starved by a stream of
// reads: the reads leave its points, and it goes as soon as they free.
func TestPointsKeptForWaitingWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 100, PointsPerMinute: 10})
		t0 := time.Now()
		ctx := t.Context()
		for range 9 {
			g := mustPermit(t, acquire(ctx, p, t0, "A", http.MethodGet))
			g.permit.Done(http.StatusOK, nil, 0)
		}
		time.Sleep(time.Second)
		w := acquire(ctx, p, t0, "W", http.MethodDelete)
		var reads []<-chan got
		for range 10 {
			reads = append(reads, acquire(ctx, p, t0, "R", http.MethodGet))
		}
		for _, r := range reads {
			mustWait(t, r) // one point is free, but the write keeps it
		}
		g := <-w
		if g.err != nil || g.at != time.Minute {
			t.Fatalf("write: %v at +%v, want admitted at +1m0s", g.err, g.at)
		}
		g.permit.Done(http.StatusNoContent, nil, 0)
		for i, r := range reads {
			g := <-r
			if g.err != nil || g.at < time.Minute {
				t.Errorf("read %d: %v at +%v, want after the write", i, g.err, g.at)
			}
			g.permit.Done(http.StatusOK, nil, 0)
		}
	})
}

// At most MaxInFlight requests are in flight; the others go as they
// complete.
func TestMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 4})
		t0 := time.Now()
		var mu sync.Mutex
		starts := map[time.Duration]int{}
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				pm, err := p.Acquire(t.Context(), Request{Caller: fmt.Sprint(i % 3), Method: http.MethodGet})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				starts[time.Since(t0)]++
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
				pm.Done(http.StatusOK, nil, 100*time.Millisecond)
			})
		}
		wg.Wait()
		want := map[time.Duration]int{0: 4, 100 * time.Millisecond: 4, 200 * time.Millisecond: 2}
		if fmt.Sprint(starts) != fmt.Sprint(want) {
			t.Errorf("starts %v, want %v", starts, want)
		}
		if st := p.Stats(); st.PeakInFlight != 4 || st.InFlight != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestAcquireCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 1})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := p.Acquire(ctx, Request{Method: http.MethodGet, Route: "/r"}); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if st := p.Stats(); st.Queued != 0 || st.InFlight != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestLatencyAllowance(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"none", nil, 0},
		{"one", []time.Duration{3}, 3},
		{"ten", []time.Duration{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 9},
		{"eleven", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 10},
		{"negative is 0", []time.Duration{-5}, 0},
		// Only the last 64 count: 64 of 1 after 100 of 1000.
		{"window", append(slices.Repeat([]time.Duration{1000}, 100), slices.Repeat([]time.Duration{1}, 64)...), 1},
		{"window, p90 of 64", append(slices.Repeat([]time.Duration{1}, 57), slices.Repeat([]time.Duration{50}, 7)...), 50},
		{"window, p90 of 64, below", append(slices.Repeat([]time.Duration{1}, 58), slices.Repeat([]time.Duration{50}, 6)...), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w latencyWindow
			for _, d := range tc.samples {
				w.add(d)
			}
			if got := w.allowance(); got != tc.want {
				t.Errorf("allowance %v, want %v", got, tc.want)
			}
		})
	}
}

// Many callers acquire, answer, give back unsent and cancel at random
// under every limit at once: the limits hold (checked at each admission
// against the test's own records), and everything drains.
func TestRandomLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{MaxInFlight: 5, WriteInterval: 200 * time.Millisecond, PointsPerMinute: 60, SecondaryPause: 3 * time.Second}
		p := newPacer(t, cfg)
		var mu sync.Mutex
		inFlight, writes, points := 0, 0, 0
		var lastWrite, prevWrite time.Time
		type done struct {
			at     time.Time
			points int
		}
		var completed []done
		var wg sync.WaitGroup
		for g := range 40 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for range 20 {
					method := http.MethodGet
					if rng.IntN(3) == 0 {
						method = http.MethodPut
					}
					cost := Points(method)
					ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rng.IntN(120))*time.Second)
					pm, err := p.Acquire(ctx, Request{Caller: fmt.Sprint(g % 7), Method: method, Route: "/r"})
					cancel()
					if err != nil {
						var te *ThrottledError
						if !errors.As(err, &te) && !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("Acquire: %v", err)
						}
						continue
					}
					mu.Lock()
					now := time.Now()
					inFlight++
					points += cost
					window := points
					for _, d := range completed {
						if now.Sub(d.at) < Window {
							window += d.points
						}
					}
					if inFlight > cfg.MaxInFlight || window > cfg.PointsPerMinute {
						t.Errorf("%d in flight, %d points in the window", inFlight, window)
					}
					if IsWrite(method) {
						writes++
						if writes > 1 || (!lastWrite.IsZero() && now.Sub(lastWrite) < cfg.WriteInterval) {
							t.Errorf("%d writes in flight, %v after the last", writes, now.Sub(lastWrite))
						}
						prevWrite, lastWrite = lastWrite, now
					}
					mu.Unlock()
					d := time.Duration(rng.IntN(500)) * time.Millisecond
					time.Sleep(d)
					mu.Lock()
					inFlight--
					points -= cost
					if IsWrite(method) {
						writes--
					}
					switch rng.IntN(20) {
					case 0:
						if IsWrite(method) {
							lastWrite = prevWrite
						}
						pm.Unsent()
					case 1:
						completed = append(completed, done{time.Now(), cost})
						pm.Done(http.StatusTooManyRequests, nil, d)
					case 2:
						completed = append(completed, done{time.Now(), cost})
						p.Backoff(time.Now().Add(time.Second))
						pm.Done(http.StatusBadGateway, nil, d)
					default:
						completed = append(completed, done{time.Now(), cost})
						pm.Done(http.StatusOK, nil, d)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if st := p.Stats(); st.Queued != 0 || st.InFlight != 0 || st.Requests == 0 {
			t.Errorf("stats %+v", st)
		}
		t.Logf("stats %+v", p.Stats())
	})
}
