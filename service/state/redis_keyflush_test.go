package state

import (
	"bytes"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

// TestRedisKeyAfterRedisLostIt: replica A has read the generated key;
// Redis restarts empty (no persistence) and replica B starts, generating
// another key, before A writes again. A's next operation write finds B's
// key and seals with it, so that B, and A after a restart, can open what A
// accepted; before, A kept sealing with its first key and every pending
// item of its operations was lost to the other replicas (DATA_LOSS).
func TestRedisKeyAfterRedisLostIt(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	const prefix = "secretbroker:state:"
	a := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})
	keyA, err := a.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Restart() // empty
	b := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})
	keyB, err := b.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(keyA, keyB) {
		t.Fatal("B read A's key from an emptied Redis")
	}
	op := &Operation{ID: NewOperationID(time.Now()), Caller: "token:ci", Kind: KindBatchPutSecrets,
		Pending:  []PendingItem{{Name: "repos/o/r/actions/secrets/X", Value: []byte("planted-value")}},
		Metadata: Progress{Total: 1, Remaining: 1}}
	if err := a.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Key(ctx); !bytes.Equal(got, keyB) {
		t.Error("A still uses its first key after writing")
	}
	a2 := openRedis(t, newRedisClient(t, srv.Addr), prefix, Options{})
	for name, st := range map[string]*Redis{"replica B": b, "replica A, restarted": a2} {
		got, err := st.GetOperation(ctx, op.ID)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Pending[0].ValueLost || string(got.Pending[0].Value) != "planted-value" {
			t.Errorf("%s cannot open the value of the operation A accepted after Redis restarted", name)
		}
	}
	// An update by A, on what it stored, keeps working.
	if _, err := a.UpdateOperation(ctx, op.ID, func(o *Operation) error { o.Metadata.Written = 0; return nil }); err != nil {
		t.Errorf("update: %v", err)
	}
}
