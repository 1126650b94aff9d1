package service

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestBatchDeadlineCutsAWriteInFlight: GitHub answers slowly, so the
// batch's deadline comes while a write is on its way. That item, sent, is
// DEADLINE_EXCEEDED (GitHub may have applied it); every item not sent is
// RESOURCE_EXHAUSTED with a retry_after, as the API says of items whose
// turn comes after the deadline. The items next in line, whose turn came
// as the deadline passed (the write slot the cut write freed), were
// DEADLINE_EXCEEDED "while talking to GitHub" too, without a retry_after,
// although nothing of theirs was sent.
func TestBatchDeadlineCutsAWriteInFlight(t *testing.T) {
	for run := range 5 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOpts{})
				const scope = "repos/octo-org/hello-world/actions"
				h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Latency: 20 * time.Second, Times: 100})
				req := batchOf(scope, "SLOW", 10)
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				resp, err := h.broker.BatchPutSecrets(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				sent := map[string]bool{}
				for _, c := range h.upstream.calls(http.MethodPut) {
					_, name, _ := strings.Cut(c.path, "/secrets/")
					sent[name] = true
				}
				var ok, cut, notSent int
				for i, r := range resp.GetResults() {
					name := fmt.Sprintf("SLOW%d", i)
					switch {
					case r.GetCode() == code.Code_OK:
						ok++
					case sent[name]:
						cut++
						if r.GetCode() != code.Code_DEADLINE_EXCEEDED {
							t.Errorf("%s, sent, cut by the deadline: %v %q; want DEADLINE_EXCEEDED", name, r.GetCode(), r.GetMessage())
						}
					default:
						notSent++
						if r.GetCode() != code.Code_RESOURCE_EXHAUSTED || r.GetRetryAfter().AsDuration() <= 0 {
							t.Errorf("%s, never sent: %v %q, retry_after %v; want RESOURCE_EXHAUSTED with a retry_after",
								name, r.GetCode(), r.GetMessage(), r.GetRetryAfter().AsDuration())
						}
						if _, err := h.emu.Open(scope, name); err == nil {
							t.Errorf("%s was answered not sent but is stored", name)
						}
					}
				}
				// Writes at 0 s and 20 s land; the one sent at 40 s is cut at
				// 58 s (the minute less the batch's time to reply).
				if ok != 2 || cut != 1 || notSent != 7 {
					t.Errorf("%d written, %d cut in flight, %d not sent; want 2, 1, 7", ok, cut, notSent)
				}
			})
		})
	}
}
