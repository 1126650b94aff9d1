package pace_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// MemoryState keeps the State contract; its replicas share one instance.
func TestMemoryStateContract(t *testing.T) {
	statetest.Run(t, func(_ *testing.T, lim pace.StateLimits, n int) ([]pace.State, []func()) {
		s := pace.NewMemoryState(lim)
		states, kill := make([]pace.State, n), make([]func(), n)
		for i := range n {
			states[i], kill[i] = s, func() {}
		}
		return states, kill
	})
}

// A replica on its own share of the limits (Share, while Redis is
// unreachable) keeps its part of the primary quota left in flight:
// remaining/Replicas, and nothing until the reset when that part is none.
func TestMemoryStateSharesPrimaryQuota(t *testing.T) {
	ctx := context.Background()
	t0 := statetest.T0
	reset := t0.Add(10 * time.Minute)
	tests := []struct {
		remaining int
		granted   int  // of three asked at once
		untilEnd  bool // the wait is until the reset
	}{
		{remaining: 7, granted: 3},
		{remaining: 5, granted: 2},
		{remaining: 3, granted: 1},
		{remaining: 1, granted: 0, untilEnd: true},
	}
	for _, tt := range tests {
		s := pace.NewMemoryState(pace.StateLimits{}.Share(2))
		g := pace.Grant{ID: "first", Cost: pace.ReadPoints}
		if !s.Start(ctx, t0, g).OK {
			t.Fatal("the first grant was refused")
		}
		s.Done(ctx, t0, g, pace.RateLimit{Status: 200, Remaining: tt.remaining, Used: 5000 - tt.remaining, Reset: reset})
		granted := 0
		var last pace.Verdict
		for i := range 3 {
			last = s.Start(ctx, t0, pace.Grant{ID: "g" + strconv.Itoa(i), Cost: pace.ReadPoints})
			if last.OK {
				granted++
			}
		}
		if granted != tt.granted {
			t.Errorf("remaining %d, two replicas: %d granted at once, want %d", tt.remaining, granted, tt.granted)
		}
		if want := t0.Add(pace.SlotPoll); tt.untilEnd {
			want = reset.Add(pace.ResetMargin)
			if last.OK || !last.At.Equal(want) || last.Why != pace.ReasonPrimary {
				t.Errorf("remaining %d: the wait is %+v, want until the reset for the primary quota", tt.remaining, last)
			}
		} else if !last.OK && (!last.At.Equal(want) || last.Why != pace.ReasonPrimary) {
			t.Errorf("remaining %d: the wait is %+v, want %v for the primary quota", tt.remaining, last, pace.SlotPoll)
		}
	}
}

// A replica on its own share of the limits (Share, while Redis is
// unreachable) keeps its part of GitHub's limit on requests in flight:
// MaxInFlight/Replicas, at least one.
func TestMemoryStateSharesConcurrencyLimit(t *testing.T) {
	ctx := context.Background()
	t0 := statetest.T0
	tests := []struct {
		replicas, granted int
	}{
		{replicas: 1, granted: pace.MaxConcurrent},
		{replicas: 2, granted: 50},
		{replicas: 3, granted: 33},
		{replicas: 200, granted: 1},
	}
	for _, tt := range tests {
		s := pace.NewMemoryState(pace.StateLimits{MaxInFlight: pace.MaxConcurrent}.Share(tt.replicas))
		granted := 0
		var last pace.Verdict
		for i := range pace.MaxConcurrent + 1 {
			if last = s.Start(ctx, t0, pace.Grant{ID: "g" + strconv.Itoa(i), Cost: pace.ReadPoints}); !last.OK {
				break
			}
			granted++
		}
		if granted != tt.granted {
			t.Errorf("%d replicas: %d granted at once, want %d", tt.replicas, granted, tt.granted)
		}
		if last.OK || !last.At.Equal(t0.Add(pace.SlotPoll)) || last.Why != pace.ReasonQueue || last.Held {
			t.Errorf("%d replicas: the wait is %+v, want %v for the places in flight, not held", tt.replicas, last, pace.SlotPoll)
		}
	}
}

// A replica on its own share of the limits keeps its part of the CPU-time
// budget: CPUPerMinute/Replicas, at least a second.
func TestMemoryStateSharesCPUBudget(t *testing.T) {
	ctx := context.Background()
	t0 := statetest.T0
	tests := []struct {
		replicas int
		granted  int // requests expected to take 1 s
	}{
		{replicas: 1, granted: 80},
		{replicas: 2, granted: 40},
		{replicas: 3, granted: 26},
		{replicas: 200, granted: 1},
	}
	for _, tt := range tests {
		s := pace.NewMemoryState(pace.StateLimits{CPUPerMinute: pace.DefaultCPUPerMinute}.Share(tt.replicas))
		granted := 0
		for i := range 100 {
			if !s.Start(ctx, t0, pace.Grant{ID: "g" + strconv.Itoa(i), Cost: pace.ReadPoints, CPU: time.Second}).OK {
				break
			}
			granted++
		}
		if granted != tt.granted {
			t.Errorf("%d replicas: %d granted at once, want %d", tt.replicas, granted, tt.granted)
		}
	}
}

// A shared store's word on the holds and its probe, kept in a replica's
// record (MergeHolds, RecordProbe, Prober): the probe the store granted is
// the record's until its answer or the end of its lease, and the record
// makes no second one meanwhile; the store lifting the pause (the same
// end, no probe) lifts the record's.
func TestMemoryStateKeepsTheStoresProbe(t *testing.T) {
	ctx, t0 := context.Background(), statetest.T0
	end := t0.Add(time.Minute)
	paused := pace.Holds{PauseUntil: end, PauseReason: pace.ReasonPause, Probe: true}
	read := func(id string) pace.Grant { return pace.Grant{ID: id, Cost: pace.ReadPoints} }
	tests := []struct {
		name   string
		then   func(s *pace.MemoryState, probe pace.Grant) // after the probe's grant
		at     time.Time                                   // when the record is asked
		prober string                                      // Prober at then
		ok     bool                                        // whether a second request goes
		probe  bool                                        // its Verdict.Probe (a wait: for a probe)
	}{
		{"probe out", func(*pace.MemoryState, pace.Grant) {}, end.Add(time.Second), "p", false, true},
		{"probe's lease over", func(*pace.MemoryState, pace.Grant) {}, end.Add(pace.ProbeLease), "", true, true},
		{"probe answered", func(s *pace.MemoryState, p pace.Grant) {
			s.Done(ctx, end.Add(time.Second), p, pace.RateLimit{Status: 200, Remaining: -1, Used: -1})
		}, end.Add(time.Second), "", true, false},
		{"probe without an answer", func(s *pace.MemoryState, p pace.Grant) {
			s.Done(ctx, end.Add(time.Second), p, pace.RateLimit{Remaining: -1, Used: -1})
		}, end.Add(time.Second), "", true, true},
		{"the store lifted the pause", func(s *pace.MemoryState, _ pace.Grant) {
			s.MergeHolds(pace.Holds{PauseUntil: end, PauseReason: pace.ReasonPause})
		}, end.Add(time.Second), "", true, false},
		{"a later pause the store tells", func(s *pace.MemoryState, _ pace.Grant) {
			s.MergeHolds(pace.Holds{PauseUntil: end.Add(time.Minute), PauseReason: pace.ReasonPause})
		}, end.Add(time.Second), "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := pace.NewMemoryState(pace.StateLimits{SecondaryPause: time.Minute})
			probe := read("p")
			s.RecordProbe(end, probe, paused)
			tt.then(s, probe)
			if id, _ := s.Prober(tt.at); id != tt.prober {
				t.Errorf("Prober = %q, want %q", id, tt.prober)
			}
			if v := s.Start(ctx, tt.at, read("second")); v.OK != tt.ok || v.Probe != tt.probe {
				t.Errorf("a second request = %+v, want OK %v, Probe %v", v, tt.ok, tt.probe)
			}
		})
	}
}
