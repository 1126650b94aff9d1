package service

// The order of a sync's writes and deletes, and what an operation's item
// repeated after a crash reports.

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
)

// TestSyncPruneWritesBeforeDeletes: README: "a sync's deletes run one at a
// time, after its writes", for a sync run at once and one run as an
// operation alike. A rename (OLD_TOKEN to TOKEN) must write TOKEN before
// it deletes OLD_TOKEN, so that a sync cancelled, failing or cut in
// between leaves the scope with the new name rather than neither. The
// deletes go in name order; an operation's writes too.
func TestSyncPruneWritesBeforeDeletes(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				closeOps(t, h.server)
				ctx := t.Context()
				old := map[string]string{"A_OLD": plantedSecret, "OLD_TOKEN": plantedSecret, "KEEP": plantedSecret}
				if _, err := h.broker.SyncSecrets(ctx, syncReq(repoScope, "team", old)); err != nil {
					t.Fatal(err)
				}
				h.upstream.mu.Lock()
				h.upstream.sent = nil
				h.upstream.mu.Unlock()
				// Each name sorts before the one it replaces, and KEEP
				// (unchanged) between them: name order would delete first.
				req := syncReq(repoScope, "team", map[string]string{"KEEP": plantedSecret, "TOKEN": plantedSecret, "Z_NEW": plantedSecret})
				req.Prune, req.Async = true, async
				resp, err := h.broker.SyncSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if async {
					done := waitOp(ctx, t, h.broker, resp.GetOperation().GetName(), 0)
					if done.GetError() != nil || done.GetMetadata().GetFailed() != 0 {
						t.Fatalf("operation: %v", done)
					}
				}
				var writes, deletes, order []string
				for _, c := range h.upstream.calls("") {
					name := c.path[strings.LastIndexByte(c.path, '/')+1:]
					switch c.method {
					case http.MethodPut:
						writes = append(writes, name)
					case http.MethodDelete:
						deletes = append(deletes, name)
					default:
						continue
					}
					order = append(order, c.method+" "+name)
				}
				if async {
					want := []string{"PUT TOKEN", "PUT Z_NEW", "DELETE A_OLD", "DELETE OLD_TOKEN"}
					if !slices.Equal(order, want) {
						t.Errorf("an operation's writes and deletes in order %v; want %v", order, want)
					}
					return
				}
				// The synchronous sync sends its writes together (the
				// write slot orders them), then its deletes one by one.
				slices.Sort(writes)
				if !slices.Equal(writes, []string{"TOKEN", "Z_NEW"}) || !slices.Equal(deletes, []string{"A_OLD", "OLD_TOKEN"}) ||
					!slices.Equal(order[2:], []string{"DELETE A_OLD", "DELETE OLD_TOKEN"}) {
					t.Errorf("writes and deletes in order %v; want the PUTs of TOKEN and Z_NEW, then the DELETEs of A_OLD and OLD_TOKEN", order)
				}
			})
		})
	}
}
