package service

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestSyncEmptyPruneNeedsExpectedDeletes: a pruning sync with no secrets
// (which would delete every secret its owner wrote in the scope) is
// refused with INVALID_ARGUMENT, before anything is read or written,
// unless expected_deletes confirms what it deletes; a dry run plans it.
func TestSyncEmptyPruneNeedsExpectedDeletes(t *testing.T) {
	tests := []struct {
		name     string
		prune    bool
		dryRun   bool
		async    bool
		expected []string // nil: not set
		want     codes.Code
		wantMsg  []string
		deletes  int
		plan     map[string]string // nil: not checked
	}{
		{name: "refused", prune: true, want: codes.InvalidArgument,
			wantMsg: []string{"secrets: is empty", "dry_run", "expected_deletes"}},
		{name: "refused, async", prune: true, async: true, want: codes.InvalidArgument,
			wantMsg: []string{"secrets: is empty", "dry_run", "expected_deletes"}},
		{name: "a dry run plans it", prune: true, dryRun: true, want: codes.OK,
			plan: map[string]string{"A": "DELETE OK", "B": "DELETE OK"}},
		{name: "a dry run plans it, async ignored", prune: true, dryRun: true, async: true, want: codes.OK,
			plan: map[string]string{"A": "DELETE OK", "B": "DELETE OK"}},
		{name: "confirmed", prune: true, expected: []string{"A", "B"}, want: codes.OK, deletes: 2,
			plan: map[string]string{"A": "DELETE OK", "B": "DELETE OK"}},
		{name: "confirmed, async", prune: true, async: true, expected: []string{"b", "A"}, want: codes.OK, deletes: 2},
		{name: "confirmed as nothing", prune: true, expected: []string{}, want: codes.Aborted,
			wantMsg: []string{"it would also delete A, B"}},
		{name: "without prune", want: codes.OK, plan: map[string]string{}}, // own secrets not listed: left alone, not shown
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, _ := newHarnessWithStore(t)
				closeOps(t, h.server)
				ctx := t.Context()
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team-a", map[string]string{"A": plantedSecret, "B": plantedSecret})); err != nil {
					t.Fatal(err)
				}
				h.emu.ResetCounts()
				req := syncReq(repoScope, "team-a", nil)
				req.Prune, req.DryRun, req.Async = tt.prune, tt.dryRun, tt.async
				if tt.expected != nil {
					req.ExpectedDeletes = &secretbrokerv1.ExpectedDeletes{SecretNames: tt.expected}
				}
				resp, err := h.broker.SyncSecrets(ctx, req)
				if status.Code(err) != tt.want {
					t.Fatalf("sync = %v, want %v", err, tt.want)
				}
				for _, m := range tt.wantMsg {
					if msg := status.Convert(err).Message(); !strings.Contains(msg, m) {
						t.Errorf("message %q lacks %q", msg, m)
					}
				}
				if status.Code(err) == codes.InvalidArgument && h.emu.TotalRequests() != 0 {
					t.Errorf("%d requests for a refused sync, want none", h.emu.TotalRequests())
				}
				if tt.async && !tt.dryRun && err == nil {
					waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), time.Minute)
				} else if err == nil && tt.plan != nil {
					wantPlan(t, tt.name, resp, tt.plan)
				}
				if n := deletes(h); n != tt.deletes {
					t.Errorf("%d deletes, want %d", n, tt.deletes)
				}
				for _, n := range []string{"A", "B"} {
					if _, err := h.emu.Open(repoScope, n); (err == nil) != (tt.deletes == 0) {
						t.Errorf("%s at GitHub: %v, want it there: %v", n, err, tt.deletes == 0)
					}
				}
			})
		})
	}
}
