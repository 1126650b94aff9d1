package pace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// span is one request as GitHub saw it: from its admission (the pacer
// cannot know the send, which comes after) until its answer.
type span struct{ start, end time.Time }

// worstWindow returns the most response time any 60 s window saw of
// spans, by the two measures the pacer bounds: the time the requests
// spent within the window (GitHub's CPU time, roughly), and the whole
// response times of the requests completed within it. Both are piecewise
// linear in the window's end, so their maxima are at the spans' ends,
// starts or either plus a Window.
func worstWindow(spans []span) (overlap, completed time.Duration) {
	var ends []time.Time
	for _, s := range spans {
		ends = append(ends, s.start, s.end, s.start.Add(Window), s.end.Add(Window))
	}
	for _, to := range ends {
		from := to.Add(-Window)
		var o, c time.Duration
		for _, s := range spans {
			if d := earliest(s.end, to).Sub(later(s.start, from)); d > 0 {
				o += d
			}
			if s.end.After(from) && !s.end.After(to) {
				c += s.end.Sub(s.start)
			}
		}
		overlap, completed = max(overlap, o), max(completed, c)
	}
	return overlap, completed
}

// load runs callers that each send requests one after another for run
// (each with run's end for its deadline), every answer taking latency,
// and returns each request's span.
func load(t *testing.T, p *Pacer, callers int, latency, run time.Duration, method func(i int) string) []span {
	t.Helper()
	var mu sync.Mutex
	var spans []span
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := 0; ; i++ {
				pm, err := p.Acquire(ctx, Request{Caller: fmt.Sprint("caller-", c), Method: method(c + i), Route: "/r/{x}"})
				var te *ThrottledError
				switch {
				case errors.As(err, &te) || ctx.Err() != nil:
					return // it would not start before the end
				case err != nil:
					t.Error(err)
					return
				}
				start := time.Now()
				time.Sleep(latency)
				pm.Done(http.StatusOK, nil, latency)
				mu.Lock()
				spans = append(spans, span{start, time.Now()})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return spans
}

func reads(int) string { return http.MethodGet }

// Slow answers: 100 callers' requests, each answered in 2 s, with 100
// places in flight and no points budget in the way, would spend 100 s of
// response time every 2 s. With the CPU-time budget no 60 s window sees
// more than the budget, by either measure, from the first request on;
// without it GitHub's 90 s are exceeded many times over.
func TestCPUBudgetBoundsSlowAnswers(t *testing.T) {
	tests := []struct {
		name   string
		budget time.Duration
		mixed  bool // reads and unspaced writes
		run    time.Duration
	}{
		{"reads", DefaultCPUPerMinute, false, 5 * time.Minute},
		{"reads and writes", DefaultCPUPerMinute, true, 5 * time.Minute},
		{"a smaller budget", 20 * time.Second, false, 5 * time.Minute},
		{"off", 0, false, time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{t0: time.Now()}
				p := newPacer(t, Config{MaxInFlight: MaxConcurrent, CPUPerMinute: tc.budget, Observer: rec})
				method := reads
				if tc.mixed {
					method = func(i int) string {
						if i%3 == 0 {
							return http.MethodPut
						}
						return http.MethodGet
					}
				}
				spans := load(t, p, 100, 2*time.Second, tc.run, method)
				overlap, completed := worstWindow(spans)
				t.Logf("%d requests in %v; the worst 60 s window saw %v of response time within it, %v of requests completed in it",
					len(spans), tc.run, overlap, completed)
				if tc.budget == 0 {
					if overlap <= GitHubCPUPerMinute {
						t.Fatalf("without the budget the worst window saw %v; the test needs a load that exceeds GitHub's %v", overlap, GitHubCPUPerMinute)
					}
					return
				}
				if overlap > tc.budget || completed > tc.budget {
					t.Errorf("the worst 60 s window saw %v of response time within it, %v of requests completed in it; want at most the budget, %v",
						overlap, completed, tc.budget)
				}
				// The budget is used, not merely not exceeded: 5 minutes at
				// the budget are about 5 budgets' worth of requests.
				if n, want := len(spans), int(5*tc.budget/(2*time.Second)); n < want*8/10 {
					t.Errorf("%d requests in %v, want about %d", n, tc.run, want)
				}
				// The waits are the budget's.
				cpu := 0
				for _, a := range rec.admits {
					if a.why == ReasonCPU {
						cpu++
					}
				}
				if cpu == 0 {
					t.Errorf("no wait for ReasonCPU among %d admissions", len(rec.admits))
				}
			})
		})
	}
}

// Fast answers are not slowed at all: with answers in 50 ms the points
// budget binds (900 points are 45 s of response time), and every request
// is admitted when it would be without the CPU-time budget. A first
// request's answer comes first (the broker verifies its credential when
// it starts): before any answer, a request is expected to take
// FirstReserve, and only 8 go at once.
func TestCPUBudgetDoesNotSlowFastAnswers(t *testing.T) {
	starts := func(budget time.Duration) ([]time.Duration, map[Reason]int) {
		var out []time.Duration
		whys := map[Reason]int{}
		synctest.Test(t, func(t *testing.T) {
			rec := &recorder{t0: time.Now()}
			p := newPacer(t, Config{MaxInFlight: 10, PointsPerMinute: 900, CPUPerMinute: budget, Observer: rec})
			t0 := time.Now()
			first := mustPermit(t, acquire(context.Background(), p, t0, "verify", http.MethodGet))
			time.Sleep(50 * time.Millisecond)
			first.permit.Done(http.StatusOK, nil, 50*time.Millisecond)
			spans := load(t, p, 30, 50*time.Millisecond, 3*time.Minute, reads)
			for _, s := range spans {
				out = append(out, s.start.Sub(t0))
			}
			for _, a := range rec.admits {
				whys[a.why]++
			}
		})
		slices.Sort(out)
		return out, whys
	}
	on, whys := starts(DefaultCPUPerMinute)
	off, _ := starts(0)
	if !slices.Equal(on, off) {
		t.Errorf("with the CPU-time budget %d requests started, without it %d, at other times", len(on), len(off))
	}
	if whys[ReasonCPU] != 0 || whys[ReasonBudget] == 0 {
		t.Errorf("waits by reason %v: want none for the CPU-time budget, some for the points", whys)
	}
}

// A request in flight counts its time so far, at least its reserve (the
// longest recent latency); a completed one its latency, until a Window
// after its completion; an unsent one nothing. Stats.CPUUsed says so.
func TestCPUBudgetCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(t, Config{MaxInFlight: 10, CPUPerMinute: 10 * time.Second})
		t0 := time.Now()
		ctx := context.Background()
		// Before any answer: a request is expected to take FirstReserve
		// (10 s): the whole budget.
		a := mustPermit(t, acquire(ctx, p, t0, "a", http.MethodGet))
		if used := p.Stats().CPUUsed; used != FirstReserve {
			t.Fatalf("CPUUsed %v with one request in flight, want FirstReserve", used)
		}
		b := acquire(ctx, p, t0, "b", http.MethodGet)
		mustWait(t, b)
		time.Sleep(time.Second)
		a.permit.Done(http.StatusOK, nil, time.Second)
		synctest.Wait()
		// Now 1 s counts, and a request is expected to take 1 s.
		bg := mustPermit(t, b)
		if bg.at != time.Second {
			t.Errorf("b started at +%v, want +1s", bg.at)
		}
		if wait, why := bg.permit.Waited(); wait != time.Second || why != ReasonCPU {
			t.Errorf("b waited %v for %v, want 1s for ReasonCPU", wait, why)
		}
		if used := p.Stats().CPUUsed; used != 2*time.Second {
			t.Errorf("CPUUsed %v, want 2s (1s done, 1s reserved)", used)
		}
		// b runs long: it counts its time so far.
		time.Sleep(5 * time.Second)
		if used := p.Stats().CPUUsed; used != 6*time.Second {
			t.Errorf("CPUUsed %v, want 6s (1s done, 5s so far)", used)
		}
		var held []got
		for range 3 {
			held = append(held, mustPermit(t, acquire(ctx, p, t0, "c", http.MethodGet)))
		}
		// 1 + 5 + 3 × 1 s: one more second of reserve fits, then none.
		d := mustPermit(t, acquire(ctx, p, t0, "d", http.MethodGet))
		e := acquire(ctx, p, t0, "e", http.MethodGet)
		mustWait(t, e)
		// An unsent request gives its reserve back.
		d.permit.Unsent()
		synctest.Wait()
		eg := mustPermit(t, e)
		// The answers count their latency, at most their time in flight.
		time.Sleep(500 * time.Millisecond)
		for _, h := range append(held, bg, eg) {
			h.permit.Done(http.StatusOK, nil, 500*time.Millisecond)
		}
		// 1 s (a) + 5 × 0.5 s; a leaves the window at +61 s.
		if used := p.Stats().CPUUsed; used != time.Second+2500*time.Millisecond {
			t.Errorf("CPUUsed %v after the answers, want 3.5s", used)
		}
		time.Sleep(time.Until(t0.Add(time.Second + Window)))
		if used := p.Stats().CPUUsed; used != 2500*time.Millisecond {
			t.Errorf("CPUUsed %v a Window after a's answer, want 2.5s", used)
		}
	})
}

// The reserve is the longest of the recent latencies: one slow answer
// among fast ones holds the requests in flight to what the budget allows
// at its pace, until it leaves the last latencySamples.
func TestCPUReserveIsTheLongestRecentLatency(t *testing.T) {
	var w latencyWindow
	b := cpuBudget{limit: time.Minute}
	if r := b.reserve(&w); r != FirstReserve {
		t.Errorf("reserve before any latency %v, want FirstReserve", r)
	}
	w.add(3 * time.Second)
	for range latencySamples - 1 {
		w.add(100 * time.Millisecond)
	}
	if r := b.reserve(&w); r != 3*time.Second {
		t.Errorf("reserve %v, want the slow answer's 3s", r)
	}
	w.add(200 * time.Millisecond) // the slow one leaves
	if r := b.reserve(&w); r != 200*time.Millisecond {
		t.Errorf("reserve %v, want 200ms", r)
	}
	small := cpuBudget{limit: time.Second}
	if r := small.reserve(&w); r != 200*time.Millisecond {
		t.Errorf("reserve %v, want 200ms", r)
	}
	if r := small.reserve(&latencyWindow{}); r != time.Second {
		t.Errorf("reserve %v with a budget of 1s, want the budget: a request alone always fits", r)
	}
}

// Two pacers (replicas) sharing one State share one CPU-time budget:
// their slow answers together never put more than it in a 60 s window
// (each alone would let its own budget's worth through).
func TestCPUBudgetSharedByPacers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := StateLimits{CPUPerMinute: DefaultCPUPerMinute, MaxInFlight: MaxConcurrent}
		st := NewMemoryState(lim)
		cfg := Config{MaxInFlight: MaxConcurrent, CPUPerMinute: DefaultCPUPerMinute, State: st}
		a, b := newPacer(t, cfg), newPacer(t, cfg)
		var mu sync.Mutex
		var spans []span
		var wg sync.WaitGroup
		for _, p := range []*Pacer{a, b} {
			wg.Go(func() {
				s := load(t, p, 50, 2*time.Second, 5*time.Minute, reads)
				mu.Lock()
				spans = append(spans, s...)
				mu.Unlock()
			})
		}
		wg.Wait()
		overlap, completed := worstWindow(spans)
		t.Logf("%d requests; the worst 60 s window saw %v within it, %v completed in it", len(spans), overlap, completed)
		if overlap > DefaultCPUPerMinute || completed > DefaultCPUPerMinute {
			t.Errorf("the worst 60 s window saw %v of response time within it, %v of requests completed in it; want at most %v",
				overlap, completed, DefaultCPUPerMinute)
		}
	})
}

// With a State, a request counts its time so far from the State's grant:
// a write the content budget holds for a minute after the pacer admitted
// it is not at GitHub meanwhile, and counts only what it is expected to
// take; it does not hold the reads back.
func TestCPUBudgetCountsFromTheStatesGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := StateLimits{WritesPerMinute: 1, CPUPerMinute: 10 * time.Second}
		p := newPacer(t, Config{MaxInFlight: 10, WritesPerMinute: 1, CPUPerMinute: 10 * time.Second, State: NewMemoryState(lim)})
		t0 := time.Now()
		ctx := context.Background()
		w1 := mustPermit(t, acquire(ctx, p, t0, "a", http.MethodPut))
		time.Sleep(time.Second)
		w1.permit.Done(http.StatusNoContent, nil, time.Second)
		w2 := acquire(ctx, p, t0, "a", http.MethodPut) // waits for the State until +61s
		time.Sleep(30 * time.Second)
		mustWait(t, w2)
		if used := p.Stats().CPUUsed; used != 2*time.Second {
			t.Errorf("CPUUsed %v while the write waits for the State, want 2s (1s done, 1s expected)", used)
		}
		r := mustPermit(t, acquire(ctx, p, t0, "b", http.MethodGet))
		r.permit.Done(http.StatusOK, nil, 0)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		g := mustPermit(t, w2)
		if g.at != time.Second+Window {
			t.Errorf("the second write went at +%v, want +%v", g.at, time.Second+Window)
		}
		time.Sleep(500 * time.Millisecond)
		g.permit.Done(http.StatusNoContent, nil, 0) // no latency: its time since the grant
		if used := p.Stats().CPUUsed; used != 500*time.Millisecond {
			t.Errorf("CPUUsed %v after the second write, want 500ms (the first left the window)", used)
		}
	})
}

// A request whose deadline comes before the CPU-time budget can free is
// refused at once, for ReasonCPU, when completed requests fill the
// budget: they leave it only a Window after their answers. When requests
// in flight fill it, it waits: they may be answered at once, counting
// less than they were expected to take (before the first answer, 8
// requests expected to take FirstReserve fill the default budget).
func TestCPUBudgetDeadlines(t *testing.T) {
	short := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	t.Run("in flight", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, Config{MaxInFlight: 10, CPUPerMinute: DefaultCPUPerMinute})
			t0 := time.Now()
			var first []got
			for range 8 {
				first = append(first, mustPermit(t, acquire(context.Background(), p, t0, "a", http.MethodGet)))
			}
			ninth := acquire(short(t), p, t0, "b", http.MethodGet)
			mustWait(t, ninth)
			time.Sleep(200 * time.Millisecond)
			first[0].permit.Done(http.StatusOK, nil, 200*time.Millisecond)
			synctest.Wait()
			g := mustPermit(t, ninth)
			if wait, why := g.permit.Waited(); g.at != 200*time.Millisecond || wait != 200*time.Millisecond || why != ReasonCPU {
				t.Errorf("the ninth went at +%v after %v for %v, want at the first answer, +200ms, for ReasonCPU", g.at, wait, why)
			}
		})
	})
	t.Run("completed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p := newPacer(t, Config{MaxInFlight: 10, CPUPerMinute: 10 * time.Second})
			t0 := time.Now()
			a := mustPermit(t, acquire(context.Background(), p, t0, "a", http.MethodGet))
			time.Sleep(9 * time.Second)
			a.permit.Done(http.StatusOK, nil, 9*time.Second)
			// a's 9 s count until +69s; the next is expected to take 9 s.
			g, ok := ready(acquire(short(t), p, t0, "b", http.MethodGet))
			if !ok || g.err == nil {
				t.Fatalf("a read with a short deadline: ready %v, err %v; want a refusal", ok, g.err)
			}
			if te := throttled(t, g.err); te.Reason != ReasonCPU || te.RetryAfter != Window {
				t.Errorf("refusal %+v, want ReasonCPU for a Window", te)
			}
		})
	})
}
