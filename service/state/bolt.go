package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltFileName is the file the file store keeps under its directory.
const BoltFileName = "secretbroker-state.db"

// boltSchema is the layout version kept in the meta bucket.
const boltSchema = "1"

// Buckets, one per kind, and the meta bucket's keys.
var (
	bucketMeta       = []byte("meta")
	bucketRecords    = []byte("records")
	bucketOperations = []byte("operations")
	// bucketOpsByCaller indexes operations by caller: key
	// u16(len(caller)) || caller || ID, value empty. The length prefix
	// keeps one caller's keys contiguous and apart from a caller whose
	// name extends it.
	bucketOpsByCaller = []byte("operations_by_caller")
	// bucketOpsExpiresAt holds when each done operation expires: key ID,
	// value u64(Unix milliseconds).
	bucketOpsExpiresAt = []byte("operations_expires_at")
	// bucketOpsExpiry orders the done operations by expiry: key
	// u64(Unix milliseconds) || ID, value empty, so the expired ones are
	// the first keys.
	bucketOpsExpiry = []byte("operations_expiry")

	metaSchema  = []byte("schema")
	metaHMACKey = []byte("hmac_key")
)

// Bolt is the file Store: a bbolt database in one file under a directory
// (--state-dir), kept across restarts. One process at a time may open it.
//
// A done operation expires OperationRetention after it was stored done
// (see Operations): each write of operations deletes up to pruneBatch
// expired ones in its transaction, and a list does so in a write
// transaction of its own when any are due. A file written before
// operations expired gets the expiry buckets when it is opened, its done
// operations expiring OperationRetention after that.
type Bolt struct {
	now    func() time.Time // the clock; tests replace it
	db     *bolt.DB
	key    []byte
	sealer *sealer
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (creating when needed) the store in dir/BoltFileName; dir
// is created with mode 0700 and the file with 0600. When another process
// holds the file, it fails with an error wrapping ErrLocked after
// opts.LockTimeout. Its key is opts.HMACKey when given (the stored key, if
// any, is then left untouched and unused), else the key kept in the file,
// generated on first open.
func OpenBolt(dir string, opts Options) (*Bolt, error) {
	if dir == "" {
		return nil, fmt.Errorf("state: --state-dir: %w: empty", ErrInvalid)
	}
	if opts.HMACKey != nil {
		if err := checkKey(opts.HMACKey); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: --state-dir %s: %w", dir, err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	path := filepath.Join(dir, BoltFileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("state: open %s: %w (waited %v for its lock; is another broker using this --state-dir?): %w", path, ErrLocked, timeout, err)
		}
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	key := slices.Clone(opts.HMACKey)
	err = db.Update(func(tx *bolt.Tx) error {
		backfill := tx.Bucket(bucketOpsExpiresAt) == nil
		for _, name := range [][]byte{bucketMeta, bucketRecords, bucketOperations, bucketOpsByCaller, bucketOpsExpiresAt, bucketOpsExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaSchema); {
		case v == nil:
			if err := meta.Put(metaSchema, []byte(boltSchema)); err != nil {
				return err
			}
		case string(v) != boltSchema:
			return fmt.Errorf("%w: schema %q, this broker reads %q", ErrCorrupt, v, boltSchema)
		}
		if backfill {
			if err := backfillExpiry(tx, time.Now()); err != nil {
				return err
			}
		}
		if key != nil {
			return nil
		}
		if v := meta.Get(metaHMACKey); v != nil {
			if len(v) < MinKeyLen {
				return fmt.Errorf("%w: the stored HMAC key is %d bytes", ErrCorrupt, len(v))
			}
			key = slices.Clone(v)
			return nil
		}
		key = make([]byte, generatedKeyLen)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+).
		return meta.Put(metaHMACKey, key)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	s, err := newSealer(key)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Bolt{now: time.Now, db: db, key: key, sealer: s}, nil
}

// backfillExpiry gives every done operation of a file written before
// operations expired an expiry OperationRetention after now.
func backfillExpiry(tx *bolt.Tx, now time.Time) error {
	var done []string
	err := tx.Bucket(bucketOperations).ForEach(func(k, v []byte) error {
		if storedDone(v) {
			done = append(done, string(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range done {
		if err := setExpiry(tx, id, true, now); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the database file's path.
func (b *Bolt) Path() string { return b.db.Path() }

// Key implements Store.
func (b *Bolt) Key(ctx context.Context) ([]byte, error) {
	if err := ctxErr(ctx, "key"); err != nil {
		return nil, err
	}
	return slices.Clone(b.key), nil
}

// Close implements Store.
func (b *Bolt) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", b.db.Path(), err)
	}
	return nil
}

func (b *Bolt) view(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx, op); err != nil {
		return err
	}
	return wrapBolt(op, b.db.View(fn))
}

func (b *Bolt) update(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx, op); err != nil {
		return err
	}
	return wrapBolt(op, b.db.Update(fn))
}

func wrapBolt(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return fmt.Errorf("state: %s: %w: %w", op, ErrClosed, err)
	}
	return err
}

// GetRecord implements Records.
func (b *Bolt) GetRecord(ctx context.Context, name string) (Record, error) {
	if err := checkName(name); err != nil {
		return Record{}, err
	}
	var r Record
	err := b.view(ctx, "get record", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("state: record %s: %w", name, ErrNotFound)
		}
		var err error
		r, err = decodeRecord(v)
		return err
	})
	return r, err
}

// PutRecord implements Records.
func (b *Bolt) PutRecord(ctx context.Context, r Record) error {
	v, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return b.update(ctx, "put record", func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRecords).Put([]byte(r.Name), v); err != nil {
			return fmt.Errorf("state: put record %s: %w", r.Name, err)
		}
		return nil
	})
}

// DeleteRecord implements Records.
func (b *Bolt) DeleteRecord(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return b.update(ctx, "delete record", func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRecords).Delete([]byte(name)); err != nil {
			return fmt.Errorf("state: delete record %s: %w", name, err)
		}
		return nil
	})
}

// ListRecords implements Records: one cursor scan over the keys that start
// with parent + "/secrets/".
func (b *Bolt) ListRecords(ctx context.Context, parent string) ([]Record, error) {
	if err := checkParent(parent); err != nil {
		return nil, err
	}
	prefix := []byte(parent + secretsSep)
	var out []Record
	err := b.view(ctx, "list records", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Record{}
	}
	return out, nil
}

// callerPrefix is the caller index's key prefix for a caller.
func callerPrefix(caller string) []byte {
	k := make([]byte, 2, 2+len(caller))
	binary.BigEndian.PutUint16(k, uint16(len(caller))) // checkText bounds callers to 1024 bytes
	return append(k, caller...)
}

func callerKey(caller, id string) []byte { return append(callerPrefix(caller), id...) }

// putOperation stores encoded op v in tx and indexes it under its caller,
// dropping the index entry of the caller it was stored with before, when
// that differs; a done op expires OperationRetention after now.
func putOperation(tx *bolt.Tx, op *Operation, v []byte, now time.Time) error {
	idx := tx.Bucket(bucketOpsByCaller)
	if old, ok := storedCaller(tx, op.ID); ok && old != op.Caller {
		if err := idx.Delete(callerKey(old, op.ID)); err != nil {
			return fmt.Errorf("state: put operation %s: %w", op.ID, err)
		}
	}
	if err := tx.Bucket(bucketOperations).Put([]byte(op.ID), v); err != nil {
		return fmt.Errorf("state: put operation %s: %w", op.ID, err)
	}
	if err := idx.Put(callerKey(op.Caller, op.ID), nil); err != nil {
		return fmt.Errorf("state: put operation %s: %w", op.ID, err)
	}
	return setExpiry(tx, op.ID, op.Done, now)
}

// expiryKey is operation id's key in bucketOpsExpiry.
func expiryKey(at []byte, id string) []byte { return append(slices.Clone(at), id...) }

// setExpiry drops operation id's expiry, if any, and when done gives it
// one OperationRetention after now.
func setExpiry(tx *bolt.Tx, id string, done bool, now time.Time) error {
	at, byTime := tx.Bucket(bucketOpsExpiresAt), tx.Bucket(bucketOpsExpiry)
	if old := at.Get([]byte(id)); old != nil {
		if err := byTime.Delete(expiryKey(old, id)); err != nil {
			return fmt.Errorf("state: expiry of operation %s: %w", id, err)
		}
		if err := at.Delete([]byte(id)); err != nil {
			return fmt.Errorf("state: expiry of operation %s: %w", id, err)
		}
	}
	if !done {
		return nil
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(now.Add(OperationRetention).UnixMilli()))
	if err := at.Put([]byte(id), v); err != nil {
		return fmt.Errorf("state: expiry of operation %s: %w", id, err)
	}
	if err := byTime.Put(expiryKey(v, id), nil); err != nil {
		return fmt.Errorf("state: expiry of operation %s: %w", id, err)
	}
	return nil
}

// expired reports whether the retention of operation id, when done,
// ended at now. The caller checks that it is done.
func expired(tx *bolt.Tx, id []byte, now time.Time) bool {
	v := tx.Bucket(bucketOpsExpiresAt).Get(id)
	return len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now.UnixMilli()
}

// pruneDue reports whether an operation expired at now is still stored.
func pruneDue(tx *bolt.Tx, now time.Time) bool {
	k, _ := tx.Bucket(bucketOpsExpiry).Cursor().First()
	return len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now.UnixMilli()
}

// prune deletes up to pruneBatch operations expired at now, soonest
// first, with their index entries.
func prune(tx *bolt.Tx, now time.Time) error {
	var due [][]byte
	c := tx.Bucket(bucketOpsExpiry).Cursor()
	for k, _ := c.First(); k != nil && len(due) < pruneBatch; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now.UnixMilli() {
			break
		}
		due = append(due, slices.Clone(k))
	}
	for _, k := range due {
		id := string(k[8:])
		if err := tx.Bucket(bucketOpsExpiry).Delete(k); err != nil {
			return fmt.Errorf("state: prune operation %s: %w", id, err)
		}
		if at := tx.Bucket(bucketOpsExpiresAt).Get([]byte(id)); !bytes.Equal(at, k[:8]) {
			continue // a stale entry: the operation expires at another time
		}
		if v := tx.Bucket(bucketOperations).Get([]byte(id)); v != nil && !storedDone(v) {
			// Stored not done by a broker that kept no expiry: it
			// never expires.
			if err := setExpiry(tx, id, false, now); err != nil {
				return err
			}
			continue
		}
		if err := deleteOperation(tx, id); err != nil {
			return err
		}
	}
	return nil
}

// deleteOperation deletes operation id, its caller index entry and its
// expiry.
func deleteOperation(tx *bolt.Tx, id string) error {
	caller, ok := storedCaller(tx, id)
	if err := tx.Bucket(bucketOperations).Delete([]byte(id)); err != nil {
		return fmt.Errorf("state: delete operation %s: %w", id, err)
	}
	if ok {
		if err := tx.Bucket(bucketOpsByCaller).Delete(callerKey(caller, id)); err != nil {
			return fmt.Errorf("state: delete operation %s: %w", id, err)
		}
	}
	return setExpiry(tx, id, false, time.Time{})
}

// storedDone reports whether encoded operation v is done, without
// opening its values; false when it does not decode.
func storedDone(v []byte) bool {
	var j struct {
		Done bool `json:"done"`
	}
	return json.Unmarshal(v, &j) == nil && j.Done
}

// storedCaller returns the caller of the stored operation id without
// opening its values. ok is false when there is none or it does not
// decode; a stale index entry that remains is harmless, as
// ListOperations checks each operation's caller.
func storedCaller(tx *bolt.Tx, id string) (caller string, ok bool) {
	v := tx.Bucket(bucketOperations).Get([]byte(id))
	if v == nil {
		return "", false
	}
	var j struct {
		Caller string `json:"caller"`
	}
	if err := json.Unmarshal(v, &j); err != nil {
		return "", false
	}
	return j.Caller, true
}

// stored decodes the stored operation id; ok is false when there is none
// or it expired at now.
func (b *Bolt) stored(tx *bolt.Tx, id string, now time.Time) (*Operation, bool, error) {
	v := tx.Bucket(bucketOperations).Get([]byte(id))
	if v == nil {
		return nil, false, nil
	}
	op, err := decodeOperation(b.sealer, v)
	if err != nil {
		return nil, false, err
	}
	if op.Done && expired(tx, []byte(id), now) {
		return nil, false, nil
	}
	return op, true, nil
}

// PutOperation implements Operations.
func (b *Bolt) PutOperation(ctx context.Context, op *Operation) error {
	v, err := encodeOperation(b.sealer, op)
	if err != nil {
		return err
	}
	return b.update(ctx, "put operation", func(tx *bolt.Tx) error {
		now := b.now()
		if err := prune(tx, now); err != nil {
			return err
		}
		return putOperation(tx, op, v, now)
	})
}

// GetOperation implements Operations.
func (b *Bolt) GetOperation(ctx context.Context, id string) (*Operation, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var op *Operation
	err := b.view(ctx, "get operation", func(tx *bolt.Tx) error {
		var ok bool
		var err error
		op, ok, err = b.stored(tx, id, b.now())
		if err == nil && !ok {
			err = fmt.Errorf("state: operation %s: %w", id, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return op, nil
}

// UpdateOperation implements Operations: one bbolt write transaction.
func (b *Bolt) UpdateOperation(ctx context.Context, id string, fn func(*Operation) error) (*Operation, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var op *Operation
	err := b.update(ctx, "update operation", func(tx *bolt.Tx) error {
		now := b.now()
		if err := prune(tx, now); err != nil {
			return err
		}
		var ok bool
		var err error
		op, ok, err = b.stored(tx, id, now)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("state: operation %s: %w", id, ErrNotFound)
		}
		if err := fn(op); err != nil {
			return fmt.Errorf("state: update operation %s: %w", id, err)
		}
		if op.ID != id {
			return fmt.Errorf("state: update operation %s: %w: the update changed the ID", id, ErrInvalid)
		}
		v, err := encodeOperation(b.sealer, op)
		if err != nil {
			return err
		}
		return putOperation(tx, op, v, now)
	})
	if err != nil {
		return nil, err
	}
	return op, nil
}

// ListOperations implements Operations. With a caller it scans that
// caller's index keys; without, the operations bucket. It leaves out
// expired operations, and first prunes them in a write transaction when
// any are due.
func (b *Bolt) ListOperations(ctx context.Context, f OperationFilter) ([]*Operation, error) {
	now := b.now()
	var due bool
	if err := b.view(ctx, "list operations", func(tx *bolt.Tx) error {
		due = pruneDue(tx, now)
		return nil
	}); err != nil {
		return nil, err
	}
	if due {
		if err := b.update(ctx, "list operations", func(tx *bolt.Tx) error { return prune(tx, now) }); err != nil {
			return nil, err
		}
	}
	out := []*Operation{}
	err := b.view(ctx, "list operations", func(tx *bolt.Tx) error {
		ops := tx.Bucket(bucketOperations)
		take := func(k, v []byte) (more bool, err error) {
			op, err := decodeOperation(b.sealer, v)
			switch {
			case err != nil && f.NotDone && storedDone(v):
				return true, nil // not selected: done, as far as can be read
			case err != nil && f.skip(string(k), err):
				return true, nil
			case err != nil:
				return false, err
			}
			if f.match(op) && !(op.Done && expired(tx, k, now)) {
				out = append(out, op)
			}
			return f.Limit <= 0 || len(out) < f.Limit, nil
		}
		if f.Caller == "" {
			c := ops.Cursor()
			for k, v := c.Seek([]byte(f.After)); k != nil; k, v = c.Next() {
				if string(k) == f.After {
					continue
				}
				if more, err := take(k, v); err != nil || !more {
					return err
				}
			}
			return nil
		}
		prefix := callerPrefix(f.Caller)
		c := tx.Bucket(bucketOpsByCaller).Cursor()
		for k, _ := c.Seek(callerKey(f.Caller, f.After)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := k[len(prefix):]
			if string(id) == f.After {
				continue
			}
			v := ops.Get(id)
			if v == nil {
				continue // a stale index entry (see storedCaller)
			}
			if more, err := take(id, v); err != nil || !more {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteOperation implements Operations.
func (b *Bolt) DeleteOperation(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return b.update(ctx, "delete operation", func(tx *bolt.Tx) error {
		return deleteOperation(tx, id)
	})
}
