package service

import (
	"context"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// An operation's item results carry the key_id the value was sealed with,
// as a synchronous batch's and sync's do: for a value written, the
// scope's key; for a batch item found unchanged, the key_id recorded when
// it was written.
func TestOperationResultsCarryKeyID(t *testing.T) {
	const scope = "repos/octo-org/hello-world/actions"
	names := []string{scope + "/secrets/ONE", scope + "/secrets/TWO"}
	// Each call writes ONE and TWO with the values given and returns each
	// item's key_id (and whether it was left unchanged).
	type result struct {
		keyID     string
		unchanged bool
	}
	batch := func(async bool) func(context.Context, *testing.T, *harness, string) map[string]result {
		return func(ctx context.Context, t *testing.T, h *harness, value string) map[string]result {
			resp, err := h.broker.BatchPutSecrets(ctx, &secretbrokerv1.BatchPutSecretsRequest{Async: async,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(names[0], value), plain(names[1], value)}})
			if err != nil {
				t.Fatal(err)
			}
			rs := resp.GetResults()
			if async {
				rs = waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0).GetResponse().GetBatchPutResults()
			}
			out := map[string]result{}
			for _, r := range rs {
				if r.GetCode() != 0 {
					t.Fatalf("%s: %v %s", r.GetName(), r.GetCode(), r.GetMessage())
				}
				out[r.GetName()] = result{r.GetKeyId(), r.GetUnchanged()}
			}
			return out
		}
	}
	sync := func(async bool) func(context.Context, *testing.T, *harness, string) map[string]result {
		return func(ctx context.Context, t *testing.T, h *harness, value string) map[string]result {
			resp, err := h.broker.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: scope, Async: async,
				Secrets: map[string]string{"ONE": value, "TWO": value}})
			if err != nil {
				t.Fatal(err)
			}
			rs := resp.GetResults()
			if async {
				rs = waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0).GetResponse().GetSyncResults()
			}
			out := map[string]result{}
			for _, r := range rs {
				if r.GetCode() != 0 {
					t.Fatalf("%s: %v %s", r.GetName(), r.GetCode(), r.GetMessage())
				}
				out[r.GetName()] = result{r.GetKeyId(), r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED}
			}
			return out
		}
	}
	for _, tc := range []struct {
		name  string
		write func(context.Context, *testing.T, *harness, string) map[string]result
		// unchangedKeyID: an item left unchanged carries the recorded
		// key_id (a batch's); a sync's carries one only when written.
		unchangedKeyID bool
	}{
		{"batch", batch(false), true},
		{"async batch", batch(true), true},
		{"sync", sync(false), false},
		{"async sync", sync(true), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				pk, err := h.broker.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: scope})
				if err != nil {
					t.Fatal(err)
				}
				for _, round := range []struct {
					value     string
					unchanged bool
				}{{"first", false}, {"changed", false}, {"changed", true}} {
					got := tc.write(ctx, t, h, round.value)
					for _, name := range names {
						r, ok := got[name]
						want := pk.GetKeyId()
						if round.unchanged && !tc.unchangedKeyID {
							want = ""
						}
						if !ok || r.unchanged != round.unchanged || r.keyID != want {
							t.Errorf("value %q: %s: %+v (present %v), want key_id %q, unchanged %v", round.value, name, r, ok, want, round.unchanged)
						}
					}
				}
			})
		})
	}
}
