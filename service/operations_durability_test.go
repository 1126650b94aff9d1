package service

import (
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
)

// TestOperationProgressRecordedWhileNextItemWaits: README, Operations:
// "progress is recorded at least every second or every 10 items". With
// the default runner options, an async batch item written at 0 s shows in
// GetOperation (written 1) at 50 s while the next item still waits for
// GitHub's write slot (write interval 100 s): it was recorded within a
// second, so a crash in the wait would not repeat it.
func TestOperationProgressRecordedWhileNextItemWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pacing := upstream.DefaultPacing()
		pacing.WriteInterval = 100 * time.Second
		h := newHarness(t, harnessOpts{pacing: &pacing}) // default FlushEvery and FlushInterval
		closeOps(t, h.server)
		ctx := t.Context()
		req := &secretbrokerv1.BatchPutSecretsRequest{Async: true, Requests: []*secretbrokerv1.PutSecretRequest{
			plain(repoScope+"/secrets/PROG_A", plantedSecret+"-a"),
			plain(repoScope+"/secrets/PROG_B", plantedSecret+"-b"),
		}}
		resp, err := h.broker.BatchPutSecrets(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		name := resp.GetOperation().GetName()
		time.Sleep(50 * time.Second)
		mid, err := h.broker.GetOperation(ctx, &secretbrokerv1.GetOperationRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if n := puts(h); n != 1 {
			t.Fatalf("%d PUTs at 50 s, want 1 (the second waits for the write slot)", n)
		}
		if m := mid.GetMetadata(); m.GetWritten() != 1 || m.GetRemaining() != 1 {
			t.Errorf("PROG_A was written at 0 s; at 50 s the operation shows written %d, remaining %d; want 1 and 1", m.GetWritten(), m.GetRemaining())
		}
		done := waitOp(ctx, t, h.broker, name, 0)
		if m := done.GetMetadata(); !done.GetDone() || m.GetWritten() != 2 || puts(h) != 2 {
			t.Errorf("done %v, metadata %v, %d PUTs; want done, written 2, 2 PUTs", done.GetDone(), m, puts(h))
		}
	})
}
