package redisstate_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// A Redis that loses its data while the probe after a pause GitHub gave no
// length for is out keeps the one probe when the replicas re-seed it:
// until the probe's answer, no other request goes, on either replica,
// during the new epoch's grace (local decisions) or after it (Redis);
// then its answer lifts the limit for both. A learns of the refusal (its
// request was refused) and holds the probe; B either asked during the
// pause or only heartbeated; either replica may be the first to find
// Redis empty; the answer comes within the grace or after it, or before A
// has heard of the loss (it then re-seeds Redis with the limit lifted).
func TestReseedKeepsTheProbe(t *testing.T) {
	type order int
	const (
		aFirst order = iota // A's heartbeat finds Redis empty first
		bFirst              // B's request does
	)
	losses := []struct {
		name string
		lose func(t *testing.T, srv *redistest.Server)
	}{
		{"flushall", flushAll},
		{"restart", restartRedis},
	}
	grace := redisstate.DefaultSeedGrace
	for _, loss := range losses {
		for _, tc := range []struct {
			name    string
			bAsked  bool          // B asked during the pause and the probe (else it only heartbeated)
			first   order         // who finds Redis empty first
			answer  time.Duration // when the probe's answer comes, after the loss
			refused bool          // the answer is a refusal again
		}{
			{"B asked, A notices first, answer after the grace", true, aFirst, grace + 2*time.Second, false},
			{"B asked, B notices first, answer after the grace", true, bFirst, grace + 2*time.Second, false},
			{"B idle, A notices first, answer after the grace", false, aFirst, grace + 2*time.Second, false},
			{"B idle, B notices first, answer after the grace", false, bFirst, grace + 2*time.Second, false},
			{"B asked, B notices first, answer within the grace", true, bFirst, 2 * time.Second, false},
			{"B idle, B notices first, answer before A notices", false, bFirst, 100 * time.Millisecond, false},
			{"B idle, A notices first, answer within the grace", false, aFirst, 2 * time.Second, false},
			{"B asked, B notices first, refused after the grace", true, bFirst, grace + 2*time.Second, true},
		} {
			t.Run(loss.name+"/"+tc.name, func(t *testing.T) {
				srv := redistest.Start(t)
				ctx, t0 := context.Background(), statetest.T0
				lim := pace.StateLimits{SecondaryPause: time.Minute}
				a := newState(t, newClient(t, srv), "reprobe", lim, 2)
				b := newState(t, newClient(t, srv), "reprobe", lim, 2)
				a.Sync(ctx, t0.Add(-time.Hour))
				b.Sync(ctx, t0.Add(-time.Hour))
				seq := 0
				grant := func(who string) pace.Grant {
					seq++
					return pace.Grant{ID: who + strconv.Itoa(seq), Cost: pace.ReadPoints}
				}

				// A is refused without a hint at t0: a minute's pause.
				g := grant("a")
				if v := a.Start(ctx, t0, g); !v.OK {
					t.Fatalf("A's first request: %+v", v)
				}
				a.Done(ctx, t0, g, pace.RateLimit{Status: 403, Remaining: -1, Used: -1, Refused: true})
				if tc.bAsked {
					if v := b.Start(ctx, t0.Add(time.Second), grant("b")); v.OK || !v.Held {
						t.Fatalf("B's request within the pause: %+v, want held", v)
					}
				}
				for d := time.Second; d < time.Minute; d += time.Second {
					a.Sync(ctx, t0.Add(d))
					b.Sync(ctx, t0.Add(d))
				}
				// A's request at the pause's end is the probe; B's waits.
				end := t0.Add(time.Minute)
				probe := grant("a")
				if v := a.Start(ctx, end, probe); !v.OK || !v.Probe {
					t.Fatalf("A's request at the pause's end: %+v, want the probe", v)
				}
				if tc.bAsked {
					if v := b.Start(ctx, end.Add(100*time.Millisecond), grant("b")); v.OK || !v.Probe {
						t.Fatalf("B's request while A's probe is out: %+v, want a wait for it", v)
					}
				}
				a.Sync(ctx, end.Add(500*time.Millisecond))
				b.Sync(ctx, end.Add(500*time.Millisecond))

				loss.lose(t, srv)
				lost := end.Add(600 * time.Millisecond)

				// Heartbeats every second (A's and B's, in the order of
				// tc.first), requests of both every 250 ms; none may go
				// until the probe's answer, which decides for both.
				rl := pace.RateLimit{Status: 200, Remaining: -1, Used: -1}
				if tc.refused {
					rl = pace.RateLimit{Status: 403, Remaining: -1, Used: -1, Refused: true}
				}
				answered := lost.Add(tc.answer)
				after := lost.Add(grace + 3*time.Second)
				done := false
				for at := lost.Add(100 * time.Millisecond); at.Before(after); at = at.Add(250 * time.Millisecond) {
					beat := at.Sub(lost)%time.Second == 100*time.Millisecond
					if beat && tc.first == bFirst {
						// B's request finds Redis empty before any
						// heartbeat does.
						if v := b.Start(ctx, at, grant("b")); v.OK && !done {
							t.Fatalf("B's request at loss+%v while A's probe is out: granted %+v", at.Sub(lost), v)
						}
						b.Sync(ctx, at)
					}
					if !done && !at.Before(answered) {
						a.Done(ctx, at, probe, rl)
						done = true
					}
					if beat {
						a.Sync(ctx, at)
						if tc.first == aFirst {
							b.Sync(ctx, at)
						}
					}
					if done {
						continue
					}
					for _, s := range []struct {
						name string
						st   *redisstate.State
					}{{"B", b}, {"A", a}} {
						if v := s.st.Start(ctx, at, grant(s.name)); v.OK {
							t.Fatalf("%s's request at loss+%v while A's probe is out: granted %+v", s.name, at.Sub(lost), v)
						}
					}
				}
				v := b.Start(ctx, after, grant("b"))
				switch {
				case tc.refused && (v.OK || !v.Held || v.Why != pace.ReasonPause):
					t.Errorf("B's request after the probe was refused: %+v, want held for the pause", v)
				case !tc.refused && (!v.OK || v.Probe):
					t.Errorf("B's request after the probe's answer: %+v, want granted, no probe", v)
				}
				for _, s := range []*redisstate.State{a, b} {
					if up, _ := s.Up(); !up {
						t.Errorf("a replica is not back on Redis: %s", s.Status())
					}
				}
			})
		}
	}
}
