package redisstate_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// cutHook fails a client's calls while cut is set: Redis unreachable from
// that replica, the others' connections untouched.
type cutHook struct{ cut *atomic.Bool }

var errCut = errors.New("dial tcp: connect: connection refused")

func (h cutHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h cutHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		if h.cut.Load() {
			return errCut
		}
		return next(ctx, c)
	}
}

func (h cutHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cs []redis.Cmder) error {
		if h.cut.Load() {
			return errCut
		}
		return next(ctx, cs)
	}
}

// cutState is a replica's State of cred (two expected) whose Redis
// calls fail while cut is set.
func cutState(t *testing.T, srv *redistest.Server, cred string, lim pace.StateLimits, cut *atomic.Bool) *redisstate.State {
	t.Helper()
	c := newClient(t, srv)
	c.AddHook(cutHook{cut})
	return newState(t, c, cred, lim, 2)
}

// write starts and completes writes of 5 points at now until the State
// refuses one; it returns how many it granted.
func write(t *testing.T, st pace.State, now time.Time, prefix string, most int) int {
	t.Helper()
	for i := range most {
		g := pace.Grant{ID: prefix + strconv.Itoa(i), Cost: pace.WritePoints, Write: true}
		if !st.Start(context.Background(), now, g).OK {
			return i
		}
		st.Done(context.Background(), now, g, ok204)
	}
	return most
}

// spendCPU starts and completes reads expected to take a second, and
// taking it, at now until the State refuses one; it returns how many it
// granted.
func spendCPU(t *testing.T, st pace.State, now time.Time, prefix string, most int) int {
	t.Helper()
	for i := range most {
		g := pace.Grant{ID: prefix + strconv.Itoa(i), Cost: pace.ReadPoints, CPU: time.Second, Took: time.Second}
		if !st.Start(context.Background(), now, g).OK {
			return i
		}
		st.Done(context.Background(), now, g, ok204)
	}
	return most
}

// The heartbeat keeps what every replica has used, so a replica that has
// been idle while another spent the budget falls back on the budget as
// spent, not as it was at its own last grant: the replicas together stay
// within the limit. B spends one at t0, A the rest soon after; both
// heartbeat; Redis goes away for both; B spends what it can.
func TestFallbackCountsTheHeartbeatsSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := statetest.T0
	for i, tc := range []struct {
		name  string
		lim   pace.StateLimits
		limit int
		// spend spends up to most at now, returning how many it granted.
		spend func(t *testing.T, st pace.State, now time.Time, prefix string, most int) int
		aAt   time.Duration // when A spends, after t0
		beat  time.Duration // the last heartbeat, after t0
		down  time.Duration // when Redis goes away, after t0
		bFor  time.Duration // B then tries every minute for this long
	}{
		{"points a minute", pace.StateLimits{PointsPerMinute: 100}, 100, spend,
			5 * time.Second, 9 * time.Second, 10 * time.Second, 0},
		{"writes an hour", pace.StateLimits{WritesPerHour: 500}, 500, write,
			10 * time.Minute, 19 * time.Minute, 20 * time.Minute, 10 * time.Minute},
		{"response time a minute", pace.StateLimits{CPUPerMinute: 100 * time.Second}, 100, spendCPU,
			5 * time.Second, 9 * time.Second, 10 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred := "snapshot-" + strconv.Itoa(i)
			var cut atomic.Bool
			a := cutState(t, srv, cred, tc.lim, &cut)
			b := cutState(t, srv, cred, tc.lim, &cut)
			a.Sync(ctx, t0.Add(-time.Hour))
			b.Sync(ctx, t0.Add(-time.Hour))

			nb := tc.spend(t, b, t0, "b", 1)
			na := tc.spend(t, a, t0.Add(tc.aAt), "a", 2*tc.limit)
			if nb+na != tc.limit {
				t.Fatalf("shared: B %d, A %d, want %d together", nb, na, tc.limit)
			}
			a.Sync(ctx, t0.Add(tc.beat))
			b.Sync(ctx, t0.Add(tc.beat))
			cut.Store(true)
			down := t0.Add(tc.down)
			nb2 := 0
			for d := time.Duration(0); d <= tc.bFor; d += time.Minute {
				nb2 += tc.spend(t, b, down.Add(d), "b2-"+d.String()+"-", 2*tc.limit)
			}
			if up, _ := b.Up(); up {
				t.Fatal("B did not fall back")
			}
			if total := nb + na + nb2; total > tc.limit {
				t.Errorf("B granted %d more while Redis was away: %d within the window, over the %d limit", nb2, total, tc.limit)
			}
		})
	}
}

// A replica without a recent snapshot (none yet, or one taken long ago)
// does not know what the others used: it takes the whole budget as used,
// in flight when Redis went away, and spends nothing locally until
// InFlightLease and the window have passed; then its share.
func TestFallbackWithoutSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := statetest.T0
	lim := pace.StateLimits{PointsPerMinute: 100}
	for i, tc := range []struct {
		name string
		seed bool // B heartbeats an hour before, then never again
	}{
		{"never contacted Redis", false},
		{"last heartbeat an hour ago", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred := "nosnapshot-" + strconv.Itoa(i)
			var cutA, cutB atomic.Bool
			a := cutState(t, srv, cred, lim, &cutA)
			b := cutState(t, srv, cred, lim, &cutB)
			a.Sync(ctx, t0.Add(-time.Hour))
			if tc.seed {
				b.Sync(ctx, t0.Add(-time.Hour))
			}
			na := spend(t, a, t0, "a", 200)
			if na != 100 {
				t.Fatalf("A granted %d, want 100", na)
			}
			cutA.Store(true)
			cutB.Store(true)
			down := t0.Add(time.Second)
			if nb := spend(t, b, down, "b", 200); nb != 0 {
				t.Errorf("B granted %d with no snapshot, A having spent the whole budget: %d in a minute, limit 100", nb, na+nb)
			}
			if up, since := b.Up(); up || !since.Equal(down) {
				t.Fatalf("B: up %v since %v, want down since %v", up, since, down)
			}
			free := down.Add(pace.InFlightLease + pace.Window)
			if nb := spend(t, b, free.Add(-time.Millisecond), "b2-", 200); nb != 0 {
				t.Errorf("B granted %d before InFlightLease and the window passed", nb)
			}
			if nb := spend(t, b, free, "b3-", 200); nb != 50 {
				t.Errorf("B granted %d once InFlightLease and the window passed, want its share 50", nb)
			}
		})
	}
}

// writingPair returns two replicas of credential cred, writes 1 s apart,
// each cut from Redis while its flag is set (both may share one), both
// seeded an hour before statetest.T0, and the write grant A was given at
// T0, still in flight.
func writingPair(t *testing.T, srv *redistest.Server, cred string, cutA, cutB *atomic.Bool) (a, b *redisstate.State, ga pace.Grant) {
	t.Helper()
	ctx := context.Background()
	t0 := statetest.T0
	lim := pace.StateLimits{WriteInterval: time.Second}
	a = cutState(t, srv, cred, lim, cutA)
	b = cutState(t, srv, cred, lim, cutB)
	a.Sync(ctx, t0.Add(-time.Hour))
	b.Sync(ctx, t0.Add(-time.Hour))
	ga = pace.Grant{ID: "a-w1", Cost: pace.WritePoints, Write: true}
	if !a.Start(ctx, t0, ga).OK {
		t.Fatal("A's write not granted")
	}
	return a, b, ga
}

// One failed heartbeat does not lose the write slot: the next one, which
// re-seeds Redis, renews the lease at once, so the other replica waits
// while the write is in flight. Lease 3 s, heartbeat 1 s.
func TestOneFailedHeartbeatKeepsTheLease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := statetest.T0
	var cutA, cutB atomic.Bool
	a, b, ga := writingPair(t, srv, "lease", &cutA, &cutB)
	a.Sync(ctx, t0.Add(900*time.Millisecond)) // renewed until t0+3.9 s
	cutA.Store(true)
	a.Sync(ctx, t0.Add(1900*time.Millisecond)) // fails
	if up, _ := a.Up(); up {
		t.Fatal("A's failed heartbeat did not mark Redis down")
	}
	cutA.Store(false)
	a.Sync(ctx, t0.Add(2900*time.Millisecond)) // re-seeds, and renews
	if up, _ := a.Up(); !up {
		t.Fatal("A is not back on Redis")
	}
	// A's write is still in flight; its next heartbeat would land after
	// t0+3.9 s.
	gb := pace.Grant{ID: "b-w1", Cost: pace.WritePoints, Write: true}
	if v := b.Start(ctx, t0.Add(3950*time.Millisecond), gb); v.OK || v.Why != pace.ReasonSpacing {
		t.Errorf("B's write at t0+3.95 s while A's is in flight: %+v, want held for spacing", v)
	}
	// Once A's write is done, B gets the slot.
	a.Done(ctx, t0.Add(4*time.Second), ga, ok204)
	if v := b.Start(ctx, t0.Add(4*time.Second), gb); !v.OK {
		t.Errorf("B's write after A's completed: %+v", v)
	}
}

// A Redis that lost its data while a write was in flight gets the slot
// back from the replica holding it when it re-seeds: after the grace, the
// other replica waits for that write.
func TestReseedRestoresTheLease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	t0 := statetest.T0
	var cut atomic.Bool
	a, b, _ := writingPair(t, srv, "relost", &cut, &cut)
	srv.Restart()
	// A's write is still in flight: every heartbeat keeps its lease in the
	// new epoch.
	var at time.Time
	for d := time.Second; d <= redisstate.DefaultSeedGrace+time.Second; d += time.Second {
		at = t0.Add(d)
		a.Sync(ctx, at)
		b.Sync(ctx, at)
	}
	gb := pace.Grant{ID: "b-w1", Cost: pace.WritePoints, Write: true}
	if v := b.Start(ctx, at.Add(10*time.Millisecond), gb); v.OK || v.Why != pace.ReasonSpacing {
		t.Errorf("B's write after the grace while A's is in flight: %+v, want held for spacing", v)
	}
}
