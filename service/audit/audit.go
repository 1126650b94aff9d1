// Package audit owns the broker's audit trail: one JSON line for the intent
// and one for the outcome of every mutating call and batch item, and one for
// every denied call, each naming the caller, the RPC and the resource. A
// plaintext value never enters a record; with an HMAC key, a record carries
// the value's keyed HMAC-SHA256 so that an operator holding the key can
// confirm which value was written.
//
// The trail fails closed, as HashiCorp Vault's audit devices do: Write
// returns an error when the line could not be written, and the service then
// refuses the mutating call before anything goes to GitHub.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"github.com/secretbroker/secretbroker/upstream/credential"
)

// Phases of a record.
const (
	// PhaseIntent is written before anything goes to GitHub.
	PhaseIntent = "intent"
	// PhaseOutcome is written when the call or item has its result.
	PhaseOutcome = "outcome"
)

// MinKeyBytes is the least length of an HMAC key.
const MinKeyBytes = 32

// Record is one line of the trail. Field order is the JSON order.
type Record struct {
	Time   time.Time `json:"time"`
	Phase  string    `json:"phase"`
	Caller string    `json:"caller"`
	// RPC is the full gRPC method, e.g. "/secretbroker.v1.SecretService/PutSecret".
	RPC string `json:"rpc"`
	// Item is a batch item's index in the request.
	Item     *int   `json:"item,omitempty"`
	Resource string `json:"resource"`
	// Outcome is the gRPC code's name (OK, PERMISSION_DENIED, ...); outcome
	// records only.
	Outcome string `json:"outcome,omitempty"`
	// UpstreamStatus is the HTTP status of GitHub's answer, when a request
	// went upstream.
	UpstreamStatus int    `json:"upstream_status,omitempty"`
	TraceID        string `json:"trace_id,omitempty"`
	// ValueHMAC is the hex HMAC-SHA256 of a plaintext value under the
	// trail's key.
	ValueHMAC string `json:"value_hmac,omitempty"`
	// Unchanged marks a write the broker did not send: it last wrote the
	// same value and GitHub still reports that write (outcome records).
	Unchanged bool `json:"unchanged,omitempty"`
	// Drift marks a write that found the secret changed behind the
	// broker's back since its last write (outcome records).
	Drift bool `json:"drift,omitempty"`
	// Operation is the operation ("operations/{id}") the record is part
	// of: on the outcome record of the call that accepted it, and on
	// every record of its items, which run after that call has answered.
	Operation string `json:"operation,omitempty"`
}

// Log writes records as JSON lines. The zero value is not usable; a nil
// *Log is a disabled trail whose methods do nothing.
type Log struct {
	key  []byte
	path string // "" when w was given

	// held holds a token while a record is written (and while Err,
	// Close and Open use the fields below): a channel, not a mutex, so
	// that WriteContext can stop waiting for a writer that is stuck.
	held    chan struct{}
	w       io.Writer   // nil while the file cannot be opened
	f       *os.File    // the opened file, closed by Close
	fi      os.FileInfo // f's, to tell whether path still names it
	openErr error
	closed  bool
	// torn: the last failed write left part of its line, without its
	// newline; the next line starts with one, so that it is a line of
	// its own.
	torn bool

	failures atomic.Int64
}

// Open returns a trail appending to the file at path ("-" is standard
// error), created 0600; an existing regular file open to others is made
// 0600 (makePrivate). Open returns a Log even when the file cannot be
// opened, or made 0600: every Write tries to open the file again and
// fails until it can, and Err reports why (a *ModeError for a file that
// could not be made 0600). A file removed or renamed away (a log
// rotation) is created again at path by the next Write.
func Open(path string, hmacKey []byte) *Log {
	if path == "-" {
		return NewWriter(os.Stderr, hmacKey)
	}
	l := &Log{key: hmacKey, path: path, held: make(chan struct{}, 1)}
	l.lock()
	l.openLocked()
	l.unlock()
	return l
}

// NewWriter returns a trail writing to w, which receives one Write per
// record.
func NewWriter(w io.Writer, hmacKey []byte) *Log {
	return &Log{key: hmacKey, w: w, held: make(chan struct{}, 1)}
}

// lock waits for the trail; unlock lets it go.
func (l *Log) lock()   { l.held <- struct{}{} }
func (l *Log) unlock() { <-l.held }

// lockContext waits for the trail until ctx ends; a trail free at once is
// taken even when ctx has ended.
func (l *Log) lockContext(ctx context.Context) error {
	select {
	case l.held <- struct{}{}:
		return nil
	default:
	}
	select {
	case l.held <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (l *Log) openLocked() {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		l.openErr = fmt.Errorf("opening the audit log: %w", err)
		return
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		l.openErr = fmt.Errorf("checking the audit log's mode: %w", err)
		return
	}
	if err := makePrivate(l.path, f, fi); err != nil {
		_ = f.Close()
		l.openErr = err
		return
	}
	l.w, l.f, l.fi, l.openErr, l.torn = f, f, fi, nil, false
}

// makePrivate makes f, the trail's file, 0600 when it is a regular file
// that others than its owner may read or write: a file that was there
// before the broker (or that a log rotation created anew) with a wider
// mode would show every record to them, or let them forge some. HashiCorp
// Vault's file audit device sets its mode on an existing file too; here it
// is set on the file opened (fchmod), not by path, which could name
// another file by then, and only on a regular file, where Vault spares
// /dev/null alone: a FIFO or a device (/dev/stdout, /dev/null) keeps its
// mode, as it holds no records for later readers and its mode decides
// which process may open the other end, the operator's to choose. A file
// whose mode cannot be changed (another user's, an append-only one) is a
// *ModeError: the trail does not write to it.
func makePrivate(path string, f *os.File, fi os.FileInfo) error {
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := f.Chmod(0o600); err != nil {
		return &ModeError{Path: path, Mode: fi.Mode().Perm(), Err: credential.WithoutPath(err)}
	}
	return nil
}

// ModeError is why the trail does not write to its file: the file is
// open to others than its owner (Mode) and could not be made 0600 (Err).
type ModeError struct {
	Path string
	Mode fs.FileMode
	Err  error
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("the audit log %s has mode %04o, open to others than its owner, and cannot be made 0600: %v (another user's file, or an append-only one? make it 0600)",
		e.Path, uint32(e.Mode), e.Err)
}

func (e *ModeError) Unwrap() error { return e.Err }

// reopenIfMovedLocked opens the file at path again when path no longer
// names the file the trail writes to: removed, or renamed away by a log
// rotation. Records written on to the old file would be lost with the
// removed one, or go where the operator does not look; as Python's
// WatchedFileHandler does, each record checks the path first (one stat).
func (l *Log) reopenIfMovedLocked() {
	if l.f == nil || l.fi == nil {
		return
	}
	if cur, err := os.Stat(l.path); err == nil && os.SameFile(cur, l.fi) {
		return
	}
	_ = l.f.Close() // the old file: nothing more goes to it
	l.w, l.f, l.fi = nil, nil, nil
	l.openLocked()
}

// Err returns why the trail cannot be written at the moment, or nil.
func (l *Log) Err() error {
	if l == nil {
		return nil
	}
	l.lock()
	defer l.unlock()
	return l.openErr
}

// Failures returns how many records could not be written.
func (l *Log) Failures() int64 {
	if l == nil {
		return 0
	}
	return l.failures.Load()
}

// Write appends r as one line, setting its time when it has none. It
// returns an error when the line was not written whole; the caller must
// then not go on with the change the record announces. It waits for
// another record's write however long that takes: it is for the outcome
// of a change that was made, whose record must not be given up.
func (l *Log) Write(r Record) error {
	return l.WriteContext(context.Background(), r)
}

// WriteContext is Write, except that it gives up, with an error, when ctx
// ends while another record's write holds the trail: a writer that is
// stuck (a full pipe, a hung mount) fails the changes announced after it
// as a write error does, when their calls' deadlines pass, instead of
// holding them past their deadlines. The record whose write is stuck is
// not given up.
func (l *Log) WriteContext(ctx context.Context, r Record) error {
	if l == nil {
		return nil
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	line, err := json.Marshal(r)
	if err != nil {
		l.failures.Add(1)
		return fmt.Errorf("encoding an audit record: %w", err)
	}
	line = append(line, '\n')
	if err := l.lockContext(ctx); err != nil {
		l.failures.Add(1)
		return fmt.Errorf("the audit log is busy with an earlier record that is not written yet: %w", err)
	}
	defer l.unlock()
	if l.path != "" && !l.closed {
		l.reopenIfMovedLocked()
		if l.w == nil {
			l.openLocked()
		}
	}
	if l.w == nil {
		l.failures.Add(1)
		return l.openErr
	}
	if l.torn {
		line = append([]byte{'\n'}, line...)
	}
	n, err := l.w.Write(line)
	if err == nil && n < len(line) {
		err = io.ErrShortWrite
	}
	if n > 0 {
		l.torn = n < len(line)
	}
	if err != nil {
		l.failures.Add(1)
		return fmt.Errorf("writing the audit log: %w", err)
	}
	return nil
}

// ValueHMAC returns the hex HMAC-SHA256 of value under the trail's key, or
// "" when the trail has no key.
func (l *Log) ValueHMAC(value []byte) string {
	if l == nil || len(l.key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, l.key)
	m.Write(value)
	return hex.EncodeToString(m.Sum(nil))
}

// Close closes the file the trail opened.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.lock()
	defer l.unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.w, l.f, l.fi = nil, nil, nil
	l.openErr = errors.New("the audit log is closed")
	return err
}

// ReadKey reads an HMAC key file: its raw bytes, at least MinKeyBytes.
// Errors never hold its content, nor its path when it cannot be read
// (withoutPath).
func ReadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the audit HMAC key: %w", credential.WithoutPath(err))
	}
	if len(b) < MinKeyBytes {
		return nil, fmt.Errorf("audit HMAC key file %s holds %d bytes; it needs at least %d", path, len(b), MinKeyBytes)
	}
	return b, nil
}
