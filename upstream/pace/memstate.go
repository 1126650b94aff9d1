package pace

import (
	"context"
	"slices"
	"sync"
	"time"
)

// An Entry is one request in a State's record: its points and writes
// count until Window (the writes: a minute and WritesHour) after End,
// which is its completion, or, while it is in flight, its start plus
// InFlightLease.
type Entry struct {
	ID       string
	Points   int
	Writes   int
	End      time.Time
	InFlight bool
	// Others marks the other replicas' use as a snapshot said it (Redis
	// unreachable): it counts against the budgets, but is no request.
	Others bool
	// CPU is its response time for the CPU-time budget: once done, what
	// it took (Grant.Took); while in flight, what it is expected to take
	// (Reserve), and it counts the longer of that and its time so far
	// (Charge).
	CPU time.Duration
	// Reserve is what it was expected to take (Grant.CPU).
	Reserve time.Duration
}

// Charge returns what e counts against the CPU-time budget at now (while
// it still counts at all: until Window after End): what it took, or in
// flight the longer of its time so far, at most InFlightCounted (a dead
// replica's request stops growing then), and its CPU. An entry that stands
// for the others' use, or one in flight past its InFlightLease (a dead
// replica's), counts its CPU.
func (e *Entry) Charge(now time.Time) time.Duration {
	if !e.growing(now) {
		return e.CPU
	}
	since := now.Sub(e.End.Add(-InFlightLease))
	return max(min(since, InFlightCounted), e.CPU)
}

// Holds are a State's primary-limit state and secondary pause.
type Holds struct {
	PauseUntil  time.Time
	PauseReason Reason
	// Probe is whether PauseUntil ends a pause GitHub gave no length for
	// and no probe's answer has shown the limit lifted since: once it is
	// over, one request at a time goes (Verdict.Probe).
	Probe bool
	// Refusals counts the refusals in a row that said nothing of how long
	// to wait, one per incident, every replica's: the next such pause is
	// at least EscalatedPause of it, whichever replica is refused (the
	// probe).
	Refusals         int
	PrimaryReset     time.Time // RateLimit.Resume of the window; zero: not known
	PrimaryRemaining int
}

// merge takes in o: the later pause (and whether it needs a probe: the
// pause that ends last says, as in Budget), the more refusals in a row,
// and of the primary windows the later one, or of the same one (resets
// SameReset apart or closer) the lower remaining and the later reset.
func (h *Holds) merge(o Holds) {
	if o.PauseUntil.After(h.PauseUntil) {
		h.PauseUntil, h.PauseReason, h.Probe = o.PauseUntil, o.PauseReason, o.Probe
	}
	h.Refusals = max(h.Refusals, o.Refusals)
	switch {
	case o.PrimaryReset.IsZero():
	case h.PrimaryReset.IsZero() || o.PrimaryReset.After(h.PrimaryReset.Add(SameReset)):
		h.PrimaryReset, h.PrimaryRemaining = o.PrimaryReset, o.PrimaryRemaining
	case !o.PrimaryReset.Before(h.PrimaryReset.Add(-SameReset)):
		h.PrimaryRemaining = min(h.PrimaryRemaining, o.PrimaryRemaining)
		h.PrimaryReset = later(h.PrimaryReset, o.PrimaryReset)
	}
}

// FromAnswer returns the holds an answer at now tells: a pause after a
// refusal (RateLimit.Pause with secondary), which needs a probe when the
// answer said nothing of how long it lasts, and the primary window (until
// RateLimit.Resume).
func FromAnswer(now time.Time, rl RateLimit, secondary time.Duration) Holds {
	var h Holds
	if reset := rl.Resume(); rl.Remaining >= 0 && reset.After(now) {
		h.PrimaryReset, h.PrimaryRemaining = reset, rl.Remaining
	}
	if rl.Refused {
		d, why := rl.Pause(now, secondary)
		h.PauseUntil, h.PauseReason, h.Probe = now.Add(d), why, !rl.Hinted(now)
	}
	return h
}

// MemoryState is a State kept in memory, for one replica: the embedded
// default. It is also the local record a shared State keeps of its own
// requests, to fall back on and to re-seed its store from. It is safe for
// concurrent use.
type MemoryState struct {
	lim StateLimits

	mu      sync.Mutex
	entries map[string]*Entry
	holds   Holds
	holder  string    // the write slot's holder; "" when free
	until   time.Time // the holder's lease
	last    time.Time // when the last write started
	prev    time.Time // last, before the holder's write started
	// prober is the grant that is the probe (Holds.Probe), until its
	// lease ends at proberUntil; "" when none.
	prober      string
	proberUntil time.Time
}

// NewMemoryState returns an empty MemoryState enforcing lim.
func NewMemoryState(lim StateLimits) *MemoryState {
	return &MemoryState{lim: lim, entries: map[string]*Entry{}}
}

// Limits returns the limits s enforces.
func (s *MemoryState) Limits() StateLimits { return s.lim }

// Start implements State.
func (s *MemoryState) Start(_ context.Context, now time.Time, g Grant) Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.checkLocked(now, g); !v.OK {
		return v
	}
	return Verdict{OK: true, At: now, Probe: s.recordLocked(now, g)}
}

// Check returns what Start would answer, spending nothing.
func (s *MemoryState) Check(now time.Time, g Grant) Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked(now, g)
}

// Record records g as granted at now whatever the limits say: a grant
// made by a shared store, kept as the local record. Out of a pause that
// needs a probe, g becomes the record's probe when none is out, so that
// its answer lifts the record's pause as it lifts the store's.
func (s *MemoryState) Record(now time.Time, g Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(now, g)
}

// Done implements State.
func (s *MemoryState) Done(_ context.Context, now time.Time, g Grant, rl RateLimit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[g.ID]
	if e == nil {
		// Unknown (pruned, or granted elsewhere): it still counts.
		e = &Entry{ID: g.ID, Points: g.Cost, Reserve: g.CPU}
		if g.Write {
			e.Writes = 1
		}
		s.entries[g.ID] = e
	}
	e.End, e.InFlight = now, false
	if s.lim.CPUPerMinute > 0 {
		e.CPU = g.Took
	}
	if g.Write && s.holder == g.ID {
		s.holder = ""
	}
	if s.prober == g.ID {
		// The probe's answer: no refusal lifts the limit; a refusal
		// pauses again (below), and without an answer (status 0) the
		// next request probes.
		s.prober = ""
		if !rl.Refused && rl.Status != 0 {
			s.holds.Probe = false
		}
	}
	a := FromAnswer(now, rl, g.PauseOr(s.lim.SecondaryPause))
	switch {
	case a.Probe: // a refusal that said nothing of how long to wait
		if !s.holds.PauseUntil.After(now) {
			s.holds.Refusals++ // the first of its incident
		}
		a.PauseUntil = later(a.PauseUntil, now.Add(EscalatedPause(s.lim.SecondaryPause, s.holds.Refusals)))
	case !rl.Refused && rl.Status != 0 && !s.holds.PauseUntil.After(now):
		// An answer that is no refusal, once the pause is over: an
		// answer to a request sent before it is no sign it has passed.
		s.holds.Refusals = 0
	}
	s.holds.merge(a)
}

// Unsent implements State.
func (s *MemoryState) Unsent(_ context.Context, _ time.Time, g Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, g.ID)
	if g.Write && s.holder == g.ID {
		s.holder, s.last = "", s.prev
	}
	if s.prober == g.ID {
		s.prober = "" // never sent: the next request probes
	}
}

// Entries returns the record's entries that still count at now, oldest
// End first.
func (s *MemoryState) Entries(now time.Time) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	out := make([]Entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return a.End.Compare(b.End) })
	return out
}

// Add adds entries to the record (an id already there keeps its entry).
func (s *MemoryState) Add(entries ...Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if _, ok := s.entries[e.ID]; !ok {
			s.entries[e.ID] = &e
		}
	}
}

// growing reports whether e's charge grows with its time so far at now:
// a request in flight within its InFlightLease.
func (e *Entry) growing(now time.Time) bool {
	return e.InFlight && !e.Others && e.End.After(now)
}

// Usage is what a record's entries count at a moment: points and writes
// in the minute, writes in the hour, response time in the minute
// (Entry.Charge), and of each what is in flight.
type Usage struct {
	Points, PointsInFlight         int
	WritesMinute, WritesMinuteLive int // live: in flight
	WritesHour, WritesHourLive     int
	CPU, CPUInFlight               time.Duration
}

// Usage returns what the record's entries count at now.
func (s *MemoryState) Usage(now time.Time) Usage { return s.usage(now, true) }

// OwnUsage returns what the record's requests count at now: Usage without
// the entries that stand for the others' use (Entry.Others). It drops the
// entries that count in no window any more, in one pass over the record.
func (s *MemoryState) OwnUsage(now time.Time) Usage { return s.usage(now, false) }

func (s *MemoryState) usage(now time.Time, others bool) Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	var u Usage
	for _, e := range s.entries {
		if e.Others && !others {
			continue
		}
		if e.End.Add(Window).After(now) {
			u.Points += e.Points
			u.WritesMinute += e.Writes
			c := e.Charge(now)
			u.CPU += c
			if e.InFlight {
				u.PointsInFlight += e.Points
				u.WritesMinuteLive += e.Writes
				u.CPUInFlight += c
			}
		}
		if e.End.Add(WritesHour).After(now) {
			u.WritesHour += e.Writes
			if e.InFlight {
				u.WritesHourLive += e.Writes
			}
		}
	}
	return u
}

// Remove drops entries from the record.
func (s *MemoryState) Remove(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.entries, id)
	}
}

// Holds returns the pause and primary-limit state.
func (s *MemoryState) Holds() Holds {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holds
}

// MergeHolds takes in a shared store's word on the holds, h: the later
// pause, the later primary window. Of the pause the record has already
// (the same end), it needs a probe only while h says so too: the store
// lifts it when a probe's answer, on any replica, was no refusal, and
// never asks for a probe again for the same pause.
func (s *MemoryState) MergeHolds(h Holds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mergeSharedLocked(h)
}

func (s *MemoryState) mergeSharedLocked(h Holds) {
	same := !h.PauseUntil.IsZero() && h.PauseUntil.Equal(s.holds.PauseUntil)
	s.holds.merge(h)
	if same && !h.Probe {
		s.holds.Probe = false
	}
}

// RecordProbe records g as granted at now as the probe a shared store made
// it (Verdict.Probe), out of the pause h tells: the record takes in h
// (MergeHolds), the pause as needing a probe, and g as its probe for
// ProbeLease, or until its answer. A fallback on the record then sends no
// second probe while g is out, and a re-seeding of the store from it gives
// the role back to g (Prober).
func (s *MemoryState) RecordProbe(now time.Time, g Grant, h Holds) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mergeSharedLocked(h)
	if !h.PauseUntil.IsZero() && h.PauseUntil.Equal(s.holds.PauseUntil) {
		s.holds.Probe = true
	}
	s.recordLocked(now, g)
	s.prober, s.proberUntil = g.ID, now.Add(ProbeLease)
}

// Prober returns the grant that is the record's probe at now and the end of
// its lease: one of this record's grants (Record, RecordProbe), not yet
// answered nor unsent, whose lease runs. It returns "" when there is none,
// or when the record needs no probe at now.
func (s *MemoryState) Prober(now time.Time) (id string, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prober == "" || !s.proberUntil.After(now) || !s.probingLocked(now) {
		return "", time.Time{}
	}
	return s.prober, s.proberUntil
}

// LastWrite returns when the last write started; zero when none did.
func (s *MemoryState) LastWrite() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// SetLastWrite moves the last write's start to at, when later.
func (s *MemoryState) SetLastWrite(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.After(s.last) {
		s.last = at
	}
}

// recordLocked records g as granted at now, and reports whether it is the
// probe: out of a pause that needs one, with no other probe's lease
// running, it takes the role for ProbeLease.
func (s *MemoryState) recordLocked(now time.Time, g Grant) bool {
	e := &Entry{ID: g.ID, Points: g.Cost, End: now.Add(InFlightLease), InFlight: true}
	if s.lim.CPUPerMinute > 0 {
		e.CPU, e.Reserve = g.CPU, g.CPU
	}
	if g.Write {
		e.Writes = 1
		if s.lim.WriteInterval > 0 {
			s.holder, s.until = g.ID, now.Add(s.lim.Lease())
			s.prev, s.last = s.last, now
		}
	}
	s.entries[g.ID] = e
	if !s.probingLocked(now) {
		return false
	}
	if s.prober == "" || s.prober == g.ID || !s.proberUntil.After(now) {
		s.prober, s.proberUntil = g.ID, now.Add(ProbeLease)
	}
	return s.prober == g.ID
}

// probingLocked reports whether, at now, the credential is out of a pause
// that needs a probe, and no probe's answer has lifted it.
func (s *MemoryState) probingLocked(now time.Time) bool {
	return s.holds.Probe && !s.holds.PauseUntil.IsZero() && !s.holds.PauseUntil.After(now)
}

// checkLocked decides g at now: the latest of what holds it back.
func (s *MemoryState) checkLocked(now time.Time, g Grant) Verdict {
	s.pruneLocked(now)
	v := Verdict{OK: true, At: now}
	// later makes v wait until at for why when that is later than what
	// v waits for; it reports whether it did. A hold of the whole
	// credential sets Held after it.
	later := func(at time.Time, why Reason) bool {
		if !at.After(v.At) {
			return false
		}
		v.OK, v.At, v.Why, v.Held = false, at, why, false
		return true
	}
	if s.holds.PauseUntil.After(now) && later(s.holds.PauseUntil, s.holds.PauseReason) {
		v.Held = true
	}
	if !s.holds.PrimaryReset.IsZero() && s.holds.PrimaryRemaining <= 0 && later(s.holds.PrimaryReset, ReasonPrimary) {
		v.Held = true
	}
	if s.probingLocked(now) && s.prober != "" && s.prober != g.ID && s.proberUntil.After(now) {
		// Another grant is the probe: ask again soon, at the latest
		// when its lease ends.
		later(earliest(s.proberUntil, now.Add(SlotPoll)), ReasonPause)
		v.Probe = true
	}
	if reset, left := s.holds.PrimaryReset, s.holds.PrimaryRemaining; reset.After(now) && left > 0 {
		// The requests in flight on every replica may not use up what is
		// left of the primary quota: their answers, not yet in, will say
		// what is left. A replica on its own share (Replicas) keeps to
		// its part of it.
		if n := s.lim.Replicas; n > 1 {
			left /= n
		}
		switch {
		case left == 0: // this replica's part is nothing: until the reset
			if later(reset, ReasonPrimary) {
				v.Held = true
			}
		case s.inFlightLocked(now) >= left: // ask again soon
			later(earliest(reset, now.Add(SlotPoll)), ReasonPrimary)
		}
	}
	if n := s.lim.MaxInFlight; n > 0 && s.inFlightLocked(now) >= n {
		// GitHub's limit on requests in flight, every replica's together:
		// ask again soon.
		later(now.Add(SlotPoll), ReasonQueue)
	}
	if lim := s.lim.PointsPerMinute; lim > 0 {
		later(s.freeAt(now, Window, lim, g.Cost, func(e *Entry) int { return e.Points }), ReasonBudget)
	}
	if lim := s.lim.CPUPerMinute; lim > 0 {
		later(s.cpuFreeAt(now, lim, min(g.CPU, lim)), ReasonCPU)
	}
	if g.Write {
		if iv := s.lim.WriteInterval; iv > 0 {
			if !s.last.IsZero() {
				later(s.last.Add(iv), ReasonSpacing)
			}
			if s.holder != "" && s.until.After(now) {
				// Another replica's write is in flight: ask again soon,
				// at the latest when its lease ends.
				later(earliest(s.until, now.Add(SlotPoll)), ReasonSpacing)
			}
		}
		writes := func(e *Entry) int { return e.Writes }
		if lim := s.lim.WritesPerMinute; lim > 0 {
			later(s.freeAt(now, Window, lim, 1, writes), ReasonContent)
		}
		if lim := s.lim.WritesPerHour; lim > 0 {
			later(s.freeAt(now, WritesHour, lim, 1, writes), ReasonContent)
		}
	}
	return v
}

// inFlightLocked counts the requests granted and not yet done that
// started within InFlightCounted (a killed replica's stop counting then).
// The other replicas' use a snapshot seeded (Redis unreachable; Others) is
// no request of this store's, and does not count.
func (s *MemoryState) inFlightLocked(now time.Time) int {
	since := now.Add(InFlightLease - InFlightCounted)
	n := 0
	for _, e := range s.entries {
		if e.InFlight && !e.Others && e.End.After(since) {
			n++
		}
	}
	return n
}

// SlotPoll is how often a write waiting for another replica's write slot,
// or a request waiting for one in flight to be answered (the primary
// quota), asks again.
const SlotPoll = 50 * time.Millisecond

// freeAt returns when need more of what weight counts fit limit over a
// sliding window: now, or when enough entries leave it. A need above the
// limit never fits; it gets now plus the window.
func (s *MemoryState) freeAt(now time.Time, window time.Duration, limit, need int, weight func(*Entry) int) time.Time {
	used := 0
	var live []*Entry
	for _, e := range s.entries {
		if w := weight(e); w > 0 && e.End.Add(window).After(now) {
			used += w
			live = append(live, e)
		}
	}
	over := used + need - limit
	if over <= 0 {
		return now
	}
	slices.SortFunc(live, func(a, b *Entry) int { return a.End.Compare(b.End) })
	for _, e := range live {
		if over -= weight(e); over <= 0 {
			return e.End.Add(window)
		}
	}
	return now.Add(window)
}

// cpuFreeAt returns when need more response time fits limit over a
// sliding Window: now, or when enough entries of a fixed charge (completed,
// or standing for the others' use) leave it. When it fits only once
// requests in flight complete (their charge, which grows while they run,
// becomes what they took), it returns now plus SlotPoll: ask again soon.
func (s *MemoryState) cpuFreeAt(now time.Time, limit, need time.Duration) time.Time {
	used := time.Duration(0)
	var fixed []*Entry
	for _, e := range s.entries {
		if !e.End.Add(Window).After(now) {
			continue
		}
		c := e.Charge(now)
		used += c
		if !e.growing(now) && c > 0 {
			fixed = append(fixed, e)
		}
	}
	over := used + need - limit
	if over <= 0 {
		return now
	}
	slices.SortFunc(fixed, func(a, b *Entry) int { return a.End.Compare(b.End) })
	for _, e := range fixed {
		if over -= e.CPU; over <= 0 {
			return e.End.Add(Window)
		}
	}
	return now.Add(SlotPoll)
}

// pruneLocked drops the entries that count in no window any more.
func (s *MemoryState) pruneLocked(now time.Time) {
	for id, e := range s.entries {
		span := Window
		if e.Writes > 0 && s.lim.WritesPerHour > 0 {
			span = WritesHour
		}
		if !e.End.Add(span).After(now) {
			delete(s.entries, id)
		}
	}
}
