package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// What the broker remembers of its writes (service/state) and how it uses
// it:
//
//   - After every successful write it records, per secret: the value's
//     fingerprint, an organization secret's settings fingerprint (the
//     visibility and selection written), the key_id it sealed with, the
//     owner label, and GitHub's updated_at after the write. The write's
//     answer bounds that updated_at to a range of a few seconds, from its
//     Date header and the round trip (upstream.Written), at no cost; a
//     batch or a sync then lists the scopes it wrote to once more at the
//     end (100 secrets a page) to record the exact updated_at, and a
//     PutSecret found unchanged records the exact one it read. Only an
//     answer without a Date costs a GET of the secret.
//   - A write whose value and settings fingerprints match the record, and
//     whose secret GitHub still reports with the recorded updated_at, is
//     not sent: the item is unchanged. A record without updated_at (read
//     back failed, or the broker stopped before it could) never makes an
//     item unchanged.
//   - GitHub reporting another updated_at than recorded is drift: someone
//     wrote the secret behind the broker's back. The value is written
//     again and the drift reported.
//   - Before a write is sent, the secret's record is distrusted: stored
//     again without fingerprints and updated_at, its owner kept
//     (distrustRecord; one store write, only when the record could make a
//     write unchanged). A write that fails, whose answer is lost after
//     GitHub applied it, whose record cannot be written, or that the
//     broker does not live to record, so leaves a record that makes the
//     next write of the secret go to GitHub. Records are written and
//     removed with a context the call's end does not cancel
//     (recordContext); a record that cannot be written is removed.
//   - Writes of one secret (its organization, owner and repository names
//     in any case: secretKey) are serialized within the process
//     (secretLocks), from the distrust to the record, so that records are
//     written in the order GitHub applied the writes.
//   - Without a record the broker writes: losing the state costs writes,
//     never correctness. A failure to read or write a record is logged and
//     treated the same way; it never fails the call. A store that fails
//     both to distrust a record before a write and to replace or remove it
//     after leaves the previous record (see distrustRecord).
//   - GitHub's updated_at has a resolution of one second: a change behind
//     the broker's back in the same second as its own write, within the
//     range a write's answer bounds (its round trip plus a second of clock
//     skew on either side), or between its write and a read back, goes
//     unnoticed.

// anonymousOwner is the owner label of a write without an owner label and
// without an authenticated caller.
const anonymousOwner = "anonymous"

// ownerOf returns the owner label of a write: label when given, else the
// authenticated caller, else anonymousOwner.
func ownerOf(ctx context.Context, label string) string {
	if label != "" {
		return label
	}
	if c := callerOf(ctx); c != "" {
		return c
	}
	return anonymousOwner
}

// stateOf holds the service's state store and the fingerprinter made from
// its key (made on first use: the key may live in the store).
type stateOf struct {
	store state.Store
	// writes serializes the writes of one secret (see secretLocks).
	writes secretLocks

	mu sync.Mutex
	fp *state.Fingerprinter
}

// fingerprinter returns the fingerprinter under the store's server key.
func (st *stateOf) fingerprinter(ctx context.Context) (*state.Fingerprinter, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.fp != nil {
		return st.fp, nil
	}
	key, err := st.store.Key(ctx)
	if err != nil {
		return nil, fmt.Errorf("state key: %w", err)
	}
	fp, err := state.NewFingerprinter(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	st.fp = fp
	return fp, nil
}

// getRecord returns the record stored under name (a secretKey, or a
// legacy name: recordkey.go), or nil when there is none or it cannot be
// read (logged).
func (s *Server) getRecord(ctx context.Context, name string) *state.Record {
	r, _ := s.readRecord(ctx, name)
	return r
}

// readRecord is getRecord that also reports a failure to read (logged):
// nil and false when the store could not say whether there is a record.
// It reads with recordContext, so that false means the store failed,
// never that the call ended: a write's distrustRecord drops a record it
// could not read.
func (s *Server) readRecord(ctx context.Context, name string) (*state.Record, bool) {
	rctx, cancel := recordContext(ctx)
	defer cancel()
	r, err := s.state.store.GetRecord(rctx, name)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, true
	case err != nil:
		s.log.WarnContext(ctx, "state: record cannot be read; writing as if there were none", "record", name, "err", err)
		return nil, false
	}
	return &r, true
}

// recordTimeout bounds one write or removal of a record made on behalf of
// a call (recordContext).
const recordTimeout = 5 * time.Second

// recordContext returns the context records are written and removed
// with: ctx's values (trace, caller) without its cancellation, and at most
// recordTimeout. A record describes a write GitHub may already have
// applied; a caller that hangs up, or a call that runs out of time, after
// the write was sent must not leave the record of the previous value
// behind (a store refuses writes on a done context).
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// putRecord stores r, logging a failure (the write it records happened).
func (s *Server) putRecord(ctx context.Context, r state.Record) error {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	err := s.state.store.PutRecord(ctx, r)
	if err != nil {
		s.log.WarnContext(ctx, "state: record cannot be written; the next write of this secret will not be skipped", "record", r.Name, "err", err)
	}
	return err
}

// dropRecord removes the record stored under name, logging a failure.
func (s *Server) dropRecord(ctx context.Context, name string) error {
	ctx, cancel := recordContext(ctx)
	defer cancel()
	err := s.state.store.DeleteRecord(ctx, name)
	if err != nil {
		s.log.WarnContext(ctx, "state: record cannot be removed", "record", name, "err", err)
	}
	return err
}

// trusted reports whether r could make a write unchanged or tell drift: it
// holds a fingerprint or an updated_at.
func trusted(r *state.Record) bool {
	return r != nil && (r.UpdatedKnown() || !r.ValueFingerprint.IsZero() || !r.SettingsFingerprint.IsZero())
}

// changingSelection runs do, a change of an organization secret's
// selection at GitHub (SetSelectedRepositories, Add or Remove), with the
// context it is given, under the secret's write lock with its record's
// settings fingerprint cleared first (distrustSettings): it holds the
// selection the broker last wrote, and a PutSecret asking for that
// selection again must write it, not answer unchanged (GitHub's
// updated_at does not move with a selection). The value fingerprint and
// updated_at are kept: a selection change leaves the value and updated_at
// as they were, so the record still tells drift of the value (a change
// made at GitHub since, for DetectDrift and a prune) and a put that keeps
// the settings. When another replica wrote the secret meanwhile, the
// record is distrusted whole.
func (s *Server) changingSelection(ctx context.Context, scope upstream.Scope, name string, do func(ctx context.Context) error) (err error) {
	held, unlock, cur, err := s.lockSecret(ctx, scope, name, leaseIfUp)
	if err != nil {
		return err
	}
	defer unlock(&err)
	ctx = held
	k := secretKey(scope, name)
	// Counted as a write: a put another replica makes meanwhile must not
	// record the selection this change replaces.
	tw, cur := s.trackWrite(ctx, k, cur)
	defer tw.end(ctx)
	rec := s.distrustSettings(ctx, k, cur.rec, cur.readOK)
	err = do(ctx)
	if !tw.end(ctx) && rec != nil {
		s.distrustRecord(ctx, k, rec, true)
	}
	return err
}

// distrustSettings clears the settings fingerprint of rec, the record of
// a secret whose selection is about to change (read with its write lock
// held; readOK false when it could not be read), and returns the record
// as stored then (nil when none is left). A record without one costs
// nothing; one that cannot be stored again, or could not be read, is
// removed (distrustRecord).
func (s *Server) distrustSettings(ctx context.Context, key string, rec *state.Record, readOK bool) *state.Record {
	switch {
	case !readOK:
		s.distrustRecord(ctx, key, rec, readOK)
		return nil
	case rec == nil || rec.SettingsFingerprint.IsZero():
		return rec
	}
	r := *rec
	r.SettingsFingerprint = state.Fingerprint{}
	if s.putRecord(ctx, r) != nil {
		_ = s.dropRecord(ctx, key) // logged; nothing else is left to try
		return nil
	}
	return &r
}

// distrustRecord makes the record of a secret about to be written unable
// to make any later write unchanged, before the write is sent: rec (the
// record read with the secret's write lock held; readOK false when it
// could not be read) is stored again without its fingerprints and
// updated_at, keeping its owner, key_id and written_at (sync ownership
// needs the owner), and the operation whose item wrote it with whether
// that write created the secret: an item written again after a crash,
// whose repeat a second crash cuts after GitHub applied it, still finds
// its first write, and reports its create (ownWrite). Whatever then goes wrong (an answer lost after GitHub
// applied the write, a failure to record the write, a crash) leaves a
// record that makes the next write of the secret go to GitHub. When rec
// cannot be rewritten, or could not be read, the record is removed. A
// record already distrusted, or none, costs nothing. The caller holds the
// secret's write lock; key is the secret's secretKey.
func (s *Server) distrustRecord(ctx context.Context, key string, rec *state.Record, readOK bool) {
	switch {
	case readOK && !trusted(rec):
		return
	case readOK:
		r := state.Record{Name: rec.Name, KeyID: rec.KeyID, Owner: rec.Owner, WrittenAt: rec.WrittenAt, Environment: rec.Environment,
			Operation: rec.Operation, Created: rec.Created}
		if s.putRecord(ctx, r) == nil {
			return
		}
	}
	_ = s.dropRecord(ctx, key) // logged; nothing else is left to try
}

// prints are a write's fingerprints.
type prints struct {
	value, settings state.Fingerprint
	// comparable is false when the write's settings are not fully known
	// before it (an organization secret with visibility "selected" and no
	// repositories, which keeps the current selection): such a write is
	// never unchanged.
	comparable bool
	// environment is the write's environment name as spelled ("" for
	// other scopes): a record written under another spelling does not
	// judge it (state.Record.Environment).
	environment string
	// key is the tag of the key the prints were made under
	// (state.Fingerprinter.KeyTag): a record whose fingerprints were made
	// under another does not judge it (state.Record.FingerprintKey).
	key string
	// blind: the caller may not read the secret, so the write is judged
	// against nothing as far as its caller can tell (judge): see
	// mayCompare.
	blind bool
}

// printsOf fingerprints a plan's value and settings. A caller-sealed value
// cannot be fingerprinted (sealing is randomized): ok is false. Either
// way the prints say whether the caller may have the write compared with
// the record (mayCompare).
func (s *Server) printsOf(ctx context.Context, p *putPlan) (prints, bool) {
	blind := !s.mayCompare(ctx, p.scope, p.name)
	if p.plaintext == nil && !p.settingsOnly {
		return prints{blind: blind}, false
	}
	fp, err := s.state.fingerprinter(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "state: no fingerprints; writing", "err", err)
		return prints{blind: blind}, false
	}
	out := prints{comparable: true, environment: p.scope.Environment, key: fp.KeyTag(), blind: blind}
	if p.settingsOnly {
		// No value: its print is the record's, when the record vouches
		// for the value GitHub holds (keepValuePrint, with the secret's
		// lock held); until then there are prints of the settings only.
		out.settings = fp.Settings(settingsOf(p))
		if p.visibility == visibilitySelected && len(p.repoIDs) == 0 && len(p.repoNames) == 0 {
			out.comparable = false
		}
		return out, false
	}
	out.value = fp.Value(p.plaintext)
	if p.scope.IsOrg() {
		switch {
		case p.visibility == "":
			// The current visibility and selection are kept: only the
			// value can change.
			out.settings = state.Fingerprint{}
		case p.visibility == visibilitySelected && len(p.repoIDs) == 0 && len(p.repoNames) == 0:
			out.comparable = false
		default:
			out.settings = fp.Settings(settingsOf(p))
		}
	}
	return out, true
}

// settingsOf returns a plan's organization settings.
func settingsOf(p *putPlan) state.Settings {
	if !p.scope.IsOrg() {
		return state.Settings{}
	}
	return state.Settings{Visibility: p.visibility, SelectedRepositoryIDs: p.repoIDs}
}

// seen is what GitHub reports of a secret now.
type seen struct {
	// known: GitHub was asked (a GET or the scope's list).
	known bool
	// exists: the secret exists at GitHub.
	exists    bool
	updatedAt time.Time
	// visibility is an organization secret's, as GitHub reports it
	// ("" when it did not).
	visibility string
}

// verdict is the broker's judgement of a write against its record.
type verdict struct {
	// unchanged: nothing needs to be written.
	unchanged bool
	// drift: GitHub reports another updated_at than the broker's last
	// write left, and the caller is told so (its answer's drift, a sync's
	// SYNC_ACTION_DRIFTED, an operation's results).
	drift bool
	// driftSeen: drift as the operators are told it (the drift metric,
	// the outcome record's drift, the log line: noteDrift), whether or
	// not the caller is: a blind write's drift is seen but never told
	// to its caller (drifted). Caller-facing code reads drift only.
	driftSeen bool
}

// drifted is the verdict of a write whose secret GitHub reports changed
// behind the broker's back: drift told to the operators, and to the
// caller unless the write is blind (mayCompare). It costs nothing more
// than the judgement it ends: the drift is seen in what the path already
// holds (a listing, a GET it made), never asked for.
func drifted(blind bool) verdict {
	return verdict{drift: !blind, driftSeen: true}
}

// mayCompare reports whether the caller's write of secret name of scope
// may be compared with the broker's record of the secret: only when the
// caller may read the secret. A caller that may write a secret but not
// read it could otherwise confirm a guessed value: a write found
// unchanged is skipped and answered so (unchanged, SYNC_ACTION_UNCHANGED,
// an operation's counters, the time a skip takes), and drift tells that
// the secret was written behind the broker's back. Such a caller's write
// is judged against nothing (prints.blind, judge): it goes to GitHub as if
// there were no record (the same requests, at the same times), and is
// recorded as any write is. Drift the updated_at already at hand shows (a
// sync's or an operation's listing of the scope, a batch's when another
// of its items made it list the scope; a PutSecret has none) is still
// told to the operators (verdict.driftSeen: the metric, the audit
// record, the log line), never to the caller. The policy is in memory: the check costs no upstream
// call, and it is not counted as a call's access decision.
func (s *Server) mayCompare(ctx context.Context, scope upstream.Scope, name string) bool {
	res := secretResourceName(scope, name)
	return s.decide(ctx, verbRead, false, func(c string) bool { return s.authz.Allow(c, verbRead, res) })
}

// judge compares a write with its record and what GitHub reports. A write
// whose caller may not read the secret (pr.blind) is compared with
// nothing as far as its caller can tell: never unchanged, and drift (the
// updated_at now at hand is not the recorded one) is told to the
// operators only (drifted).
func judge(rec *state.Record, pr prints, havePrints, force bool, now seen) verdict {
	if rec == nil || !rec.UpdatedKnown() || !now.known || !now.exists {
		return verdict{}
	}
	if !rec.UpdatedMatches(now.updatedAt) {
		return drifted(pr.blind)
	}
	if pr.blind || force || !havePrints || !pr.comparable || pr.environment != rec.Environment || !sameKey(rec, pr.key) {
		return verdict{}
	}
	same := pr.value.Equal(rec.ValueFingerprint)
	if !pr.settings.IsZero() || !rec.SettingsFingerprint.IsZero() {
		// A put that keeps the current settings (zero settings print)
		// matches any recorded settings.
		same = same && (pr.settings.IsZero() || pr.settings.Equal(rec.SettingsFingerprint))
	}
	return verdict{unchanged: same}
}

// sameKey reports whether rec's fingerprints were made under the key
// whose tag is tag (state.Record.FingerprintKey; a record stored before
// the tag was kept is taken as made under the current key).
func sameKey(rec *state.Record, tag string) bool {
	return rec.FingerprintKey == "" || rec.FingerprintKey == tag
}

// judgeAt is judge, with a verdict of unchanged confirmed against the
// organization settings GitHub holds (settingsHeld): settings other than
// the recorded ones are drift; settings it cannot read make the write go.
func (s *Server) judgeAt(ctx context.Context, p *putPlan, rec *state.Record, pr prints, havePrints, force bool, now seen) verdict {
	v := judge(rec, pr, havePrints, force, now)
	if !v.unchanged || pr.settings.IsZero() {
		// A put that keeps the current settings is unchanged whatever
		// they are.
		return v
	}
	switch held, ok := s.settingsHeld(ctx, p.scope, p.name, rec, now); {
	case !ok:
		return verdict{}
	case !held:
		return drifted(pr.blind)
	}
	return v
}

// settingsHeld reports whether GitHub holds the organization settings
// (visibility, selected repositories) rec records for a secret that now
// describes, and ok false when it cannot tell. Its updated_at does not
// move when the selection is changed through GitHub's selection routes,
// so the record's updated_at cannot tell: the visibility comes with what
// GitHub reported (now), a selection costs its listing (a request per 100
// repositories).
func (s *Server) settingsHeld(ctx context.Context, scope upstream.Scope, name string, rec *state.Record, now seen) (held, ok bool) {
	held, err := s.settingsMatch(ctx, scope, name, rec, now)
	return held, err == nil
}

// errNoVisibility: GitHub reported an organization secret without its
// visibility, so whether it holds the recorded settings cannot be told.
var errNoVisibility = errors.New("GitHub reported the secret without its visibility")

// settingsMatch is settingsHeld with the reason it cannot tell (an error,
// held then false).
func (s *Server) settingsMatch(ctx context.Context, scope upstream.Scope, name string, rec *state.Record, now seen) (bool, error) {
	if !scope.IsOrg() || rec == nil || rec.SettingsFingerprint.IsZero() {
		return true, nil
	}
	if now.visibility == "" {
		return false, errNoVisibility
	}
	fp, err := s.state.fingerprinter(ctx)
	if err != nil {
		return false, err
	}
	if !sameKey(rec, fp.KeyTag()) {
		// Made under another key, the recorded settings fingerprint
		// cannot be compared: nothing is seen to have changed (a write
		// that names settings is not judged unchanged by it either:
		// judge).
		return true, nil
	}
	at := state.Settings{Visibility: now.visibility}
	if now.visibility == visibilitySelected {
		if at.SelectedRepositoryIDs, err = selectedRepositoryIDs(ctx, s.fresh, scope, name); err != nil {
			return false, fmt.Errorf("selected repositories: %w", err)
		}
	}
	return fp.Settings(at).Equal(rec.SettingsFingerprint), nil
}

// candidate reports whether a write could be unchanged before GitHub is
// asked: a record with updated_at and matching fingerprints.
func candidate(rec *state.Record, pr prints, havePrints, force bool) bool {
	if rec == nil || !rec.UpdatedKnown() {
		return false
	}
	return judge(rec, pr, havePrints, force, seen{known: true, exists: true, updatedAt: rec.UpdatedAt}).unchanged
}

// seenByGet asks GitHub for one secret's updated_at (one GET, one point),
// with a GET of its own (s.fresh).
func (s *Server) seenByGet(ctx context.Context, scope upstream.Scope, name string) seen {
	sec, err := s.fresh.GetSecret(ctx, scope, name)
	switch {
	case isStatus(err, http.StatusNotFound):
		return seen{known: true}
	case err != nil:
		return seen{}
	}
	return seen{known: true, exists: true, updatedAt: sec.UpdatedAt, visibility: sec.Visibility}
}

// newRecord is the record of a write that succeeded, with the range of
// updated_at its answer bounds (zero when unknown; exact when both ends
// are the same), made by an item of the operation with ID opID ("" for a
// call's write).
func newRecord(key string, pr prints, havePrints bool, written *putPlan, keyID upstream.KeyID, owner, opID string, fp *state.Fingerprinter, w upstream.Written) state.Record {
	r := state.Record{Name: key, KeyID: string(keyID), Owner: owner, UpdatedAt: w.UpdatedFrom.UTC(), WrittenAt: time.Now().UTC(),
		Environment: written.scope.Environment}
	if opID != "" {
		r.Operation, r.Created = opID, w.Created
	}
	if !w.UpdatedFrom.IsZero() && w.UpdatedTo.After(w.UpdatedFrom) {
		r.UpdatedAtLatest = w.UpdatedTo.UTC()
	}
	if havePrints {
		r.ValueFingerprint = pr.value
	}
	if fp != nil && written.scope.IsOrg() {
		// The settings GitHub now holds: those sent, completed with the
		// current ones (completeOrgAccess).
		r.SettingsFingerprint = fp.Settings(settingsOf(written))
	}
	if fp != nil && (!r.ValueFingerprint.IsZero() || !r.SettingsFingerprint.IsZero()) {
		r.FingerprintKey = fp.KeyTag()
	}
	return r
}

// recordWrite records a successful write of p (completed as sent) and
// returns the record stored, nil when it could not be stored. The write
// of an operation's item (ctx names the operation: withOperation) is
// recorded as that operation's (state.Record.Operation).
func (s *Server) recordWrite(ctx context.Context, p *putPlan, pr prints, havePrints bool, keyID upstream.KeyID, owner string, w upstream.Written) *state.Record {
	key := secretKey(p.scope, p.name)
	if !havePrints {
		// A caller-sealed value: the broker cannot know it again. Keep
		// the owner; no value fingerprint means never unchanged.
		pr = prints{}
	}
	rctx, cancel := recordContext(ctx)
	defer cancel()
	fp, err := s.state.fingerprinter(rctx)
	if err != nil {
		fp = nil
	}
	rec := newRecord(key, pr, havePrints, p, keyID, owner, strings.TrimPrefix(operationOf(ctx), operationPrefix), fp, w)
	if s.putRecord(rctx, rec) != nil {
		// The previous record (distrusted before the write, unless the
		// store failed then too) must not outlive the write.
		_ = s.dropRecord(rctx, key)
		return nil
	}
	return &rec
}

// trackedWrite is a write of a secret as the state store's WriteTracker
// counts it (trackWrite).
type trackedWrite struct {
	s          *Server
	wt         state.WriteTracker // nil: the store does not count writes
	key, token string
	// alone: no other replica was writing the secret when this write
	// began (always, with a store no other replica shares).
	alone bool
	ended bool
}

// trackWrite counts a write of the secret with key (its secretKey) as
// begun in a store the replicas share (state.WriteTracker), and returns
// the secret's record as read after that: a record another replica wrote
// before this write began is the one it must distrust, not the one read
// before. The caller calls end once GitHub answered or the write failed
// (and defers it, for a panic). When the store cannot count the write,
// the write is not alone: it is not recorded.
func (s *Server) trackWrite(ctx context.Context, key string, cur lockedRecord) (*trackedWrite, lockedRecord) {
	wt, ok := s.state.store.(state.WriteTracker)
	if !ok {
		return &trackedWrite{alone: true}, cur
	}
	rctx, cancel := recordContext(ctx)
	defer cancel()
	token, alone, err := wt.BeginWrite(rctx, key)
	tw := &trackedWrite{s: s, wt: wt, key: key, token: token, alone: alone && err == nil}
	if err != nil {
		s.log.WarnContext(ctx, "state: a write cannot be counted; it will not be recorded", "record", key, "err", err)
	}
	cur.rec, cur.readOK = s.readRecord(ctx, key)
	return tw, cur
}

// end counts the write as ended, once (later calls repeat the answer),
// and reports whether it stayed alone: no other replica wrote the secret
// while it was in progress.
func (t *trackedWrite) end(ctx context.Context) bool {
	if t.wt == nil || t.ended {
		return t.alone
	}
	t.ended = true
	rctx, cancel := recordContext(ctx)
	defer cancel()
	alone, err := t.wt.EndWrite(rctx, t.key, t.token)
	if err != nil {
		t.s.log.WarnContext(ctx, "state: the end of a write cannot be counted; its record is distrusted", "record", t.key, "err", err)
	}
	t.alone = t.alone && alone && err == nil
	return t.alone
}

// pinUpdatedAt narrows a record holding a range of updated_at to the exact
// updatedAt GitHub reported within it, so that drift is judged by the
// second from then on. The caller holds the secret's write lock. It is
// counted as a write (trackWrite) and pins only a record that is still
// rec as read after its begin: another replica's write or selection
// change meanwhile may have distrusted rec, which must not come back.
func (s *Server) pinUpdatedAt(ctx context.Context, key string, rec *state.Record, updatedAt time.Time) {
	if rec.UpdatedAtLatest.IsZero() || !rec.UpdatedMatches(updatedAt) {
		return
	}
	s.rewriteRecord(ctx, key, rec, func(r *state.Record) {
		r.UpdatedAt, r.UpdatedAtLatest = updatedAt.UTC(), time.Time{}
	})
}

// rewriteRecord stores rec changed by change, if the secret's record is
// still rec as read once this rewrite began (trackWrite), and distrusts
// it again when another replica wrote the secret meanwhile. The caller
// holds the secret's write lock; a failure is logged and leaves rec,
// which is as correct.
func (s *Server) rewriteRecord(ctx context.Context, key string, rec *state.Record, change func(*state.Record)) {
	tw, cur := s.trackWrite(ctx, key, lockedRecord{rec: rec, readOK: true})
	defer tw.end(ctx)
	if !tw.alone || !cur.readOK || cur.rec == nil || !sameRecord(*cur.rec, *rec) {
		return
	}
	r := *rec
	change(&r)
	if s.putRecord(ctx, r) == nil && !tw.end(ctx) {
		s.distrustRecord(ctx, key, &r, true)
	}
}

// sameRecord reports whether a and b are the same record: the same
// write, owner and updated_at.
func sameRecord(a, b state.Record) bool {
	return a.Name == b.Name && a.ValueFingerprint == b.ValueFingerprint && a.SettingsFingerprint == b.SettingsFingerprint &&
		a.KeyID == b.KeyID && a.Owner == b.Owner && a.UpdatedAt.Equal(b.UpdatedAt) &&
		a.UpdatedAtLatest.Equal(b.UpdatedAtLatest) && a.WrittenAt.Equal(b.WrittenAt) &&
		a.Operation == b.Operation && a.Created == b.Created && a.FingerprintKey == b.FingerprintKey
}

// listScope reads every page of a scope's secrets (100 a page), by
// upper-cased name, after the call began (s.fresh): it is for judging
// writes and reading them back, which must not take the answer of a
// listing in flight since before (a write made straight at GitHub
// meanwhile would be missed).
func (s *Server) listScope(ctx context.Context, scope upstream.Scope) (map[string]upstream.Secret, error) {
	return listScopeOn(ctx, s.fresh, scope)
}

// listScopeOn is listScope through up.
func listScopeOn(ctx context.Context, up Upstream, scope upstream.Scope) (map[string]upstream.Secret, error) {
	out := map[string]upstream.Secret{}
	for page := 1; ; page++ {
		list, err := up.ListSecrets(ctx, scope, upstream.Page{Page: page, PerPage: maxPageSize})
		if err != nil {
			return nil, err
		}
		for _, sec := range list.Secrets {
			out[strings.ToUpper(sec.Name)] = sec
		}
		if !list.HasNext || len(list.Secrets) == 0 {
			return out, nil
		}
		if page >= maxFilteredPages {
			return nil, errors.New("the scope's list spans more pages than the broker reads")
		}
	}
}

// seenIn returns what a scope's listing says of a secret.
func seenIn(list map[string]upstream.Secret, name string) seen {
	if list == nil {
		return seen{}
	}
	sec, ok := list[strings.ToUpper(name)]
	return seen{known: true, exists: ok, updatedAt: sec.UpdatedAt, visibility: sec.Visibility}
}

// readBack records the exact updated_at of secrets just written in scope,
// from one listing of the scope: those whose record still holds the
// fingerprint written and no updated_at, or a range GitHub's updated_at is
// in (one outside it is someone else's write: the next write sees drift).
func (s *Server) readBack(ctx context.Context, scope upstream.Scope, written map[string]state.Fingerprint) {
	list, err := s.listScope(ctx, scope)
	if err != nil {
		s.log.DebugContext(ctx, "state: read back failed; the next write of these secrets will not be skipped", "scope", scope.Path(), "err", err)
		return
	}
	for name, vfp := range written {
		sec, ok := list[name]
		if !ok {
			continue
		}
		s.readBackOne(ctx, scope, name, vfp, sec.UpdatedAt)
	}
}

// readBackOne records updatedAt, read back from GitHub, in the record of
// one secret written with value fingerprint vfp, when the record still
// holds that write (see readBack). It holds the secret's write lock, so
// that it cannot change a record another write of the secret has begun to
// replace (distrustRecord) or has replaced meanwhile.
func (s *Server) readBackOne(ctx context.Context, scope upstream.Scope, name string, vfp state.Fingerprint, updatedAt time.Time) {
	unlock, ok := s.state.writes.tryLock(secretKey(scope, name))
	if !ok {
		// Another write of the secret is in progress: it distrusts and
		// replaces this record, so there is nothing to read back, and the
		// batch's answer does not wait for that write (its pacer wait and
		// GitHub's answer).
		return
	}
	defer unlock()
	rec := s.getRecord(ctx, secretKey(scope, name))
	if rec == nil || !rec.ValueFingerprint.Equal(vfp) {
		return
	}
	if rec.UpdatedKnown() && (rec.UpdatedAtLatest.IsZero() || !rec.UpdatedMatches(updatedAt)) {
		return
	}
	key := secretKey(scope, name)
	s.rewriteRecord(ctx, key, rec, func(r *state.Record) {
		r.UpdatedAt, r.UpdatedAtLatest = updatedAt.UTC(), time.Time{}
	})
}

// logDrift reports drift in the metrics and at INFO.
func (s *Server) noteDrift(ctx context.Context, rpc, res string) {
	s.metrics.drift(ctx, rpcShort(rpc))
	s.log.InfoContext(ctx, "secret changed behind the broker's back; writing it again", slog.String("resource", res))
}

// rpcShort is a full method name's last element ("PutSecret").
func rpcShort(rpc string) string {
	if i := strings.LastIndexByte(rpc, '/'); i >= 0 {
		return rpc[i+1:]
	}
	return rpc
}

// judgedPlan is one batch item's judgement.
type judgedPlan struct {
	verdict
	rec        *state.Record
	prints     prints
	havePrints bool
}

// judgeBatch judges every plan (nil plans are skipped) against its record
// and one listing of each scope holding an item that may be unchanged (all
// pages, 100 secrets a page, every scope at once). force reports an item's
// force flag. A scope whose listing fails is written as if unlisted.
func (s *Server) judgeBatch(ctx context.Context, plans []*putPlan, force func(i int) bool) []judgedPlan {
	out := make([]judgedPlan, len(plans))
	scopes := map[string]upstream.Scope{}
	for i, p := range plans {
		if p == nil {
			continue
		}
		j := &out[i]
		j.prints, j.havePrints = s.printsOf(ctx, p)
		j.rec = s.getRecord(ctx, secretKey(p.scope, p.name))
		if candidate(j.rec, j.prints, j.havePrints, force(i)) {
			scopes[p.scope.Path()] = p.scope
		}
	}
	listings := s.listScopes(ctx, scopes)
	for i, p := range plans {
		if p == nil {
			continue
		}
		j := &out[i]
		j.verdict = s.judgeAt(ctx, p, j.rec, j.prints, j.havePrints, force(i), seenIn(listings[p.scope.Path()], p.name))
		if !j.driftSeen {
			continue
		}
		// Drift may be the broker's own write of the secret (another
		// call's, at once) made since its record was read: the listing
		// may show it. A record written since is judged again, against
		// GitHub asked again (the listing may predate that write too).
		if rec := s.getRecord(ctx, secretKey(p.scope, p.name)); rec != nil && !rec.WrittenAt.Equal(j.rec.WrittenAt) {
			j.rec = rec
			j.verdict = s.judgeAt(ctx, p, rec, j.prints, j.havePrints, force(i), s.seenByGet(ctx, p.scope, p.name))
		}
	}
	return out
}

// listScopes lists every scope at once; a scope whose listing failed is
// missing from the result.
func (s *Server) listScopes(ctx context.Context, scopes map[string]upstream.Scope) map[string]map[string]upstream.Secret {
	var (
		mu  sync.Mutex
		out = make(map[string]map[string]upstream.Secret, len(scopes))
		wg  sync.WaitGroup
	)
	for path, scope := range scopes {
		wg.Go(func() {
			var list map[string]upstream.Secret
			err := s.safely(ctx, "scope listing", func() (err error) {
				list, err = s.listScope(ctx, scope)
				return err
			})
			if err != nil {
				s.log.DebugContext(ctx, "scope listing failed; its items are written", "scope", path, "err", err)
				return
			}
			mu.Lock()
			out[path] = list
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// writtenSet collects the secrets a batch or sync wrote, by scope, to read
// their updated_at back at the end with one listing per scope.
type writtenSet struct {
	mu     sync.Mutex
	scopes map[string]upstream.Scope
	names  map[string]map[string]state.Fingerprint
}

func (w *writtenSet) add(scope upstream.Scope, name string, value state.Fingerprint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.scopes == nil {
		w.scopes = map[string]upstream.Scope{}
		w.names = map[string]map[string]state.Fingerprint{}
	}
	path := scope.Path()
	w.scopes[path] = scope
	if w.names[path] == nil {
		w.names[path] = map[string]state.Fingerprint{}
	}
	w.names[path][strings.ToUpper(name)] = value
}

// readBack reads back every written scope once (see Server.readBack).
func (w *writtenSet) readBack(ctx context.Context, s *Server) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for path, scope := range w.scopes {
		s.readBack(ctx, scope, w.names[path])
	}
}

// secretLocks serializes, within the process, the writes of each secret
// (keyed by secretKey: the case variants of one secret share a lock), so
// that the broker's record of a secret is written in the order GitHub
// applied its writes: a write holds its secret's lock from before it
// distrusts the record until it has recorded its outcome. Without it a
// write whose answer is slow could record its value after a later write of
// the same secret had recorded its own, leaving a record of a value GitHub
// no longer holds.
//
// Entries exist only while a goroutine holds or waits for their lock (a
// reference count), so memory is bounded by the writes in progress, not by
// the secrets ever written. Different secrets never share a lock: writes
// of different secrets run as concurrently as before.
//
// It cannot deadlock: a goroutine holds at most one secret lock at a time
// and takes no other secret lock while holding one, and nothing done under
// a lock (the store, the key cache, the pacer, GitHub, the audit trail)
// waits for a secret lock. A wait for a lock ends with its context.
type secretLocks struct {
	mu    sync.Mutex
	locks map[string]*secretLock
}

// secretLock is one secret's lock: a token in ch while held.
type secretLock struct {
	ch   chan struct{}
	refs int // goroutines holding or waiting for the lock; guarded by secretLocks.mu
}

// lock waits until the lock of key is free or ctx is done, and returns the
// function that releases it (safe to call more than once).
func (l *secretLocks) lock(ctx context.Context, key string) (func(), error) {
	e := l.entry(key)
	select {
	case e.ch <- struct{}{}:
	case <-ctx.Done():
		l.release(key, e)
		return nil, fmt.Errorf("waiting for another write of the secret: %w", ctx.Err())
	}
	unlock := sync.OnceFunc(func() {
		<-e.ch
		l.release(key, e)
	})
	// The lock and the end of ctx may have come at once, and select takes
	// either: a call that is over does nothing under the lock.
	if err := ctx.Err(); err != nil {
		unlock()
		return nil, fmt.Errorf("waiting for another write of the secret: %w", err)
	}
	return unlock, nil
}

// tryLock takes key's lock if it is free, and returns its unlock and
// true; false, without waiting, when another holds it.
func (l *secretLocks) tryLock(key string) (func(), bool) {
	e := l.entry(key)
	select {
	case e.ch <- struct{}{}:
		return sync.OnceFunc(func() {
			<-e.ch
			l.release(key, e)
		}), true
	default:
		l.release(key, e)
		return nil, false
	}
}

// entry returns key's entry, made if there is none, with one more
// reference (release drops it).
func (l *secretLocks) entry(key string) *secretLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks = map[string]*secretLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &secretLock{ch: make(chan struct{}, 1)}
		l.locks[key] = e
	}
	e.refs++
	return e
}

// release drops one reference to key's entry, and the entry with the last.
func (l *secretLocks) release(key string, e *secretLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(l.locks, key)
	}
}

// size returns how many entries exist (for tests).
func (l *secretLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
