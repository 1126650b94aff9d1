package pace

import "time"

// windowLog is what completed requests count against a budget over a
// sliding Window (points, response time), in completion order (time
// order: events are added with the time of one lock-holding reading,
// which never goes backwards).
type windowLog[T int | time.Duration] struct {
	events []windowEvent[T]
	head   int // events[:head] have left the window
	sum    T   // of events[head:]
}

type windowEvent[T int | time.Duration] struct {
	at time.Time
	n  T
}

func (l *windowLog[T]) add(at time.Time, n T) {
	l.events = append(l.events, windowEvent[T]{at, n})
	l.sum += n
}

// prune drops the events a Window or more before now.
func (l *windowLog[T]) prune(now time.Time) {
	for l.head < len(l.events) && now.Sub(l.events[l.head].at) >= Window {
		l.sum -= l.events[l.head].n
		l.head++
	}
	if l.head > 64 && l.head*2 > len(l.events) {
		l.events = append(l.events[:0], l.events[l.head:]...)
		l.head = 0
	}
}

// freeAt returns when over (positive) has left the window, the events
// leaving it oldest first: the end of the Window of the event that makes
// it. ok is false when all of them together are not enough.
func (l *windowLog[T]) freeAt(over T) (at time.Time, ok bool) {
	for _, e := range l.events[l.head:] {
		if over -= e.n; over <= 0 {
			return e.at.Add(Window), true
		}
	}
	return time.Time{}, false
}
