package credential

import (
	"strconv"
	"testing"
	"time"
)

// The rate-limit refusals App.For remembers are bounded as the owners
// without an installation are: at most maxNotInstalled, those whose time
// is over dropped first when full; a refusal whose time is over already
// is not remembered, and an owner remembered already is updated.
func TestRememberLimitedBounded(t *testing.T) {
	now := time.Now()
	retryAt := func(he *HTTPError) time.Time { return he.RetryAt }
	tests := []struct {
		name    string
		full    bool
		expired int // of the maxNotInstalled remembered, when full
		key     string
		retryAt time.Time
		want    bool
	}{
		{"room", false, 0, "newcomer", now.Add(time.Minute), true},
		{"time over", false, 0, "newcomer", now, false},
		{"full, none over", true, 0, "newcomer", now.Add(time.Minute), false},
		{"full, some over", true, 10, "newcomer", now.Add(time.Minute), true},
		{"full, remembered already", true, 0, "owner-500", now.Add(2 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &App{limited: map[string]*HTTPError{}}
			if tt.full {
				for i := range maxNotInstalled {
					until := now.Add(time.Hour)
					if i < tt.expired {
						until = now.Add(-time.Second)
					}
					a.limited["owner-"+strconv.Itoa(i)] = &HTTPError{RateLimited: true, RetryAt: until}
				}
			}
			he := &HTTPError{RateLimited: true, RetryAt: tt.retryAt}
			rememberUntil(a.limited, tt.key, he, now, retryAt)
			if got := a.limited[tt.key] == he; got != tt.want {
				t.Errorf("%s remembered: %v, want %v", tt.key, got, tt.want)
			}
			if len(a.limited) > maxNotInstalled {
				t.Errorf("%d owners remembered, want at most %d", len(a.limited), maxNotInstalled)
			}
		})
	}
}
