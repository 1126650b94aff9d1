package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// newRedisClient returns a client of addr configured as the broker's
// (cmd/secretbroker/redis.go): short timeouts, the context's deadline
// honoured, no retries. Its pool is larger than go-redis's default (10 per
// CPU): after that many failed dials go-redis stops dialing and answers
// with the last dial error for about a second, so an outage test that makes
// 10 or 20 failed calls and then restarts Redis would get the stale error
// on one or two CPUs.
func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		PoolSize:              100,
		DialTimeout:           time.Second,
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openRedis(t testing.TB, c redis.UniversalClient, prefix string, opts Options) *Redis {
	t.Helper()
	r, err := NewRedis(c, RedisOptions{Options: opts, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// redisDump returns every key of the server and everything they hold.
func redisDump(t testing.TB, c redis.UniversalClient) []byte {
	t.Helper()
	ctx := context.Background()
	var b bytes.Buffer
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	n := 0
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		b.WriteString(key + "\n")
		typ, err := c.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			v, err := c.Get(ctx, key).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			b.Write(v)
		case "hash":
			m, err := c.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range m {
				b.WriteString(k + "=" + v + "\n")
			}
		case "zset":
			ms, err := c.ZRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				b.WriteString(m + "\n")
			}
		default:
			t.Fatalf("key %s of unexpected type %s", key, typ)
		}
		b.WriteString("\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the dump found no key: a check on it would prove nothing")
	}
	return b.Bytes()
}

// redisHarness runs the contract suite on one redis-server; each store
// it opens has a prefix of its own, so stores opened apart are apart.
func redisHarness(t *testing.T) harness {
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	var n atomic.Int64
	return harness{
		name: "redis",
		open: func(t *testing.T, opts Options) Store {
			return openRedis(t, c, fmt.Sprintf("test%d:state:", n.Add(1)), opts)
		},
		reopen: func(t *testing.T, s Store, opts Options) Store {
			prefix := s.(*Redis).Prefix()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return openRedis(t, c, prefix, opts)
		},
		dump: func(t *testing.T, _ Store) []byte { return redisDump(t, c) },
		held: func(t *testing.T, s Store) []string { return redisHeld(t, c, s) },
		corrupt: func(t *testing.T, s Store, id string, raw []byte) {
			if err := c.Set(context.Background(), s.(*Redis).opKey(id), raw, redis.KeepTTL).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestRedisContract(t *testing.T) {
	runContract(t, redisHarness(t))
}

func TestNewRedisRejects(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	tests := []struct {
		name    string
		client  redis.UniversalClient
		opts    RedisOptions
		wantErr error
	}{
		{"no client", nil, RedisOptions{}, ErrInvalid},
		{"short key", c, RedisOptions{Options: Options{HMACKey: make([]byte, 31)}}, ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRedis(tt.client, tt.opts); !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewRedis: %v, want %v", err, tt.wantErr)
			}
		})
	}
	r, err := NewRedis(c, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Prefix() != DefaultRedisPrefix {
		t.Errorf("prefix %q, want %q", r.Prefix(), DefaultRedisPrefix)
	}
}

// TestRedisReplicasShare: two stores on one Redis with one prefix, each
// with a client of its own (two replicas), see each other's records and
// operations, agree on one generated key, and serialize their updates of
// one operation; the operator's key wins and is never written to Redis.
func TestRedisReplicasShare(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	const prefix = "secretbroker:state:"
	a := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})
	b := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})

	// Both generate a key at once: SET NX makes them agree.
	var ka, kb []byte
	var errA, errB error
	var wg sync.WaitGroup
	wg.Go(func() { ka, errA = a.Key(ctx) })
	wg.Go(func() { kb, errB = b.Key(ctx) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !bytes.Equal(ka, kb) || len(ka) < MinKeyLen {
		t.Fatalf("replicas hold different keys (%d and %d bytes)", len(ka), len(kb))
	}

	rec := record("orgs/acme/actions/secrets/SHARED")
	if err := a.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetRecord(ctx, rec.Name)
	if err != nil {
		t.Fatal(err)
	}
	assertRecord(t, got, rec)
	if list, err := b.ListRecords(ctx, "orgs/acme/actions"); err != nil || len(list) != 1 || list[0].Name != rec.Name {
		t.Fatalf("b lists %v, %v", list, err)
	}
	if err := b.DeleteRecord(ctx, rec.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetRecord(ctx, rec.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a after b deleted: %v, want ErrNotFound", err)
	}

	op := operation("shared", "alice")
	op.Metadata = Progress{}
	if err := b.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	opA, err := a.GetOperation(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if opA.Pending[0].ValueLost || string(opA.Pending[0].Value) != "value of D" {
		t.Fatalf("a cannot open b's sealed value: lost %v", opA.Pending[0].ValueLost)
	}
	for _, s := range []*Redis{a, b} {
		for _, f := range []OperationFilter{{Caller: "alice"}, {NotDone: true}, {}} {
			if l, err := s.ListOperations(ctx, f); err != nil || !slices.Equal(ids(l), []string{"shared"}) {
				t.Fatalf("ListOperations(%+v) = %q, %v", f, ids(l), err)
			}
		}
	}

	// Updates from both replicas at once: WATCH/MULTI loses none.
	const each = 25
	var calls [2]atomic.Int64
	errs := make(chan error, 2)
	for i, s := range []*Redis{a, b} {
		wg.Go(func() {
			for range each {
				if _, err := s.UpdateOperation(ctx, "shared", func(op *Operation) error {
					calls[i].Add(1)
					op.Metadata.Written++
					return nil
				}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	final, err := b.GetOperation(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if final.Metadata.Written != 2*each {
		t.Fatalf("Written = %d after %d updates from two replicas: an update was lost", final.Metadata.Written, 2*each)
	}
	t.Logf("fn calls for %d updates each: %d and %d (retries on conflict)", each, calls[0].Load(), calls[1].Load())

	// a finishes the operation: b's not-done list drops it.
	if _, err := a.UpdateOperation(ctx, "shared", func(op *Operation) error { op.Done, op.Pending = true, nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if l, err := b.ListOperations(ctx, OperationFilter{NotDone: true}); err != nil || len(l) != 0 {
		t.Fatalf("b's not-done operations after a finished it: %q, %v", ids(l), err)
	}

	// The operator's key: used by both, never stored.
	given := bytes.Repeat([]byte("o"), 32)
	c := newRedisClient(t, srv.Addr)
	x := openRedis(t, c, "operator:", Options{HMACKey: given})
	y := openRedis(t, newRedisClient(t, srv.Addr), "operator:", Options{HMACKey: given})
	if err := x.PutOperation(ctx, operation("op", "alice")); err != nil {
		t.Fatal(err)
	}
	if err := x.PutRecord(ctx, record("orgs/acme/actions/secrets/X")); err != nil {
		t.Fatal(err)
	}
	if got, err := y.GetOperation(ctx, "op"); err != nil || got.Pending[0].ValueLost {
		t.Fatalf("y reads x's operation: %v", err)
	}
	if n, err := c.Exists(ctx, "operator:hmac-key").Result(); err != nil || n != 0 {
		t.Fatalf("the operator's key was written to Redis (%d, %v)", n, err)
	}
	if dump := redisDump(t, c); bytes.Contains(dump, given) {
		t.Fatal("the operator's key is in Redis")
	}
}

// TestRedisNoValueAcrossReplicas: a value planted in an operation that two
// replicas write and update never shows in Redis, in any usual encoding.
func TestRedisNoValueAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	a := openRedis(t, c, "", Options{})
	b := openRedis(t, newRedisClient(t, srv.Addr), "", Options{})
	plant := []byte("PLANTED-redis-value-Quokka-8e21c0")
	op := operation("planted", "alice")
	op.Pending[0].Value = plant
	if err := a.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UpdateOperation(ctx, "planted", func(op *Operation) error {
		op.Pending = append(op.Pending, PendingItem{Name: "orgs/acme/actions/secrets/MORE", Value: plant})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := a.GetOperation(ctx, "planted")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Pending[0].Value, plant) || !bytes.Equal(got.Pending[3].Value, plant) {
		t.Fatal("the planted value did not round-trip")
	}
	dump := redisDump(t, c)
	if !bytes.Contains(dump, []byte("planted")) {
		t.Fatal("the dump does not hold the operation")
	}
	for enc, v := range map[string][]byte{
		"plain":      plant,
		"base64":     []byte(base64.StdEncoding.EncodeToString(plant)),
		"base64url":  []byte(base64.RawURLEncoding.EncodeToString(plant)),
		"hex":        []byte(hex.EncodeToString(plant)),
		"plain part": plant[4:18],
	} {
		if bytes.Contains(dump, v) {
			t.Errorf("Redis holds the value (%s)", enc)
		}
	}
}

// callAll calls every method of s and returns their errors by name. It
// fails the test when a call does not return within limit (a hang).
func callAll(t *testing.T, s Store, limit time.Duration) map[string]error {
	t.Helper()
	ctx := t.Context()
	name := "orgs/acme/actions/secrets/X"
	out := make(chan map[string]error, 1)
	go func() {
		_, getErr := s.GetRecord(ctx, name)
		_, listErr := s.ListRecords(ctx, "orgs/acme/actions")
		_, getOpErr := s.GetOperation(ctx, "op")
		_, updErr := s.UpdateOperation(ctx, "op", func(*Operation) error { return nil })
		_, listOpErr := s.ListOperations(ctx, OperationFilter{})
		_, keyErr := s.Key(ctx)
		out <- map[string]error{
			"PutRecord":       s.PutRecord(ctx, record(name)),
			"GetRecord":       getErr,
			"DeleteRecord":    s.DeleteRecord(ctx, name),
			"ListRecords":     listErr,
			"PutOperation":    s.PutOperation(ctx, operation("op", "a")),
			"GetOperation":    getOpErr,
			"UpdateOperation": updErr,
			"ListOperations":  listOpErr,
			"DeleteOperation": s.DeleteOperation(ctx, "op"),
			"Key":             keyErr,
		}
	}()
	select {
	case m := <-out:
		return m
	case <-time.After(limit):
		t.Fatalf("the store's calls did not return within %v", limit)
		return nil
	}
}

// TestRedisOutage: with Redis stopped, or answering nothing, every call
// fails (never ErrNotFound) within the store's timeout, without a panic;
// once Redis is back (empty, no persistence) the store works again, puts
// its key back, and a replica started after the outage shares it.
func TestRedisOutage(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := newRedisClient(t, srv.Addr)
	const prefix = "outage:"
	early := openRedis(t, c, prefix, Options{})
	key, err := early.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := early.PutRecord(ctx, record("orgs/acme/actions/secrets/KEEP")); err != nil {
		t.Fatal(err)
	}

	// A black hole: accepts connections, answers nothing.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		_ = hole.Close()
		conns.Wait()
	})
	conns.Go(func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	})
	holeClient := redis.NewClient(&redis.Options{Addr: hole.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1,
		ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	t.Cleanup(func() { _ = holeClient.Close() })
	silent, err := NewRedis(holeClient, RedisOptions{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	stopped := openRedis(t, c, prefix, Options{}) // never read a key
	tests := []struct {
		name string
		s    Store
		// keyKnown: the store read its key before the outage and still
		// hands it out.
		keyKnown bool
	}{
		{"stopped, key read before", early, true},
		{"stopped, key never read", stopped, false},
		{"answers nothing", silent, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for call, err := range callAll(t, tt.s, 30*time.Second) {
				if call == "Key" && tt.keyKnown {
					if err != nil {
						t.Errorf("Key: %v, want the key read before", err)
					}
					continue
				}
				if err == nil || errors.Is(err, ErrNotFound) {
					t.Errorf("%s during the outage: %v, want an error that is not ErrNotFound", call, err)
				}
			}
		})
	}
	// The client cuts the read at the context's deadline (a net timeout)
	// or reports the deadline itself.
	_, err = silent.GetRecord(ctx, "orgs/acme/actions/secrets/X")
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("a call to a Redis that answers nothing: %v, want the store's timeout", err)
	}

	srv.Restart() // empty: no persistence
	if _, err := early.GetRecord(ctx, "orgs/acme/actions/secrets/KEEP"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after a restart without persistence: %v, want ErrNotFound (the state is lost, not broken)", err)
	}
	if err := early.PutRecord(ctx, record("orgs/acme/actions/secrets/AGAIN")); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	late := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})
	lateKey, err := late.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lateKey, key) {
		t.Fatal("a replica started after Redis lost the key got another key: the first replica's write did not put it back")
	}
	if got, err := late.GetRecord(ctx, "orgs/acme/actions/secrets/AGAIN"); err != nil || got.Owner != "deploy" {
		t.Fatalf("late replica reads %+v, %v", got, err)
	}
}
