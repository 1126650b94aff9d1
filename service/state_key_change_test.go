package service

import (
	"bytes"
	"context"
	"maps"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// rekeyedStore is a store whose server key is key: the same records, read
// by a broker started with another --state-hmac-key-file (or a replica
// still on the key Redis held before it lost its data).
type rekeyedStore struct {
	state.Store
	key []byte
}

func (r rekeyedStore) Key(context.Context) ([]byte, error) { return bytes.Clone(r.key), nil }

// Fingerprints made under another server key say nothing of a value or
// settings: a broker on a new key writes every put (never unchanged),
// reports no drift for organization secrets whose settings GitHub still
// holds as written (their settings fingerprint cannot be compared), and
// its prune deletes such a secret rather than refusing it as changed at
// GitHub; a change of the value made at GitHub is still drift (updated_at).
// Once written under the new key, a secret is judged unchanged again.
func TestServerKeyChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{HMACKey: bytes.Repeat([]byte{1}, state.MinKeyLen)})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st})
		closeOps(t, h.server)
		ctx := t.Context()
		const scope = "orgs/octo-org/actions"
		a := h.repoID(t, "hello-world")
		sync := func(b secretbrokerv1.SecretServiceClient, secrets map[string]string, prune bool) map[string]string {
			t.Helper()
			resp, err := b.SyncSecrets(ctx, &secretbrokerv1.SyncSecretsRequest{Parent: scope, Owner: "team-a", Visibility: "selected",
				SelectedRepositoryIds: []int64{a}, Secrets: secrets, Prune: prune})
			if err != nil {
				t.Fatal(err)
			}
			return pruneResults(t, resp.GetResults())
		}
		sync(h.broker, map[string]string{"S": plantedSecret, "T": plantedSecret, "U": plantedSecret}, false)
		time.Sleep(time.Minute)
		if _, err := otherTool(t, h).broker.PutSecret(ctx, orgPut(scope+"/secrets/U", plantedSecret+"-by-hand", "selected", a)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)

		rekeyed := newHarnessWith(t, h.client, h.logs, Options{State: rekeyedStore{st, bytes.Repeat([]byte{2}, state.MinKeyLen)}})
		closeOps(t, rekeyed.server)
		dd, err := rekeyed.broker.DetectDrift(ctx, &secretbrokerv1.DetectDriftRequest{Parent: scope})
		if err != nil {
			t.Fatal(err)
		}
		var drifted []string
		for _, d := range dd.GetDrifted() {
			drifted = append(drifted, d.GetSecret().GetSecretId())
		}
		if len(drifted) != 1 || drifted[0] != "U" {
			t.Errorf("DetectDrift under the new key: drifted %v, want [U] (changed by hand)", drifted)
		}
		got := sync(rekeyed.broker, map[string]string{"S": plantedSecret}, true)
		want := map[string]string{"S": "UPDATE OK", "T": "DELETE OK", "U": "DELETE FAILED_PRECONDITION drift"}
		if !maps.Equal(got, want) {
			t.Errorf("prune under the new key: %v, want %v", got, want)
		}
		time.Sleep(time.Minute)
		if got := sync(rekeyed.broker, map[string]string{"S": plantedSecret}, false); got["S"] != "UNCHANGED OK" {
			t.Errorf("S written under the new key, synced again: %s, want UNCHANGED OK", got["S"])
		}
	})
}
