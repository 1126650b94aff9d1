package service

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// TestReadBackDoesNotWaitForAnotherWrite: a batch that has written its
// items answers without waiting for another caller's write of one of its
// secrets (its pacer wait and GitHub's answer), which began after the
// batch's own write: that write replaces the record, so there is nothing
// to read back for the secret.
func TestReadBackDoesNotWaitForAnotherWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		sec := repoScope + "/secrets/READ_BACK"
		// The batch's read-back listing takes a second.
		h.emu.InjectFault(emulator.Fault{Route: emulator.RouteListRepoSecrets, Latency: time.Second})
		start := time.Now()
		batchDone := make(chan time.Duration, 1)
		go func() {
			resp, err := h.broker.BatchPutSecrets(t.Context(), &secretbrokerv1.BatchPutSecretsRequest{
				Requests: []*secretbrokerv1.PutSecretRequest{plain(sec, oldValue)}})
			if err != nil || resp.GetResults()[0].GetCode() != 0 {
				t.Errorf("batch: %v %v", resp, err)
			}
			batchDone <- time.Since(start)
		}()
		synctest.Wait() // the batch has written; its read back lists the scope
		if n := h.emu.Count(emulator.RoutePutRepoSecret); n != 1 {
			t.Fatalf("%d PUTs, want the batch's one", n)
		}
		// Another caller's put of the secret, whose PUT takes 25 s.
		h.emu.InjectFault(emulator.Fault{Route: emulator.RoutePutRepoSecret, Latency: 25 * time.Second})
		putDone := make(chan struct{})
		go func() {
			defer close(putDone)
			if _, err := h.broker.PutSecret(t.Context(), plain(sec, newValue)); err != nil {
				t.Errorf("put: %v", err)
			}
		}()
		if b := <-batchDone; b > 2*time.Second {
			t.Errorf("the batch answered after %v, waiting for another caller's write of its secret; want its read back's 1 s", b)
		}
		<-putDone
		mustHold(t, h, "READ_BACK", newValue)
	})
}

// TestEndedWriteKeepsRecord: a put whose context has ended by the time it
// holds the secret's lock writes nothing and leaves the secret's record,
// its owner included, as it was: the next sync of another owner still
// meets a conflict.
func TestEndedWriteKeepsRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		const name = "OWNED"
		sec := repoScope + "/secrets/" + name
		if _, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "team-a",
			Secrets: map[string]string{name: oldValue}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		// The lock is free, so select may take it or the ended context:
		// each try takes one of them at random.
		for range 20 {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := h.server.PutSecret(ctx, plain(sec, newValue)); err == nil {
				t.Fatal("a put with an ended context succeeded")
			}
			if _, err := h.server.state.store.GetRecord(t.Context(), sec); err != nil {
				t.Fatalf("a put that wrote nothing (its context ended) removed the record of %s: %v", sec, err)
			}
		}
		mustHold(t, h, name, oldValue)
		resp, err := h.broker.SyncSecrets(t.Context(), &secretbrokerv1.SyncSecretsRequest{Parent: repoScope, Owner: "team-b",
			Secrets: map[string]string{name: newValue}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetResults()[0].GetAction(); got != secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT {
			t.Errorf("another owner's sync: %v, want CONFLICT", got)
		}
	})
}
