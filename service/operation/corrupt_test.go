package operation

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestResumeSkipsUndecodableOperation: one stored operation that does
// not decode (written in a newer broker's format before a rollback, or
// damaged) does not stop Resume: the other unfinished operations resume
// and finish, and the undecodable one is logged at ERROR by its ID and
// the decode error (once, though Resume runs every Lease), left stored
// and not run. List leaves it out instead of failing.
func TestResumeSkipsUndecodableOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const badID = "0000000000000000000000000000000b"
		dir := t.TempDir()
		key := bytes.Repeat([]byte("k"), 32)
		st := openBolt(t, dir, key)
		good := newOp("alice", 2, "v")
		good.ID = "0000000000000000000000000000000a"
		good.Metadata = state.Progress{Total: 2, Remaining: 2}
		late := newOp("bob", 1, "v")
		late.ID = "0000000000000000000000000000000c"
		late.Metadata = state.Progress{Total: 1, Remaining: 1}
		for _, op := range []*state.Operation{good, late} {
			if err := st.PutOperation(t.Context(), op); err != nil {
				t.Fatal(err)
			}
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
				[]byte(`{"v":2,"id":"`+badID+`","caller":"carol","kind":"SyncSecrets","metadata":{"total":0,"written":0,"unchanged":0,"failed":0,"remaining":0}}`))
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		st = openBolt(t, dir, key)
		defer st.Close()

		fe := &fakeExec{}
		r, logs := newRunner(t, st, fe.exec, Options{})
		if n, err := r.Resume(t.Context()); n != 2 || err != nil {
			t.Fatalf("Resume = %d, %v; want the 2 decodable operations resumed", n, err)
		}
		for _, id := range []string{good.ID, late.ID} {
			if done := waitDone(t, r, id); done.Error != nil || done.Metadata.Written != done.Metadata.Total {
				t.Errorf("%s: %+v, error %v; want every item written", id, done.Metadata, done.Error)
			}
		}
		time.Sleep(DefaultLease)
		if n, err := r.Resume(t.Context()); n != 0 || err != nil {
			t.Errorf("second Resume = %d, %v; want 0, nil", n, err)
		}
		ops, _, err := r.List(t.Context(), state.OperationFilter{}, nil)
		if err != nil || len(ops) != 2 {
			t.Errorf("List = %d operations, %v; want the 2 that decode", len(ops), err)
		}
		closeRunner(t, r)

		var errorLines []map[string]any
		for line := range strings.Lines(logs.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec["operation"] == badID && rec["level"] == "ERROR" {
				errorLines = append(errorLines, rec)
			}
		}
		if len(errorLines) != 1 {
			t.Fatalf("%d ERROR lines about the undecodable operation, want 1: %s", len(errorLines), logs)
		}
		if msg, _ := errorLines[0]["error"].(string); !strings.Contains(msg, "format version 2") {
			t.Errorf("the ERROR line lacks the decode error: %v", errorLines[0])
		}
		if _, err := st.GetOperation(t.Context(), badID); err == nil {
			t.Error("the undecodable operation was replaced; it must stay as stored")
		}
		if fe.total() != 3 {
			t.Errorf("Exec ran %d times, want 3", fe.total())
		}
	})
}
