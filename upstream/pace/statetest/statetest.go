// Package statetest is the contract every pace.State keeps, as one suite
// of tests run against each implementation (pace.MemoryState in package
// pace, the Redis one in package redisstate): what Start grants and
// refuses and until when, what Done and Unsent change, how the write
// slot's lease ends, and that two replicas sharing a State share one
// budget. Time is passed in, so the suite needs no clock.
package statetest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Factory returns n States for lim that share one store (n replicas),
// ready at T0, and a kill func for each that stops its replica for good
// without telling the store (no Done, no Unsent, no lease renewal).
type Factory func(t *testing.T, lim pace.StateLimits, n int) (states []pace.State, kill []func())

// T0 is the suite's start time.
var T0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// grants makes grants with ids unique within one Run.
type grants struct{ seq int }

func (gs *grants) next(write bool) pace.Grant {
	gs.seq++
	g := pace.Grant{ID: "g" + strconv.Itoa(gs.seq), Cost: pace.ReadPoints}
	if write {
		g.Cost, g.Write = pace.WritePoints, true
	}
	return g
}

var ok204 = pace.RateLimit{Status: 204, Remaining: -1, Used: -1}

func at(d time.Duration) time.Time { return T0.Add(d) }

func wantOK(t *testing.T, st pace.State, now time.Time, g pace.Grant) {
	t.Helper()
	wantGrant(t, st, now, g, false)
}

// wantGrant wants st to grant g at now, as the probe (Verdict.Probe) or
// not.
func wantGrant(t *testing.T, st pace.State, now time.Time, g pace.Grant, probe bool) {
	t.Helper()
	if v := st.Start(context.Background(), now, g); !v.OK || v.Probe != probe {
		t.Fatalf("Start(%s at +%v) = %+v, want granted, Probe %v", g.ID, now.Sub(T0), v, probe)
	}
}

// wantProbeWait wants st to refuse g at now until until because another
// grant is the probe (Verdict.Probe, ReasonPause, not Held).
func wantProbeWait(t *testing.T, st pace.State, now time.Time, g pace.Grant, until time.Time) {
	t.Helper()
	v := st.Start(context.Background(), now, g)
	if v.OK || !v.At.Equal(until) || v.Why != pace.ReasonPause || v.Held || !v.Probe {
		t.Fatalf("Start(%s at +%v) = {OK %v At +%v Why %v Held %v Probe %v}, want a wait for the probe until +%v",
			g.ID, now.Sub(T0), v.OK, v.At.Sub(T0), v.Why, v.Held, v.Probe, until.Sub(T0))
	}
}

// wantWait wants st to refuse g at now until until for why, a wait of
// its own (not Held).
func wantWait(t *testing.T, st pace.State, now time.Time, g pace.Grant, until time.Time, why pace.Reason) {
	t.Helper()
	wantVerdict(t, st, now, g, until, why, false)
}

// wantHold wants st to refuse g at now until until for why, a hold of the
// whole credential (Held).
func wantHold(t *testing.T, st pace.State, now time.Time, g pace.Grant, until time.Time, why pace.Reason) {
	t.Helper()
	wantVerdict(t, st, now, g, until, why, true)
}

func wantVerdict(t *testing.T, st pace.State, now time.Time, g pace.Grant, until time.Time, why pace.Reason, held bool) {
	t.Helper()
	v := st.Start(context.Background(), now, g)
	if v.OK || !v.At.Equal(until) || v.Why != why || v.Held != held || v.Probe {
		t.Fatalf("Start(%s at +%v) = {OK %v At +%v Why %v Held %v Probe %v}, want a wait until +%v for %v, Held %v",
			g.ID, now.Sub(T0), v.OK, v.At.Sub(T0), v.Why, v.Held, v.Probe, until.Sub(T0), why, held)
	}
}

// quotaLeft has st grant one read at now, answered with left of the
// primary quota remaining until reset.
func quotaLeft(t *testing.T, st pace.State, g pace.Grant, now time.Time, left int, reset time.Time) {
	t.Helper()
	wantOK(t, st, now, g)
	st.Done(context.Background(), now, g, pace.RateLimit{Status: 200, Remaining: left, Used: 5000 - left, Reset: reset})
}

// Run runs the contract against newStates.
func Run(t *testing.T, newStates Factory) {
	ctx := context.Background()
	gs := &grants{}
	grant := gs.next
	t.Run("points budget over a sliding minute from completion", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{PointsPerMinute: 10}, 1)
		s := st[0]
		var gs []pace.Grant
		for range 10 {
			g := grant(false)
			wantOK(t, s, T0, g)
			gs = append(gs, g)
		}
		// In flight, they count until InFlightLease after their start.
		wantWait(t, s, T0, grant(false), at(pace.InFlightLease+pace.Window), pace.ReasonBudget)
		for i, g := range gs {
			s.Done(ctx, at(time.Duration(i)*time.Second), g, ok204)
		}
		// Done, each until a minute after its completion.
		wantWait(t, s, at(10*time.Second), grant(false), at(pace.Window), pace.ReasonBudget)
		wantWait(t, s, at(10*time.Second), grant(true), at(pace.Window+4*time.Second), pace.ReasonBudget)
		wantOK(t, s, at(pace.Window), grant(false))
	})
	t.Run("unsent gives points back", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{PointsPerMinute: 5}, 1)
		s := st[0]
		g := grant(true)
		wantOK(t, s, T0, g)
		wantWait(t, s, T0, grant(false), at(pace.InFlightLease+pace.Window), pace.ReasonBudget)
		s.Unsent(ctx, T0, g)
		wantOK(t, s, T0, grant(true))
	})
	t.Run("writes one at a time, spaced", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{WriteInterval: time.Second}, 2)
		a, b := st[0], st[1]
		w1 := grant(true)
		wantOK(t, a, T0, w1)
		// Reads are not held by the slot.
		wantOK(t, b, T0, grant(false))
		wantWait(t, b, T0, grant(true), at(time.Second), pace.ReasonSpacing)
		// Still in flight after the interval: ask again soon.
		wantWait(t, b, at(time.Second), grant(true), at(time.Second+pace.SlotPoll), pace.ReasonSpacing)
		a.Done(ctx, at(1100*time.Millisecond), w1, ok204)
		w2 := grant(true)
		wantOK(t, b, at(1100*time.Millisecond), w2)
		// An unsent write gives its place in the spacing back.
		b.Unsent(ctx, at(1100*time.Millisecond), w2)
		wantOK(t, a, at(1100*time.Millisecond), grant(true))
	})
	t.Run("a killed replica's write slot frees when its lease ends", func(t *testing.T) {
		lim := pace.StateLimits{WriteInterval: time.Second, WriteLease: 3 * time.Second}
		st, kill := newStates(t, lim, 2)
		wantOK(t, st[0], T0, grant(true))
		kill[0]()
		wantWait(t, st[1], at(3*time.Second-pace.SlotPoll), grant(true), at(3*time.Second), pace.ReasonSpacing)
		wantOK(t, st[1], at(3*time.Second), grant(true))
	})
	t.Run("content budgets", func(t *testing.T) {
		tests := []struct {
			name       string
			pm, ph     int
			next       time.Duration
			nextReason pace.Reason
		}{
			{"minute", 3, 0, pace.Window, pace.ReasonContent},
			{"hour", 0, 3, pace.WritesHour, pace.ReasonContent},
			{"both", 3, 5, pace.Window, pace.ReasonContent},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				st, _ := newStates(t, pace.StateLimits{WritesPerMinute: tc.pm, WritesPerHour: tc.ph}, 2)
				for i := range 3 {
					g := grant(true)
					wantOK(t, st[i%2], T0, g)
					st[i%2].Done(ctx, T0, g, ok204)
				}
				wantOK(t, st[0], T0, grant(false)) // reads do not count
				wantWait(t, st[1], T0, grant(true), at(tc.next), tc.nextReason)
				wantOK(t, st[1], at(tc.next), grant(true))
			})
		}
	})
	t.Run("a refusal pauses every replica", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{SecondaryPause: time.Minute}, 2)
		g := grant(false)
		wantOK(t, st[0], T0, g)
		st[0].Done(ctx, T0, g, pace.RateLimit{Status: 403, Remaining: -1, Used: -1, Refused: true, RetryAfter: 30 * time.Second, HasRetryAfter: true})
		wantHold(t, st[1], T0, grant(false), at(30*time.Second), pace.ReasonPause)
		wantOK(t, st[1], at(30*time.Second), grant(false))
	})
	// unhinted is a secondary limit's refusal that says nothing of how
	// long to wait; pause is the pause its pacer takes for it (0: the
	// State's SecondaryPause).
	unhinted := func(g pace.Grant, pause time.Duration) (pace.Grant, pace.RateLimit) {
		g.Pause = pause
		return g, pace.RateLimit{Status: 403, Remaining: -1, Used: -1, Refused: true}
	}
	ok200 := pace.RateLimit{Status: 200, Remaining: -1, Used: -1}
	// pausedWithoutHint returns n replicas' States whose credential was
	// refused without a hint at T0: paused for a minute, then probing.
	pausedWithoutHint := func(t *testing.T, n int) ([]pace.State, []func()) {
		t.Helper()
		st, kill := newStates(t, pace.StateLimits{SecondaryPause: time.Minute}, n)
		g := grant(false)
		wantOK(t, st[0], T0, g)
		g, rl := unhinted(g, 0)
		st[0].Done(ctx, T0, g, rl)
		wantHold(t, st[n-1], at(time.Second), grant(false), at(time.Minute), pace.ReasonPause)
		return st, kill
	}
	t.Run("after a pause without a hint one request probes for every replica", func(t *testing.T) {
		st, _ := pausedWithoutHint(t, 3)
		now := at(time.Minute)
		probe := grant(false)
		wantGrant(t, st[1], now, probe, true)
		// Every other request waits for its answer, on every replica,
		// reads and writes alike, asking again soon.
		wantProbeWait(t, st[0], now, grant(false), now.Add(pace.SlotPoll))
		wantProbeWait(t, st[1], now, grant(false), now.Add(pace.SlotPoll))
		now = at(time.Minute + time.Second)
		wantProbeWait(t, st[2], now, grant(true), now.Add(pace.SlotPoll))
		// An answer that is no refusal lifts the limit: every replica
		// goes, without probing.
		st[1].Done(ctx, now, probe, ok200)
		wantGrant(t, st[0], now, grant(false), false)
		wantGrant(t, st[2], now, grant(true), false)
		wantGrant(t, st[2], now, grant(false), false)
	})
	t.Run("a refused probe pauses every replica again, longer each time in a row", func(t *testing.T) {
		st, _ := pausedWithoutHint(t, 2)
		// Each probe is refused, by the replica that was not refused
		// before: its pacer's own pause is a minute (Grant.Pause), the
		// State's the escalation of every replica's refusals in a row.
		// A pacer's longer pause wins.
		now := at(time.Minute)
		for i, tc := range []struct {
			pacer, want time.Duration
		}{{time.Minute, 2 * time.Minute}, {time.Minute, 4 * time.Minute}, {20 * time.Minute, 20 * time.Minute}} {
			probe := grant(false)
			wantGrant(t, st[(i+1)%2], now, probe, true)
			wantProbeWait(t, st[i%2], now, grant(false), now.Add(pace.SlotPoll))
			now = now.Add(time.Second)
			g, rl := unhinted(probe, tc.pacer)
			st[(i+1)%2].Done(ctx, now, g, rl)
			end := now.Add(tc.want)
			wantHold(t, st[0], now, grant(false), end, pace.ReasonPause)
			wantHold(t, st[1], now, grant(true), end, pace.ReasonPause)
			now = end
		}
		// A success once the pause is over ends the run: the next
		// refusal pauses for the State's SecondaryPause.
		probe := grant(false)
		wantGrant(t, st[0], now, probe, true)
		st[0].Done(ctx, now, probe, ok200)
		g := grant(false)
		wantGrant(t, st[1], now, g, false)
		g, rl := unhinted(g, 0)
		st[1].Done(ctx, now, g, rl)
		wantHold(t, st[0], now, grant(false), now.Add(time.Minute), pace.ReasonPause)
	})
	t.Run("a probe without an answer, or never sent, hands the role on at once", func(t *testing.T) {
		st, _ := pausedWithoutHint(t, 3)
		now := at(time.Minute)
		first := grant(false)
		wantGrant(t, st[0], now, first, true)
		wantProbeWait(t, st[1], now, grant(false), now.Add(pace.SlotPoll))
		st[0].Done(ctx, now, first, pace.RateLimit{Remaining: -1, Used: -1}) // a dropped connection
		second := grant(true)
		wantGrant(t, st[1], now, second, true)
		wantProbeWait(t, st[2], now, grant(false), now.Add(pace.SlotPoll))
		st[1].Unsent(ctx, now, second)
		third := grant(false)
		wantGrant(t, st[2], now, third, true)
		wantProbeWait(t, st[0], now, grant(false), now.Add(pace.SlotPoll))
		st[2].Done(ctx, now.Add(time.Second), third, ok200)
		wantGrant(t, st[0], now.Add(time.Second), grant(false), false)
	})
	t.Run("a killed replica's probe hands the role on when its lease ends", func(t *testing.T) {
		st, kill := pausedWithoutHint(t, 2)
		start := at(time.Minute)
		wantGrant(t, st[0], start, grant(false), true)
		kill[0]() // it never answers
		end := start.Add(pace.ProbeLease)
		now := end.Add(-pace.SlotPoll / 2)
		wantProbeWait(t, st[1], now, grant(false), end)
		wantGrant(t, st[1], end, grant(false), true)
	})
	t.Run("a pause GitHub said the length of needs no probe", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{SecondaryPause: time.Minute}, 2)
		g := grant(false)
		wantOK(t, st[0], T0, g)
		st[0].Done(ctx, T0, g, pace.RateLimit{Status: 429, Remaining: -1, Used: -1, Refused: true, RetryAfter: 30 * time.Second, HasRetryAfter: true})
		wantHold(t, st[1], T0, grant(false), at(30*time.Second), pace.ReasonPause)
		wantGrant(t, st[1], at(30*time.Second), grant(false), false)
		wantGrant(t, st[0], at(30*time.Second), grant(false), false)
	})
	t.Run("a used-up primary quota holds every replica until its reset", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{}, 2)
		g := grant(false)
		wantOK(t, st[0], T0, g)
		reset := at(10 * time.Minute)
		st[0].Done(ctx, T0, g, pace.RateLimit{Status: 200, Remaining: 0, Used: 5000, Reset: reset})
		// Until the reset has surely come by GitHub's clock too.
		resume := reset.Add(pace.ResetMargin)
		wantHold(t, st[1], T0, grant(true), resume, pace.ReasonPrimary)
		wantHold(t, st[1], reset, grant(true), resume, pace.ReasonPrimary)
		wantOK(t, st[1], resume, grant(true))
	})
	t.Run("answers whose resets are seconds apart are of one primary window", func(t *testing.T) {
		// A reset read against Date (an answer's Date more than two
		// seconds off this clock when it arrives: a clock off GitHub's,
		// an answer long on its way) moves from answer to answer.
		for _, apart := range []time.Duration{time.Second, 20 * time.Second} {
			reset := at(10 * time.Minute)
			resume := reset.Add(pace.ResetMargin)
			// The last of the quota, its reset before an earlier
			// answer's: held until the later reset.
			st, _ := newStates(t, pace.StateLimits{}, 2)
			quotaLeft(t, st[0], grant(false), T0, 3, reset.Add(apart))
			quotaLeft(t, st[1], grant(false), T0, 0, reset)
			wantHold(t, st[0], T0, grant(false), resume.Add(apart), pace.ReasonPrimary)
			// A late answer with more left and a later reset does not
			// free the quota.
			st, _ = newStates(t, pace.StateLimits{}, 2)
			late := grant(false)
			wantOK(t, st[1], T0, late)
			quotaLeft(t, st[0], grant(false), T0, 0, reset)
			st[1].Done(ctx, at(time.Second), late, pace.RateLimit{Status: 200, Remaining: 3, Used: 4997, Reset: reset.Add(apart)})
			wantHold(t, st[0], at(time.Second), grant(false), resume.Add(apart), pace.ReasonPrimary)
			// The next window (an hour later) replaces it.
			next := grant(false)
			wantOK(t, st[1], resume.Add(apart), next)
			st[1].Done(ctx, resume.Add(apart+time.Second), next, pace.RateLimit{Status: 200, Remaining: 4999, Used: 1, Reset: reset.Add(time.Hour)})
			wantOK(t, st[0], resume.Add(apart+time.Second), grant(false))
		}
	})
	t.Run("a verdict is held only when the hold is the latest wait", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{PointsPerMinute: 9, SecondaryPause: time.Minute}, 2)
		g := grant(true)
		wantOK(t, st[0], T0, g)
		st[0].Done(ctx, T0, g, ok204)
		wantWait(t, st[1], T0, grant(true), at(pace.Window), pace.ReasonBudget) // 5 + 5 > 9
		refusal := func(after time.Duration) pace.RateLimit {
			return pace.RateLimit{Status: 403, Remaining: -1, Used: -1, Refused: true, RetryAfter: after, HasRetryAfter: true}
		}
		r := grant(false)
		wantOK(t, st[1], T0, r)
		st[1].Done(ctx, T0, r, refusal(30*time.Second))
		// The pause ends before the budget frees: the budget's wait.
		wantWait(t, st[0], T0, grant(true), at(pace.Window), pace.ReasonBudget)
		wantHold(t, st[0], T0, grant(false), at(30*time.Second), pace.ReasonPause)
		r = grant(false)
		wantOK(t, st[1], at(30*time.Second), r)
		st[1].Done(ctx, at(30*time.Second), r, refusal(2*time.Minute))
		wantHold(t, st[0], at(30*time.Second), grant(true), at(150*time.Second), pace.ReasonPause)
	})
	t.Run("requests in flight on every replica stay within MaxInFlight", func(t *testing.T) {
		st, kill := newStates(t, pace.StateLimits{MaxInFlight: 3}, 2)
		a := grant(false)
		wantOK(t, st[0], T0, a)
		wantOK(t, st[0], T0, grant(true))
		wantOK(t, st[1], T0, grant(false))
		// Three in flight, the limit: neither replica sends a fourth
		// until one is answered; reads and writes alike.
		wantWait(t, st[1], T0, grant(false), at(pace.SlotPoll), pace.ReasonQueue)
		wantWait(t, st[0], at(time.Second), grant(true), at(time.Second+pace.SlotPoll), pace.ReasonQueue)
		st[0].Done(ctx, at(2*time.Second), a, ok204)
		wantOK(t, st[1], at(2*time.Second), grant(false))
		wantWait(t, st[0], at(2*time.Second), grant(false), at(2*time.Second+pace.SlotPoll), pace.ReasonQueue)
		// A killed replica's requests stop counting after
		// InFlightCounted from their start.
		kill[1]()
		wantWait(t, st[0], at(pace.InFlightCounted-time.Millisecond), grant(false), at(pace.InFlightCounted-time.Millisecond+pace.SlotPoll), pace.ReasonQueue)
		wantOK(t, st[0], at(pace.InFlightCounted), grant(false))
	})
	t.Run("requests in flight on every replica stay within the primary quota left", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{}, 2)
		reset := at(10 * time.Minute)
		quotaLeft(t, st[0], grant(false), T0, 2, reset)
		a, b := grant(false), grant(true)
		wantOK(t, st[0], T0, a)
		wantOK(t, st[1], T0, b)
		// Two in flight, two left: neither replica sends a third until an
		// answer says what is left.
		wantWait(t, st[0], T0, grant(false), at(pace.SlotPoll), pace.ReasonPrimary)
		wantWait(t, st[1], at(time.Second), grant(false), at(time.Second+pace.SlotPoll), pace.ReasonPrimary)
		st[0].Done(ctx, at(2*time.Second), a, pace.RateLimit{Status: 200, Remaining: 1, Used: 4999, Reset: reset})
		wantWait(t, st[0], at(2*time.Second), grant(false), at(2*time.Second+pace.SlotPoll), pace.ReasonPrimary)
		st[1].Done(ctx, at(3*time.Second), b, ok204) // no word of the quota: one left
		wantOK(t, st[0], at(3*time.Second), grant(false))
	})
	t.Run("a killed replica's request stops holding the primary quota after InFlightCounted", func(t *testing.T) {
		st, kill := newStates(t, pace.StateLimits{}, 2)
		reset := at(10 * time.Minute)
		quotaLeft(t, st[0], grant(false), T0, 1, reset)
		wantOK(t, st[1], T0, grant(false))
		kill[1]()
		wantWait(t, st[0], at(pace.InFlightCounted-time.Millisecond), grant(false), at(pace.InFlightCounted-time.Millisecond+pace.SlotPoll), pace.ReasonPrimary)
		wantOK(t, st[0], at(pace.InFlightCounted), grant(false))
	})
	t.Run("a wait for the requests in flight ends at the quota's reset", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{}, 1)
		// The window has surely reset (ResetMargin after it) within
		// SlotPoll.
		resume := at(pace.SlotPoll / 2)
		quotaLeft(t, st[0], grant(false), T0, 1, resume.Add(-pace.ResetMargin))
		wantOK(t, st[0], T0, grant(false))
		wantWait(t, st[0], T0, grant(false), resume, pace.ReasonPrimary)
	})
	// cpu returns a read grant expected to take d.
	cpu := func(d time.Duration) pace.Grant {
		g := grant(false)
		g.CPU = d
		return g
	}
	took := func(g pace.Grant, d time.Duration) pace.Grant {
		g.Took = d
		return g
	}
	t.Run("response time budget over a sliding minute from completion", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{CPUPerMinute: 10 * time.Second}, 1)
		s := st[0]
		var gs []pace.Grant
		for range 5 {
			g := cpu(2 * time.Second)
			wantOK(t, s, T0, g)
			gs = append(gs, g)
		}
		// In flight, each counts what it is expected to take: ask again
		// soon, when one may have completed.
		wantWait(t, s, T0, cpu(2*time.Second), at(pace.SlotPoll), pace.ReasonCPU)
		for i, g := range gs {
			s.Done(ctx, at(time.Second+time.Duration(i)*time.Millisecond), took(g, time.Second), ok204)
		}
		// Done, each counts what it took until a minute after its
		// completion: 5 s.
		now := at(2 * time.Second)
		a, b := cpu(2*time.Second), cpu(2*time.Second)
		wantOK(t, s, now, a)
		wantOK(t, s, now, b)
		wantWait(t, s, now, cpu(2*time.Second), at(time.Second+pace.Window), pace.ReasonCPU)
		wantWait(t, s, now, cpu(3*time.Second), at(time.Second+time.Millisecond+pace.Window), pace.ReasonCPU)
		s.Done(ctx, at(4*time.Second), took(a, 2*time.Second), ok204)
		s.Done(ctx, at(4*time.Second), took(b, 2*time.Second), ok204)
		// The first answer left the window: 4 × 1 s + 2 × 2 s.
		wantOK(t, s, at(time.Second+pace.Window), cpu(2*time.Second))
		// A request expected to take more than the whole budget goes
		// alone.
		st, _ = newStates(t, pace.StateLimits{CPUPerMinute: 10 * time.Second}, 1)
		wantOK(t, st[0], T0, cpu(30*time.Second))
		wantWait(t, st[0], T0, cpu(time.Millisecond), at(pace.SlotPoll), pace.ReasonCPU)
	})
	t.Run("a request in flight counts its time so far, up to InFlightCounted", func(t *testing.T) {
		st, kill := newStates(t, pace.StateLimits{CPUPerMinute: time.Minute}, 2)
		wantOK(t, st[0], T0, cpu(time.Second))
		kill[0]() // it never completes
		now := at(10 * time.Second)
		wantWait(t, st[1], now, cpu(51*time.Second), now.Add(pace.SlotPoll), pace.ReasonCPU)
		now = at(100 * time.Second)
		wantWait(t, st[1], now, cpu(21*time.Second), now.Add(pace.SlotPoll), pace.ReasonCPU)
		wantOK(t, st[1], now, cpu(20*time.Second))
	})
	t.Run("unsent gives the response time back", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{CPUPerMinute: 10 * time.Second}, 1)
		s := st[0]
		g := cpu(10 * time.Second)
		wantOK(t, s, T0, g)
		wantWait(t, s, T0, cpu(time.Second), at(pace.SlotPoll), pace.ReasonCPU)
		s.Unsent(ctx, T0, g)
		wantOK(t, s, T0, cpu(10*time.Second))
	})
	t.Run("two replicas share one response time budget", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{CPUPerMinute: 100 * time.Second}, 2)
		var granted time.Duration
		for i := range 300 {
			g := cpu(time.Second)
			if st[i%2].Start(ctx, T0, g).OK {
				granted += time.Second
				st[i%2].Done(ctx, T0, took(g, time.Second), ok204)
			}
		}
		if granted != 100*time.Second {
			t.Fatalf("granted %v of response time within one minute by two replicas, want the budget, 100s", granted)
		}
	})
	t.Run("two replicas share one points budget", func(t *testing.T) {
		st, _ := newStates(t, pace.StateLimits{PointsPerMinute: 100}, 2)
		granted := 0
		for i := range 300 {
			g := grant(i%3 == 0)
			if st[i%2].Start(ctx, T0, g).OK {
				granted += g.Cost
				st[i%2].Done(ctx, T0, g, ok204)
			}
		}
		if granted > 100 || granted < 96 {
			t.Fatalf("granted %d points within one minute by two replicas, want at most 100 and no fewer than 96", granted)
		}
	})
}
