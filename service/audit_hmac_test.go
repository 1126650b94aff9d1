package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
)

// TestTrailHMACsEveryValueAndHoldsNone: the intent record of every
// plaintext write (a put, a batch's item, a sync's item, an async
// batch's and an async sync's items, run later by the operation runner)
// carries the value's HMAC-SHA256 under the operator's key, which an
// operator recomputes from the value and the key alone; a caller-sealed
// value has none; and the trail holds no value, sealed value, token or
// key in any form, and no intent without its outcome.
func TestTrailHMACsEveryValueAndHoldsNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := []byte("PLANTED-audit-key-0123456789abcdef")
		var trail syncBuffer
		h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, key)})
		closeOps(t, h.server)
		ctx := t.Context()
		value := func(i int) string { return fmt.Sprintf("%s-value-%d", plantedSecret, i) }
		mac := func(v string) string {
			m := hmac.New(sha256.New, key)
			m.Write([]byte(v))
			return hex.EncodeToString(m.Sum(nil))
		}
		want := map[string]string{} // resource → its value's HMAC
		secret := func(name string) string { return repoScope + "/secrets/" + name }

		if _, err := h.broker.PutSecret(ctx, plain(secret("PUT"), value(1))); err != nil {
			t.Fatal(err)
		}
		want[secret("PUT")] = mac(value(1))

		pk, err := h.broker.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: repoScope})
		if err != nil {
			t.Fatal(err)
		}
		sealed := sealFor(t, pk, value(2))
		if _, err := h.broker.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{Name: secret("SEALED"),
			Payload: &secretbrokerv1.PutSecretRequest_EncryptedValue{EncryptedValue: sealed}, KeyId: pk.GetKeyId()}); err != nil {
			t.Fatal(err)
		}
		want[secret("SEALED")] = ""

		if _, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Requests: []*secretbrokerv1.PutSecretRequest{
			plain(secret("BATCH0"), value(3)), plain(secret("BATCH1"), value(4)),
		}}); err != nil {
			t.Fatal(err)
		}
		want[secret("BATCH0")], want[secret("BATCH1")] = mac(value(3)), mac(value(4))

		if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", map[string]string{"SYNC": value(5)})); err != nil {
			t.Fatal(err)
		}
		want[secret("SYNC")] = mac(value(5))

		async, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: true,
			Requests: []*secretbrokerv1.PutSecretRequest{plain(secret("ASYNC"), value(6))}})
		if err != nil {
			t.Fatal(err)
		}
		waitOp(ctx, t, h.broker, async.GetOperation().GetName(), 0)
		want[secret("ASYNC")] = mac(value(6))

		req := syncReq(repoScope, "other", map[string]string{"ASYNCSYNC": value(7)})
		req.Async = true
		asyncSync, err := h.broker.SyncSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		waitOp(ctx, t, h.broker, asyncSync.GetOperation().GetName(), 0)
		want[secret("ASYNCSYNC")] = mac(value(7))

		out := trail.String()
		planted := []string{testToken, string(key), hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), sealed, plantedSecret}
		for i := 1; i <= 7; i++ {
			planted = append(planted, base64.StdEncoding.EncodeToString([]byte(value(i))))
		}
		for _, p := range planted {
			if strings.Contains(out, p) {
				t.Errorf("the trail holds %q:\n%s", p, out)
			}
		}
		type change struct{ rpc, resource string }
		open := map[change]int{}
		got := map[string]string{}
		for _, r := range trailRecords(t, out) {
			c := change{r.RPC, r.Resource}
			if r.Item != nil {
				c.resource = fmt.Sprintf("%s#%d", r.Resource, *r.Item)
			}
			switch r.Phase {
			case audit.PhaseIntent:
				open[c]++
				if _, ok := want[r.Resource]; ok {
					got[r.Resource] = r.ValueHMAC
				}
			case audit.PhaseOutcome:
				if open[c] > 0 {
					open[c]--
				}
				if r.ValueHMAC != "" {
					t.Errorf("an outcome record with a value_hmac: %+v", r)
				}
			}
		}
		for c, n := range open {
			if n != 0 {
				t.Errorf("%s %s: %d intent records without an outcome", c.rpc, c.resource, n)
			}
		}
		for res, w := range want {
			if g, ok := got[res]; !ok || g != w {
				t.Errorf("%s: intent value_hmac %q (found %v), want %q", res, g, ok, w)
			}
		}
	})
}
