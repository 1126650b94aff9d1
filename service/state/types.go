package state

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
)

// Record is what the broker remembers about one secret it wrote. It never
// holds the value.
type Record struct {
	// Name is the secret's resource name, {parent}/secrets/{NAME}.
	Name string
	// ValueFingerprint is Fingerprinter.Value of the value written.
	ValueFingerprint Fingerprint
	// SettingsFingerprint is Fingerprinter.Settings of an organization
	// secret's visibility and selected repositories; zero for other
	// scopes.
	SettingsFingerprint Fingerprint
	// KeyID is the key_id of the public key the value was sealed with.
	KeyID string
	// UpdatedAt is the secret's updated_at as GitHub reported it after
	// the write; zero when not known yet. With UpdatedAtLatest set it is
	// the earliest the updated_at can be.
	UpdatedAt time.Time
	// UpdatedAtLatest, when set, makes UpdatedAt..UpdatedAtLatest a range
	// that holds GitHub's updated_at after the write, bounded from the
	// write's answer rather than read back (see Record.UpdatedMatches).
	// Zero when UpdatedAt is exact or unknown.
	UpdatedAtLatest time.Time
	// Owner is the owner label: the sync's owner, else the caller
	// identity, else "anonymous".
	Owner string
	// WrittenAt is when the broker wrote the secret (its own clock).
	WrittenAt time.Time
	// Operation is the ID (Operation.ID) of the operation whose item made
	// the write, empty for a call's; Created, with it, says GitHub
	// answered that write 201 (created), not 204. An operation item
	// repeated after a crash kept its result from being stored, which
	// finds its own write, reports that write (created or updated) rather
	// than an unchanged value.
	Operation string
	Created   bool
	// Environment is an environment secret's environment name as the
	// write spelled it ("" for other scopes). Name folds its case, as
	// GitHub's docs say GitHub does; the seeds do not say so, and a GitHub
	// that told two spellings apart would hold two secrets under one
	// record, so a write is judged unchanged only under the spelling its
	// record was written with.
	Environment string
	// FingerprintKey is Fingerprinter.KeyTag of the key the record's
	// fingerprints were made under: fingerprints made under another key
	// (the server key changed since: a new --state-hmac-key-file, or a
	// replica still on the key Redis held before it lost its data) say
	// nothing of a value or settings, neither that they are the same nor
	// that they differ. Empty for a record without fingerprints, and for
	// one stored before the tag was kept (taken as made under the current
	// key).
	FingerprintKey string
}

// Settings are an organization secret's visibility and selection: the
// input of an item's settings fingerprint and part of its pending work.
// Other scopes leave them zero.
type Settings struct {
	// Visibility is "all", "private" or "selected" (GitHub's words).
	Visibility string
	// SelectedRepositoryIDs are the selected repositories' IDs, in any
	// order.
	SelectedRepositoryIDs []int64
}

// IsZero reports whether s holds no settings.
func (s Settings) IsZero() bool { return s.Visibility == "" && len(s.SelectedRepositoryIDs) == 0 }

// OperationKind names what an operation does.
type OperationKind string

// Operation kinds.
const (
	KindSyncSecrets     OperationKind = "SyncSecrets"
	KindBatchPutSecrets OperationKind = "BatchPutSecrets"
)

// Operation is a long-running operation in the shape of AIP-151
// (google.longrunning.Operation), with the pending work needed to resume
// it.
type Operation struct {
	// ID is the operation's ID; its resource name is "operations/" + ID.
	// 1 to 128 characters of [A-Za-z0-9_-] (see NewOperationID).
	ID string
	// Caller is the identity that started it: only it (and callers the
	// policy lets read it) may see it.
	Caller string
	// ClientAddr is, for an operation an unauthenticated caller started
	// (Caller empty: no authentication is configured), the IP address
	// its call came from: the runner's bound on one caller's unfinished
	// operations counts such operations by it, as the front door counts
	// the caller's calls (operation.Options.MaxPerCaller). It is not an
	// identity: it decides neither who sees nor who may cancel the
	// operation. Empty for an authenticated caller's operation, and for
	// one stored before the field was kept.
	ClientAddr string
	// Kind is what it does.
	Kind OperationKind
	// Parent is the scope a sync makes hold its values; empty for a
	// batch, whose items name their own scopes.
	Parent string
	// Owner is the owner label recorded with every secret it writes.
	Owner string
	// Force writes even unchanged values and claims other owners' names.
	Force bool
	// Prune deletes the owner's secrets that the sync no longer lists.
	Prune bool

	CreateTime time.Time
	UpdateTime time.Time

	// Done is set when the operation ended, with Error set when it ended
	// badly (for example codes.Canceled) and Results holding one result
	// per item either way: those it did not run are NotRun.
	Done bool
	// CancelRequested is set by CancelOperation; the runner stops at the
	// next item boundary and ends the operation done with Canceled.
	CancelRequested bool
	// Error is the operation's error when Done and it failed or was
	// cancelled; nil otherwise.
	Error *Status

	// Metadata is the operation's progress.
	Metadata Progress
	// Results are the finished items' results, in the order they
	// finished; once Done, followed by those of the items never run
	// (NotRun), in the order they were pending.
	Results []ItemResult
	// Pending are the items still to do. A resumed operation does these
	// (every step is idempotent).
	Pending []PendingItem

	// Runner is an opaque ID of the runner instance (service/operation)
	// that holds the operation's lease: the one running it, or the last
	// one that did. Empty when no runner ever held it.
	Runner string
	// LeaseUntil is when Runner's lease ends: until then no other runner
	// takes the operation over. Zero when released (a runner that
	// paused it at shutdown) or never taken.
	LeaseUntil time.Time
}

// Status is a gRPC status: a code and a message (never a value).
type Status struct {
	Code    codes.Code
	Message string
}

// Progress is an operation's metadata.
type Progress struct {
	Total     int
	Written   int
	Unchanged int
	Failed    int
	Remaining int
	// EstimatedCompletion is the pacer's estimate of when the operation
	// ends; zero when unknown.
	EstimatedCompletion time.Time
}

// ItemResult is the result of one item of an operation.
type ItemResult struct {
	// Name is the item's secret resource name.
	Name string
	// Code and Message are its status (codes.OK on success).
	Code    codes.Code
	Message string
	// Unchanged: the value matched the record and was not written.
	Unchanged bool
	// Drift: GitHub reported a newer updated_at than recorded.
	Drift bool
	// Action is the plan's word for the item (create, update, unchanged,
	// drifted, delete, foreign, ...); the store does not interpret it.
	Action string
	// Created: GitHub answered the item's write 201 (created), not 204.
	Created bool
	// KeyID is the key_id of the key the item's value was sealed with
	// (for a write judged unchanged, the one recorded when it was
	// written); empty for an item that wrote nothing, and for a result
	// stored before the field was kept.
	KeyID string
	// RecordedOwner is, for a sync's CONFLICT or FOREIGN item, the owner
	// the broker recorded for the secret; empty when it never wrote it,
	// and for a result stored before the field was kept.
	RecordedOwner string
	// RetryAfter is, for an item that failed with codes.ResourceExhausted
	// or codes.Unavailable, how long its caller should wait before
	// sending it again (the status's RetryInfo), measured from when it
	// failed; zero otherwise, and for a result stored before the field
	// was kept. RetryAt says when that wait ends, which is what a reader
	// shows; RetryAfter is kept for the versions that read only it.
	RetryAfter time.Duration
	// RetryAt is when RetryAfter's wait ends: the instant the item failed
	// plus RetryAfter; zero without a RetryAfter. A result stored before
	// the field was kept decodes with its operation's update time plus
	// RetryAfter (it failed at or before that update), so that the wait
	// a reader is told is never shorter than the one left.
	RetryAt time.Time
	// NotRun: the operation ended (cancelled) before it ran the item; Code
	// (codes.Canceled) and Message say so. Such an item counts as
	// remaining, not failed.
	NotRun bool
	// Sent is the item's PendingItem.Sent: its name as its caller sent it,
	// when that is not Name; empty otherwise.
	Sent string
}

// PendingItem is one item an operation still has to do.
type PendingItem struct {
	// Name is the secret's resource name.
	Name string
	// Settings are an organization secret's visibility and selection.
	Settings Settings
	// Delete: remove the secret (a prune) instead of writing Value.
	Delete bool
	// Value is the plaintext value to write (nil for Delete). It is
	// sealed at rest; it is nil when ValueLost.
	Value []byte
	// ValueLost: the stored value could not be opened (the server key
	// changed since it was sealed). The item cannot be resumed.
	ValueLost bool
	// Sent is the secret's name as the caller sent it, when that is not
	// Name (a batch's item spelled in lower case): the service answers a
	// failed item under it. Empty otherwise.
	Sent string
}

// String names the item without its value, for logs and %v.
func (p PendingItem) String() string {
	switch {
	case p.Delete:
		return "delete " + p.Name
	case p.ValueLost:
		return "put " + p.Name + " (value lost)"
	}
	return fmt.Sprintf("put %s (%d-byte value)", p.Name, len(p.Value))
}

// GoString keeps the value out of %#v.
func (p PendingItem) GoString() string { return "state.PendingItem{" + p.String() + "}" }

// maxNameLen bounds a resource name, as service/names.go does.
const maxNameLen = 1024

// secretsSep separates a parent from a secret name.
const secretsSep = "/secrets/"

// ParentOf splits a secret resource name into its parent scope and its
// secret name: "orgs/acme/actions/secrets/TOKEN" is "orgs/acme/actions" and
// "TOKEN". ok is false for a name the store does not accept (see
// checkName).
func ParentOf(name string) (parent, secret string, ok bool) {
	if checkName(name) != nil {
		return "", "", false
	}
	i := strings.LastIndex(name, secretsSep)
	return name[:i], name[i+len(secretsSep):], true
}

// checkName checks a record name: at most maxNameLen bytes of valid UTF-8
// without control characters, of the form {parent}/secrets/{NAME} with a
// non-empty parent and a NAME without "/". The store does not parse the
// parent: the service has done that (service/names.go).
func checkName(name string) error {
	if err := checkText("record name", name); err != nil {
		return err
	}
	i := strings.LastIndex(name, secretsSep)
	if i <= 0 {
		return fmt.Errorf("state: record name %q: %w: want {parent}/secrets/{NAME}", name, ErrInvalid)
	}
	if err := checkParent(name[:i]); err != nil {
		return err
	}
	if leaf := name[i+len(secretsSep):]; leaf == "" || strings.Contains(leaf, "/") {
		return fmt.Errorf("state: record name %q: %w: the secret name must be one non-empty segment", name, ErrInvalid)
	}
	return nil
}

// checkParent checks a parent scope name: non-empty text that neither
// starts nor ends with "/".
func checkParent(parent string) error {
	if err := checkText("parent", parent); err != nil {
		return err
	}
	if parent == "" || strings.HasPrefix(parent, "/") || strings.HasSuffix(parent, "/") {
		return fmt.Errorf("state: parent %q: %w: want a scope such as orgs/acme/actions", parent, ErrInvalid)
	}
	return nil
}

func checkText(what, s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("state: %s: %w: %d bytes, more than %d", what, ErrInvalid, len(s), maxNameLen)
	}
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("state: %s: %w: not UTF-8 text without control characters", what, ErrInvalid)
	}
	return nil
}

// maxIDLen bounds an operation ID.
const maxIDLen = 128

// checkID checks an operation ID: 1 to maxIDLen characters of
// [A-Za-z0-9_-], so it is a safe path segment and store key.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("state: operation ID: %w: must be 1 to %d characters", ErrInvalid, maxIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("state: operation ID %q: %w: may hold only letters, digits, \"_\" and \"-\"", id, ErrInvalid)
		}
	}
	return nil
}

// checkOperation checks an operation before it is stored.
func checkOperation(op *Operation) error {
	if op == nil {
		return fmt.Errorf("state: operation: %w: nil", ErrInvalid)
	}
	if err := checkID(op.ID); err != nil {
		return err
	}
	if op.Kind == "" {
		return fmt.Errorf("state: operation %s: %w: no kind", op.ID, ErrInvalid)
	}
	if err := checkText("caller", op.Caller); err != nil {
		return fmt.Errorf("operation %s: %w", op.ID, err)
	}
	if err := checkText("client address", op.ClientAddr); err != nil {
		return fmt.Errorf("operation %s: %w", op.ID, err)
	}
	if err := checkText("runner", op.Runner); err != nil {
		return fmt.Errorf("operation %s: %w", op.ID, err)
	}
	m := op.Metadata
	if m.Total < 0 || m.Written < 0 || m.Unchanged < 0 || m.Failed < 0 || m.Remaining < 0 {
		return fmt.Errorf("state: operation %s: %w: negative progress count", op.ID, ErrInvalid)
	}
	for i, p := range op.Pending {
		if err := checkName(p.Name); err != nil {
			return fmt.Errorf("operation %s: pending item %d: %w", op.ID, i, err)
		}
		if p.Delete && (p.Value != nil || p.ValueLost) {
			return fmt.Errorf("state: operation %s: pending item %d (%s): %w: a delete has no value", op.ID, i, p.Name, ErrInvalid)
		}
		if p.ValueLost && p.Value != nil {
			return fmt.Errorf("state: operation %s: pending item %d (%s): %w: a lost value is nil", op.ID, i, p.Name, ErrInvalid)
		}
		if err := checkText("name sent", p.Sent); err != nil {
			return fmt.Errorf("operation %s: pending item %d: %w", op.ID, i, err)
		}
	}
	return nil
}

// NewOperationID returns a new operation ID that sorts by creation time:
// 12 hex digits of milliseconds since the Unix epoch at now, then 20 hex
// digits (80 bits) from crypto/rand. IDs made in the same millisecond sort
// in random order.
func NewOperationID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// UpdatedKnown reports whether the record knows GitHub's updated_at after
// the broker's write, exactly or within a range.
func (r Record) UpdatedKnown() bool { return !r.UpdatedAt.IsZero() }

// UpdatedMatches reports whether GitHub reporting updated_at t agrees with
// the record: t is the recorded updated_at, or within the recorded range.
// It is false when the record knows no updated_at.
func (r Record) UpdatedMatches(t time.Time) bool {
	switch {
	case r.UpdatedAt.IsZero():
		return false
	case r.UpdatedAtLatest.IsZero():
		return t.Equal(r.UpdatedAt)
	default:
		return !t.Before(r.UpdatedAt) && !t.After(r.UpdatedAtLatest)
	}
}
