package redisstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// A Redis that loses its data between two of a replica's calls, without
// any call failing (a restart between heartbeats, an eviction, a
// FLUSHALL), is no fresh budget either: a replica that finds it empty
// counts, during the new epoch's grace, what every replica had used at its
// last contact, as one that found Redis unreachable does. Else an idle
// replica spends its whole share on top of a budget a busy one had spent,
// and GitHub's window sees more than the budget.
func TestEmptiedRedisIsNoFreshBudget(t *testing.T) {
	tests := []struct {
		name  string
		empty func(t *testing.T, srv *redistest.Server)
	}{
		{"flushall", flushAll},
		{"restart between calls", restartRedis},
		{"epoch key evicted", func(t *testing.T, srv *redistest.Server) {
			c := newClient(t, srv)
			keys, err := c.Keys(context.Background(), redisstate.DefaultPrefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Del(context.Background(), keys...).Err(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx, t0 := context.Background(), statetest.T0
			lim := pace.StateLimits{PointsPerMinute: 100}
			a := newState(t, newClient(t, srv), "emptied", lim, 2)
			b := newState(t, newClient(t, srv), "emptied", lim, 2)
			a.Sync(ctx, t0.Add(-time.Hour))
			b.Sync(ctx, t0.Add(-time.Hour))
			// A spends the whole budget; both hear of it at their heartbeat.
			if n := spend(t, a, t0, "a", 100); n != 100 {
				t.Fatalf("A granted %d of 100", n)
			}
			beat := t0.Add(time.Second)
			a.Sync(ctx, beat)
			b.Sync(ctx, beat)

			tt.empty(t, srv)

			// Within the window of A's 100 points, nothing more may go,
			// by either replica, grace or not.
			now := beat.Add(500 * time.Millisecond)
			total := spend(t, b, now, "b", 100) + spend(t, a, now, "a2-", 100)
			for _, s := range []*redisstate.State{a, b} {
				s.Sync(ctx, now.Add(time.Second))
			}
			after := now.Add(redisstate.DefaultSeedGrace + time.Second)
			total += spend(t, b, after, "b3-", 100) + spend(t, a, after, "a3-", 100)
			if total != 0 {
				t.Errorf("the replicas granted %d more points within the minute of A's 100, with a budget of 100", total)
			}
		})
	}
}

// flushAll empties srv's Redis (FLUSHALL), as an operator or a failover
// might, without a restart.
func flushAll(t *testing.T, srv *redistest.Server) {
	if err := newClient(t, srv).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// restartRedis restarts srv's Redis empty.
func restartRedis(_ *testing.T, srv *redistest.Server) { srv.Restart() }
