package upstream

import (
	"testing"
	"time"
)

func TestWritesDuration(t *testing.T) {
	def := DefaultPacing()
	off := Pacing{WriteInterval: 10 * time.Millisecond, MaxAttempts: 1}
	tests := []struct {
		name string
		p    Pacing
		n    int
		want time.Duration
	}{
		{"none", def, 0, 0},
		{"negative", def, -3, 0},
		{"one write", def, 1, time.Second},
		{"a minute's budget fits", def, 60, 60 * time.Second},
		{"the minute budget binds", def, 161, 2*time.Minute + 41*time.Second},
		{"the hour budget binds", def, 1000, time.Hour},
		{"the hour budget binds twice", def, 1001, 2 * time.Hour},
		{"budgets off", off, 1000, 10 * time.Second},
		{"no spacing, minute budget", Pacing{WritesPerMinute: 80}, 81, time.Minute},
	}
	for _, tt := range tests {
		if got := tt.p.WritesDuration(tt.n); got != tt.want {
			t.Errorf("%s: WritesDuration(%d) = %v, want %v", tt.name, tt.n, got, tt.want)
		}
	}
	c, err := New(Config{BaseURL: "https://api.github.com", Pacing: &off})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Pacing(); got.WriteInterval != off.WriteInterval || got.MaxInFlight != DefaultPacing().MaxInFlight {
		t.Errorf("Pacing() = %+v: want the configured interval and the default MaxInFlight filled in", got)
	}
}
