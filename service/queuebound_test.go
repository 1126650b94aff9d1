package service

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestOperationsIgnoreQueueBounds: with writes 100 s apart and the
// pacer's waits bounded to 30 s, an async batch of four still writes every
// item (its items wait 100 s each, on purpose: the operation runner's
// context is patient), while a synchronous put that would wait as long is
// refused at once with RESOURCE_EXHAUSTED, without a deadline of its own.
func TestOperationsIgnoreQueueBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 100 * time.Second
		pacing.MaxQueueWait = 30 * time.Second
		h := newHarness(t, harnessOpts{authz: mustPolicy(t), pacing: &pacing, ops: OperationOptions{FlushEvery: 1}})
		closeOps(t, h.server)
		admin := as(t.Context(), "token:admin")
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true}
		for _, n := range []string{"PAY_A", "PAY_B", "PAY_C", "PAY_D"} {
			req.Requests = append(req.Requests, plain(repoScope+"/secrets/"+n, plantedSecret))
		}
		resp, err := h.broker.BatchPutSecrets(admin, req)
		if err != nil {
			t.Fatal(err)
		}
		name := resp.GetOperation().GetName()
		mid := waitOp(admin, t, h.broker, name, 50*time.Second)
		if mid.GetDone() || mid.GetMetadata().GetWritten() != 1 {
			t.Fatalf("after 50 s: %v; want 1 written, the operation running", mid)
		}
		start := time.Now()
		_, err = h.broker.PutSecret(admin, plain(repoScope+"/secrets/PAY_X", plantedSecret))
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "--max-queue-wait") {
			t.Fatalf("a synchronous put 50 s before the next write slot: %v, want ResourceExhausted naming --max-queue-wait", err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("refused after %v, want at once", d)
		}
		done := waitOp(admin, t, h.broker, name, time.Hour)
		got := batchResultsOf(t, done)
		if !done.GetDone() || done.GetError() != nil || len(got) != 4 {
			t.Fatalf("operation: %v, results %v; want done, all four written", done, got)
		}
		for _, r := range got {
			if !strings.Contains(r, "OK created") {
				t.Fatalf("results %v: want every item OK created", got)
			}
		}
		if puts(h) != 4 {
			t.Fatalf("%d PUTs, want the batch's 4", puts(h))
		}
	})
}
