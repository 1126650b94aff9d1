package pace

import (
	"net/http"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestPointsBudget(t *testing.T) {
	const ms = time.Millisecond
	b := NewBudget(10, time.Minute)
	for range 10 {
		b.Start(ReadPoints)
	}
	if _, ok := b.FreeAt(t0, ReadPoints); ok {
		t.Fatal("an 11th point fits while 10 are in flight")
	}
	for i := range 10 {
		b.Done(at(300*ms+time.Duration(i)*ms), ReadPoints, RateLimit{})
	}
	for _, tc := range []struct {
		now  time.Duration
		cost int
		want time.Duration
	}{
		{300 * ms, 1, 60*time.Second + 300*ms}, // the first completed leaves at +60.3 s
		{300 * ms, 2, 60*time.Second + 301*ms},
		{300 * ms, 5, 60*time.Second + 304*ms},
		{60*time.Second + 300*ms, 1, 60*time.Second + 300*ms}, // exactly then: it fits
		{60*time.Second + 300*ms, 2, 60*time.Second + 301*ms},
		{2 * time.Minute, 10, 2 * time.Minute},
	} {
		got, ok := b.FreeAt(at(tc.now), tc.cost)
		if !ok || !got.Equal(at(tc.want)) {
			t.Errorf("at +%v, %d points: FreeAt = +%v (ok %v), want +%v", tc.now, tc.cost, got.Sub(t0), ok, tc.want)
		}
	}
	if _, ok := b.FreeAt(at(2*time.Minute), 11); ok {
		t.Error("11 points fit a budget of 10")
	}
}

func TestPointsBudgetUnsentAndOff(t *testing.T) {
	b := NewBudget(5, time.Minute)
	b.Start(WritePoints)
	if _, ok := b.FreeAt(t0, ReadPoints); ok {
		t.Fatal("a point fits beside a write in flight, budget 5")
	}
	b.Unsent(WritePoints)
	if got, ok := b.FreeAt(t0, WritePoints); !ok || !got.Equal(t0) {
		t.Errorf("after Unsent a write fits at +%v (ok %v), want now", got.Sub(t0), ok)
	}

	off := NewBudget(0, time.Minute)
	for range 1000 {
		off.Start(WritePoints)
	}
	off.Done(t0, WritePoints, RateLimit{})
	if got, ok := off.FreeAt(t0, WritePoints); !ok || !got.Equal(t0) {
		t.Error("a budget of 0 holds requests back")
	}
}

func TestBudgetHolds(t *testing.T) {
	reset := at(300 * time.Second)
	resume := reset.Add(ResetMargin) // the reset, surely by GitHub's clock too
	primary := func(remaining int, r time.Time) RateLimit {
		return RateLimit{Status: 200, Remaining: remaining, Used: -1, Reset: r}
	}
	refusal := func(retryAfter time.Duration) RateLimit {
		return RateLimit{Status: 429, Remaining: -1, Used: -1, RetryAfter: retryAfter, HasRetryAfter: retryAfter > 0, Refused: true}
	}
	type done struct {
		at time.Duration
		rl RateLimit
	}
	for _, tc := range []struct {
		name    string
		dones   []done
		backoff time.Duration // from t0; 0: none
		now     time.Duration
		until   time.Time // zero: no hold
		why     Reason
	}{
		{"nothing", nil, 0, 0, time.Time{}, 0},
		{"quota left", []done{{0, primary(10, reset)}}, 0, 0, time.Time{}, 0},
		{"quota used up", []done{{0, primary(0, reset)}}, 0, 0, resume, ReasonPrimary},
		{"reset passed, not its margin", []done{{0, primary(0, reset)}}, 0, 300 * time.Second, resume, ReasonPrimary},
		{"reset passed", []done{{0, primary(0, reset)}}, 0, 300*time.Second + ResetMargin, time.Time{}, 0},
		// Answers out of order: the lowest remaining of a window wins.
		{"late answer of the same window", []done{{0, primary(0, reset)}, {time.Second, primary(5, reset)}}, 0, time.Second, resume, ReasonPrimary},
		{"a later window replaces", []done{{0, primary(0, reset)}, {time.Second, primary(5000, reset.Add(time.Hour))}}, 0, time.Second, time.Time{}, 0},
		// A reset read against Date may come a second apart: the same
		// window, its latest reset.
		{"the same window a second later", []done{{0, primary(0, reset)}, {time.Second, primary(5, reset.Add(time.Second))}}, 0, time.Second, resume.Add(time.Second), ReasonPrimary},
		{"the same window a second earlier", []done{{0, primary(0, reset)}, {time.Second, primary(5, reset.Add(-time.Second))}}, 0, time.Second, resume, ReasonPrimary},
		// Read against Date, an answer long on its way names it later.
		{"the same window 30 s later", []done{{0, primary(0, reset)}, {time.Second, primary(5, reset.Add(30*time.Second))}}, 0, time.Second, resume.Add(30 * time.Second), ReasonPrimary},
		{"the same window 30 s earlier", []done{{0, primary(0, reset)}, {time.Second, primary(5, reset.Add(-30*time.Second))}}, 0, time.Second, resume, ReasonPrimary},
		{"a window that is over says nothing", []done{{0, primary(0, reset)}, {time.Second, primary(5000, at(-time.Second))}}, 0, time.Second, resume, ReasonPrimary},
		{"retry-after", []done{{time.Second, refusal(7 * time.Second)}}, 0, time.Second, at(8 * time.Second), ReasonPause},
		{"a shorter pause keeps the longer", []done{{0, refusal(7 * time.Second)}, {time.Second, refusal(time.Second)}}, 0, time.Second, at(7 * time.Second), ReasonPause},
		{"no hint: SecondaryPause", []done{{0, refusal(0)}}, 0, 0, at(time.Minute), ReasonPause},
		{"refusal with remaining 0: the reset", []done{{0, RateLimit{Status: 403, Remaining: 0, Used: -1, Reset: reset, Refused: true}}}, 0, 0, resume, ReasonPrimary},
		{"pause over", []done{{0, refusal(7 * time.Second)}}, 0, 7 * time.Second, time.Time{}, 0},
		{"backoff", nil, 3 * time.Second, 0, at(3 * time.Second), ReasonBackoff},
		{"backoff within a longer pause", []done{{0, refusal(7 * time.Second)}}, 3 * time.Second, 0, at(7 * time.Second), ReasonPause},
		{"backoff beyond a pause", []done{{0, refusal(7 * time.Second)}}, 9 * time.Second, 0, at(9 * time.Second), ReasonBackoff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(900, time.Minute)
			for _, d := range tc.dones {
				b.Start(ReadPoints)
				b.Done(at(d.at), ReadPoints, d.rl)
			}
			if tc.backoff > 0 {
				b.Backoff(at(tc.backoff))
				b.Backoff(at(tc.backoff - time.Second)) // an earlier one changes nothing
			}
			until, why := b.Hold(at(tc.now))
			if !until.After(at(tc.now)) {
				until, why = time.Time{}, 0
			}
			if !until.Equal(tc.until) || why != tc.why {
				t.Errorf("Hold = %v, %v; want %v, %v", until, why, tc.until, tc.why)
			}
		})
	}
}

func TestBudgetEarliest(t *testing.T) {
	b := NewBudget(10, time.Minute)
	if got, why := b.Earliest(t0, WritePoints); !got.Equal(t0) || why != 0 {
		t.Errorf("fresh budget: %v, %v; want now", got.Sub(t0), why)
	}
	b.Start(WritePoints)
	b.Start(ReadPoints)
	// 6 points in flight: a write fits only when they leave, a Window
	// after they complete, which is now at the earliest.
	if got, why := b.Earliest(t0, WritePoints); !got.Equal(at(time.Minute)) || why != ReasonBudget {
		t.Errorf("in flight: +%v, %v; want +1m0s, budget", got.Sub(t0), why)
	}
	b.Done(at(time.Second), WritePoints, RateLimit{})
	b.Done(at(2*time.Second), ReadPoints, RateLimit{Status: 429, Remaining: -1, HasRetryAfter: true, RetryAfter: 90 * time.Second, Refused: true})
	if got, why := b.Earliest(at(2*time.Second), WritePoints); !got.Equal(at(92*time.Second)) || why != ReasonPause {
		t.Errorf("paused: +%v, %v; want +1m32s, pause", got.Sub(t0), why)
	}
}

// TestRefusalIncidentPausesOnce: one secondary-limit incident that
// refuses every request in flight at once (no Retry-After) pauses for
// GitHub's minute, not doubled once per refused request; the next
// incident after the pause doubles it (found by a review: five refusals
// together paused 16 minutes).
func TestRefusalIncidentPausesOnce(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBudget(0, time.Minute)
	refused := RateLimit{Status: http.StatusForbidden, Remaining: 4000, Used: -1, Refused: true}
	for range 5 {
		b.Start(ReadPoints)
	}
	for range 5 {
		b.Done(now, ReadPoints, refused)
	}
	until, _ := b.Hold(now)
	if got := until.Sub(now); got != time.Minute {
		t.Errorf("first incident (5 requests refused together) pauses %v, want 1m", got)
	}
	now = until
	b.Start(ReadPoints)
	b.Done(now, ReadPoints, refused)
	if until, _ := b.Hold(now); until.Sub(now) != 2*time.Minute {
		t.Errorf("second incident pauses %v, want 2m", until.Sub(now))
	}
	now = now.Add(2 * time.Minute)
	b.Start(ReadPoints)
	b.Done(now, ReadPoints, RateLimit{Status: http.StatusOK, Remaining: 3999, Used: -1})
	b.Start(ReadPoints)
	b.Done(now, ReadPoints, refused)
	if until, _ := b.Hold(now); until.Sub(now) != time.Minute {
		t.Errorf("an incident after an answer that was no refusal pauses %v, want 1m again", until.Sub(now))
	}
}

// TestInFlightSuccessKeepsIncident: an answer that is no refusal, to a
// request sent before a pause began and answered during it, does not
// reset the doubling: the next refusal after the pause doubles it (found
// by a review).
func TestInFlightSuccessKeepsIncident(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := NewBudget(0, time.Minute)
	refused := RateLimit{Status: http.StatusForbidden, Remaining: 4000, Used: -1, Refused: true}
	ok := RateLimit{Status: http.StatusOK, Remaining: 3999, Used: -1}
	b.Start(WritePoints)
	b.Start(ReadPoints)
	b.Done(now, WritePoints, refused)            // incident 1: pause 1m
	b.Done(now.Add(time.Second), ReadPoints, ok) // in flight before it, answered during it
	until, _ := b.Hold(now)
	now = until
	b.Start(WritePoints)
	b.Done(now, WritePoints, refused) // the first request after the pause: refused again
	if until, _ := b.Hold(now); until.Sub(now) != 2*time.Minute {
		t.Errorf("second incident in a row pauses %v, want 2m", until.Sub(now))
	}
}
