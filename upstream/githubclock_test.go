package upstream_test

// GitHub's clock is not this machine's: the pacer reads GitHub's times
// (x-ratelimit-reset) against the answers' Date when the clocks are more
// than two seconds apart, and keeps a margin after a reset for the
// difference it does not correct, so that no request reaches GitHub
// before its quota's window has reset by GitHub's clock.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// behindGitHub serves requests in memory with h (an emulator, on the
// bubble's clock) as a GitHub whose clock is behind this machine's by
// behind, whole seconds: its Date and x-ratelimit-reset are on its clock.
// Request n reaches it after latency(n), and its answer comes back
// back(n) after GitHub dated it (nil: at once).
type behindGitHub struct {
	h             http.Handler
	behind        time.Duration
	latency, back func(n int) time.Duration

	mu sync.Mutex
	n  int
}

func (g *behindGitHub) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	n := g.n
	g.n++
	g.mu.Unlock()
	if g.latency != nil {
		time.Sleep(g.latency(n))
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, r)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	resp := rec.Result()
	resp.Header.Set("Date", time.Now().Add(-g.behind).UTC().Format(http.TimeFormat))
	if v := resp.Header.Get("X-Ratelimit-Reset"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, err
		}
		resp.Header.Set("X-Ratelimit-Reset", strconv.FormatInt(secs-int64(g.behind/time.Second), 10))
	}
	if g.back != nil {
		time.Sleep(g.back(n))
	}
	return resp, nil
}

// A credential whose primary quota is used up sends again once the
// quota's window has reset by GitHub's clock, whichever way and however
// far the clocks disagree: GitHub refuses none of the requests that
// waited for the reset (up to MaxInFlight of them went at once), and they
// go within the margin after it, not a minute's pause later.
func TestPrimaryQuotaResumesAfterGitHubsReset(t *testing.T) {
	const quota, waiting = 10, 10
	for _, tt := range []struct {
		name   string
		behind time.Duration // GitHub's clock behind this machine's
	}{
		{"same clock", 0},
		{"GitHub 1 s behind", time.Second},
		{"GitHub 2 s behind", 2 * time.Second},
		{"GitHub 3 s behind: read against Date", 3 * time.Second},
		{"GitHub 1 min behind: read against Date", time.Minute},
		{"GitHub 1 s ahead", -time.Second},
		{"GitHub 1 min ahead: read against Date", -time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.Limits{PrimaryPerHour: quota}})
				emu.AddOrg("octo")
				// Answers land on every tenth of a second.
				gh := &behindGitHub{h: emu, behind: tt.behind,
					latency: func(n int) time.Duration { return time.Duration(n*137%1000) * time.Millisecond }}
				pacing := upstream.DefaultPacing()
				c, err := upstream.New(upstream.Config{BaseURL: "https://github.example", Token: replicaToken,
					HTTPClient: &http.Client{Transport: gh}, Pacing: &pacing})
				if err != nil {
					t.Fatal(err)
				}
				scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
				start := time.Now()
				for range quota {
					if _, err := c.GetPublicKey(t.Context(), scope); err != nil {
						t.Fatal(err)
					}
				}
				// The emulator's window began with the first request and
				// ends an hour later, on a whole second.
				reset := start.Add(time.Hour)
				var wg sync.WaitGroup
				for range waiting {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(t.Context(), 2*time.Hour)
						defer cancel()
						if _, err := c.GetPublicKey(ctx, scope); err != nil {
							t.Errorf("a call that waited for the reset: %v", err)
						}
						if late := time.Since(reset); late > 5*time.Second {
							t.Errorf("a call that waited for the reset was answered %v after it", late)
						}
					})
				}
				wg.Wait()
				if st := emu.Stats(); st.PrimaryViolations != 0 {
					t.Errorf("GitHub refused %d requests past the primary quota (%+v)", st.PrimaryViolations, st)
				}
			})
		})
	}
}

// Answers of one primary window name its reset seconds apart on this
// clock once an answer's Date is more than two seconds old when it
// arrives (a clock a little off GitHub's, an answer long on its way):
// ParseRateLimit reads the reset against Date then. The pacer takes them
// as one window all the same, and GitHub refuses none of its requests as
// the quota runs out. (Taken for a later window, an answer with more
// left replaced what was known, and the answers after it, a few seconds
// earlier, were ignored, "remaining 0" among them.)
func TestPrimaryQuotaOneWindowWhateverTheDelay(t *testing.T) {
	const quota, callers = 40, 10
	for _, tt := range []struct {
		name   string
		behind time.Duration
		back   func(n int) time.Duration
	}{
		{"answers 0 to 4 s on their way", 0, func(n int) time.Duration { return time.Duration(n*1237%4000) * time.Millisecond }},
		{"GitHub 1 s behind, answers 0 to 1.5 s on their way", time.Second, func(n int) time.Duration { return time.Duration(n*1237%1500) * time.Millisecond }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				emu := emulator.New(emulator.Options{Token: replicaToken, Limits: emulator.Limits{PrimaryPerHour: quota}})
				emu.AddOrg("octo")
				gh := &behindGitHub{h: emu, behind: tt.behind, back: tt.back}
				pacing := upstream.DefaultPacing()
				pacing.MaxAttempts = 1
				c, err := upstream.New(upstream.Config{BaseURL: "https://github.example", Token: replicaToken,
					HTTPClient: &http.Client{Transport: gh}, Pacing: &pacing})
				if err != nil {
					t.Fatal(err)
				}
				scope := upstream.Scope{App: upstream.Actions, Org: "octo"}
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range quota/callers + 2 {
							// The calls past the quota are refused by the
							// pacer: the reset is an hour away.
							ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
							_, err := c.GetPublicKey(ctx, scope)
							cancel()
							if _, throttled := errors.AsType[*upstream.ThrottledError](err); err != nil && !throttled {
								t.Errorf("a call failed, not refused by the pacer: %v", err)
							}
						}
					})
				}
				wg.Wait()
				if st := emu.Stats(); st.PrimaryViolations != 0 || st.Points != quota {
					t.Errorf("GitHub refused %d requests past the primary quota and answered %d of its %d (%+v)", st.PrimaryViolations, st.Points, quota, st)
				}
			})
		})
	}
}
