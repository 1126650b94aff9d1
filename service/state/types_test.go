package state

import (
	"testing"
	"time"
)

func TestRecordUpdatedMatches(t *testing.T) {
	at := time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC)
	exact := Record{UpdatedAt: at}
	ranged := Record{UpdatedAt: at, UpdatedAtLatest: at.Add(2 * time.Second)}
	tests := []struct {
		name  string
		rec   Record
		t     time.Time
		known bool
		want  bool
	}{
		{"unknown", Record{}, at, false, false},
		{"exact, same", exact, at, true, true},
		{"exact, same instant in another zone", exact, at.In(time.FixedZone("CET", 3600)), true, true},
		{"exact, a second later", exact, at.Add(time.Second), true, false},
		{"exact, a second earlier", exact, at.Add(-time.Second), true, false},
		{"range, its start", ranged, at, true, true},
		{"range, inside", ranged, at.Add(time.Second), true, true},
		{"range, its end", ranged, at.Add(2 * time.Second), true, true},
		{"range, before", ranged, at.Add(-time.Second), true, false},
		{"range, after", ranged, at.Add(3 * time.Second), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rec.UpdatedKnown(); got != tt.known {
				t.Errorf("UpdatedKnown() = %v, want %v", got, tt.known)
			}
			if got := tt.rec.UpdatedMatches(tt.t); got != tt.want {
				t.Errorf("UpdatedMatches(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
}
