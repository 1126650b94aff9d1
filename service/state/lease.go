package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bsm/redislock"
)

// SecretLocker is implemented by a store that several replicas share
// (Redis): it extends a replica's own lock of a secret's writes to every
// replica, so that two replicas never write one secret at once. Without
// it a prune's DELETE on one replica and another owner's write of the same
// secret on another, both in flight at once, could reach GitHub in either
// order, and the DELETE could remove a write the other replica had
// acknowledged. A store only one process uses does not implement it: the
// replica's own lock is enough there.
type SecretLocker interface {
	// LockSecret waits until no other replica holds the write lease of
	// key (a secret's key) and takes it, or returns an error when ctx
	// ends first or the store cannot be reached. held is ctx, cancelled
	// (with ErrLeaseLost as its cause) when the lease cannot be kept: a
	// write under it must not go on without it. release gives the lease
	// back (safe to call more than once) and cancels held.
	LockSecret(ctx context.Context, key string) (held context.Context, release func(), err error)
}

// ErrLeaseLost is the cause of a held context cancelled because its lease
// ended: the store no longer held it, or could not be reached to renew it
// before it could have expired.
var ErrLeaseLost = errors.New("state: the secret's write lease was lost")

// Defaults of the write lease.
const (
	// DefaultLeaseTTL is how long a lease outlives its last renewal: a
	// replica that dies holding a lease blocks the secret's writes on the
	// others that long at most. It is renewed every third of it while
	// held, however long the write waits for the pacer.
	DefaultLeaseTTL = 30 * time.Second

	// leaseWaitMin and leaseWaitMax bound the pause between two tries of
	// a lease another replica holds (doubling from the first to the
	// second).
	leaseWaitMin = 10 * time.Millisecond
	leaseWaitMax = 500 * time.Millisecond

	// leaseReleaseWait bounds the giving back of a lease.
	leaseReleaseWait = time.Second
)

var _ SecretLocker = (*Redis)(nil)

// leaseKey holds a secret's write lease: P + "lease:" + key, a random
// token of the holder, expiring leaseTTL after its last renewal.
func (r *Redis) leaseKey(key string) string { return r.prefix + "lease:" + key }

// LockSecret takes key's write lease in Redis (github.com/bsm/redislock:
// SET NX PX, renewed and released only by the token that took it). It is
// a lease, not a fence: a holder stalled past the lease's TTL (a frozen
// VM) may still send its request after another replica took the lease;
// GitHub takes no fencing token.
func (r *Redis) LockSecret(ctx context.Context, key string) (context.Context, func(), error) {
	if r.closed.Load() {
		return nil, nil, fmt.Errorf("state: redis: taking the secret's write lease: %w", ErrClosed)
	}
	ttl := r.leaseTTL
	locker := redislock.New(r.client)
	var lock *redislock.Lock
	for {
		// Each Obtain keeps trying while another replica holds the lease,
		// within a bound of its own: past it, it starts again, until ctx
		// ends. Any other error (Redis unreachable, a timeout talking to
		// it) is returned at once.
		octx, cancel := context.WithTimeout(ctx, ttl)
		var err error
		lock, err = locker.Obtain(octx, r.leaseKey(key), ttl, &redislock.Options{
			RetryStrategy: redislock.ExponentialBackoff(leaseWaitMin, leaseWaitMax),
		})
		waited := octx.Err() != nil
		cancel()
		if err == nil {
			break
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, nil, fmt.Errorf("state: waiting for another replica's write of the secret: %w", ctxErr)
		}
		if !errors.Is(err, redislock.ErrNotObtained) && !waited {
			return nil, nil, fmt.Errorf("state: redis: taking the secret's write lease: %w", err)
		}
	}
	held, cancelHeld := context.WithCancelCause(ctx)
	stop, stopped := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.keepLease(stop, lock, ttl, cancelHeld) })
	release := sync.OnceFunc(func() {
		stopped() // also ends a renewal in progress
		wg.Wait()
		cancelHeld(context.Canceled)
		// Given back before the write answers (one round trip), so that a
		// shutdown that waits for the answers leaves no lease behind; a
		// Redis that stalls holds the answer leaseReleaseWait at most. A
		// lease that cannot be given back expires on its own.
		rctx, done := context.WithTimeout(context.Background(), min(r.timeout, leaseReleaseWait))
		defer done()
		_ = lock.Release(rctx)
	})
	return held, release, nil
}

// keepLease renews lock every third of ttl until stop ends. When Redis
// says the lease is no longer lock's, or no renewal succeeded for two
// thirds of ttl (so the lease may expire before the next could), it
// cancels the holder's context with ErrLeaseLost.
func (r *Redis) keepLease(stop context.Context, lock *redislock.Lock, ttl time.Duration, cancel context.CancelCauseFunc) {
	every := ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-stop.Done():
			return
		case <-t.C:
		}
		ctx, done := context.WithTimeout(stop, min(r.timeout, every))
		err := lock.Refresh(ctx, ttl, nil)
		done()
		switch {
		case stop.Err() != nil:
			return
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, redislock.ErrNotObtained), time.Since(renewed) >= 2*every:
			cancel(ErrLeaseLost)
			return
		}
	}
}
