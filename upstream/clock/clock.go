// Package clock owns the notion of time shared by the upstream client's
// pacer and the GitHub emulator: a Clock reads the time and makes timers.
// Real is the wall clock; Scaled runs faster than the wall clock, so that
// tests and benchmarks can live through GitHub's one-minute windows and
// one-second write spacing in milliseconds.
package clock

import (
	"context"
	"fmt"
	"time"
)

// A Clock tells the time and makes timers on that time.
type Clock interface {
	// Now returns the current time. It never goes backwards.
	Now() time.Time
	// NewTimer returns a timer that fires once d of this clock's time has
	// passed. The value sent on its channel is wall-clock time; ignore it.
	NewTimer(d time.Duration) *time.Timer
}

// Real returns the wall clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                       { return time.Now() }
func (realClock) NewTimer(d time.Duration) *time.Timer { return time.NewTimer(d) }

// Scaled returns a clock that starts at the wall-clock time now and runs
// factor times faster: with factor 100, a 60 s wait lasts 600 ms. factor
// must be at least 1.
func Scaled(factor float64) (Clock, error) {
	if !(factor >= 1) || factor > 1e6 {
		return nil, fmt.Errorf("clock: scale factor %v is not between 1 and 1e6", factor)
	}
	return &scaledClock{start: time.Now(), factor: factor}, nil
}

type scaledClock struct {
	start  time.Time // carries a monotonic reading
	factor float64
}

func (c *scaledClock) Now() time.Time {
	elapsed := time.Since(c.start) // monotonic, so Now never goes backwards
	return c.start.Add(time.Duration(float64(elapsed) * c.factor)).Round(0)
}

func (c *scaledClock) NewTimer(d time.Duration) *time.Timer {
	return time.NewTimer(time.Duration(float64(d) / c.factor))
}

// Sleep waits d on c's time, or until ctx ends, and then returns
// ctx.Err(): nil when the whole wait passed.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Deadline returns ctx's deadline on c's time: how far away the deadline
// is on the wall clock, as c counts it. For the wall clock that is the
// deadline itself; on a clock running 100 times faster, a deadline 1 s
// away is 100 s away. ok is false when ctx has no deadline.
func Deadline(c Clock, ctx context.Context) (deadline time.Time, ok bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	sc, scaled := c.(*scaledClock)
	if !scaled {
		return d, true
	}
	return sc.Now().Add(time.Duration(float64(time.Until(d)) * sc.factor)), true
}
