package clock

import (
	"context"
	"testing"
	"time"
)

func TestScaledRunsFaster(t *testing.T) {
	c, err := Scaled(1000)
	if err != nil {
		t.Fatal(err)
	}
	t0 := c.Now()
	wall := time.Now()
	tm := c.NewTimer(2 * time.Second) // 2 ms of wall time
	<-tm.C
	got := c.Now().Sub(t0)
	if got < 2*time.Second {
		t.Errorf("after a 2 s timer the clock moved %v, want at least 2s", got)
	}
	if w := time.Since(wall); w > time.Second {
		t.Errorf("a 2 s timer at 1000x took %v of wall time", w)
	}
}

func TestScaledNeverGoesBackwards(t *testing.T) {
	c, err := Scaled(50)
	if err != nil {
		t.Fatal(err)
	}
	prev := c.Now()
	for range 10000 {
		now := c.Now()
		if now.Before(prev) {
			t.Fatalf("clock went from %v back to %v", prev, now)
		}
		prev = now
	}
}

func TestScaledRejectsBadFactors(t *testing.T) {
	for _, f := range []float64{0, 0.5, -1, 2e6} {
		if _, err := Scaled(f); err == nil {
			t.Errorf("Scaled(%v) succeeded", f)
		}
	}
}

func TestReal(t *testing.T) {
	c := Real()
	if d := time.Since(c.Now()); d < 0 || d > time.Second {
		t.Errorf("Real().Now() is %v away from time.Now()", d)
	}
	tm := c.NewTimer(time.Millisecond)
	<-tm.C
}

func TestDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, ok := Deadline(Real(), context.Background()); ok {
		t.Error("a context without a deadline has one")
	}
	wall, _ := ctx.Deadline()
	if d, ok := Deadline(Real(), ctx); !ok || !d.Equal(wall) {
		t.Errorf("real clock: deadline %v, want %v", d, wall)
	}
	c, err := Scaled(100)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := Deadline(c, ctx)
	if away := d.Sub(c.Now()); !ok || away < 99*time.Hour || away > 100*time.Hour {
		t.Errorf("scaled clock: deadline %v away, want about 100h", away)
	}
}

func TestSleep(t *testing.T) {
	c, err := Scaled(1000)
	if err != nil {
		t.Fatal(err)
	}
	start := c.Now()
	if err := Sleep(t.Context(), c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Now().Sub(start); got < 5*time.Second {
		t.Errorf("slept %v of clock time, want at least 5s", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, c, time.Hour); err != context.Canceled {
		t.Errorf("Sleep with an ended context = %v, want context.Canceled", err)
	}
}
