package redisstate_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
)

// The heartbeat that renews the write slot's lease stays well below the
// lease: by default a third of it when that is under a second, and New
// refuses a longer one, so that a replica whose write is slow keeps the
// slot. New contacts no Redis, so an unreachable address does.
func TestHeartbeatBelowLease(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for _, tc := range []struct {
		name      string
		interval  time.Duration
		heartbeat time.Duration
		ok        bool
	}{
		{"default, 1 s writes (3 s lease)", time.Second, 0, true},
		{"default, 200 ms writes (1 s lease)", 200 * time.Millisecond, 0, true},
		{"given, a third of the lease", 200 * time.Millisecond, 333 * time.Millisecond, true},
		{"given, the whole lease", 200 * time.Millisecond, time.Second, false},
		{"given, above a third of a 3 s lease", time.Second, 1500 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := redisstate.New(redisstate.Options{
				Client:     client,
				Credential: "token",
				Limits:     pace.StateLimits{WriteInterval: tc.interval},
				Heartbeat:  tc.heartbeat,
			})
			if (err == nil) != tc.ok {
				t.Errorf("New: %v, want ok %v", err, tc.ok)
			}
		})
	}
}
