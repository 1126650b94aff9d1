package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// WriteTracker is implemented by a store that several replicas share
// (Redis). Each replica writes one secret at a time (its own lock), but
// two replicas can write one secret at once, and then neither knows which
// of the two values GitHub applied last: a record either of them made
// could describe the value GitHub does not hold. A write calls BeginWrite
// before it distrusts the secret's record and EndWrite after GitHub's
// answer (or its failure), both with the secret's key, EndWrite with the
// token BeginWrite returned; when either says the write was not alone,
// the write leaves the record distrusted, so the next write of the secret
// goes to GitHub. A store only one process uses (memory, a bbolt file,
// which one process opens) does not implement it: a replica's own lock is
// enough there.
type WriteTracker interface {
	// BeginWrite counts a write of key as in progress and reports
	// whether no other write of it was.
	BeginWrite(ctx context.Context, key string) (token string, alone bool, err error)
	// EndWrite counts the write of token as ended and reports whether no
	// other write of key is in progress.
	EndWrite(ctx context.Context, key, token string) (alone bool, err error)
}

// WritersTTL is how long a write counts as in progress at most: a write
// of a replica that died during it stops counting then. Until it does,
// writes of that secret are not recorded (they cost GitHub writes, never
// a wrong answer). It is longer than any write takes (the pacer's queue
// bound and GitHub's timeout).
const WritersTTL = 15 * time.Minute

var _ WriteTracker = (*Redis)(nil)

// writersKey holds the writes of a secret in progress, on every replica:
// P + "writers:" + key, a sorted set of one random token per write,
// scored by the Unix milliseconds (Redis's clock) it stops counting at.
func (r *Redis) writersKey(key string) string { return r.prefix + "writers:" + key }

// beginWriteScript: KEYS[1] the writes; ARGV[1] the token, ARGV[2] the
// TTL in milliseconds. It drops the writes past their time, adds this
// one and returns how many are in progress with it.
var beginWriteScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
`)

// endWriteScript: KEYS[1] the writes; ARGV[1] the token. It removes this
// write and those past their time, and returns how many are in progress
// without it, or -1 when it no longer counted (past its time: another
// write may have begun unseen).
var endWriteScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local mine = redis.call('ZREM', KEYS[1], ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if mine == 0 then
  return -1
end
return n
`)

// BeginWrite implements WriteTracker.
func (r *Redis) BeginWrite(ctx context.Context, key string) (string, bool, error) {
	ctx, cancel, err := r.begin(ctx, "begin write")
	if err != nil {
		return "", false, err
	}
	defer cancel()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("state: begin write: %w", err)
	}
	token := hex.EncodeToString(b[:])
	n, err := beginWriteScript.Run(ctx, r.client, []string{r.writersKey(key)}, token, WritersTTL.Milliseconds()).Int64()
	if err != nil {
		return "", false, redisErr("begin write", err)
	}
	return token, n == 1, nil
}

// EndWrite implements WriteTracker.
func (r *Redis) EndWrite(ctx context.Context, key, token string) (bool, error) {
	ctx, cancel, err := r.begin(ctx, "end write")
	if err != nil {
		return false, err
	}
	defer cancel()
	n, err := endWriteScript.Run(ctx, r.client, []string{r.writersKey(key)}, token).Int64()
	if err != nil {
		return false, redisErr("end write", err)
	}
	return n == 0, nil
}
