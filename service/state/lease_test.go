package state

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// TestRedisSecretLease: two replicas (two stores, two clients, one
// prefix). A secret's lease is held by one replica at a time: the other's
// LockSecret waits until it is released, then gets it; another secret's
// lease is apart; a wait ends with its context. A lease the holder can no
// longer keep (here taken away in Redis) cancels the holder's context
// with ErrLeaseLost, and releasing it then does no harm. With Redis gone,
// LockSecret fails at once with an error that is not its context's.
func TestRedisSecretLease(t *testing.T) {
	srv := redistest.Start(t)
	c1, c2 := newRedisClient(t, srv.Addr), newRedisClient(t, srv.Addr)
	a := openRedis(t, c1, "lease:state:", Options{})
	b := openRedis(t, c2, "lease:state:", Options{})
	// B's leases are shorter than the default, renewed every second, so
	// that a lost one is noticed within a second or two; still long
	// enough that a busy machine's pauses do not let one expire.
	b.leaseTTL = 3 * time.Second
	ctx := t.Context()
	const key, other = "repos/o/r/actions/secrets/X", "repos/o/r/actions/secrets/Y"

	heldA, releaseA, err := a.LockSecret(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, err := c1.PTTL(ctx, a.leaseKey(key)).Result(); err != nil || ttl <= 0 || ttl > DefaultLeaseTTL {
		t.Fatalf("the lease's key: PTTL %v (%v), want within (0, %s]", ttl, err, DefaultLeaseTTL)
	}
	// Another secret's lease is apart.
	_, releaseOther, err := b.LockSecret(ctx, other)
	if err != nil {
		t.Fatalf("another secret's lease: %v", err)
	}
	releaseOther()

	// B waits for A's lease, and gets it once A releases it.
	type result struct {
		held    context.Context
		release func()
		err     error
	}
	got := make(chan result, 1)
	go func() {
		held, release, err := b.LockSecret(ctx, key)
		got <- result{held, release, err}
	}()
	// (That B cannot take a lease A holds is shown below, by A's wait
	// for B's lease, which ends with A's deadline.)
	releaseA()
	if heldA.Err() == nil {
		t.Error("A's held context is not done after its release")
	}
	releaseA() // again: nothing
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("B did not get the lease A released")
	}
	if r.err != nil {
		t.Fatalf("B after A's release: %v", r.err)
	}

	// A's wait ends with its context while B holds the lease.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, _, err = a.LockSecret(wctx, key)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A's LockSecret while B holds the lease: %v, want its deadline", err)
	}

	// B's lease is taken away in Redis: B's renewal notices and cancels
	// B's context with ErrLeaseLost; releasing it after does no harm.
	if err := c1.Del(ctx, b.leaseKey(key)).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.held.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("B's context is not cancelled after its lease was taken away")
	}
	if cause := context.Cause(r.held); !errors.Is(cause, ErrLeaseLost) {
		t.Errorf("B's context ended with %v, want ErrLeaseLost", cause)
	}
	r.release()

	// Redis gone: an error at once, not a wait.
	srv.Stop()
	_, _, err = a.LockSecret(ctx, key)
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockSecret with Redis stopped: %v, want Redis's error", err)
	}
}

// timeoutDial is a dial that timed out, as net's is: its error is also
// context.DeadlineExceeded.
func timeoutDial(dials *atomic.Int64) func(context.Context, string, string) (net.Conn, error) {
	return func(_ context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("i/o timeout: %w", context.DeadlineExceeded)}
	}
}

// TestRedisSecretLeaseUnreachable: Redis that cannot be reached because
// each dial times out (a host that drops packets) fails LockSecret at once
// with Redis's error, for the caller to go on without the lease or refuse;
// it is not taken for a lease another replica holds and tried again.
func TestRedisSecretLeaseUnreachable(t *testing.T) {
	var dials atomic.Int64
	c := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:1",
		Dialer:                timeoutDial(&dials),
		DialTimeout:           time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	r, err := NewRedis(c, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, _, err = r.LockSecret(ctx, "repos/o/r/actions/secrets/X")
	if err == nil || ctx.Err() != nil {
		t.Fatalf("LockSecret with every dial timing out: %v (its context: %v), want Redis's error before the deadline", err, ctx.Err())
	}
	if n := dials.Load(); n > 10 {
		t.Errorf("%d dials for one LockSecret, want a few (no retry loop)", n)
	}
}
