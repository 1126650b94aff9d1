package pace

import "time"

// An Observer is told what a Pacer does, for metrics. Its methods are
// called with the pacer's lock held: they must return quickly and must not
// call back into the Pacer. Set it in Config.Observer.
type Observer interface {
	// Admitted reports a request admitted after waiting wait in the
	// pacer, from its Acquire to its admission. why is what held its lane
	// (reads or writes) back the longest while it waited: ReasonQueue for
	// the MaxInFlight places, ReasonSpacing for the write slot (busy, or
	// its interval), ReasonBudget for the points budget, ReasonCPU for the
	// CPU-time budget, ReasonPrimary,
	// ReasonPause or ReasonBackoff for a hold. why is 0 exactly when wait
	// is 0: the request was admitted when it was queued.
	Admitted(r Request, wait time.Duration, why Reason)
	// Held reports that the credential is held until until for why
	// (ReasonPrimary, ReasonPause or ReasonBackoff): a hold that begins, or
	// one in place that grows. began is true when the credential was not
	// held before, or was held for another reason; false when a hold of
	// the same reason only grows (another refusal while paused).
	Held(why Reason, until time.Time, began bool)
}

// numReasons sizes the arrays indexed by Reason (0 included).
const numReasons = int(ReasonCPU) + 1

// Lanes of a waitClock.
const (
	readLane  = 0
	writeLane = 1
)

// laneOf returns the lane of a read (false) or a write (true).
func laneOf(write bool) int {
	if write {
		return writeLane
	}
	return readLane
}

// waitClock accounts, per lane, how long the lane has been held back for
// each reason since the pacer began. A permit takes a snapshot of its
// lane's totals when queued; at its admission the difference says how
// long it waited for each reason. Every operation is O(1).
type waitClock struct {
	why   [2]Reason    // what holds each lane back now; 0: nothing (or empty)
	since [2]time.Time // when why was last accrued
	total [2][numReasons]time.Duration
}

// accrue adds the time since the last accrual to each lane's current
// reason. now never goes backwards (it is read under the pacer's lock).
func (c *waitClock) accrue(now time.Time) {
	for l := range c.why {
		if c.why[l] != 0 && now.After(c.since[l]) {
			c.total[l][c.why[l]] += now.Sub(c.since[l])
		}
		c.since[l] = now
	}
}

// longest returns the reason among total minus from with the most time;
// ReasonQueue when none has any (a wait shorter than the clock shows).
func longest(total, from *[numReasons]time.Duration) Reason {
	best, most := ReasonQueue, time.Duration(0)
	for r := 1; r < numReasons; r++ {
		if d := total[r] - from[r]; d > most {
			best, most = Reason(r), d
		}
	}
	return best
}

// queuedLocked notes when t was queued and snapshots its lane's clock.
func (p *Pacer) queuedLocked(t *Permit, now time.Time) {
	p.clock.accrue(now)
	t.queuedAt = now
	t.waitFrom = p.clock.total[laneOf(t.write)]
}

// admittedLocked records on t when it was admitted, how long it waited
// and why. The clock was accrued to now by the pump that admits it. The
// observer hears of it once the shared State granted it too (admitted).
func (p *Pacer) admittedLocked(t *Permit, now time.Time) {
	t.admittedAt = now
	if wait := now.Sub(t.queuedAt); wait > 0 {
		t.waited = wait
		t.why = longest(&p.clock.total[laneOf(t.write)], &t.waitFrom)
	}
}

// admitted adds to t's wait what the shared State held it back for, after
// its local admission (sharedWhy, 0 when the State granted it at once),
// and tells the observer of the whole wait. The reason is the longer of
// the two.
func (p *Pacer) admitted(t *Permit, sharedWhy Reason) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.cpu.granted(t, now)
	if extra := now.Sub(t.admittedAt); sharedWhy != 0 && extra > 0 {
		if extra > t.waited {
			t.why = sharedWhy
		}
		t.waited += extra
	}
	if p.obs != nil {
		p.obs.Admitted(t.req, t.waited, t.why)
	}
}

// blockedLocked records what holds each lane back from now on: readWhy
// and writeWhy as the pump found them, ReasonQueue for a non-empty lane
// the pump left with no reason (the MaxInFlight places are taken), 0 for
// an empty lane.
func (p *Pacer) blockedLocked(readWhy, writeWhy Reason) {
	for l, why := range [2]Reason{readWhy, writeWhy} {
		switch {
		case p.queue.Len(l == writeLane) == 0:
			why = 0
		case why == 0:
			why = ReasonQueue
		}
		p.clock.why[l] = why
	}
}

// heldLocked reports to the observer a hold until until for why that
// began or grew at now, the credential having been held until before for
// beforeWhy.
func (p *Pacer) heldLocked(now, before time.Time, beforeWhy Reason, until time.Time, why Reason) {
	if p.obs == nil {
		return
	}
	p.obs.Held(why, until, !before.After(now) || beforeWhy != why)
}
