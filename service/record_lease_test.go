package service

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// leaseTable holds the secrets' write leases that replicas share (what
// Redis holds for state.Redis): one channel per key, with a token in it
// while a replica holds the lease. down makes LockSecret fail, as with
// Redis unreachable.
type leaseTable struct {
	mu      sync.Mutex
	held    map[string]chan struct{}
	down    bool
	taken   int
	holders map[string]context.CancelCauseFunc // the held context of each lease held
}

// lose makes the lease of key lost, as when Redis no longer holds it.
func (t *leaseTable) lose(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cancel := t.holders[key]; cancel != nil {
		cancel(state.ErrLeaseLost)
	}
}

// leasedStore is one replica's view of a store the replicas share: the
// same records and operations, and the leases of table.
type leasedStore struct {
	state.Store
	table *leaseTable
}

var _ state.SecretLocker = (*leasedStore)(nil)

func (l *leasedStore) LockSecret(ctx context.Context, key string) (context.Context, func(), error) {
	t := l.table
	t.mu.Lock()
	if t.down {
		t.mu.Unlock()
		return nil, nil, errors.New("redis: connection refused")
	}
	if t.held == nil {
		t.held = map[string]chan struct{}{}
	}
	ch := t.held[key]
	if ch == nil {
		ch = make(chan struct{}, 1)
		t.held[key] = ch
	}
	t.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	held, cancel := context.WithCancelCause(ctx)
	t.mu.Lock()
	t.taken++
	if t.holders == nil {
		t.holders = map[string]context.CancelCauseFunc{}
	}
	t.holders[key] = cancel
	t.mu.Unlock()
	return held, sync.OnceFunc(func() {
		t.mu.Lock()
		delete(t.holders, key)
		t.mu.Unlock()
		cancel(context.Canceled)
		<-ch
	}), nil
}

// heldDeletes holds every DeleteSecret until release is closed, and says
// on deleting when one is held.
type heldDeletes struct {
	Upstream
	deleting chan struct{}
	release  chan struct{}
}

func (h *heldDeletes) DeleteSecret(ctx context.Context, s upstream.Scope, name string) error {
	h.deleting <- struct{}{}
	<-h.release
	return h.Upstream.DeleteSecret(ctx, s, name)
}

// leasedReplicas returns two brokers sharing one upstream (one GitHub) and
// one store, each with its own view of the leases table: replica A's
// deletes are held by its heldDeletes.
func leasedReplicas(t *testing.T, table *leaseTable) (a, b *harness, held *heldDeletes) {
	t.Helper()
	mem, err := state.NewMemory(state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	held = &heldDeletes{deleting: make(chan struct{}, 1), release: make(chan struct{})}
	a = newHarness(t, harnessOpts{state: &leasedStore{Store: mem, table: table}, wrap: func(u Upstream) Upstream { held.Upstream = u; return held }})
	logs := &syncBuffer{}
	b = newHarnessWith(t, a.client, logs, Options{Logger: newTestLogger(logs), State: &leasedStore{Store: mem, table: table}})
	return a, b, held
}

// TestPruneHoldsOtherReplicasWrite: a prune's DELETE in flight on one
// replica and another owner's put of the same secret on another replica.
// The put waits for the secret's write lease until the DELETE has landed,
// then writes: the value it acknowledged is the one GitHub keeps. (Without
// the lease the put is answered first, and the DELETE lands after it and
// removes it.)
func TestPruneHoldsOtherReplicasWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		table := &leaseTable{}
		a, b, held := leasedReplicas(t, table)
		ctx := t.Context()
		const name = repoScope + "/secrets/CONTESTED"
		if _, err := a.broker.PutSecret(as(ctx, "token:old"), plain(name, "old-owners-value")); err != nil {
			t.Fatal(err)
		}

		pruned := make(chan *secretbrokerv1.SyncSecretsResponse, 1)
		go func() {
			resp, err := a.broker.SyncSecrets(as(ctx, "token:old"), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Prune: true,
				ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"CONTESTED"}}})
			if err != nil {
				t.Errorf("the prune: %v", err)
			}
			pruned <- resp
		}()
		<-held.deleting // A's DELETE is about to be sent, under the lease
		release := sync.OnceFunc(func() { close(held.release) })
		defer release() // also when the test fails first: the bubble's goroutines end

		put := make(chan error, 1)
		go func() {
			_, err := b.broker.PutSecret(as(ctx, "token:new"), plain(name, plantedSecret))
			put <- err
		}()
		// A minute of the bubble's time: every wait of B's but the lease's
		// (the pacer's write spacing) is over.
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case err := <-put:
			t.Fatalf("B's put was answered (%v) while A's DELETE of the secret was in flight", err)
		default:
		}
		release()
		if resp := <-pruned; resp != nil {
			for _, r := range resp.GetResults() {
				if r.GetName() == name && (r.GetAction() != secretbrokerv1.SyncAction_SYNC_ACTION_DELETE || codes.Code(r.GetCode()) != codes.OK) {
					t.Errorf("the prune's result for the secret: %v", r)
				}
			}
		}
		if err := <-put; err != nil {
			t.Fatalf("B's put: %v", err)
		}
		got, err := a.emu.Open(repoScope, "CONTESTED")
		if err != nil || string(got) != plantedSecret {
			t.Fatalf("GitHub does not hold B's acknowledged value (%v)", err)
		}
		table.mu.Lock()
		defer table.mu.Unlock()
		if table.taken < 3 {
			t.Errorf("%d leases taken, want one per write (3)", table.taken)
		}
	})
}

// TestPruneNeedsLease: with the shared store's leases unreachable, a
// put is written without its lease (as without its record), but a prune's
// delete is refused with UNAVAILABLE and nothing is deleted.
func TestPruneNeedsLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		table := &leaseTable{}
		a, _, held := leasedReplicas(t, table)
		close(held.release)
		ctx := t.Context()
		const name = repoScope + "/secrets/KEPT"
		if _, err := a.broker.PutSecret(as(ctx, "token:old"), plain(name, "first")); err != nil {
			t.Fatal(err)
		}
		table.mu.Lock()
		table.down = true
		table.mu.Unlock()
		if _, err := a.broker.PutSecret(as(ctx, "token:old"), plain(name, plantedSecret)); err != nil {
			t.Fatalf("a put with the leases unreachable: %v", err)
		}
		resp, err := a.broker.SyncSecrets(as(ctx, "token:old"), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Prune: true,
			ExpectedDeletes: &secretbrokerv1.ExpectedDeletes{SecretNames: []string{"KEPT"}}})
		if err != nil {
			t.Fatal(err)
		}
		var seen bool
		for _, r := range resp.GetResults() {
			if r.GetName() != name {
				continue
			}
			seen = true
			if codes.Code(r.GetCode()) != codes.Unavailable {
				t.Errorf("the prune's delete with the leases unreachable: %v %q, want UNAVAILABLE", codes.Code(r.GetCode()), r.GetMessage())
			}
		}
		if !seen {
			t.Fatalf("the prune did not plan the secret's delete: %v", resp.GetResults())
		}
		if got, err := a.emu.Open(repoScope, "KEPT"); err != nil || string(got) != plantedSecret {
			t.Fatalf("GitHub does not hold the secret's last value (%v), want it kept", err)
		}
		if n := len(held.deleting); n != 0 {
			t.Errorf("%d DELETEs reached the upstream client", n)
		}
	})
}

// TestLostLeaseIsUnavailable: a write whose lease is lost before its
// request is sent is not sent, and its caller gets UNAVAILABLE (it did
// not cancel anything), not CANCELLED.
func TestLostLeaseIsUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		table := &leaseTable{}
		a, _, held := leasedReplicas(t, table)
		ctx := t.Context()
		const name = repoScope + "/secrets/LOST_LEASE"
		if _, err := a.broker.PutSecret(ctx, plain(name, plantedSecret)); err != nil {
			t.Fatal(err)
		}
		deleted := make(chan error, 1)
		go func() {
			_, err := a.broker.DeleteSecret(ctx, &secretbrokerv1.DeleteSecretRequest{Name: name})
			deleted <- err
		}()
		<-held.deleting
		table.lose(name)
		close(held.release)
		if err := <-deleted; status.Code(err) != codes.Unavailable {
			t.Fatalf("DeleteSecret whose lease was lost: %v, want UNAVAILABLE", err)
		}
		if got, err := a.emu.Open(repoScope, "LOST_LEASE"); err != nil || string(got) != plantedSecret {
			t.Fatalf("GitHub does not hold the secret's value (%v), want it kept: the DELETE was sent without its lease", err)
		}
	})
}
