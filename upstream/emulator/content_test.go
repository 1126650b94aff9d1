package emulator_test

import (
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// The content-creation limits count PUT and DELETE (not GET) in sliding
// windows of a minute and an hour, at arrival; the request over either
// gets the secondary answer and counts as a content violation.
func TestContentLimits(t *testing.T) {
	const write = "/" + repoActs + "/secrets/X"
	tests := []struct {
		name      string
		perMinute int
		perHour   int
		spacing   time.Duration // between writes
		ok        int           // writes accepted before the first refusal
		retry     int           // its Retry-After, seconds (no penalty)
	}{
		{"minute", 3, 0, time.Second, 3, 57},
		{"hour", 0, 4, time.Minute, 4, 3600 - 4*60},
		{"minute binds first", 2, 10, 0, 2, 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := emulator.Limits{WritesPerMinute: tc.perMinute, WritesPerHour: tc.perHour, SecondaryPenalty: -1}
			inBubble(t, emulator.Options{Limits: lim}, func(t *testing.T, e *env, t0 time.Time) {
				for i := range tc.ok {
					sleepUntil(t, t0.Add(time.Duration(i)*tc.spacing))
					e.want(e.do("PUT", write, "{"), 400)
					e.want(e.do("GET", listOrg, nil), 200) // reads do not count
				}
				sleepUntil(t, t0.Add(time.Duration(tc.ok)*tc.spacing))
				if ra := e.wantSecondary(e.do("DELETE", write, nil), 403); ra != tc.retry {
					t.Errorf("Retry-After %d, want %d", ra, tc.retry)
				}
				st := e.emu.Stats()
				if st.ContentViolations != 1 || st.SecondaryViolations != 1 {
					t.Errorf("stats %+v, want 1 content violation", st)
				}
				// Once the oldest write leaves the window, one more fits.
				sleepUntil(t, t0.Add(time.Duration(tc.ok)*tc.spacing).Add(time.Duration(tc.retry)*time.Second))
				e.want(e.do("PUT", write, "{"), 400)
				if st := e.emu.Stats(); st.ContentViolations != 1 {
					t.Errorf("stats %+v after the window slid", st)
				}
			})
		})
	}
}
