package service

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestOperationListingGoesStale: an async batch judges its items against
// one listing of the scope, read at its first item; an item that runs
// more than listingFresh later and would be unchanged by that listing is
// checked with a GET, so a secret changed behind the broker's back in the
// meantime is written again (drift), not reported unchanged. An item
// judged while the listing is fresh costs no GET.
func TestOperationListingGoesStale(t *testing.T) {
	for _, tt := range []struct {
		name          string
		before        int  // items written before the repeated secret
		changed       bool // the secret changed behind the broker's back while the operation runs
		wantUnchanged bool
		wantGets      int // GETs of the repeated secret during the operation
	}{
		{"fresh listing, unchanged", 3, false, true, 0},
		{"stale listing, unchanged", 80, false, true, 1},
		{"stale listing, changed meanwhile", 80, true, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				ctx := t.Context()
				const kept = repoScope + "/secrets/KEPT"
				if _, err := h.broker.PutSecret(ctx, plain(kept, plantedSecret)); err != nil {
					t.Fatal(err)
				}
				req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
				for i := range tt.before {
					req.Requests = append(req.Requests, plain(fmt.Sprintf("%s/secrets/NEW_%02d", repoScope, i), plantedSecret))
				}
				req.Requests = append(req.Requests, plain(kept, plantedSecret))
				time.Sleep(time.Minute) // the put's write slot and its record's range are long past
				h.emu.ResetCounts()
				resp, err := h.broker.BatchPutSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if tt.changed {
					time.Sleep(10 * time.Second) // after the listing, before KEPT's turn
					behindBack(t, h, kept)
				}
				op := waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 2*time.Hour)
				if !op.GetDone() {
					t.Fatalf("operation not done: %v", op)
				}
				results := batchResultsOf(t, op)
				wantKept := "KEPT OK"
				if tt.wantUnchanged {
					wantKept += " unchanged"
				}
				if !slices.Contains(results, wantKept) {
					t.Errorf("results %v, want %q", results, wantKept)
				}
				// The other items are new secrets, judged by the listing alone.
				if got := h.emu.Count(emulator.RouteGetRepoSecret); got != tt.wantGets {
					t.Errorf("%d GETs of KEPT, want %d", got, tt.wantGets)
				}
			})
		})
	}
}
