package service

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/secretbroker/secretbroker/upstream"
)

// writeBeforePut is an Upstream that runs before (once, when set) just
// before the next PUT of a secret is sent: a write behind the broker's
// back between what the broker read and what it writes. It keeps the
// client's PutValueOptional.
type writeBeforePut struct {
	Upstream
	vo     func(upstream.Scope) bool
	mu     sync.Mutex
	before func()
}

func (w *writeBeforePut) PutValueOptional(s upstream.Scope) bool { return w.vo(s) }

func (w *writeBeforePut) arm(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.before = f
}

func (w *writeBeforePut) PutSecretFunc(ctx context.Context, s upstream.Scope, name string, body func() (upstream.PutSecretBody, error)) (upstream.Written, error) {
	w.mu.Lock()
	f := w.before
	w.before = nil
	w.mu.Unlock()
	if f != nil {
		f()
	}
	return w.Upstream.PutSecretFunc(ctx, s, name, body)
}

// TestPutSettingsOnlyWrittenMeanwhile: a value written behind the broker's
// back after a put without a value read the secret (seenExisting) and
// before its PUT went out (waiting for the pacer, say) is the value GitHub
// keeps; its updated_at is then the settings-only write's own. The record
// of that write must not vouch for the old value: the next put of the old
// value goes to GitHub, and GitHub holds it afterwards, instead of being
// answered unchanged over the other value (a lost write).
func TestPutSettingsOnlyWrittenMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		w := &writeBeforePut{}
		h := newHarness(t, harnessOpts{wrap: func(up Upstream) Upstream {
			w.Upstream, w.vo = up, valueOptionalOf(up)
			return w
		}})
		const name = orgScope + "/secrets/ORG_DB"
		if _, err := h.broker.PutSecret(ctx, orgPut(name, plantedSecret, "private")); err != nil {
			t.Fatal(err)
		}
		scope, secret, err := parseSecretName("name", name)
		if err != nil {
			t.Fatal(err)
		}
		const other = "written-behind-the-brokers-back"
		w.arm(func() {
			pk, err := h.client.GetPublicKey(ctx, scope)
			if err != nil {
				t.Error(err)
				return
			}
			k, err := decodeKey(pk)
			if err != nil {
				t.Error(err)
				return
			}
			sealed, err := seal(&k.key, []byte(other))
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := h.client.PutSecret(ctx, scope, secret, upstream.PutSecretBody{EncryptedValue: sealed, KeyID: k.id, Visibility: "private"}); err != nil {
				t.Error(err)
			}
		})
		if _, err := h.broker.PutSecret(ctx, settingsOnly(name, "all")); err != nil {
			t.Fatal(err)
		}
		if v, err := h.emu.Open(orgScope, "ORG_DB"); err != nil || string(v) != other {
			t.Fatalf("GitHub does not hold the value written meanwhile (err %v)", err)
		}
		got, err := h.broker.PutSecret(ctx, orgPut(name, plantedSecret, "all"))
		if err != nil {
			t.Fatal(err)
		}
		if got.GetUnchanged() {
			t.Errorf("the old value after the settings-only put: answered unchanged while GitHub holds another")
		}
		if v, err := h.emu.Open(orgScope, "ORG_DB"); err != nil || string(v) != plantedSecret {
			t.Errorf("GitHub does not hold the value put last (err %v): a lost write", err)
		}
	})
}
