package credential

import (
	"strconv"
	"testing"
	"time"
)

// rememberMissing keeps at most maxNotInstalled owners: when full it drops
// those whose time is over first, and remembers no more while none is.
func TestRememberMissingBounded(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name    string
		expired int // of the maxNotInstalled remembered
		want    bool
	}{
		{"full, none over", 0, false},
		{"full, some over", 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &App{missing: map[string]time.Time{}}
			for i := range maxNotInstalled {
				until := now.Add(time.Hour)
				if i < tt.expired {
					until = now.Add(-time.Second)
				}
				a.missing["owner-"+strconv.Itoa(i)] = until
			}
			a.rememberMissing("newcomer")
			_, got := a.missing["newcomer"]
			if got != tt.want {
				t.Errorf("newcomer remembered: %v, want %v", got, tt.want)
			}
			if len(a.missing) > maxNotInstalled {
				t.Errorf("%d owners remembered, want at most %d", len(a.missing), maxNotInstalled)
			}
			if tt.want && len(a.missing) != maxNotInstalled-tt.expired+1 {
				t.Errorf("%d owners remembered, want the %d whose time is not over and the newcomer", len(a.missing), maxNotInstalled-tt.expired)
			}
		})
	}
}
