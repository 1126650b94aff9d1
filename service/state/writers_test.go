package state

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// TestRedisWriteTracker: two replicas (two stores, two clients, one
// prefix) writing one secret. A write is alone when no other write of
// that secret is in progress at its begin and at its end, and none began
// meanwhile; writes of other secrets do not count; a write of a replica that died stops counting at
// its time, and a write that outlived its time is not alone at its end.
// The count's key expires, and is gone when no write is in progress.
func TestRedisWriteTracker(t *testing.T) {
	srv := redistest.Start(t)
	c1, c2 := newRedisClient(t, srv.Addr), newRedisClient(t, srv.Addr)
	a := openRedis(t, c1, "wt:state:", Options{})
	b := openRedis(t, c2, "wt:state:", Options{})
	ctx := t.Context()
	const key, other = "repos/o/r/actions/secrets/X", "repos/o/r/actions/secrets/Y"

	begin := func(s *Redis, key string, wantAlone bool) string {
		t.Helper()
		token, alone, err := s.BeginWrite(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if alone != wantAlone {
			t.Fatalf("BeginWrite(%s): alone=%v, want %v", key, alone, wantAlone)
		}
		return token
	}
	end := func(s *Redis, key, token string, wantAlone bool) {
		t.Helper()
		alone, err := s.EndWrite(ctx, key, token)
		if err != nil {
			t.Fatal(err)
		}
		if alone != wantAlone {
			t.Fatalf("EndWrite(%s): alone=%v, want %v", key, alone, wantAlone)
		}
	}
	writers := a.writersKey(key)

	// One after the other: each alone.
	end(a, key, begin(a, key, true), true)
	end(b, key, begin(b, key, true), true)
	if n, err := c1.Exists(ctx, writers).Result(); err != nil || n != 0 {
		t.Fatalf("no write in progress, but the count's key exists (%d, %v)", n, err)
	}

	// Overlapping: B begins while A is in progress, A ends first, then B.
	ta := begin(a, key, true)
	if ttl, err := c1.PTTL(ctx, writers).Result(); err != nil || ttl <= 0 || ttl > WritersTTL {
		t.Fatalf("the count's key: PTTL %v (%v), want within (0, %s]", ttl, err, WritersTTL)
	}
	tb := begin(b, key, false)
	tOther := begin(b, other, true) // another secret: apart
	end(a, key, ta, false)          // B still writing
	end(b, key, tb, true)           // A ended: alone now, but its begin was not
	end(b, other, tOther, true)

	// Contained: B begins and ends while A is in progress; A's end sees
	// no write in progress, but one began since its own.
	ta = begin(a, key, true)
	tb = begin(b, key, false)
	end(b, key, tb, false)
	end(a, key, ta, false)

	// A begin that failed leaves a token without its count: its end
	// removes it and is not alone.
	end(a, key, "0123456789abcdef", false)

	// A replica died during its write: it counts until its time, then
	// not; its own end, had it come, would not be alone.
	dead := begin(a, key, true)
	deadID, _, _ := strings.Cut(dead, "/")
	if err := c1.ZAdd(ctx, writers, redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: deadID}).Err(); err != nil {
		t.Fatal(err)
	}
	tb = begin(b, key, true)
	end(a, key, dead, false)
	end(b, key, tb, true)
	if n, err := c1.Exists(ctx, writers).Result(); err != nil || n != 0 {
		t.Fatalf("no write in progress, but the count's key exists (%d, %v)", n, err)
	}
}
