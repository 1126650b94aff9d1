package service

// Each item's audit outcome is the code its caller was answered for it.

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestItemOutcomeRecordIsItsAnswer: an item of a synchronous batch or sync
// that the shutdown's drain stopped before GitHub was sent it was answered
// UNAVAILABLE ("send it again") and audited CANCELLED; one that the call's
// deadline kept from being sent was answered RESOURCE_EXHAUSTED and
// audited DEADLINE_EXCEEDED. Every item's last outcome record now holds
// the code of its answer, whatever stage stopped it: waiting for the
// scope's key, or waiting for the write slot while another item's request
// was in flight.
func TestItemOutcomeRecordIsItsAnswer(t *testing.T) {
	names := []string{"I0", "I1", "I2", "I3", "I4"}
	batchPut, batchDelete, sync := itemCalls(names)
	calls := []struct {
		name   string
		before bool   // the items exist first, written by a sync of "team"
		route  string // the request that is slow
		call   itemCall
	}{
		{"batch put, key fetch", false, emulator.RouteGetRepoPublicKey, batchPut},
		{"batch put, write in flight", false, emulator.RoutePutRepoSecret, batchPut},
		{"batch delete, delete in flight", true, emulator.RouteDeleteRepoSecret, batchDelete},
		{"sync, key fetch", false, emulator.RouteGetRepoPublicKey, sync(false)},
		{"sync, write in flight", false, emulator.RoutePutRepoSecret, sync(false)},
		{"sync prune, delete in flight", true, emulator.RouteDeleteRepoSecret, sync(true)},
	}
	stops := []struct {
		name string
		// answer is the code of an item the stop kept from being sent.
		answer string
		drain  bool // the drain cancels the call; else its deadline passes
	}{
		{"drain", "UNAVAILABLE", true},
		{"deadline", "RESOURCE_EXHAUSTED", false},
	}
	for _, c := range calls {
		for _, stop := range stops {
			t.Run(c.name+", "+stop.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var trail syncBuffer
					h := newHarness(t, harnessOpts{audit: audit.NewWriter(&trail, nil)})
					if c.before {
						secrets := map[string]string{}
						for _, n := range names {
							secrets[n] = plantedSecret + "-" + n
						}
						if _, err := h.server.SyncSecrets(t.Context(), syncReq(repoScope, "team", secrets)); err != nil {
							t.Fatal(err)
						}
						time.Sleep(time.Minute) // the pacer's write slot free again
					}
					arrived := make(chan struct{}, 1)
					h.emu.InjectFault(emulator.Fault{Route: c.route, Latency: 20 * time.Second, Times: 100, Arrived: arrived})

					// The drain cancels the call's context with ErrDrained
					// (cmd/secretbroker's callDrain).
					ctx, drain := context.WithCancelCause(t.Context())
					defer drain(nil)
					if !stop.drain {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
						defer cancel()
					}
					answered := make(chan []itemAnswer, 1)
					go func() { answered <- c.call(ctx, t, h) }()
					if stop.drain {
						<-arrived
						synctest.Wait() // the slow request in flight, the others waiting
						drain(ErrDrained)
					}
					got := <-answered
					time.Sleep(time.Minute) // a key fetch the call left (shared, it goes on) ends

					outcomes := outcomesOf(t, &trail)
					stopped := 0
					for _, a := range got {
						recs := outcomes[a.name]
						if len(recs) == 0 {
							t.Errorf("%s: answered %s %q, no outcome record", a.name, a.code, a.msg)
							continue
						}
						if last := recs[len(recs)-1]; last != a.code.String() {
							t.Errorf("%s: answered %s %q, audited %s (outcomes %v)", a.name, a.code, a.msg, last, recs)
						}
						if a.code.String() == stop.answer {
							stopped++
						}
					}
					if stopped == 0 {
						t.Errorf("no item answered %s, as one the %s kept from GitHub: %v", stop.answer, stop.name, fmt.Sprint(got))
					}
				})
			})
		}
	}
}

// itemCall makes one batch or sync call through h's server and returns
// its items' answers.
type itemCall func(ctx context.Context, t *testing.T, h *harness) []itemAnswer

// itemCalls returns the calls the item-answer tests stop: a batch put of
// names, a batch delete of names, and a sync of "team" that writes names
// anew (prune false) or keeps only KEEP and deletes the rest (prune true).
func itemCalls(names []string) (batchPut, batchDelete itemCall, sync func(prune bool) itemCall) {
	batchPut = func(ctx context.Context, t *testing.T, h *harness) []itemAnswer {
		req := &secretbrokerv1.BatchPutSecretsRequest{}
		for _, n := range names {
			req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret+"-"+n))
		}
		resp, err := h.server.BatchPutSecrets(ctx, req)
		if err != nil {
			t.Fatalf("BatchPutSecrets: %v", err)
		}
		var out []itemAnswer
		for _, r := range resp.GetResults() {
			out = append(out, answerOf(r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter()))
		}
		return out
	}
	batchDelete = func(ctx context.Context, t *testing.T, h *harness) []itemAnswer {
		req := &secretbrokerv1.BatchDeleteSecretsRequest{}
		for _, n := range names {
			req.Names = append(req.Names, repoScope+"/secrets/"+n)
		}
		resp, err := h.server.BatchDeleteSecrets(ctx, req)
		if err != nil {
			t.Fatalf("BatchDeleteSecrets: %v", err)
		}
		var out []itemAnswer
		for _, r := range resp.GetResults() {
			out = append(out, answerOf(r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter()))
		}
		return out
	}
	sync = func(prune bool) itemCall {
		return func(ctx context.Context, t *testing.T, h *harness) []itemAnswer {
			secrets := map[string]string{}
			if prune {
				secrets["KEEP"] = plantedSecret + "-keep"
			} else {
				for _, n := range names {
					secrets[n] = plantedSecret + "-" + n + "-new"
				}
			}
			req := syncReq(repoScope, "team", secrets)
			req.Prune = prune
			resp, err := h.server.SyncSecrets(ctx, req)
			if err != nil {
				t.Fatalf("SyncSecrets: %v", err)
			}
			var out []itemAnswer
			for _, r := range resp.GetResults() {
				out = append(out, answerOf(r.GetName(), r.GetCode(), r.GetMessage(), r.GetRetryAfter()))
			}
			return out
		}
	}
	return batchPut, batchDelete, sync
}
