package service

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
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

// TestResumeSkipsUndecodableOperation: one stored operation that does
// not decode (a newer broker's format after a rollback, a damaged value)
// does not make ResumeOperations fail, which with --state-dir would keep
// the broker from starting (cmd/secretbroker/statestore.go): the other
// unfinished operation resumes and finishes, the undecodable one is
// logged at ERROR by its ID, and ListOperations lists the others.
func TestResumeSkipsUndecodableOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const goodID, badID = "0000000000000000000000000000000a", "0000000000000000000000000000000b"
		h := newHarness(t, harnessOpts{})
		dir := t.TempDir()
		key := bytes.Repeat([]byte("k"), state.MinKeyLen)
		st, err := state.OpenBolt(dir, state.Options{HMACKey: key})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		good := &state.Operation{ID: goodID, Caller: "token:ci", Kind: state.KindBatchPutSecrets,
			Pending:  []state.PendingItem{{Name: repoScope + "/secrets/GOOD", Value: []byte(plantedSecret)}},
			Metadata: state.Progress{Total: 1, Remaining: 1}}
		if err := st.PutOperation(ctx, good); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(filepath.Join(dir, state.BoltFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("operations")).Put([]byte(badID),
				[]byte(`{"v":2,"id":"`+badID+`","kind":"SyncSecrets","metadata":{"total":0,"written":0,"unchanged":0,"failed":0,"remaining":0}}`))
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		st2, err := state.OpenBolt(dir, state.Options{HMACKey: key})
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		s := New(h.client, Options{State: st2, Logger: newTestLogger(h.logs)})
		defer s.CloseOperations(context.Background())
		if n, err := s.ResumeOperations(ctx); err != nil || n != 1 {
			t.Fatalf("one undecodable operation: ResumeOperations = %d, %v; want the good operation resumed", n, err)
		}
		done, err := s.WaitOperation(ctx, &secretbrokerv1.WaitOperationRequest{Name: "operations/" + goodID})
		if m := done.GetMetadata(); err != nil || !done.GetDone() || m.GetWritten() != 1 {
			t.Errorf("the good operation: done %v, metadata %v, %v; want done, written 1", done.GetDone(), m, err)
		}
		list, err := s.ListOperations(ctx, &secretbrokerv1.ListOperationsRequest{})
		if err != nil || len(list.GetOperations()) != 1 {
			t.Errorf("ListOperations = %v, %v; want the good operation", list, err)
		}
		var logged bool
		for line := range strings.Lines(h.logs.String()) {
			if strings.Contains(line, badID) && strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "format version 2") {
				logged = true
			}
		}
		if !logged {
			t.Errorf("no ERROR line names the undecodable operation and its error: %s", h.logs)
		}
	})
}
