package emulator_test

import (
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func TestGitHubLimits(t *testing.T) {
	want := emulator.Limits{PointsPerMinute: 900, MaxConcurrent: 100, PrimaryPerHour: 5000, WritesPerMinute: 80, WritesPerHour: 500,
		CPUPerMinute: 90 * time.Second}
	if got := emulator.GitHubLimits(); got != want {
		t.Fatalf("GitHubLimits() = %+v, want github.com's %+v", got, want)
	}

	// Enforced as github.com does: the primary quota is announced, and at
	// one instant t0, 180 writes (5 points each) fill the 900-point
	// budget, so the 181st gets the secondary answer with Retry-After 60
	// and starts the 60 s penalty. At t0+60s exactly the penalty is over
	// and the 180 writes have left the points window. (The content
	// limits, which 180 writes a minute exceed, are off here; see
	// TestContentLimits.)
	points := emulator.GitHubLimits()
	points.WritesPerMinute, points.WritesPerHour = 0, 0
	inBubble(t, emulator.Options{Limits: points}, func(t *testing.T, e *env, t0 time.Time) {
		const write = "/" + repoActs + "/secrets/X"
		for i := range 180 {
			r := e.do("PUT", write, "{")
			if r.status != 400 {
				t.Fatalf("write %d: status %d within the budget; body %s", i+1, r.status, r.body)
			}
			if got := r.header.Get("X-RateLimit-Limit"); i == 0 && got != "5000" {
				t.Errorf("X-RateLimit-Limit %q, want 5000", got)
			}
		}
		if st := e.emu.Stats(); st.Points != 900 || st.SecondaryViolations != 0 {
			t.Fatalf("stats %+v before the budget is spent", st)
		}
		if ra := e.wantSecondary(e.do("PUT", write, "{"), 403); ra != 60 {
			t.Errorf("the 181st write at t0: Retry-After %d, want 60", ra)
		}
		// Even a GET, which the window would not fit either, meets the
		// penalty until its last nanosecond.
		sleepUntil(t, t0.Add(time.Minute-time.Nanosecond))
		if ra := e.wantSecondary(e.do("GET", listOrg, nil), 403); ra != 1 {
			t.Errorf("GET at t0+60s-1ns: Retry-After %d, want 1", ra)
		}
		sleepUntil(t, t0.Add(time.Minute))
		e.want(e.do("PUT", write, "{"), 400)
		if st := e.emu.Stats(); st.Points != 905 || st.SecondaryViolations != 2 {
			t.Errorf("stats %+v, want 905 points and 2 violations", st)
		}
	})
}
