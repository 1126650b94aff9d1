package service

// A synchronous batch's or sync's item stopped before GitHub was sent it
// is answered, and audited, by who stopped the call: the shutdown's drain
// (UNAVAILABLE, send it again) or its caller (CANCELLED).

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestItemStoppedByCallerIsCancelled: once an item's answer became its
// outcome record's code, every item of a batch or sync whose call's
// context was cancelled before GitHub was sent it was answered and
// audited UNAVAILABLE ("the broker is shutting down ... send it again"),
// as the drain's are, even when the call's caller cancelled it: its
// caller left, and the audit trail said the broker stopped it. An item
// the caller's cancel stops is CANCELLED again; only the drain's cause
// (ErrDrained) makes it UNAVAILABLE. An item whose write GitHub was sent
// is ABORTED whoever cancelled.
func TestItemStoppedByCallerIsCancelled(t *testing.T) {
	names := []string{"A", "B", "C"}
	batchPut, batchDelete, sync := itemCalls(names)
	calls := []struct {
		name   string
		before bool   // the items exist first, written by a sync of "team"
		route  string // the request that is slow: the call is cancelled while GitHub has it
		method string // the writes' method: one of them may have been sent
		call   itemCall
		ok     []string // items answered OK (a prune's kept secret)
	}{
		{name: "batch put, key fetch", route: emulator.RouteGetRepoPublicKey, method: http.MethodPut, call: batchPut},
		{name: "batch put, write in flight", route: emulator.RoutePutRepoSecret, method: http.MethodPut, call: batchPut},
		{name: "batch delete, delete in flight", before: true, route: emulator.RouteDeleteRepoSecret, method: http.MethodDelete, call: batchDelete},
		{name: "sync, key fetch", route: emulator.RouteGetRepoPublicKey, method: http.MethodPut, call: sync(false)},
		{name: "sync, write in flight", route: emulator.RoutePutRepoSecret, method: http.MethodPut, call: sync(false)},
		{name: "sync prune, delete in flight", before: true, route: emulator.RouteDeleteRepoSecret, method: http.MethodDelete, call: sync(true), ok: []string{"KEEP"}},
	}
	stops := []struct {
		name  string
		cause error
		// want is the code of an item the stop kept from being sent.
		want string
	}{
		{"caller", context.Canceled, "CANCELLED"},
		{"drain", ErrDrained, "UNAVAILABLE"},
	}
	for _, c := range calls {
		for _, stop := range stops {
			t.Run(c.name+", "+stop.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					pacing := upstream.DefaultPacing()
					pacing.WriteInterval = 100 * time.Second // the next write waits for the slot
					var trail syncBuffer
					h := newHarness(t, harnessOpts{pacing: &pacing, audit: audit.NewWriter(&trail, nil)})
					if c.before {
						secrets := map[string]string{}
						for _, n := range names {
							secrets[n] = plantedSecret + "-" + n
						}
						if _, err := h.server.SyncSecrets(t.Context(), syncReq(repoScope, "team", secrets)); err != nil {
							t.Fatal(err)
						}
						time.Sleep(time.Hour) // the write slot free again
					}
					h.upstream.mu.Lock()
					h.upstream.sent = nil
					h.upstream.mu.Unlock()
					arrived := make(chan struct{}, 1)
					h.emu.InjectFault(emulator.Fault{Route: c.route, Latency: time.Hour, Arrived: arrived})

					ctx, cancel := context.WithCancelCause(t.Context())
					defer cancel(nil)
					answered := make(chan []itemAnswer, 1)
					go func() { answered <- c.call(ctx, t, h) }()
					<-arrived
					synctest.Wait() // the slow request in flight, the others waiting
					cancel(stop.cause)
					got := <-answered
					time.Sleep(2 * time.Hour) // what the call left (a shared key fetch) ends

					sent := map[string]bool{}
					for _, r := range h.upstream.calls(c.method) {
						sent[r.path[strings.LastIndexByte(r.path, '/')+1:]] = true
					}
					want := map[string]string{}
					for _, n := range c.ok {
						want[n] = "OK"
					}
					for _, n := range names {
						want[n] = stop.want
						if sent[n] {
							want[n] = "ABORTED" // GitHub may have applied it
						}
					}
					if len(got) != len(want) {
						t.Fatalf("answers %v, want %v", got, want)
					}
					notSent := 0
					outcomes := outcomesOf(t, &trail)
					for _, a := range got {
						w := want[a.name]
						if a.code.String() != w {
							t.Errorf("%s: answered %s %q, want %s", a.name, a.code, a.msg, w)
						}
						if recs := outcomes[a.name]; len(recs) == 0 || recs[len(recs)-1] != w {
							t.Errorf("%s: audit outcomes %v, want the last %s", a.name, recs, w)
						}
						if w == stop.want {
							notSent++
						}
					}
					if notSent == 0 {
						t.Errorf("no item stopped before it was sent: %v", got)
					}
				})
			})
		}
	}
}
