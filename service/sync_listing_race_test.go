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

// listingHook runs hook (once, when armed) around a scope listing:
// before it is read (before), or after it was read and before it is
// returned, so that a write lands between a batch's reading of its records
// and its listing, or between a sync's listing and its items.
type listingHook struct {
	Upstream
	before bool
	hook   atomic.Pointer[func()]
}

func (u *listingHook) fire() {
	if f := u.hook.Swap(nil); f != nil {
		(*f)()
	}
}

func (u *listingHook) ListSecrets(ctx context.Context, s upstream.Scope, p upstream.Page) (upstream.SecretList, error) {
	if u.before {
		u.fire()
	}
	list, err := u.Upstream.ListSecrets(ctx, s, p)
	if !u.before {
		u.fire()
	}
	return list, err
}

// racedSecret is the secret a call writes while another call of it lists
// its scope.
const racedSecret = repoScope + "/secrets/RACED"

// raceAtListing returns a broker (in the caller's synctest bubble) that
// wrote "value-one" to racedSecret a minute ago, and whose next scope
// listing runs a PutSecret of "value-two" (before or after the listing is
// read), which must be written without drift. The caller then checks the
// hook fired (hook.Load() is nil).
func raceAtListing(t *testing.T, before bool) (*harness, *listingHook) {
	t.Helper()
	hook := &listingHook{before: before}
	h := newHarness(t, harnessOpts{wrap: func(u Upstream) Upstream { hook.Upstream = u; return hook }})
	ctx := t.Context()
	if _, err := h.broker.PutSecret(ctx, plain(racedSecret, "value-one")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute) // fake time: the caller's bubble
	put := func() {
		resp, err := h.broker.PutSecret(ctx, plain(racedSecret, "value-two"))
		if err != nil || resp.GetUnchanged() || resp.GetDrift() {
			t.Errorf("the put at the listing: %v, %v", resp, err)
		}
		if before {
			time.Sleep(time.Second) // the listing is read after the put, not at its instant
		}
	}
	hook.hook.Store(&put)
	return h, hook
}

// TestSyncItemAfterConcurrentPutIsNoDrift: a PutSecret through the broker
// that lands after a sync listed the scope and before the sync's item of
// that secret is the broker's own write, not drift: the item is an update
// (written, GitHub holds the sync's value) without drift. Found by
// FuzzBrokerModel (a sync and a put of one secret at once).
func TestSyncItemAfterConcurrentPutIsNoDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, hook := raceAtListing(t, false)
		resp, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Secrets: map[string]string{"RACED": "value-one"}})
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

// TestBatchItemAfterConcurrentPutIsNoDrift: a PutSecret through the broker
// that lands while a batch lists the scope of an item of that secret is the
// broker's own write, not drift: the item is written without drift.
func TestBatchItemAfterConcurrentPutIsNoDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, hook := raceAtListing(t, true)
		resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{plain(racedSecret, "value-one")}})
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
