package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// clock is a settable clock for a store's now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// useClock makes s read the time from c. Call it before s is used
// concurrently.
func useClock(t *testing.T, s Store, c *clock) {
	t.Helper()
	switch s := s.(type) {
	case *Memory:
		s.mu.Lock()
		s.now = c.Now
		s.mu.Unlock()
	case *Bolt:
		s.now = c.Now
	case *Redis:
		s.now = c.Now
	default:
		t.Fatalf("no clock for a %T", s)
	}
}

// memoryHeld returns every operation ID the memory store holds: stored,
// indexed or in its expiry heap, sorted, once each.
func memoryHeld(t *testing.T, s Store) []string {
	m := s.(*Memory)
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for id := range m.ops {
		out = append(out, id)
	}
	for id := range m.opIndex {
		out = append(out, id)
	}
	for _, it := range m.expiry {
		out = append(out, it.id)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// boltHeld returns every operation ID the file store holds in any of its
// operation buckets, sorted, once each.
func boltHeld(t *testing.T, s Store) []string {
	b := s.(*Bolt)
	var out []string
	err := b.db.View(func(tx *bolt.Tx) error {
		add := func(bucket []byte, id func(k []byte) string) error {
			return tx.Bucket(bucket).ForEach(func(k, _ []byte) error {
				out = append(out, id(k))
				return nil
			})
		}
		whole := func(k []byte) string { return string(k) }
		if err := add(bucketOperations, whole); err != nil {
			return err
		}
		if err := add(bucketOpsExpiresAt, whole); err != nil {
			return err
		}
		if err := add(bucketOpsByCaller, func(k []byte) string {
			return string(k[2+int(binary.BigEndian.Uint16(k)):])
		}); err != nil {
			return err
		}
		return add(bucketOpsExpiry, func(k []byte) string { return string(k[8:]) })
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// redisHeld returns every operation ID the Redis store holds under its
// prefix: operation keys and members of every index, sorted, once each.
func redisHeld(t *testing.T, c redis.UniversalClient, s Store) []string {
	ctx := t.Context()
	r := s.(*Redis)
	var out []string
	iter := c.Scan(ctx, 0, r.prefix+"op*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		switch {
		case strings.HasPrefix(key, r.prefix+"op:"):
			out = append(out, strings.TrimPrefix(key, r.prefix+"op:"))
		case key == r.expiryKey():
			ms, err := c.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				id, _ := parseExpiryMember(m)
				out = append(out, id)
			}
		default: // ops, ops:not-done, ops:caller:*
			ms, err := c.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ms...)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// retentionWrite is one write of an operation by testRetention: at age
// before the check, stored done or not, by UpdateOperation or by
// PutOperation.
type retentionWrite struct {
	age    time.Duration
	done   bool
	update bool
}

// testRetention: a done operation expires OperationRetention after the
// write that stored it done; one that is not done never does. The
// reference time is the wall clock, as Redis expires keys by its own; the
// ages are days apart from the retention, so no timing margin matters.
func testRetention(t *testing.T, h harness) {
	ctx := t.Context()
	const day = 24 * time.Hour
	const r = OperationRetention
	clk := &clock{}
	s := h.open(t, Options{})
	useClock(t, s, clk)
	tests := []struct {
		id, caller string
		writes     []retentionWrite
		kept       bool
	}{
		{"done-old", "alice", []retentionWrite{{age: r + day, done: true}}, false},
		{"done-old-bob", "bob", []retentionWrite{{age: 3 * r, done: true}}, false},
		{"done-young", "alice", []retentionWrite{{age: r - day, done: true}}, true},
		{"done-just-now", "bob", []retentionWrite{{age: 0, done: true}}, true},
		{"running-ancient", "alice", []retentionWrite{{age: 10 * r}}, true},
		{"running-ancient-bob", "bob", []retentionWrite{{age: 100 * r}}, true},
		{"ended-old-by-update", "alice", []retentionWrite{{age: 3 * r}, {age: r + day, done: true, update: true}}, false},
		{"ended-recently-by-update", "alice", []retentionWrite{{age: 3 * r}, {age: r - day, done: true, update: true}}, true},
		{"done-again-recently", "alice", []retentionWrite{{age: 2 * r, done: true}, {age: r - day, done: true}}, true},
		{"done-then-not-done", "bob", []retentionWrite{{age: r + 2*day, done: true}, {age: 3 * day}}, true},
	}
	now := time.Now()
	for _, tt := range tests {
		for _, w := range tt.writes {
			clk.Set(now.Add(-w.age))
			if w.update {
				if _, err := s.UpdateOperation(ctx, tt.id, func(op *Operation) error {
					op.Done, op.Pending = w.done, nil
					return nil
				}); err != nil {
					t.Fatalf("%s: %v", tt.id, err)
				}
				continue
			}
			op := operation(tt.id, tt.caller)
			op.Done = w.done
			if w.done {
				op.Pending = nil
			}
			if err := s.PutOperation(ctx, op); err != nil {
				t.Fatalf("%s: %v", tt.id, err)
			}
		}
	}
	clk.Set(now)
	if h.reopen != nil { // the expiry is kept with the operation
		s = h.reopen(t, s, Options{})
		useClock(t, s, clk)
	}

	var kept, gone []string
	for _, tt := range tests {
		if tt.kept {
			kept = append(kept, tt.id)
		} else {
			gone = append(gone, tt.id)
		}
	}
	slices.Sort(kept)
	// Expired operations read as never stored.
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := s.GetOperation(ctx, tt.id)
			switch {
			case !tt.kept && !errors.Is(err, ErrNotFound):
				t.Fatalf("GetOperation: %v, want ErrNotFound", err)
			case tt.kept && err != nil:
				t.Fatalf("GetOperation: %v, want it kept", err)
			case tt.kept && got.Done != tt.writes[len(tt.writes)-1].done:
				t.Fatalf("GetOperation: done %v, want %v", got.Done, !got.Done)
			}
		})
	}
	lists := []struct {
		f    OperationFilter
		want func(id, caller string, done bool) bool
	}{
		{OperationFilter{}, func(string, string, bool) bool { return true }},
		{OperationFilter{Caller: "alice"}, func(_, c string, _ bool) bool { return c == "alice" }},
		{OperationFilter{Caller: "bob"}, func(_, c string, _ bool) bool { return c == "bob" }},
		{OperationFilter{NotDone: true}, func(_, _ string, d bool) bool { return !d }},
		{OperationFilter{Caller: "alice", NotDone: true}, func(_, c string, d bool) bool { return c == "alice" && !d }},
		{OperationFilter{After: "done-just-now", Limit: 3}, nil},
	}
	for _, l := range lists {
		got, err := s.ListOperations(ctx, l.f)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, tt := range tests {
			if tt.kept && (l.want == nil || l.want(tt.id, tt.caller, tt.writes[len(tt.writes)-1].done)) {
				want = append(want, tt.id)
			}
		}
		slices.Sort(want)
		if l.want == nil { // the page after done-just-now
			i, _ := slices.BinarySearch(want, "done-just-now")
			want = want[i+1 : i+1+3]
		}
		if g := ids(got); !slices.Equal(g, want) {
			t.Errorf("ListOperations(%+v) = %q, want %q", l.f, g, want)
		}
	}
	for _, id := range gone {
		if _, err := s.UpdateOperation(ctx, id, func(op *Operation) error { op.Done = false; return nil }); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateOperation(%s): %v, want ErrNotFound", id, err)
		}
	}

	// The next write deletes them and their index entries.
	if err := s.PutOperation(ctx, operation("trigger", "carol")); err != nil {
		t.Fatal(err)
	}
	held := h.held(t, s)
	for _, id := range gone {
		if slices.Contains(held, id) {
			t.Errorf("%s expired but the store still holds it (in %q)", id, held)
		}
	}
	for _, id := range append(kept, "trigger") {
		if !slices.Contains(held, id) {
			t.Errorf("%s should be kept but the store does not hold it (in %q)", id, held)
		}
	}
	for _, id := range gone {
		if _, err := s.GetOperation(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetOperation(%s) after pruning: %v, want ErrNotFound", id, err)
		}
	}
}

// testRetentionBounded: one write prunes at most pruneBatch expired
// operations; later writes prune the rest, and lists never show them.
func testRetentionBounded(t *testing.T, h harness) {
	ctx := t.Context()
	clk := &clock{}
	s := h.open(t, Options{})
	useClock(t, s, clk)
	now := time.Now()
	const n = 2*pruneBatch + 5
	clk.Set(now.Add(-OperationRetention - time.Hour))
	for i := range n {
		op := operation(fmt.Sprintf("x%03d", i), "alice")
		op.Done, op.Pending = true, nil
		if err := s.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutOperation(ctx, operation("keep", "alice")); err != nil {
		t.Fatal(err)
	}
	clk.Set(now)
	expired := func() int {
		c := 0
		for _, id := range h.held(t, s) {
			if strings.HasPrefix(id, "x") {
				c++
			}
		}
		return c
	}
	if got := expired(); got != n {
		t.Fatalf("before any write at now: the store holds %d expired operations, want %d (none pruned yet)", got, n)
	}
	if err := s.PutOperation(ctx, operation("w0", "alice")); err != nil {
		t.Fatal(err)
	}
	if got := expired(); got != n-pruneBatch {
		t.Fatalf("after one write: %d expired operations held, want %d (pruneBatch pruned)", got, n-pruneBatch)
	}
	for i := range n { // pruned or not
		if _, err := s.GetOperation(ctx, fmt.Sprintf("x%03d", i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetOperation(x%03d): %v, want ErrNotFound", i, err)
		}
	}
	for _, f := range []OperationFilter{{}, {Caller: "alice"}, {Caller: "alice", Limit: 2}} {
		got, err := s.ListOperations(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); !slices.Equal(g, []string{"keep", "w0"}) {
			t.Errorf("ListOperations(%+v) = %q, want [keep w0]", f, g)
		}
	}
	for i := 1; expired() > 0; i++ {
		if i > n/pruneBatch+1 {
			t.Fatalf("after %d writes the store still holds %d expired operations", i, expired())
		}
		if err := s.PutOperation(ctx, operation(fmt.Sprintf("w%d", i), "alice")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisRetentionKeys: storing an operation done sets PEXPIREAT on its
// key at the store's clock plus OperationRetention and scores its
// "ops:expiry" entry with that time; storing it not done clears both;
// moving it to another caller moves the entry; deleting it drops it.
func TestRedisRetentionKeys(t *testing.T) {
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	now := time.Now().Truncate(time.Millisecond)
	at := now.Add(OperationRetention).UnixMilli()
	type write struct {
		caller       string
		done, update bool
		delete       bool
	}
	tests := []struct {
		name       string
		writes     []write
		wantExpire int64 // PEXPIRETIME: -1 no TTL, -2 no key
		wantMember []string
	}{
		{"done", []write{{caller: "alice", done: true}}, at, []string{"op alice"}},
		{"not done", []write{{caller: "alice"}}, -1, nil},
		{"done, then not done", []write{{caller: "alice", done: true}, {caller: "alice"}}, -1, nil},
		{"ended by an update", []write{{caller: "alice"}, {done: true, update: true}}, at, []string{"op alice"}},
		{"done, then moved to bob", []write{{caller: "alice", done: true}, {caller: "bob", done: true}}, at, []string{"op bob"}},
		{"done, then deleted", []write{{caller: "alice", done: true}, {delete: true}}, -2, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			r := openRedis(t, c, fmt.Sprintf("keys%d:state:", i), Options{})
			useClock(t, r, &clock{t: now})
			for _, w := range tt.writes {
				var err error
				switch {
				case w.delete:
					err = r.DeleteOperation(ctx, "op")
				case w.update:
					_, err = r.UpdateOperation(ctx, "op", func(op *Operation) error { op.Done, op.Pending = w.done, nil; return nil })
				default:
					op := operation("op", w.caller)
					op.Done = w.done
					err = r.PutOperation(ctx, op)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			expire, err := c.Do(ctx, "PEXPIRETIME", r.opKey("op")).Int64()
			if err != nil {
				t.Fatal(err)
			}
			if expire != tt.wantExpire {
				t.Errorf("PEXPIRETIME = %d, want %d", expire, tt.wantExpire)
			}
			members, err := c.ZRangeWithScores(ctx, r.expiryKey(), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range members {
				got = append(got, m.Member.(string))
				if int64(m.Score) != at {
					t.Errorf("expiry entry %v scored %d, want %d", m.Member, int64(m.Score), at)
				}
			}
			if !slices.Equal(got, tt.wantMember) {
				t.Errorf("expiry entries %q, want %q", got, tt.wantMember)
			}
		})
	}
}

// TestRedisPruneKeepsLive: a due "ops:expiry" entry drops the index
// entries only of an operation whose key is gone; one whose key lives
// with a TTL is rescheduled, one whose key lives without a TTL (stored
// not done) loses only its expiry entry.
func TestRedisPruneKeepsLive(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	r := openRedis(t, c, "prune:state:", Options{})
	now := time.Now()
	useClock(t, r, &clock{t: now})
	live := operation("live", "alice")
	live.Done, live.Pending = true, nil
	for _, op := range []*Operation{live, operation("run", "alice")} {
		if err := r.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	// Due entries for all three; ghost is indexed but has no key.
	for _, m := range []string{"live alice", "run alice", "ghost alice"} {
		if err := c.ZAdd(ctx, r.expiryKey(), redis.Z{Score: 1, Member: m}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{r.allOpsKey(), r.notDoneKey(), r.callerKey("alice")} {
		if err := c.ZAdd(ctx, k, redis.Z{Member: "ghost"}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("prune dropped %d operations, want 1 (ghost)", n)
	}
	for key, want := range map[string][]string{
		r.allOpsKey():        {"live", "run"},
		r.notDoneKey():       {"run"},
		r.callerKey("alice"): {"live", "run"},
		r.expiryKey():        {"live alice"},
	} {
		got, err := c.ZRange(ctx, key, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s holds %q, want %q", key, got, want)
		}
	}
	score, err := c.ZScore(ctx, r.expiryKey(), "live alice").Result()
	if err != nil {
		t.Fatal(err)
	}
	if int64(score) <= now.UnixMilli() {
		t.Errorf("live's expiry entry was not rescheduled: score %d, now %d", int64(score), now.UnixMilli())
	}
	for _, id := range []string{"live", "run"} {
		if _, err := r.GetOperation(ctx, id); err != nil {
			t.Errorf("GetOperation(%s): %v", id, err)
		}
	}
}

// TestRedisListDropsStale: ListOperations drops the entries it meets of
// operations whose key is gone from the index it walked and from the all
// and not-done indexes, and keeps the others.
func TestRedisListDropsStale(t *testing.T) {
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	tests := []struct {
		name string
		f    OperationFilter
	}{
		{"all", OperationFilter{}},
		{"not done", OperationFilter{NotDone: true}},
		{"caller", OperationFilter{Caller: "alice"}},
		{"caller, not done", OperationFilter{Caller: "alice", NotDone: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			r := openRedis(t, c, fmt.Sprintf("stale%d:state:", i), Options{})
			if err := r.PutOperation(ctx, operation("a1", "alice")); err != nil {
				t.Fatal(err)
			}
			walked := r.allOpsKey()
			switch {
			case tt.f.Caller != "":
				walked = r.callerKey(tt.f.Caller)
			case tt.f.NotDone:
				walked = r.notDoneKey()
			}
			for _, k := range []string{r.allOpsKey(), r.notDoneKey(), r.callerKey("alice")} {
				if err := c.ZAdd(ctx, k, redis.Z{Member: "a0-ghost"}, redis.Z{Member: "a2-ghost"}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			got, err := r.ListOperations(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !slices.Equal(g, []string{"a1"}) {
				t.Fatalf("ListOperations = %q, want [a1]", g)
			}
			for _, k := range []string{walked, r.allOpsKey(), r.notDoneKey()} {
				m, err := c.ZRange(ctx, k, 0, -1).Result()
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(m, []string{"a1"}) {
					t.Errorf("%s holds %q after the list, want [a1]", k, m)
				}
			}
			// A replica stored a1 between the list's MGET, which
			// found no key, and the drop: a1 keeps its entries.
			r.dropStale(ctx, walked, []string{"a1"}, []string{r.opKey("a1")}, []any{nil})
			for _, k := range []string{walked, r.allOpsKey(), r.notDoneKey()} {
				if n, err := c.ZCard(ctx, k).Result(); err != nil || n != 1 {
					t.Errorf("%s holds %d entries after a drop raced a store, want 1 (a1): %v", k, n, err)
				}
			}
		})
	}
}

// TestBoltExpiryBuckets: a file written before operations expired gets
// its done operations an expiry OperationRetention after it is opened;
// an expiry entry left on an operation stored not done (by such a
// broker) never deletes it.
func TestBoltExpiryBuckets(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	b := openBolt(t, dir, Options{})
	old := operation("old", "alice")
	old.Done, old.Pending = true, nil
	for _, op := range []*Operation{old, operation("run", "alice"), operation("redone", "alice")} {
		if err := b.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOpsExpiresAt, bucketOpsExpiry} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	b = openBolt(t, dir, Options{})
	clk := &clock{t: opened.Add(OperationRetention - time.Hour)}
	useClock(t, b, clk)
	if _, err := b.GetOperation(ctx, "old"); err != nil {
		t.Fatalf("before its retention after the upgrade: %v", err)
	}
	// An older broker stores "redone" done and then not done again
	// without touching the expiry buckets: plant the entry it leaves.
	err = b.db.Update(func(tx *bolt.Tx) error { return setExpiry(tx, "redone", true, opened) })
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(opened.Add(OperationRetention + time.Hour))
	if _, err := b.GetOperation(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after its retention: %v, want ErrNotFound", err)
	}
	if err := b.PutOperation(ctx, operation("trigger", "alice")); err != nil {
		t.Fatal(err)
	}
	if got, want := boltHeld(t, b), []string{"redone", "run", "trigger"}; !slices.Equal(got, want) {
		t.Fatalf("the file holds %q, want %q", got, want)
	}
	for _, id := range []string{"redone", "run"} {
		if op, err := b.GetOperation(ctx, id); err != nil || op.Done {
			t.Errorf("GetOperation(%s): %v, want it kept, not done", id, err)
		}
	}
}
