package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// WriteTracker is implemented by a store that several replicas share
// (Redis). Each replica writes one secret at a time (its own lock), but
// two replicas can write one secret at once, and then neither knows which
// of the two values GitHub applied last: a record either of them made
// could describe the value GitHub does not hold. A write calls BeginWrite
// before it reads and distrusts the secret's record and EndWrite after
// GitHub's answer (or its failure), both with the secret's key, EndWrite
// with the token BeginWrite returned; when either says the write was not
// alone, the write leaves the record distrusted, so the next write of the
// secret goes to GitHub. A store only one process uses (memory, a bbolt
// file, which one process opens) does not implement it: a replica's own
// lock is enough there.
type WriteTracker interface {
	// BeginWrite counts a write of key as in progress and reports
	// whether no other write of it was. The token is returned with an
	// error too (the write may have been counted): EndWrite it.
	BeginWrite(ctx context.Context, key string) (token string, alone bool, err error)
	// EndWrite counts the write of token as ended and reports whether it
	// was alone throughout: no other write of key is in progress, and
	// none began since it did.
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
// Beside it, P + "writers:" + key + ":begun" counts the writes begun, so
// that a write can tell that another began and ended while it was in
// progress. Both expire WritersTTL after the last write began.
func (r *Redis) writersKey(key string) string { return r.prefix + "writers:" + key }

func (r *Redis) writersBegunKey(key string) string { return r.writersKey(key) + ":begun" }

// beginWriteScript: KEYS[1] the writes, KEYS[2] the count of writes
// begun; ARGV[1] the token, ARGV[2] the TTL in milliseconds. It drops the
// writes past their time, adds this one and returns how many are in
// progress with it and the count of writes begun with it.
var beginWriteScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local begun = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {redis.call('ZCARD', KEYS[1]), begun}
`)

// endWriteScript: KEYS[1] the writes, KEYS[2] the count of writes begun;
// ARGV[1] the token, ARGV[2] the count its begin returned. It removes
// this write and those past their time, and returns 1 when the write was
// alone throughout (it still counted, none other is in progress, and none
// began since it did), else 0.
var endWriteScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local mine = redis.call('ZREM', KEYS[1], ARGV[1])
local others = redis.call('ZCARD', KEYS[1])
local begun = tonumber(redis.call('GET', KEYS[2]) or '0')
if mine == 1 and others == 0 and begun == tonumber(ARGV[2]) then
  return 1
end
return 0
`)

// BeginWrite implements WriteTracker. The token is a random ID and the
// count of writes begun with this one: "ID/N".
func (r *Redis) BeginWrite(ctx context.Context, key string) (string, bool, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("state: begin write: %w", err)
	}
	id := hex.EncodeToString(b[:])
	ctx, cancel, err := r.begin(ctx, "begin write")
	if err != nil {
		return "", false, err
	}
	defer cancel()
	res, err := beginWriteScript.Run(ctx, r.client, []string{r.writersKey(key), r.writersBegunKey(key)}, id, WritersTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return id, false, redisErr("begin write", err) // it may have been counted
	}
	if len(res) != 2 {
		return id, false, redisErr("begin write", fmt.Errorf("%d values from the script, want 2", len(res)))
	}
	return id + "/" + strconv.FormatInt(res[1], 10), res[0] == 1, nil
}

// EndWrite implements WriteTracker.
func (r *Redis) EndWrite(ctx context.Context, key, token string) (bool, error) {
	id, begun, ok := strings.Cut(token, "/")
	if !ok {
		begun = "-1" // its begin failed: never alone, but removed
	}
	ctx, cancel, err := r.begin(ctx, "end write")
	if err != nil {
		return false, err
	}
	defer cancel()
	alone, err := endWriteScript.Run(ctx, r.client, []string{r.writersKey(key), r.writersBegunKey(key)}, id, begun).Int()
	if err != nil {
		return false, redisErr("end write", err)
	}
	return alone == 1, nil
}
