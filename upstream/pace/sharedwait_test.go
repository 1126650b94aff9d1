package pace

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// A request this pacer admits at once and the shared State then holds
// waits there as idle: its Idler hears Idle once, and Resume once when
// the State grants it. When the State's wait is a hold of the whole
// credential (another replica's pause, the primary quota used up), this
// pacer takes it up: Hold reports it, and the next request waits in the
// queue rather than in a place in flight. A wait of the request's own (the
// content budget, for a write) holds nothing else: a read goes.
func TestSharedWaitIsIdleAndHoldsTheQueue(t *testing.T) {
	const reset = 10 * time.Minute
	tests := []struct {
		name   string
		lim    StateLimits
		method string
		// other is what another replica's request was answered.
		other RateLimit
		// wait is how long the State holds the request, for why.
		wait time.Duration
		why  Reason
		held bool // the pacer's own queue holds too
	}{
		{
			name: "another replica's pause", lim: StateLimits{SecondaryPause: time.Minute}, method: http.MethodGet,
			other: RateLimit{Status: 429, Remaining: -1, Used: -1, Refused: true, RetryAfter: 30 * time.Second, HasRetryAfter: true},
			wait:  30 * time.Second, why: ReasonPause, held: true,
		},
		{
			name: "the primary quota used up", lim: StateLimits{}, method: http.MethodGet,
			other: RateLimit{Status: 200, Remaining: 0, Used: 5000}, // Reset: set below
			wait:  reset + ResetMargin, why: ReasonPrimary, held: true,
		},
		{
			name: "the content budget", lim: StateLimits{WritesPerMinute: 1}, method: http.MethodPut,
			other: RateLimit{Status: 204, Remaining: -1, Used: -1},
			wait:  Window, why: ReasonContent, held: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				st := NewMemoryState(tt.lim)
				cfg := Config{MaxInFlight: 10, State: st, SecondaryPause: tt.lim.SecondaryPause, WritesPerMinute: tt.lim.WritesPerMinute}
				other, p := newPacer(t, cfg), newPacer(t, cfg)
				req := Request{Caller: "c", Method: tt.method, Route: "/r"}

				pm, err := other.Acquire(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				rl := tt.other
				if rl.Status == 200 {
					rl.Reset = t0.Add(reset)
				}
				pm.Report(rl, 0)

				idler := &countingIdler{}
				first := acquireAsync(WithIdler(t.Context(), idler), p, req)
				if i, r := idler.counts(); i != 1 || r != 0 {
					t.Errorf("held by the State: %d idles, %d resumes; want 1 and 0", i, r)
				}
				until, why := p.Hold()
				if tt.held && (!until.Equal(t0.Add(tt.wait)) || why != tt.why) {
					t.Errorf("Hold() = %v, %v; want the State's hold, +%v, %v", until, why, tt.wait, tt.why)
				}
				if !tt.held && !until.IsZero() {
					t.Errorf("Hold() = +%v, %v; want none: the State's wait is the request's own", until.Sub(t0), why)
				}
				// A read: the content budget would hold a write of its own.
				second := acquireAsync(t.Context(), p, Request{Caller: "c", Method: http.MethodGet, Route: "/r"})
				wantQueued := 0
				if tt.held {
					wantQueued = 1
				}
				if s := p.Stats(); s.Queued != wantQueued || s.InFlight != 2-wantQueued {
					t.Errorf("the next request: %d queued, %d in flight; want %d and %d", s.Queued, s.InFlight, wantQueued, 2-wantQueued)
				}

				time.Sleep(tt.wait)
				synctest.Wait()
				g := <-first
				if g.err != nil {
					t.Fatal(g.err)
				}
				if wait, why := g.p.Waited(); wait != tt.wait || why != tt.why {
					t.Errorf("Waited() = %v, %v; want %v, %v", wait, why, tt.wait, tt.why)
				}
				if i, r := idler.counts(); i != 1 || r != 1 {
					t.Errorf("granted: %d idles, %d resumes; want 1 and 1", i, r)
				}
				g.p.Report(RateLimit{Status: 200, Remaining: -1, Used: -1}, 0)
				g = <-second
				if g.err != nil {
					t.Fatal(g.err)
				}
				if wait, _ := g.p.Waited(); tt.held != (wait == tt.wait) {
					t.Errorf("the next request waited %v, want %v only when the State's wait holds the queue", wait, tt.wait)
				}
				g.p.Unsent()
			})
		})
	}
}

// Two pacers of MaxInFlight 60 that share a State put at most GitHub's
// 100 requests in flight between them (StateLimits.MaxInFlight); the
// others wait, as idle, until an answer frees a place.
func TestPacersShareGitHubsConcurrencyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryState(StateLimits{MaxInFlight: MaxConcurrent})
		cfg := Config{MaxInFlight: 60, State: st}
		pacers := []*Pacer{newPacer(t, cfg), newPacer(t, cfg)}
		req := Request{Caller: "c", Method: http.MethodGet, Route: "/r"}
		var mu sync.Mutex
		var permits []*Permit
		idler := &countingIdler{}
		var wg sync.WaitGroup
		for i := range 120 {
			p := pacers[i%2]
			wg.Go(func() {
				pm, err := p.Acquire(WithIdler(context.Background(), idler), req)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				permits = append(permits, pm)
				mu.Unlock()
			})
		}
		synctest.Wait()
		mu.Lock()
		granted := len(permits)
		mu.Unlock()
		if granted != MaxConcurrent {
			t.Fatalf("%d requests in flight on the two pacers, want %d", granted, MaxConcurrent)
		}
		if i, r := idler.counts(); i != 120-MaxConcurrent || r != 0 {
			t.Errorf("%d waiting: %d idles, %d resumes; want %d and 0", 120-MaxConcurrent, i, r, 120-MaxConcurrent)
		}
		for range 3 { // the waiting ones ask again at SlotPoll
			time.Sleep(SlotPoll)
			synctest.Wait()
		}
		mu.Lock()
		if len(permits) != MaxConcurrent {
			t.Errorf("%d in flight with none answered, want %d", len(permits), MaxConcurrent)
		}
		done := permits[:10]
		mu.Unlock()
		for _, pm := range done {
			pm.Report(RateLimit{Status: 200, Remaining: -1, Used: -1}, 0)
		}
		time.Sleep(SlotPoll)
		synctest.Wait()
		mu.Lock()
		if len(permits) != MaxConcurrent+10 {
			t.Errorf("%d granted after 10 answers, want %d", len(permits), MaxConcurrent+10)
		}
		rest := permits[10:]
		mu.Unlock()
		for _, pm := range rest {
			pm.Report(RateLimit{Status: 200, Remaining: -1, Used: -1}, 0)
		}
		wg.Wait()
		if i, r := idler.counts(); i != 120-MaxConcurrent || r != i {
			t.Errorf("all granted: %d idles, %d resumes; want %d each", i, r, 120-MaxConcurrent)
		}
	})
}
