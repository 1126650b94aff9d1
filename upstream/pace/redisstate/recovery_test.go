package redisstate_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// Redis unreachable from every replica for a while, then back with its
// data (a restart with its append-only file, a network outage): each
// replica spent its share on its local budget meanwhile, and adds it at
// its next contact. The first replica back must not decide from Redis
// before the others have had that contact: Redis then lacks what they
// granted during the outage, and the replicas together would spend more
// than the budget.
func TestRecoveryWaitsForTheOthersOutageGrants(t *testing.T) {
	srv := redistest.Start(t)
	ctx, t0 := context.Background(), statetest.T0
	lim := pace.StateLimits{PointsPerMinute: 100}
	var cutA, cutB atomic.Bool
	a := cutState(t, srv, "recovery", lim, &cutA)
	b := cutState(t, srv, "recovery", lim, &cutB)
	a.Sync(ctx, t0.Add(-time.Hour))
	b.Sync(ctx, t0.Add(-time.Hour))
	a.Sync(ctx, t0.Add(-time.Second))
	b.Sync(ctx, t0.Add(-time.Second))

	// Redis away for both: each spends its share, 50.
	cutA.Store(true)
	cutB.Store(true)
	if n := spend(t, a, t0, "a", 100); n != 50 {
		t.Fatalf("A granted %d on its local share, want 50", n)
	}
	if n := spend(t, b, t0, "b", 100); n != 50 {
		t.Fatalf("B granted %d on its local share, want 50", n)
	}
	// Redis back. A's heartbeat comes first, and A asks at once; B's
	// heartbeat follows within one.
	cutA.Store(false)
	cutB.Store(false)
	back := t0.Add(10 * time.Second)
	a.Sync(ctx, back)
	n := spend(t, a, back.Add(100*time.Millisecond), "a2-", 100)
	b.Sync(ctx, back.Add(redisstate.DefaultHeartbeat))
	later := back.Add(redisstate.DefaultSeedGrace + time.Second)
	n += spend(t, a, later, "a3-", 100) + spend(t, b, later, "b3-", 100)
	if n != 0 {
		t.Errorf("the replicas granted %d more points within the minute of the 100 they spent during the outage, with a budget of 100", n)
	}
}
