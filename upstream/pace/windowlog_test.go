package pace

import (
	"testing"
	"time"
)

// The window log of the points and CPU-time budgets: what counts, and
// when enough of it leaves the window.
func TestWindowLog(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var l windowLog[time.Duration]
	l.add(t0, 3*time.Second)
	l.add(t0.Add(10*time.Second), 2*time.Second)
	l.add(t0.Add(20*time.Second), 4*time.Second)
	tests := []struct {
		name   string
		now    time.Time
		over   time.Duration
		sum    time.Duration
		at     time.Time
		wantOK bool
	}{
		{"the oldest is enough", t0.Add(30 * time.Second), 3 * time.Second, 9 * time.Second, t0.Add(Window), true},
		{"two are needed", t0.Add(30 * time.Second), 4 * time.Second, 9 * time.Second, t0.Add(10*time.Second + Window), true},
		{"all are not enough", t0.Add(30 * time.Second), 10 * time.Second, 9 * time.Second, time.Time{}, false},
		{"the oldest has left", t0.Add(Window), 2 * time.Second, 6 * time.Second, t0.Add(10*time.Second + Window), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.prune(tt.now)
			if l.sum != tt.sum {
				t.Errorf("sum = %v, want %v", l.sum, tt.sum)
			}
			if at, ok := l.freeAt(tt.over); !at.Equal(tt.at) || ok != tt.wantOK {
				t.Errorf("freeAt(%v) = %v, %v; want %v, %v", tt.over, at, ok, tt.at, tt.wantOK)
			}
		})
	}
}
