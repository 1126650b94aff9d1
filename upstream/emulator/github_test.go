package emulator_test

import (
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

func TestGitHubLimits(t *testing.T) {
	want := emulator.Limits{PointsPerMinute: 900, MaxConcurrent: 100, PrimaryPerHour: 5000}
	if got := emulator.GitHubLimits(); got != want {
		t.Fatalf("GitHubLimits() = %+v, want github.com's %+v", got, want)
	}

	// Enforced as github.com does: the primary quota is announced, and on a
	// clock that stands still 180 writes (5 points each) fill the 900-point
	// budget, so the 181st gets the secondary answer with Retry-After.
	e := newEnv(t, emulator.Options{
		Clock:  fixedClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		Limits: emulator.GitHubLimits(),
	})
	r := e.want(e.do("GET", listOrg, nil), 200)
	if got := r.header.Get("X-RateLimit-Limit"); got != "5000" {
		t.Errorf("X-RateLimit-Limit %q, want 5000", got)
	}
	budget := 900 - 1 // the GET above
	for i := range budget / 5 {
		if r := e.do("PUT", "/"+repoActs+"/secrets/X", "{"); r.status != 400 {
			t.Fatalf("write %d: status %d within the budget; body %s", i+1, r.status, r.body)
		}
	}
	if st := e.emu.Stats(); st.Points != 1+(budget/5)*5 || st.SecondaryViolations != 0 {
		t.Fatalf("stats %+v before the budget is spent", st)
	}
	// 4 points are left, fewer than a write costs.
	if ra := e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{"), 403); ra < 1 {
		t.Errorf("secondary answer without Retry-After (%d)", ra)
	}
}
