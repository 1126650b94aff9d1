package state

import (
	"context"
	"errors"
	"testing"
	"time"

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
	// B does not get the lease while A holds it.
	for range 3 {
		select {
		case r := <-got:
			t.Fatalf("B took the lease A holds: %v", r.err)
		default:
		}
		if n, err := c1.Exists(ctx, a.leaseKey(key)).Result(); err != nil || n != 1 {
			t.Fatalf("A's lease is gone while A holds it (%d, %v)", n, err)
		}
	}
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
