package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltLocked: a second opener of the same file fails with ErrLocked
// once its lock timeout passes, instead of waiting for ever.
func TestBoltLocked(t *testing.T) {
	dir := t.TempDir()
	first := openBolt(t, dir, Options{})
	_, err := OpenBolt(dir, Options{LockTimeout: 10 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := openBolt(t, dir, Options{LockTimeout: 10 * time.Millisecond})
	if _, err := second.ListRecords(t.Context(), "orgs/acme/actions"); err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
}

func TestBoltFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "state")
	b := openBolt(t, dir, Options{})
	if b.Path() != filepath.Join(dir, BoltFileName) {
		t.Fatalf("path %s", b.Path())
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, b.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
}

func TestOpenBoltRejects(t *testing.T) {
	notDB := t.TempDir()
	if err := os.WriteFile(filepath.Join(notDB, BoltFileName), []byte("not a database, just some bytes that are long enough to be read"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherSchema := t.TempDir()
	{
		db, err := bolt.Open(filepath.Join(otherSchema, BoltFileName), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(metaSchema, []byte("2"))
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
	}
	tests := []struct {
		name    string
		dir     string
		opts    Options
		wantErr error
	}{
		{"no directory", "", Options{}, ErrInvalid},
		{"short key", t.TempDir(), Options{HMACKey: make([]byte, 31)}, ErrBadKey},
		{"other schema", otherSchema, Options{}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenBolt(tt.dir, tt.opts); !errors.Is(err, tt.wantErr) {
				t.Fatalf("OpenBolt: %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := OpenBolt(notDB, Options{LockTimeout: 10 * time.Millisecond}); err == nil {
		t.Fatal("opened a file that is not a database")
	}
}

// TestBoltCorruptEntries: stored bytes that do not decode are reported as
// ErrCorrupt, and a corrupt operation can still be replaced and deleted.
func TestBoltCorruptEntries(t *testing.T) {
	ctx := t.Context()
	b := openBolt(t, t.TempDir(), Options{})
	err := b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRecords).Put([]byte("orgs/a/actions/secrets/X"), []byte("garbage")); err != nil {
			return err
		}
		return tx.Bucket(bucketOperations).Put([]byte("op"), []byte("garbage"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRecord(ctx, "orgs/a/actions/secrets/X"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetRecord: %v, want ErrCorrupt", err)
	}
	if _, err := b.ListRecords(ctx, "orgs/a/actions"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ListRecords: %v, want ErrCorrupt", err)
	}
	if _, err := b.GetOperation(ctx, "op"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetOperation: %v, want ErrCorrupt", err)
	}
	if _, err := b.UpdateOperation(ctx, "op", func(*Operation) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("UpdateOperation: %v, want ErrCorrupt", err)
	}
	if err := b.PutOperation(ctx, operation("op", "alice")); err != nil {
		t.Fatalf("replacing a corrupt operation: %v", err)
	}
	if got, err := b.ListOperations(ctx, OperationFilter{Caller: "alice"}); err != nil || len(got) != 1 {
		t.Fatalf("after replacing: %d operations, %v", len(got), err)
	}
	if err := b.DeleteOperation(ctx, "op"); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ListOperations(ctx, OperationFilter{Caller: "alice"}); err != nil || len(got) != 0 {
		t.Fatalf("after deleting: %d operations, %v", len(got), err)
	}
}
