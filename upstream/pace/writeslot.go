package pace

import "time"

// WriteSlot serializes and spaces mutating requests, as GitHub asks (and
// as octokit's throttling does): one write in flight at a time, each
// starting at least the interval after the previous one started. With an
// interval of 0 writes are neither serialized nor spaced (GitHub
// Enterprise Server with rate limits turned off).
//
// Times are passed in; a WriteSlot reads no clock. It is not safe for
// concurrent use.
type WriteSlot struct {
	interval time.Duration
	busy     bool
	last     time.Time // when the write in flight, or the last write, started
	prev     time.Time // last, before the write in flight started
}

// NewWriteSlot returns a slot whose writes start interval apart.
func NewWriteSlot(interval time.Duration) *WriteSlot {
	return &WriteSlot{interval: max(interval, 0)}
}

// Interval returns the spacing of the writes; 0 when off.
func (s *WriteSlot) Interval() time.Duration { return s.interval }

// Next returns the earliest time, now or later, the next write may start
// by the clock; busy reports that it must also wait for the write in
// flight to complete.
func (s *WriteSlot) Next(now time.Time) (at time.Time, busy bool) {
	if s.interval <= 0 {
		return now, false
	}
	at = now
	if next := s.last.Add(s.interval); !s.last.IsZero() && next.After(at) {
		at = next
	}
	return at, s.busy
}

// Estimate returns when, at the earliest, a write with ahead writes
// queued before it may start, none of them starting before from (which
// is now or later): the slot's next start, then ahead intervals. It
// assumes the write in flight, if any, completes in time.
func (s *WriteSlot) Estimate(from time.Time, ahead int) time.Time {
	if s.interval <= 0 {
		return from
	}
	at, _ := s.Next(from)
	return at.Add(time.Duration(ahead) * s.interval)
}

// Start takes the slot for a write dispatched at now.
func (s *WriteSlot) Start(now time.Time) {
	if s.interval <= 0 {
		return
	}
	s.busy = true
	s.prev, s.last = s.last, now
}

// Done frees the slot when the write completes.
func (s *WriteSlot) Done() { s.busy = false }

// Unsent frees the slot of a started write that was never sent and gives
// its place in the spacing back: the next write need not wait the
// interval after it.
func (s *WriteSlot) Unsent() {
	if s.interval <= 0 || !s.busy {
		return
	}
	s.busy = false
	s.last = s.prev
}
