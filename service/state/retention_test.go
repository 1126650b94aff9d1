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
