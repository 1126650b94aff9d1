package pace

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The content budgets hold writes (not reads) to WritesPerMinute and
// WritesPerHour in any sliding minute and hour, counted from a write's
// start until the window after it completed; a write that could not
// start before its deadline is refused with ReasonContent.
func TestPacerContentBudgets(t *testing.T) {
	tests := []struct {
		name      string
		perMinute int
		perHour   int
		// next is when the write after the budget's worth may start,
		// the budget's writes all starting and completing at t0.
		next time.Duration
	}{
		{"minute", 3, 0, time.Minute},
		{"hour", 0, 3, time.Hour},
		{"both, the hour binds", 3, 3, time.Hour},
		{"both, the minute binds", 3, 100, time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(t, Config{MaxInFlight: 10, WritesPerMinute: tc.perMinute, WritesPerHour: tc.perHour})
				t0 := time.Now()
				ctx := context.Background()
				for range 3 {
					g := mustPermit(t, acquire(ctx, p, t0, "a", "PUT"))
					g.permit.Report(RateLimit{Status: 204, Remaining: -1, Used: -1}, 0)
				}
				// Reads do not count.
				mustPermit(t, acquire(ctx, p, t0, "a", "GET")).permit.Unsent()

				// A write whose deadline comes first is refused at once.
				short, cancel := context.WithTimeout(ctx, tc.next-time.Second)
				defer cancel()
				g, ok := ready(acquire(short, p, t0, "a", "DELETE"))
				if !ok || g.err == nil {
					t.Fatalf("write with a short deadline: ready %v, err %v; want a refusal", ok, g.err)
				}
				if te := throttled(t, g.err); te.Reason != ReasonContent || te.RetryAfter != tc.next {
					t.Errorf("refusal %+v, want ReasonContent, RetryAfter %v", te, tc.next)
				}
				// One without a deadline waits for the window to slide.
				ch := acquire(ctx, p, t0, "a", "PUT")
				mustWait(t, ch)
				time.Sleep(tc.next - time.Nanosecond)
				synctest.Wait()
				mustWait(t, ch)
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				g = mustPermit(t, ch)
				if g.at != tc.next {
					t.Errorf("the next write started at +%v, want +%v", g.at, tc.next)
				}
				// Its wait, as spans and metrics see it, is the content
				// budget's.
				if wait, why := g.permit.Waited(); wait != tc.next || why != ReasonContent {
					t.Errorf("Waited() = %v, %v; want %v, %v", wait, why, tc.next, ReasonContent)
				}
			})
		})
	}
}

// Two pacers sharing one State pace as one: their writes go one at a
// time, WriteInterval apart, whichever pacer sends them (alone, each
// would start one at once).
func TestPacersShareAState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryState(StateLimits{WriteInterval: time.Second, WritesPerMinute: 80})
		cfg := Config{MaxInFlight: 10, WriteInterval: time.Second, WritesPerMinute: 80, State: st}
		pacers := []*Pacer{newPacer(t, cfg), newPacer(t, cfg)}
		t0 := time.Now()
		var mu sync.Mutex
		var starts []time.Duration
		var wg sync.WaitGroup
		for i := range 6 {
			p := pacers[i%2]
			wg.Go(func() {
				pm, err := p.Acquire(context.Background(), Request{Caller: "c", Method: "PUT", Route: "/r/{x}"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				starts = append(starts, time.Since(t0))
				mu.Unlock()
				pm.Report(RateLimit{Status: 204, Remaining: -1, Used: -1}, 0)
			})
		}
		wg.Wait()
		slices.Sort(starts)
		for i, at := range starts {
			if want := time.Duration(i) * time.Second; at != want {
				t.Errorf("write %d started at +%v, want +%v", i, at, want)
			}
		}
	})
}
