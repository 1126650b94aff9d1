package redisstate_test

import (
	"context"
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

func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// credentials makes every subtest's credential its own: the suite shares
// one redis-server.
type credentials struct{ n atomic.Int64 }

func (c *credentials) next() string { return "cred-" + strconv.FormatInt(c.n.Add(1), 10) }

func newState(t *testing.T, client redis.UniversalClient, cred string, lim pace.StateLimits, replicas int) *redisstate.State {
	t.Helper()
	s, err := redisstate.New(redisstate.Options{Client: client, Credential: cred, Limits: lim, ExpectedReplicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The Redis State keeps the State contract; each replica has its own
// State and client, sharing one redis-server. Each is seeded an hour
// before T0, so that the epoch's grace is over by then.
func TestRedisStateContract(t *testing.T) {
	srv := redistest.Start(t)
	creds := &credentials{}
	statetest.Run(t, func(t *testing.T, lim pace.StateLimits, n int) ([]pace.State, []func()) {
		cred := creds.next()
		states, kill := make([]pace.State, n), make([]func(), n)
		for i := range n {
			client := newClient(t, srv)
			s := newState(t, client, cred, lim, n)
			s.Sync(context.Background(), statetest.T0.Add(-time.Hour))
			if up, _ := s.Up(); !up {
				t.Fatal("Redis is not up")
			}
			states[i] = s
			kill[i] = func() { _ = client.Close() } // no Done, no renewal
			t.Cleanup(func() {
				// Every decision came from Redis, none from a fallback.
				if up, _ := s.Up(); !up {
					t.Errorf("replica %d fell back to its local budget: %s", i, s.Status())
				}
			})
		}
		return states, kill
	})
}
