package service

import (
	"context"
	"errors"
	"net/http"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// The visibilities of organization secrets, in GitHub's words.
const (
	visibilityAll      = "all"
	visibilityPrivate  = "private"
	visibilitySelected = "selected"
)

// putPlan is a validated PutSecret request. It holds the plaintext value,
// so it is never logged or formatted.
type putPlan struct {
	scope      upstream.Scope
	name       string
	plaintext  []byte // broker seals; nil when the caller sealed
	sealed     string // caller-sealed value, base64
	keyID      upstream.KeyID
	visibility string
	repoIDs    []int64
	repoNames  []string // resolved into repoIDs before anything is written (reponames.go)
	// selectionKept: repoIDs is the secret's current selection, which
	// completeOrgAccess filled in for a put that named none, not ids the
	// caller chose.
	selectionKept bool
	// settingsOnly: a PutSecret without value or encrypted_value, which
	// changes an existing organization secret's visibility and selection
	// and keeps its value (putSettings): plaintext and sealed are empty.
	settingsOnly bool
	// keptKeyID is, for a settingsOnly put whose record's value print it
	// judges with (keepValuePrint), the key_id the record gives the value.
	keptKeyID upstream.KeyID
}

// errValueRequired refuses a put without value or encrypted_value where
// one is needed; it says where one may be left out.
var errValueRequired = invalidArg("value", "one of value or encrypted_value is required; only PutSecret may leave both out, "+
	"to change an existing organization secret's visibility and selection and keep its value, where the broker's GitHub takes that "+
	"(Actions organization secrets on github.com at API version 2022-11-28, or on GitHub Enterprise Server with --upstream-legacy-routes); "+
	"never for repository, environment or Agents secrets, nor on GitHub Enterprise Server 3.21")

// parsePut checks a PutSecret request against every rule that needs no
// upstream call. valueOptional says for which scopes the request may leave
// the value out (a settingsOnly put); nil: for none (a batch's items).
func parsePut(req *secretbrokerv1.PutSecretRequest, valueOptional func(upstream.Scope) bool) (putPlan, error) {
	scope, name, err := parseSecretName("name", req.GetName())
	if err != nil {
		return putPlan{}, err
	}
	p := putPlan{scope: scope, name: name, visibility: req.GetVisibility(), repoIDs: req.GetSelectedRepositoryIds(),
		repoNames: req.GetSelectedRepositories()}
	switch v := req.GetPayload().(type) {
	case *secretbrokerv1.PutSecretRequest_Value:
		if v.Value == "" {
			return putPlan{}, invalidArg("value", "must not be empty")
		}
		if len(v.Value) > maxValueBytes {
			return putPlan{}, invalidArg("value", "is %d bytes; GitHub's limit is %d bytes (48 KB)", len(v.Value), maxValueBytes)
		}
		if req.GetKeyId() != "" {
			return putPlan{}, invalidArg("key_id", "goes with encrypted_value only; the broker picks the key for a plaintext value")
		}
		p.plaintext = []byte(v.Value)
	case *secretbrokerv1.PutSecretRequest_EncryptedValue:
		if err := checkSealed("encrypted_value", v.EncryptedValue); err != nil {
			return putPlan{}, err
		}
		if req.GetKeyId() == "" {
			return putPlan{}, invalidArg("key_id", "is required with encrypted_value: the key_id of the key from GetPublicKey")
		}
		p.sealed, p.keyID = v.EncryptedValue, upstream.KeyID(req.GetKeyId())
	default:
		if valueOptional == nil || !scope.IsOrg() || !valueOptional(scope) {
			return putPlan{}, errValueRequired
		}
		if req.GetKeyId() != "" {
			return putPlan{}, invalidArg("key_id", "goes with encrypted_value only")
		}
		if p.visibility == "" {
			return putPlan{}, invalidArg("visibility", "is required in a put without a value, which changes the organization secret's visibility and selection only: \"all\", \"private\" or \"selected\"")
		}
		p.settingsOnly = true
	}
	if !scope.IsOrg() {
		if p.visibility != "" {
			return putPlan{}, invalidArg("visibility", "applies to organization secrets only")
		}
		if len(p.repoIDs) > 0 && !p.selectionKept {
			return putPlan{}, invalidArg("selected_repository_ids", "apply to organization secrets only")
		}
		if len(p.repoNames) > 0 {
			return putPlan{}, invalidArg("selected_repositories", "apply to organization secrets only")
		}
		return p, nil
	}
	switch p.visibility {
	case "", visibilityAll, visibilityPrivate, visibilitySelected:
	default:
		return putPlan{}, invalidArg("visibility", "%q is not one of \"all\", \"private\" or \"selected\"", p.visibility)
	}
	if len(p.repoIDs) > 0 && p.visibility != visibilitySelected {
		return putPlan{}, invalidArg("selected_repository_ids", "may be given only with visibility \"selected\"")
	}
	if err := checkRepositoryIDs("selected_repository_ids", p.repoIDs); err != nil {
		return putPlan{}, err
	}
	if len(p.repoNames) > 0 && p.visibility != visibilitySelected {
		return putPlan{}, invalidArg("selected_repositories", "may be given only with visibility \"selected\"")
	}
	if err := checkRepoNames("selected_repositories", scope.Org, p.repoNames); err != nil {
		return putPlan{}, err
	}
	return p, nil
}

// PutSecret creates or updates a secret. It needs write on the secret, and
// manage_repositories as well when it changes an existing organization
// secret's visibility or selection.
func (s *Server) PutSecret(ctx context.Context, req *secretbrokerv1.PutSecretRequest) (*secretbrokerv1.PutSecretResponse, error) {
	p, err := parsePut(req, s.valueOptional)
	if err != nil {
		s.rejected(ctx, rpcPutSecret, nil, req.GetName(), err)
		return nil, s.toStatus(ctx, "PutSecret", err)
	}
	res := secretResourceName(p.scope, p.name)
	if err := s.check(ctx, rpcPutSecret, nil, verbWrite, res, s.may(ctx, verbWrite, res)); err != nil {
		return nil, s.toStatus(ctx, "PutSecret", err)
	}
	ctx, ch, err := s.begin(ctx, rpcPutSecret, nil, res, p.plaintext)
	if err != nil {
		return nil, s.toStatus(ctx, "PutSecret", err)
	}
	defer ch.endOnPanic(ctx)
	out, err := s.putJudged(ctx, &p, req.GetForce(), ownerOf(ctx, ""))
	ch.endWith(ctx, err, out.verdict)
	if err != nil {
		return nil, s.toStatus(ctx, "PutSecret", err)
	}
	return &secretbrokerv1.PutSecretResponse{
		Name:      res,
		Created:   out.created,
		KeyId:     string(out.keyID),
		Unchanged: out.unchanged,
		Drift:     out.drift,
	}, nil
}

// putOutcome is what a judged write did.
type putOutcome struct {
	created bool
	keyID   upstream.KeyID
	verdict
}

// putJudged writes p unless the broker's record shows the same value and
// settings and GitHub still reports the recorded updated_at (one GET of the
// secret, asked only when the fingerprints match). After a write it records
// it with owner and the range of updated_at GitHub's answer bounds; only
// an answer without a Date costs a GET to read updated_at back. The
// judgement and the write hold the secret's write lock (secretLocks), so
// that concurrent puts of one secret are judged, written and recorded one
// after the other.
func (s *Server) putJudged(ctx context.Context, p *putPlan, force bool, owner string) (_ putOutcome, err error) {
	if err := s.resolvePutNames(ctx, p); err != nil {
		return putOutcome{}, err
	}
	res := secretResourceName(p.scope, p.name)
	pr, havePrints := s.printsOf(ctx, p)
	held, unlock, cur, err := s.lockSecret(ctx, p.scope, p.name, leaseIfUp)
	if err != nil {
		return putOutcome{}, err
	}
	defer unlock(&err)
	ctx = held
	rec := cur.rec
	var v verdict
	var now seen
	if p.settingsOnly {
		// The secret must exist (nothing is created without a value),
		// and its record vouches for the value it keeps only while
		// GitHub reports the recorded updated_at.
		if now, err = s.seenExisting(ctx, p); err != nil {
			return putOutcome{}, err
		}
		havePrints = keepValuePrint(p, rec, &pr, now)
	}
	if candidate(rec, pr, havePrints, force) {
		if !now.known {
			now = s.seenByGet(ctx, p.scope, p.name)
		}
		v = s.judgeAt(ctx, p, rec, pr, havePrints, force, now)
		if v.unchanged {
			s.metrics.skipped(ctx, rpcShort(rpcPutSecret))
			s.pinUpdatedAt(ctx, secretKey(p.scope, p.name), rec, now.updatedAt)
			keyID := upstream.KeyID(rec.KeyID)
			if p.settingsOnly {
				keyID = "" // nothing sealed
			}
			return putOutcome{keyID: keyID, verdict: v}, nil
		}
		if v.driftSeen {
			s.noteDrift(ctx, rpcPutSecret, res)
		}
	}
	var key sealingKey
	if !p.settingsOnly { // nothing to seal: no key
		if key, err = s.keys.get(ctx, p.scope); err != nil {
			return putOutcome{verdict: v}, err
		}
	}
	if p.settingsOnly {
		// The value print kept from the record judged the put only. The
		// write itself says nothing of the value GitHub keeps: one written
		// behind the broker's back after seenExisting read the secret and
		// before this PUT went out (while it waited for the pacer) is
		// kept, under the updated_at of this write. Its record has no
		// value print: the next put of a value goes to GitHub.
		havePrints = false
	}
	w, keyID, err := s.writeLocked(ctx, p, key, cur, pr, havePrints, owner, true)
	if err != nil {
		return putOutcome{verdict: v}, err
	}
	if p.settingsOnly {
		keyID = "" // nothing sealed; the record keeps the value's (keptKeyID)
	}
	return putOutcome{created: w.Created, keyID: keyID, verdict: v}, nil
}

// seenExisting asks GitHub (one GET of its own, s.fresh) for the secret a
// settingsOnly put changes. A secret GitHub does not have is NOT_FOUND
// (notFoundNoValue): a put without a value creates nothing.
func (s *Server) seenExisting(ctx context.Context, p *putPlan) (seen, error) {
	sec, err := s.fresh.GetSecret(ctx, p.scope, p.name)
	switch {
	case isStatus(err, http.StatusNotFound):
		return seen{}, &notFoundAt{kind: notFoundNoValue, resource: secretResourceName(p.scope, p.name), err: err}
	case err != nil:
		return seen{}, err
	}
	return seen{known: true, exists: true, updatedAt: sec.UpdatedAt, visibility: sec.Visibility}, nil
}

// keepValuePrint gives a settingsOnly put p the value print of the
// secret's record rec, and reports whether it did, when the record vouches
// for the value GitHub holds: trusted, with a value print made under the
// key of the put's prints, and GitHub reporting (now) the recorded
// updated_at, so that nobody wrote the secret since. The put is then
// judged as any put (unchanged when its settings are the recorded ones).
// The record of a write it makes never has a value print (putJudged): a
// value written behind the broker's back before the PUT went out is the
// one GitHub keeps.
func keepValuePrint(p *putPlan, rec *state.Record, pr *prints, now seen) bool {
	switch {
	case !trusted(rec), rec.ValueFingerprint.IsZero(), pr.key == "", !sameKey(rec, pr.key), pr.environment != rec.Environment:
		return false
	case !rec.UpdatedKnown(), !now.exists, !rec.UpdatedMatches(now.updatedAt):
		return false
	}
	pr.value = rec.ValueFingerprint
	p.keptKeyID = upstream.KeyID(rec.KeyID)
	return true
}

// putSettings writes a settingsOnly put: one PUT with visibility and
// selected_repository_ids and no encrypted_value or key_id, which GitHub
// applies to the existing secret, keeping its value. Nothing is sealed, so
// no key is fetched or revalidated; GitHub's 422 (the secret deleted since
// seenExisting, an unknown repository id) is returned as it is. The key_id
// returned is the one the record keeps (p.keptKeyID).
func (s *Server) putSettings(ctx context.Context, p putPlan) (upstream.Written, upstream.KeyID, error) {
	body := upstream.PutSecretBody{Visibility: p.visibility, SelectedRepositoryIDs: p.repoIDs}
	w, err := s.up.PutSecretFunc(ctx, p.scope, p.name, func() (upstream.PutSecretBody, error) { return body, nil })
	return w, p.keptKeyID, err
}

// lockedRecord is a secret's record as read with its write lock held.
type lockedRecord struct {
	rec    *state.Record
	readOK bool // false: the store could not say whether there is one
}

// writeLocked writes p with the scope's key and records the write; the
// caller holds the secret's write lock and passes its record as read under
// it. Before anything is sent the record is distrusted (distrustRecord):
// a write that fails, or whose outcome is unknown, leaves no record that
// could make a later write of the secret unchanged. After a successful
// write the record is written anew (recordWrite), unless another replica
// wrote the secret at the same time (trackWrite); getUpdated asks GitHub
// for updated_at when the answer bounds none (a batch reads it back at its
// end instead). On return p holds the settings written.
func (s *Server) writeLocked(ctx context.Context, p *putPlan, key sealingKey, cur lockedRecord, pr prints, havePrints bool, owner string, getUpdated bool) (upstream.Written, upstream.KeyID, error) {
	k := secretKey(p.scope, p.name)
	tw, cur := s.trackWrite(ctx, k, cur)
	defer tw.end(ctx) // on every return, a panic's too
	s.distrustRecord(ctx, k, cur.rec, cur.readOK)
	w, keyID, err := s.batchPut(ctx, p, key)
	if err != nil {
		return w, keyID, err
	}
	if getUpdated && w.UpdatedFrom.IsZero() {
		now := s.seenByGet(ctx, p.scope, p.name)
		w.UpdatedFrom, w.UpdatedTo = now.updatedAt, now.updatedAt
	}
	if !tw.alone {
		return w, keyID, nil // the record stays distrusted
	}
	recorded := w
	if ownWrite(ctx, cur.rec) {
		// An operation's item written again after a crash kept its
		// result from being stored is created when either of its writes
		// created the secret (execute), and the record of this write
		// must say so too, or an item repeated after one more crash
		// would report GitHub's 204 to the repeat.
		recorded.Created = cur.rec.Created || w.Created
	}
	rec := s.recordWrite(ctx, p, pr, havePrints, keyID, owner, recorded)
	if !tw.end(ctx) && rec != nil {
		// Another replica began writing the secret before this write
		// ended: which value GitHub applied last is unknown.
		s.distrustRecord(ctx, k, rec, true)
	}
	return w, keyID, nil
}

// recordOf is what the record of a write is made of besides the write,
// and what the write must find of the record under the secret's lock.
type recordOf struct {
	prints     prints
	havePrints bool
	owner      string
	// check, when set, is given the secret's record as the lock finds it
	// (nil: none, or readOK false: the store could not say); its error
	// stops the write before anything is sent (a sync's owner: another
	// owner's write may have held the lock while this one waited for it).
	check func(rec *state.Record, readOK bool) error
}

// putRecorded writes p with the scope's key, holding the secret's write
// lock (secretLocks) from before it distrusts the secret's record
// (distrustRecord) until the write is recorded (recordWrite, with r), so
// that a write that fails or whose outcome is unknown leaves no record
// that could make a later write unchanged, and records of concurrent
// writes of the secret are written in the order GitHub applied them (an
// operation's Executor writes its items through it). On return p holds
// the settings written.
func (s *Server) putRecorded(ctx context.Context, p *putPlan, r recordOf) (upstream.Written, upstream.KeyID, error) {
	if err := s.resolvePutNames(ctx, p); err != nil {
		return upstream.Written{}, "", err
	}
	key, err := s.keys.get(ctx, p.scope)
	if err != nil {
		return upstream.Written{}, "", err
	}
	return s.lockAndWrite(ctx, p, key, r)
}

// lockAndWrite takes the secret's write lock, reads its record under it
// (another call may have written the secret since p was judged), checks it
// with r.check and writes p with key (writeLocked), recording it with r.
// A write whose answer has no Date reads its updated_at back at once, as
// PutSecret's does: read later (at a batch's or an operation's end), it
// could be another writer's.
func (s *Server) lockAndWrite(ctx context.Context, p *putPlan, key sealingKey, r recordOf) (_ upstream.Written, _ upstream.KeyID, err error) {
	held, unlock, cur, err := s.lockSecret(ctx, p.scope, p.name, leaseIfUp)
	if err != nil {
		return upstream.Written{}, "", err
	}
	defer unlock(&err)
	if r.check != nil {
		if err := r.check(cur.rec, cur.readOK); err != nil {
			return upstream.Written{}, "", err
		}
	}
	return s.writeLocked(held, p, key, cur, r.prints, r.havePrints, r.owner, true)
}

// lockSecret takes the write lock of secret name of scope and its lease
// (lockWrite), and reads the secret's record under them. The caller
// writes with held and defers unlock(&err) with its named error result:
// unlock releases both, and makes an error of work cut short by the
// lease's loss that loss (leaseLost).
func (s *Server) lockSecret(ctx context.Context, scope upstream.Scope, name string, need leaseNeed) (held context.Context, unlock func(*error), cur lockedRecord, err error) {
	held, release, err := s.lockWrite(ctx, secretKey(scope, name), need)
	if err != nil {
		return nil, nil, lockedRecord{}, err
	}
	done := false
	defer func() {
		if !done { // a panic reading the record: nothing may stay held
			release()
		}
	}()
	cur.rec, cur.readOK = s.recordOf(held, scope, name)
	if cur.readOK {
		cur.rec, cur.readOK = s.adoptRecord(held, scope, name, cur.rec)
	}
	done = true
	unlock = func(errp *error) {
		*errp = leaseLost(ctx, held, *errp)
		release()
	}
	return held, unlock, cur, nil
}

// lockWrite takes the write lock of the secret key (secretLocks) and,
// where replicas share the store, its write lease on every replica
// (state.SecretLocker); the caller works with held, which the lease's loss
// cancels (see leaseLost), and calls unlock. A lease the store cannot give
// (Redis unreachable from this replica) is done without, as a write is
// done without its record, unless need is leaseRequired: then the write
// is refused (a prune's delete, which must not remove another replica's
// write). So replicas write a secret one at a time while each reaches
// Redis; one cut off from it writes without the lease.
func (s *Server) lockWrite(ctx context.Context, key string, need leaseNeed) (held context.Context, unlock func(), err error) {
	unlockLocal, err := s.state.writes.lock(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	sl, ok := s.state.store.(state.SecretLocker)
	if !ok {
		return ctx, unlockLocal, nil
	}
	h, release, err := sl.LockSecret(ctx, key)
	switch {
	case err == nil:
		return h, func() { release(); unlockLocal() }, nil
	case ctx.Err() != nil || need == leaseRequired:
		unlockLocal()
		return nil, nil, &leaseError{err: err, callerEnded: ctx.Err() != nil}
	}
	s.log.WarnContext(ctx, "state: the secret's write lease cannot be taken; writing without it", "record", key, "err", err)
	return ctx, unlockLocal, nil
}

// leaseLost returns err, the outcome of work done with held (lockWrite)
// for a caller whose context is ctx, as a *leaseError when held ended
// because its lease was lost while ctx had not: the write stopped for
// that (UNAVAILABLE), not because its caller cancelled it.
func leaseLost(ctx, held context.Context, err error) error {
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(held), state.ErrLeaseLost) {
		return &leaseError{err: state.ErrLeaseLost}
	}
	return err
}

// leaseNeed says whether a write may go on without its lease
// (lockWrite).
type leaseNeed bool

const (
	leaseIfUp     leaseNeed = false // without, while the store cannot give it
	leaseRequired leaseNeed = true  // never without
)

// checkAccessChange refuses a put that would change an existing
// organization secret's visibility or selection when the caller may not
// manage its repositories. Creating a secret with any visibility and
// selection needs write only. It reads the secret from GitHub only for a
// caller without manage_repositories whose put names a visibility or
// repositories. A caller that may not read the secret either is refused
// any put of an existing secret that names them, even the settings it
// holds: were a right guess written and a wrong one refused, the answer
// would tell it the settings, which read guards (mayCompare).
func (s *Server) checkAccessChange(ctx context.Context, p putPlan) error {
	if p.visibility == "" && len(p.repoIDs) == 0 {
		return nil // the current visibility and selection are kept
	}
	res := secretResourceName(p.scope, p.name)
	if s.may(ctx, verbManage, res) {
		return nil
	}
	cur, err := s.up.GetSecret(ctx, p.scope, p.name)
	switch {
	case isStatus(err, http.StatusNotFound):
		return nil // a new secret
	case err != nil:
		return err
	}
	if p.visibility != cur.Visibility || !s.mayCompare(ctx, p.scope, p.name) {
		return &deniedError{verb: verbManage, resource: res}
	}
	if p.visibility != visibilitySelected || len(p.repoIDs) == 0 {
		return nil
	}
	ids, err := s.allSelectedRepositoryIDs(ctx, p.scope, p.name)
	if err != nil {
		return err
	}
	if !sameIDs(ids, p.repoIDs) {
		return &deniedError{verb: verbManage, resource: res}
	}
	return nil
}

// sameIDs reports whether a and b hold the same repository ids, in any
// order.
func sameIDs(a, b []int64) bool {
	set := make(map[int64]bool, len(a))
	for _, id := range a {
		set[id] = true
	}
	other := make(map[int64]bool, len(b))
	for _, id := range b {
		if !set[id] {
			return false
		}
		other[id] = true
	}
	return len(set) == len(other)
}

// sealedValue is a plaintext value sealed with one of the scope's keys.
type sealedValue struct {
	keyID upstream.KeyID
	value string // base64
}

func (v *sealedValue) seal(k sealingKey, plaintext []byte) error {
	value, err := seal(&k.key, plaintext)
	if err != nil {
		return err
	}
	v.keyID, v.value = k.id, value
	return nil
}

// putPlain writes a value the broker seals. The value is sealed when the
// pacer admits the write, just before it is sent, with the scope's key as
// the cache holds it then (key when the cache has none): a write the pacer
// refuses costs no sealing, and a rotation seen by one write costs the
// writes queued behind it nothing. When GitHub rejects the key (422) the
// scope's key is revalidated (keyCache.revalidateSealing: no request when
// another write already saw the new key, else at most one conditional
// request per scope per TTL, on a budget that callers' stale key_ids do not
// spend; a put naming repository ids, which GitHub may refuse for an
// unknown id, spends the callers' budget instead, unless the ids are the
// secret's current selection, kept) and, when that shows a new key, the write is sealed again and
// retried once, so callers never see a rotation. When the revalidation
// fails, its error is returned (GitHub unreachable is UNAVAILABLE, not the
// 422's INVALID_ARGUMENT); when it shows the same key, the 422 is.
func (s *Server) putPlain(ctx context.Context, p putPlan, key sealingKey) (upstream.Written, upstream.KeyID, error) {
	var v sealedValue // sealed by body, once per key
	body := func() (upstream.PutSecretBody, error) {
		k := key
		if c, ok := s.keys.cached(p.scope); ok {
			k = c
		}
		if v.value == "" || v.keyID != k.id {
			// The span covers the wait for a sealing slot too.
			span := s.sealSpan(ctx, k, len(p.plaintext))
			select {
			case s.sealers <- struct{}{}:
			case <-ctx.Done():
				span.End()
				return upstream.PutSecretBody{}, ctx.Err()
			}
			err := v.seal(k, p.plaintext)
			<-s.sealers
			span.End()
			if err != nil {
				return upstream.PutSecretBody{}, err
			}
		}
		return upstream.PutSecretBody{
			EncryptedValue:        v.value,
			KeyID:                 v.keyID,
			Visibility:            p.visibility,
			SelectedRepositoryIDs: p.repoIDs,
		}, nil
	}
	w, err := s.up.PutSecretFunc(ctx, p.scope, p.name, body)
	if !isStatus(err, http.StatusUnprocessableEntity) {
		return w, v.keyID, err
	}
	// A put naming repositories by id may be refused for an id GitHub does
	// not know, which the caller chose: its re-check spends the callers'
	// budget, so that unknown ids cannot spend the broker's. The selection
	// GitHub itself just listed (selectionKept) is not the caller's
	// choice.
	recheck := s.keys.revalidateSealing
	if len(p.repoIDs) > 0 && !p.selectionKept {
		recheck = s.keys.revalidate
	}
	fresh, ferr := recheck(ctx, p.scope, v.keyID)
	if ferr != nil {
		return upstream.Written{}, "", ferr
	}
	if fresh.id == v.keyID {
		return upstream.Written{}, "", err
	}
	// body seals with the key the cache holds when the retry is admitted,
	// else with the fresh one: never again with the key GitHub refused,
	// which the cache's bound may have dropped it for meanwhile.
	key = fresh
	w, err = s.up.PutSecretFunc(ctx, p.scope, p.name, body)
	return w, v.keyID, err
}

// putSealed passes a caller-sealed value through after checking its key_id
// against the scope's current key. A key_id that is not the cached key's
// costs at most a revalidation of the cached key (keyCache.revalidate: one
// conditional request per scope per TTL at most, whatever callers send),
// since the caller may hold a key newer than the cache; when the key_id
// still differs the request is refused. After GitHub's 422 the key is
// revalidated the same way, so that the caller's next GetPublicKey sees a
// rotation; the 422 is returned.
func (s *Server) putSealed(ctx context.Context, p putPlan, key sealingKey) (upstream.Written, upstream.KeyID, error) {
	var err error
	if key.id != p.keyID {
		if key, err = s.keys.revalidate(ctx, p.scope, key.id); err != nil {
			return upstream.Written{}, "", err
		}
	}
	if key.id != p.keyID {
		return upstream.Written{}, "", invalidArg("key_id", "%q is not the scope's current key (%q): call GetPublicKey and seal again", truncate(string(p.keyID), maxQuotedKeyID), key.id)
	}
	body := upstream.PutSecretBody{
		EncryptedValue:        p.sealed,
		KeyID:                 p.keyID,
		Visibility:            p.visibility,
		SelectedRepositoryIDs: p.repoIDs,
	}
	w, err := s.up.PutSecretFunc(ctx, p.scope, p.name, func() (upstream.PutSecretBody, error) { return body, nil })
	if isStatus(err, http.StatusUnprocessableEntity) {
		// The key may have rotated under us; let the caller's next
		// GetPublicKey see the current one. Its outcome does not change
		// the answer.
		_, _ = s.keys.revalidate(ctx, p.scope, p.keyID)
	}
	return w, p.keyID, err
}

// completeOrgAccess fills in what GitHub would otherwise reset on update: a
// PUT to an organization secret must carry visibility, and a PUT without
// selected_repository_ids clears the selection. When the caller leaves
// visibility out, the current one is kept; when the visibility is
// "selected" and no ids are given, the current selection is kept.
func (s *Server) completeOrgAccess(ctx context.Context, p *putPlan) error {
	if p.visibility != "" && (p.visibility != visibilitySelected || len(p.repoIDs) > 0) {
		return nil
	}
	cur, err := s.up.GetSecret(ctx, p.scope, p.name)
	switch {
	case isStatus(err, http.StatusNotFound):
		if p.visibility == "" {
			return invalidArg("visibility", "is required to create an organization secret: \"all\", \"private\" or \"selected\"")
		}
		return nil // a new "selected" secret with no repositories yet
	case err != nil:
		return err
	}
	if p.visibility == "" {
		p.visibility = cur.Visibility
	}
	if p.visibility != visibilitySelected || cur.Visibility != visibilitySelected {
		return nil
	}
	p.repoIDs, err = s.allSelectedRepositoryIDs(ctx, p.scope, p.name)
	p.selectionKept = true
	return err
}

// allSelectedRepositoryIDs reads every page of a secret's selection.
func (s *Server) allSelectedRepositoryIDs(ctx context.Context, scope upstream.Scope, name string) ([]int64, error) {
	return selectedRepositoryIDs(ctx, s.up, scope, name)
}

// selectedRepositoryIDs reads every page of the secret's selection from up.
func selectedRepositoryIDs(ctx context.Context, up Upstream, scope upstream.Scope, name string) ([]int64, error) {
	var ids []int64
	for page := 1; ; page++ {
		list, err := up.ListSelectedRepositories(ctx, scope, name, upstream.Page{Page: page, PerPage: maxPageSize})
		if err != nil {
			return nil, err
		}
		for _, r := range list.Repositories {
			ids = append(ids, r.ID)
		}
		if !list.HasNext || len(list.Repositories) == 0 {
			return ids, nil
		}
		if page >= maxSelectionPages {
			return nil, errors.New("the secret's selected repositories span more pages than the broker reads")
		}
	}
}

// maxSelectionPages bounds the pages of selected repositories read to
// preserve a selection (100 pages of 100 repositories).
const maxSelectionPages = 100
