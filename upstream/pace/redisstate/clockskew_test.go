package redisstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// A completed request counts what it took against the response-time
// budget, whatever the clock of the replica that stamped its completion:
// A's clock runs skew ahead of B's (behind, when negative); A's request,
// expected to take a second, is answered after 100 ms; B then asks for
// 20 s of a 30 s budget. Counted as a request in flight (up to
// InFlightCounted, 40 s) until B's clock passes A's stamp, it would hold
// B back; a MemoryState given the same times grants it. A second request
// of A's, still in flight, counts its time so far in both. With reseed,
// Redis loses its data first, and B (whose clock stamps the new epoch)
// then A re-seed it: A's record has the completion, and B decides after
// the epoch's grace.
func TestCompletionCountsWhatItTookWhateverTheClocks(t *testing.T) {
	srv := redistest.Start(t)
	ctx, t0 := context.Background(), statetest.T0
	lim := pace.StateLimits{CPUPerMinute: 30 * time.Second}
	type run struct {
		skew   time.Duration
		reseed bool
	}
	var runs []run
	for _, skew := range []time.Duration{0, 7 * time.Millisecond, time.Second, 10 * time.Second,
		pace.InFlightCounted, 70 * time.Second, -10 * time.Second} {
		runs = append(runs, run{skew, false}, run{skew, true})
	}
	for _, r := range runs {
		skew := r.skew
		name := skew.String()
		if r.reseed {
			name += " reseeded"
		}
		t.Run(name, func(t *testing.T) {
			cred := "skew-" + strings.ReplaceAll(name, " ", "-")
			a := newState(t, newClient(t, srv), cred, lim, 2)
			b := newState(t, newClient(t, srv), cred, lim, 2)
			a.Sync(ctx, t0.Add(-time.Hour))
			b.Sync(ctx, t0.Add(-time.Hour))
			mem := pace.NewMemoryState(lim)
			aAt := func(d time.Duration) time.Time { return t0.Add(skew + d) } // A's clock

			done := pace.Grant{ID: "a1", Cost: pace.ReadPoints, CPU: time.Second, Took: 100 * time.Millisecond}
			flying := pace.Grant{ID: "a2", Cost: pace.ReadPoints, CPU: time.Second}
			for _, st := range []pace.State{a, mem} {
				if v := st.Start(ctx, aAt(0), done); !v.OK {
					t.Fatalf("A's first request: %+v", v)
				}
				st.Done(ctx, aAt(100*time.Millisecond), done, ok204)
				if v := st.Start(ctx, aAt(200*time.Millisecond), flying); !v.OK {
					t.Fatalf("A's second request: %+v", v)
				}
			}
			// B, 2 s on (its clock; after the grace, re-seeded): the
			// second counts its time so far, less A's lead; the first
			// what it took.
			now := t0.Add(2*time.Second + 200*time.Millisecond)
			if r.reseed {
				if err := newClient(t, srv).Del(ctx, keyOf(cred, "p"), keyOf(cred, "c"), keyOf(cred, "k"), keyOf(cred, "e")).Err(); err != nil {
					t.Fatal(err)
				}
				b.Sync(ctx, now)
				a.Sync(ctx, aAt(2*time.Second+200*time.Millisecond))
				now = now.Add(redisstate.DefaultSeedGrace + 100*time.Millisecond)
			}
			for _, tc := range []struct {
				cpu time.Duration
			}{{20 * time.Second}, {5 * time.Second}} {
				g := pace.Grant{ID: "b-" + tc.cpu.String(), Cost: pace.ReadPoints, CPU: tc.cpu}
				vm := mem.Start(ctx, now, g)
				vr := b.Start(ctx, now, g)
				if up, _ := b.Up(); !up {
					t.Fatalf("B is not on Redis: %s", b.Status())
				}
				if !sameVerdict(vr, vm) {
					t.Errorf("B's request for %v at +%v, A's clock %v ahead: Redis %+v, MemoryState %+v",
						tc.cpu, now.Sub(t0), skew, vr, vm)
				}
			}
		})
	}
}
