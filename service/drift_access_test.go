package service

import (
	"slices"
	"testing"
	"testing/synctest"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// TestDetectDriftConfinedToReadSet: a caller that may read some secrets
// of the scope (PAY_*) and write, not read, another (DB_PASSWORD) is told
// drift, unmanaged and missing secrets only among those it may read:
// nothing of the write-only secret's drift, nor of secrets it may not
// touch at all.
func TestDetectDriftConfinedToReadSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := state.NewMemory(state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, harnessOpts{state: st, authz: mustPolicy(t)})
		admin := as(t.Context(), "token:admin")
		for _, n := range []string{"PAY_DRIFT", "PAY_GONE", "PAY_FOREIGN", "DB_PASSWORD", "HIDDEN_GONE", "HIDDEN_FOREIGN"} {
			if _, err := h.broker.PutSecret(admin, plain(repoScope+"/secrets/"+n, plantedSecret)); err != nil {
				t.Fatal(err)
			}
		}
		behindBack(t, h, repoScope+"/secrets/PAY_DRIFT")
		behindBack(t, h, repoScope+"/secrets/DB_PASSWORD")
		for _, n := range []string{"PAY_GONE", "HIDDEN_GONE"} {
			if err := h.client.DeleteSecret(t.Context(), mustScope(t, repoScope), n); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"PAY_FOREIGN", "HIDDEN_FOREIGN"} {
			if err := st.DeleteRecord(t.Context(), repoScope+"/secrets/"+n); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := h.broker.DetectDrift(as(t.Context(), "token:rotator"), &secretbrokerv1.DetectDriftRequest{Parent: repoScope})
		if err != nil {
			t.Fatal(err)
		}
		var drifted, unmanaged []string
		for _, d := range resp.GetDrifted() {
			drifted = append(drifted, d.GetSecret().GetName())
		}
		for _, u := range resp.GetUnmanaged() {
			unmanaged = append(unmanaged, u.GetName())
		}
		if !slices.Equal(drifted, []string{repoScope + "/secrets/PAY_DRIFT"}) ||
			!slices.Equal(unmanaged, []string{repoScope + "/secrets/PAY_FOREIGN"}) ||
			!slices.Equal(resp.GetMissing(), []string{repoScope + "/secrets/PAY_GONE"}) {
			t.Errorf("drifted %v, unmanaged %v, missing %v; want PAY_DRIFT, PAY_FOREIGN, PAY_GONE", drifted, unmanaged, resp.GetMissing())
		}
	})
}
