package service

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// An operation's item says created when GitHub answered its PUT 201, and
// only then, whatever the scope's listing said: the listing may not have
// been read (a failure) or may be older than the write.
func TestOperationCreatedIsGitHubsAnswer(t *testing.T) {
	const scope = "repos/octo-org/hello-world/actions"
	t.Run("listing unreadable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			closeOps(t, h.server)
			h.emu.InjectFault(emulator.Fault{Route: emulator.RouteListRepoSecrets, Status: 503, Times: 100})
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
				Requests: []*secretbrokerv1.PutSecretRequest{plain(scope+"/secrets/BRAND_NEW", "v")}})
			if err != nil {
				t.Fatal(err)
			}
			op := waitOp(t.Context(), t, h.broker, resp.GetOperation().GetName(), 0)
			rs := op.GetResponse().GetBatchPutResults()
			if len(rs) != 1 || rs[0].GetCode() != 0 || !rs[0].GetCreated() {
				t.Fatalf("results %v; want one OK item created (GitHub answered 201; PUTs %+v)", rs, h.upstream.calls("PUT"))
			}
		})
	})
	t.Run("listing older than the write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pacing := upstream.DefaultPacing()
			pacing.WriteInterval = 100 * time.Second
			h := newHarness(t, harnessOpts{pacing: &pacing})
			closeOps(t, h.server)
			other, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: upstream.Token(testToken),
				HTTPClient: &http.Client{Transport: h.upstream}})
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"BATCH", "SYNC"} {
				first, second := kind+"_FIRST", kind+"_SECOND"
				var opName string
				if kind == "BATCH" {
					resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{Async: true,
						Requests: []*secretbrokerv1.PutSecretRequest{plain(scope+"/secrets/"+first, "v"), plain(scope+"/secrets/"+second, "v")}})
					if err != nil {
						t.Fatal(err)
					}
					opName = resp.GetOperation().GetName()
				} else {
					resp, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: scope, Async: true,
						Secrets: map[string]string{first: "v", second: "v"}})
					if err != nil {
						t.Fatal(err)
					}
					opName = resp.GetOperation().GetName()
				}
				// The first PUT goes at once, the second 100 s later;
				// meanwhile someone creates the second straight at GitHub.
				time.Sleep(50 * time.Second)
				pk, err := other.GetPublicKey(t.Context(), mustScope(t, scope))
				if err != nil {
					t.Fatal(err)
				}
				sealed := sealFor(t, &secretbrokerv1.PublicKey{KeyId: string(pk.KeyID), Key: pk.Key}, "theirs")
				if _, err := other.PutSecret(t.Context(), mustScope(t, scope), second, upstream.PutSecretBody{EncryptedValue: sealed, KeyID: pk.KeyID}); err != nil {
					t.Fatal(err)
				}
				op := waitOp(t.Context(), t, h.broker, opName, 0)
				created := map[string]bool{}
				for _, r := range op.GetResponse().GetBatchPutResults() {
					created[r.GetName()] = r.GetCreated()
				}
				for _, r := range op.GetResponse().GetSyncResults() {
					created[r.GetName()] = r.GetAction() == secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
				}
				want := map[string]bool{scope + "/secrets/" + first: true, scope + "/secrets/" + second: false}
				for name, w := range want {
					if got, ok := created[name]; !ok || got != w {
						t.Errorf("%s: %s reported created=%v (present %v), want %v: GitHub answered %s", kind, name, got, ok, w,
							map[bool]string{true: "201", false: "204"}[w])
					}
				}
				time.Sleep(200 * time.Second) // the pacer's spacing, before the next kind
			}
		})
	})
}
