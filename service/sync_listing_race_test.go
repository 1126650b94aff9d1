package service

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// listingHook runs hook (once, when armed) after a scope listing was read
// and before it is returned: a write lands between a sync's listing and
// its items.
type listingHook struct {
	Upstream
	hook atomic.Pointer[func()]
}

func (u *listingHook) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	list, err := u.Upstream.ListSecrets(ctx, s, p)
	if f := u.hook.Swap(nil); f != nil {
		(*f)()
	}
	return list, err
}

// TestSyncItemAfterConcurrentPutIsNoDrift: a PutSecret through the broker
// that lands after a sync listed the scope and before the sync's item of
// that secret is the broker's own write, not drift: the item is an update
// (written, GitHub holds the sync's value) without drift. Found by
// FuzzBrokerModel (a sync and a put of one secret at once).
func TestSyncItemAfterConcurrentPutIsNoDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook := &listingHook{}
		h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { hook.Upstream = u; return hook }})
		ctx := t.Context()
		secret := repoScope + "/secrets/RACED"
		if _, err := h.broker.PutSecret(ctx, plain(secret, "value-one")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		put := func() {
			resp, err := h.broker.PutSecret(ctx, plain(secret, "value-two"))
			if err != nil || resp.GetUnchanged() || resp.GetDrift() {
				t.Errorf("the put between listing and item: %v, %v", resp, err)
			}
		}
		hook.hook.Store(&put)
		resp, err := h.broker.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Secrets: map[string]string{"RACED": "value-one"}})
		if err != nil {
			t.Fatal(err)
		}
		if hook.hook.Load() != nil {
			t.Fatal("the sync listed no scope")
		}
		res := resp.GetResults()
		if len(res) != 1 || res[0].GetAction() != secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE || res[0].GetDrift() || res[0].GetCode() != 0 {
			t.Errorf("sync results %v, want RACED updated without drift", res)
		}
		if got, err := h.emu.Open(repoScope, "RACED"); err != nil || string(got) != "value-one" {
			t.Errorf("GitHub holds %q, %v; want the sync's value-one", got, err)
		}
	})
}

// preListingHook runs hook (once, when armed) before a scope listing is
// read: a write lands between a batch's reading of its records and its
// listing.
type preListingHook struct {
	Upstream
	hook atomic.Pointer[func()]
}

func (u *preListingHook) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	if f := u.hook.Swap(nil); f != nil {
		(*f)()
	}
	return u.Upstream.ListSecrets(ctx, s, p)
}

// TestBatchItemAfterConcurrentPutIsNoDrift: a PutSecret through the broker
// that lands while a batch lists the scope of an item of that secret is the
// broker's own write, not drift: the item is written without drift.
func TestBatchItemAfterConcurrentPutIsNoDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hook := &preListingHook{}
		h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { hook.Upstream = u; return hook }})
		ctx := t.Context()
		secret := repoScope + "/secrets/RACED"
		if _, err := h.broker.PutSecret(ctx, plain(secret, "value-one")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		put := func() {
			resp, err := h.broker.PutSecret(ctx, plain(secret, "value-two"))
			if err != nil || resp.GetUnchanged() || resp.GetDrift() {
				t.Errorf("the put before the listing: %v, %v", resp, err)
			}
			time.Sleep(time.Second)
		}
		hook.hook.Store(&put)
		resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{plain(secret, "value-one")}})
		if err != nil {
			t.Fatal(err)
		}
		if hook.hook.Load() != nil {
			t.Fatal("the batch listed no scope")
		}
		res := resp.GetResults()
		if len(res) != 1 || res[0].GetUnchanged() || res[0].GetDrift() || res[0].GetCode() != 0 {
			t.Errorf("batch results %v, want RACED written without drift", res)
		}
		if got, err := h.emu.Open(repoScope, "RACED"); err != nil || string(got) != "value-one" {
			t.Errorf("GitHub holds %q, %v; want the batch's value-one", got, err)
		}
	})
}
