package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// Store is the broker's state: records of what it wrote, its long-running
// operations, and the server key. Every method takes a context first and
// returns errors wrapped with %w; ErrNotFound marks a missing record or
// operation. Implementations are safe for concurrent use.
type Store interface {
	Records
	Operations

	// Key returns the server key (at least MinKeyLen bytes): the
	// operator's (Options.HMACKey) when given, else one generated once
	// and kept in the store. The caller must not keep it in a log or an
	// error. The returned slice is the caller's own copy.
	Key(ctx context.Context) ([]byte, error)

	// Close releases the store. Calls after Close fail.
	Close() error
}

// Records holds one Record per secret the broker wrote.
type Records interface {
	// GetRecord returns the record for a secret resource name, or an
	// error wrapping ErrNotFound.
	GetRecord(ctx context.Context, name string) (Record, error)
	// PutRecord creates or replaces the record for r.Name.
	PutRecord(ctx context.Context, r Record) error
	// DeleteRecord removes a record. Removing a missing record is not an
	// error (a prune retried after a restart deletes again).
	DeleteRecord(ctx context.Context, name string) error
	// ListRecords returns every record whose name is
	// parent + "/secrets/" + NAME, sorted by name.
	ListRecords(ctx context.Context, parent string) ([]Record, error)
}

// Operations holds long-running operations.
//
// A done operation is kept for OperationRetention after the write that
// stored it done (by the store's clock), then expires: from then on every
// method treats it as one that never existed (GetOperation and
// UpdateOperation fail with ErrNotFound, ListOperations leaves it out),
// and the store deletes it and its index entries lazily, a bounded number
// per write or list. An operation that is not done never expires.
type Operations interface {
	// PutOperation creates or replaces op. Its pending values are sealed
	// before they are stored. Storing it done starts (or restarts) its
	// retention; storing it not done ends any.
	PutOperation(ctx context.Context, op *Operation) error
	// GetOperation returns the operation with this ID, or an error
	// wrapping ErrNotFound (also once it expired).
	GetOperation(ctx context.Context, id string) (*Operation, error)
	// UpdateOperation reads the operation, calls fn on it and stores the
	// result, atomically with respect to every other write of that
	// operation (so a CancelOperation is not lost under a progress
	// update). When fn returns an error nothing is stored and that error
	// is returned wrapped. fn may be called more than once (a Redis store
	// retries on conflict) and must not call the store. fn must not
	// change the ID.
	UpdateOperation(ctx context.Context, id string, fn func(*Operation) error) (*Operation, error)
	// ListOperations returns the operations that match f, sorted by ID.
	ListOperations(ctx context.Context, f OperationFilter) ([]*Operation, error)
	// DeleteOperation removes an operation. Removing a missing one is
	// not an error.
	DeleteOperation(ctx context.Context, id string) error
}

// OperationFilter selects operations for ListOperations. The zero filter
// selects every operation.
type OperationFilter struct {
	// Caller, when not empty, selects that caller's operations only.
	// The service passes the calling identity here; it lists every
	// caller's operations (Caller empty) only for a policy that lets a
	// caller read others', and at start-up to resume.
	Caller string
	// NotDone selects operations that are not done (to resume them).
	NotDone bool
	// After, when not empty, selects IDs that sort after it: pass the
	// last ID of one page to get the next.
	After string
	// Limit, when positive, returns at most this many operations.
	Limit int
	// Corrupt, when set, is called with the ID and the error (wrapping
	// ErrCorrupt) of each operation the list meets that does not decode
	// (damaged, or written in a newer broker's format before a
	// rollback); the list leaves it out, does not count it towards
	// Limit, and goes on. When nil, such an operation fails the list
	// with that error. As its fields cannot be read, one may be reported
	// that the filter would not have selected (another caller's, or a
	// done one), as far as the store's indexes cannot tell; one the
	// store can tell is done is left out of a NotDone list, unreported,
	// whether Corrupt is set or not. It must not call the store.
	Corrupt func(id string, err error)
}

// skip reports whether the list may go on past the operation id that
// failed to decode with err: Corrupt is set, and was told.
func (f OperationFilter) skip(id string, err error) bool {
	if f.Corrupt == nil || !errors.Is(err, ErrCorrupt) {
		return false
	}
	f.Corrupt(id, err)
	return true
}

func (f OperationFilter) match(op *Operation) bool {
	if f.Caller != "" && op.Caller != f.Caller {
		return false
	}
	return !f.NotDone || !op.Done
}

// Options configure a store.
type Options struct {
	// HMACKey is the operator's server key, from --state-hmac-key-file
	// (see ReadKeyFile): at least MinKeyLen bytes. When nil, the store
	// generates a random key once and keeps it.
	HMACKey []byte

	// LockTimeout bounds how long the file store waits for the lock on
	// its file, held by another process; zero means DefaultLockTimeout.
	// The memory store ignores it.
	LockTimeout time.Duration
}

// MinKeyLen is the shortest server key accepted, in bytes.
const MinKeyLen = 32

// maxKeyFileLen bounds the key file: a larger file is not a key.
const maxKeyFileLen = 4096

// generatedKeyLen is the length of a generated server key.
const generatedKeyLen = 32

// DefaultLockTimeout is how long the file store waits for its file's lock.
const DefaultLockTimeout = 2 * time.Second

// OperationRetention is how long a done operation is kept after the write
// that stored it done: its results and error stay readable by
// GetOperation, WaitOperation and ListOperations for that long, then it
// expires (see Operations). Seven days covers a caller that polls an
// operation it started before a long weekend or an outage, and an
// operator investigating a week-old run, while bounding what the store
// holds to about a week of operations instead of growing forever (in
// Redis, shared by every replica).
const OperationRetention = 7 * 24 * time.Hour

// pruneBatch bounds how many expired operations one write or list
// deletes, so that a call's extra work is bounded however many expired
// at once; every write prunes, so the backlog drains.
const pruneBatch = 100

// Errors. Each is wrapped with context; test them with errors.Is.
var (
	// ErrNotFound: no record or operation by that name.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a name, ID or operation the store refuses.
	ErrInvalid = errors.New("invalid")
	// ErrBadKey: the operator's server key is unusable (a configuration
	// error: too short, too long or unreadable).
	ErrBadKey = errors.New("bad state HMAC key")
	// ErrLocked: another process holds the state file.
	ErrLocked = errors.New("state file is locked by another process")
	// ErrCorrupt: stored bytes that do not decode.
	ErrCorrupt = errors.New("corrupt state")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("state store is closed")
)

// ReadKeyFile reads the operator's server key from path: the file's raw
// bytes, exactly (a trailing newline is part of the key), at least
// MinKeyLen and at most 4096 bytes. Any other file is a configuration
// error wrapping ErrBadKey. The error never holds key bytes.
func ReadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("state: --state-hmac-key-file: %w: %w", ErrBadKey, credential.WithoutPath(err))
	}
	defer f.Close()
	key, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("state: --state-hmac-key-file %s: %w: %w", path, ErrBadKey, err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("state: --state-hmac-key-file %s: %w", path, err)
	}
	return key, nil
}

// checkKey checks a server key's length.
func checkKey(key []byte) error {
	switch {
	case len(key) < MinKeyLen:
		return fmt.Errorf("%w: the key is %d bytes; at least %d are required (for example: head -c 32 /dev/urandom > key)", ErrBadKey, len(key), MinKeyLen)
	case len(key) > maxKeyFileLen:
		return fmt.Errorf("%w: the key is more than %d bytes", ErrBadKey, maxKeyFileLen)
	}
	return nil
}

// ctxErr returns the context's error, wrapped, when it is done.
func ctxErr(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("state: %s: %w", op, err)
	}
	return nil
}
