package main

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestCallLimits(t *testing.T) {
	type step struct {
		caller  string
		advance time.Duration // before the call
		release int           // releases of earlier admitted calls, by index, before the call; -1 none
		want    string        // "" admitted, else a word of the reason
	}
	tests := []struct {
		name                    string
		rps                     float64
		burst, perCaller, total int
		steps                   []step
	}{
		{
			name: "rate: burst then one per second", rps: 1, burst: 2,
			steps: []step{
				{caller: "a", release: -1}, {caller: "a", release: -1}, {caller: "a", release: -1, want: "rate"},
				{caller: "b", release: -1}, // another caller has its own bucket
				{caller: "a", advance: time.Second, release: -1},
				{caller: "a", release: -1, want: "rate"},
			},
		},
		{
			name: "per caller in progress", perCaller: 2,
			steps: []step{
				{caller: "a", release: -1}, {caller: "a", release: -1}, {caller: "a", release: -1, want: "caller is at its limit"},
				{caller: "b", release: -1},
				{caller: "a", release: 0}, // one of a's calls ended
			},
		},
		{
			name: "total in progress", total: 2,
			steps: []step{
				{caller: "a", release: -1}, {caller: "b", release: -1}, {caller: "c", release: -1, want: "broker is at its limit"},
				{caller: "c", release: 1},
			},
		},
		{
			name: "no limits", steps: []step{{caller: "a", release: -1}, {caller: "a", release: -1}, {caller: "a", release: -1}},
		},
	}
	for _, tt := range tests {
		// Each case runs in a synctest bubble: time.Sleep moves its fake
		// clock exactly.
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newCallLimits(tt.rps, tt.burst, tt.perCaller, tt.total)
				var releases []func()
				for i, s := range tt.steps {
					time.Sleep(s.advance)
					if s.release >= 0 {
						releases[s.release]()
						releases[s.release]() // a second release is harmless
					}
					release, refused := l.admit(s.caller)
					got := ""
					if refused != nil {
						got = refused.reason
						if refused.retryAfter <= 0 {
							t.Errorf("step %d: refused without a retry delay", i)
						}
					} else {
						releases = append(releases, release)
					}
					if (s.want == "") != (got == "") || s.want != "" && !strings.Contains(got, s.want) {
						t.Fatalf("step %d (%s): got %q, want %q", i, s.caller, got, s.want)
					}
				}
			})
		})
	}
}

// TestCallLimitsForgetIdleCallers: the callers' states stay bounded.
func TestCallLimitsForgetIdleCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newCallLimits(10, 1, 4, 0)
		for i := range 3 * maxTrackedCallers {
			release, refused := l.admit(fmt.Sprint("caller-", i))
			if refused != nil {
				t.Fatalf("caller %d refused: %s", i, refused.reason)
			}
			release()
			time.Sleep(time.Second) // every bucket refills
		}
		if n := len(l.callers); n > maxTrackedCallers {
			t.Fatalf("%d callers tracked, want at most %d", n, maxTrackedCallers)
		}
	})
}

// TestCallLimitsSweepAmortized: when every tracked caller is still worth
// keeping (its bucket not yet refilled), new callers do not each scan them
// all: sweeps run at doubling sizes, and once buckets refill the states
// shrink back to the bound.
func TestCallLimitsSweepAmortized(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newCallLimits(1, 100, 0, 0)
		const callers = 4 * maxTrackedCallers
		for i := range callers { // in no time: no bucket refills
			release, refused := l.admit(fmt.Sprint("caller-", i))
			if refused != nil {
				t.Fatalf("caller %d refused: %s", i, refused.reason)
			}
			release()
		}
		// At 4096 and 8192 tracked callers, each keeping all (a sweep per
		// new caller past 4096 would be 12,288).
		if l.sweeps != 2 {
			t.Errorf("%d sweeps for %d new callers, want 2", l.sweeps, callers)
		}
		time.Sleep(100 * time.Second) // every bucket refills
		release, refused := l.admit("late")
		if refused != nil {
			t.Fatal(refused.reason)
		}
		release()
		if n := len(l.callers); n > maxTrackedCallers {
			t.Errorf("%d callers tracked after the buckets refilled, want at most %d", n, maxTrackedCallers)
		}
	})
}
