package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/audit"
	"github.com/secretbroker/secretbroker/service/operation"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// maxOwnerLen bounds a sync's owner label, in bytes.
const maxOwnerLen = 128

// conflictError is an item naming a secret another owner wrote through
// the broker, sent without force.
type conflictError struct{ resource, owner string }

func (e *conflictError) Error() string {
	return fmt.Sprintf("%s was written through the broker by owner %q; send force to take it over", e.resource, e.owner)
}

// ownerUnknownError is a sync's write of a secret whose record the state
// store could not read: whose it is cannot be told, and the write, which
// would make it this owner's, is not sent.
type ownerUnknownError struct{ resource string }

func (e *ownerUnknownError) Error() string {
	return "the broker's state could not be read, so it cannot tell whose " + e.resource + " is; it was not written (try again)"
}

// recordsUnreadableError is a sync the state store could not list the
// scope's records for: without them it cannot tell which secrets its
// owner wrote, so it plans nothing (UNAVAILABLE: a store outage).
type recordsUnreadableError struct{ err error }

func (e *recordsUnreadableError) Error() string { return "the scope's records: " + e.err.Error() }

func (e *recordsUnreadableError) Unwrap() error { return e.err }

// changedSinceError is a prune's delete of a secret its owner wrote that
// GitHub reports changed since that write (another updated_at): someone
// changed it straight at GitHub, and a delete would throw that change
// away. It is deleted only with force.
type changedSinceError struct{ resource string }

func (e *changedSinceError) Error() string {
	return e.resource + " changed at GitHub since this owner wrote it; it was left alone (send force to delete it anyway)"
}

// settingsUnknownError is a prune's delete of an organization secret
// whose settings GitHub could not be asked for (its selected repositories'
// listing failed): whether they were changed at GitHub since its owner
// wrote it cannot be told, so it is left alone. It does not wrap the
// cause (logged): a 404 of that listing is not the DELETE's.
type settingsUnknownError struct{ resource string }

func (e *settingsUnknownError) Error() string {
	return "whether the settings of " + e.resource + " changed at GitHub could not be read; it was left alone (try again, or send force to delete it anyway)"
}

// notOwnedError is a pending delete of a secret that is no longer the
// operation's owner's (a resumed prune whose secret changed hands).
type notOwnedError struct{ resource string }

func (e *notOwnedError) Error() string {
	return e.resource + " is not this owner's any more; it was left alone"
}

// syncActionName is each action's word in state.ItemResult.Action.
var syncActionName = map[secretbrokerv1.SyncAction]string{
	secretbrokerv1.SyncAction_SYNC_ACTION_CREATE:    "create",
	secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE:    "update",
	secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED: "unchanged",
	secretbrokerv1.SyncAction_SYNC_ACTION_DRIFTED:   "drifted",
	secretbrokerv1.SyncAction_SYNC_ACTION_DELETE:    "delete",
	secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN:   "foreign",
	secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT:  "conflict",
}

// SyncActionOf returns the action named by a state.ItemResult's Action
// word (SYNC_ACTION_UNSPECIFIED for any other word).
func SyncActionOf(word string) secretbrokerv1.SyncAction {
	for a, w := range syncActionName {
		if w == word {
			return a
		}
	}
	return secretbrokerv1.SyncAction_SYNC_ACTION_UNSPECIFIED
}

// syncItem is one name of a sync's plan.
type syncItem struct {
	res           string
	name          string // upper-cased
	action        secretbrokerv1.SyncAction
	value         []byte // a write's plaintext; never logged
	delete        bool
	recordedOwner string
	drift         bool
	// err is the item's failure decided while planning (a denial, a
	// conflict without force): it is not run.
	err error
	// run: the item writes or deletes.
	run bool
}

// syncPlan is a validated, planned SyncSecrets request.
type syncPlan struct {
	scope upstream.Scope
	owner string
	force bool
	prune bool
	async bool // an operation carries it out (not a dry run)
	// expectDeletes: the names (upper-case) the caller expects the
	// plan to delete (ExpectedDeletes); nil when it did not say.
	expectDeletes map[string]bool
	settings      state.Settings
	items         []*syncItem                // sorted by name
	listing       map[string]upstream.Secret // the scope as planned, by upper-cased name
	listedAt      time.Time                  // when listing was asked for
	// call is the audited change of the whole call (not of a dry run):
	// its intent record is written before anything goes upstream, its
	// outcome when the call answers (see endCall).
	call *change
}

// endCall writes the outcome record of the sync call as a whole, err
// being what the call answers.
func (p *syncPlan) endCall(ctx context.Context, err error) {
	if p != nil && p.call != nil {
		p.call.end(ctx, err)
	}
}

// SyncSecrets makes a scope hold the given values; see the proto and
// README ("Skip unchanged, detect drift, sync"). Planning reads the
// scope's list (every page) and the broker's records of the scope; the
// writes and deletes then go through the pacer, batchWorkers at a time,
// each by Executor.Execute, the function an operation runner calls per
// item.
func (s *Server) SyncSecrets(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	const op = "SyncSecrets"
	if req.GetAsync() && !req.GetDryRun() {
		return s.syncAsync(ctx, req)
	}
	ctx, cancel := keepTimeToReply(ctx)
	defer cancel()
	plan, err := s.planSync(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	resp := &secretbrokerv1.SyncSecretsResponse{DryRun: req.GetDryRun()}
	tally := batchTally{call: ctx}
	results := make([]*secretbrokerv1.SyncSecretsResult, len(plan.items))
	var runnable []int
	events := newItemEvents(ctx)
	for i, it := range plan.items {
		r := &secretbrokerv1.SyncSecretsResult{Name: it.res, Action: it.action, Drift: it.drift, RecordedOwner: it.recordedOwner}
		results[i] = r
		if it.run && it.err == nil && !req.GetDryRun() {
			runnable = append(runnable, i)
			continue
		}
		if it.action == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED && !req.GetDryRun() {
			s.metrics.skipped(ctx, op)
			s.record(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: rpcSyncSecrets, Resource: it.res,
				Outcome: codeName(codes.OK), Unchanged: true})
		}
		r.Code, r.Message, r.RetryAfter = tally.add(it.err)
		if !req.GetDryRun() {
			events.item(i, r.Name, r.Code)
		}
	}
	resp.Results = results
	if req.GetDryRun() {
		return resp, nil
	}
	// As in a batch, only the first maxItemEvents items that do work
	// upstream have spans of their own (itemContext).
	itemCtx := make(map[int]context.Context, len(runnable))
	for k, i := range runnable {
		itemCtx[i] = events.itemContext(ctx, k)
	}
	defer plan.endCall(ctx, nil)
	x := s.NewExecutor(state.KindSyncSecrets, plan.owner, plan.force)
	x.seed(plan.scope, plan.listing, plan.listedAt) // the items judge against the plan's listing, not a second one
	x.answer = tally.answer
	run := func(i int) {
		it := plan.items[i]
		var out itemOutcome
		err := s.safely(ctx, op, func() error {
			out = x.execute(itemCtx[i], it.pending(plan.settings))
			return out.err
		})
		st := out.answer // its outcome record's
		if st == nil {
			st = tally.answer(err)
		}
		r := results[i]
		if a := SyncActionOf(out.action); a != secretbrokerv1.SyncAction_SYNC_ACTION_UNSPECIFIED {
			r.Action = a
		}
		r.Drift, r.KeyId = out.drift, string(out.keyID)
		if out.recordedOwner != "" {
			r.RecordedOwner = out.recordedOwner
		}
		r.Code, r.Message, r.RetryAfter = tally.count(err, st)
		events.item(i, r.Name, r.Code)
	}
	// The writes at once (they still go to GitHub one at a time, spaced);
	// then the prune's deletes one at a time, as an operation runs them:
	// each reads the secret just before its DELETE waits for its turn
	// (Executor.delete), not all of them at the start.
	var writes, deletes []int
	for _, i := range runnable {
		if plan.items[i].action == secretbrokerv1.SyncAction_SYNC_ACTION_DELETE {
			deletes = append(deletes, i)
		} else {
			writes = append(writes, i)
		}
	}
	eachItem(writes, run)
	for _, i := range deletes {
		run(i)
	}
	x.Finish(ctx)
	events.summary(len(plan.items), &tally)
	s.logBatch(ctx, op, len(plan.items), &tally)
	return resp, nil
}

// syncAsync plans a sync and accepts it as an operation: the items to
// write or delete are its pending work; the others (unchanged, foreign,
// refused) are its first results. A dry run ignores async.
func (s *Server) syncAsync(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*secretbrokerv1.SyncSecretsResponse, error) {
	const op = "SyncSecrets"
	plan, err := s.planSync(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	o := &state.Operation{Kind: state.KindSyncSecrets, Caller: callerOf(ctx), ClientAddr: anonymousAddrOf(ctx),
		Parent: scopeName(plan.scope), Owner: plan.owner, Force: plan.force, Prune: plan.prune}
	// The runner runs the pending items in order: the writes first, then
	// the prune's deletes (each group in name order), as the synchronous
	// sync does, so that an operation cancelled, failing or cut between a
	// rename's two halves leaves the scope with the new name, not neither.
	var deletes []state.PendingItem
	for _, it := range plan.items {
		if it.run && it.err == nil {
			if it.delete {
				deletes = append(deletes, it.pending(plan.settings))
			} else {
				o.Pending = append(o.Pending, it.pending(plan.settings))
			}
			continue
		}
		if it.action == secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED && it.err == nil {
			s.metrics.skipped(ctx, op)
			s.record(ctx, audit.Record{Phase: audit.PhaseOutcome, RPC: rpcSyncSecrets, Resource: it.res,
				Outcome: codeName(codes.OK), Unchanged: true})
		}
		o.Results = append(o.Results, itemResultOf(it))
	}
	o.Pending = append(o.Pending, deletes...)
	started, err := s.startOperation(ctx, op, o)
	plan.endCall(withOperation(ctx, started.GetName()), err)
	if err != nil {
		return nil, err
	}
	return &secretbrokerv1.SyncSecretsResponse{Operation: started}, nil
}

// pending returns the item as an operation's pending work.
func (it *syncItem) pending(settings state.Settings) state.PendingItem {
	if it.delete {
		return state.PendingItem{Name: it.res, Delete: true}
	}
	return state.PendingItem{Name: it.res, Value: it.value, Settings: settings}
}

// parseSync checks a SyncSecrets request against every rule that needs no
// upstream call.
func parseSync(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (*syncPlan, map[string][]byte, error) {
	scope, err := parseParent("parent", req.GetParent())
	if err != nil {
		return nil, nil, err
	}
	if n := len(req.GetSecrets()); n > maxBatch {
		return nil, nil, invalidArg("secrets", "holds %d secrets; a sync holds at most %d", n, maxBatch)
	}
	owner := req.GetOwner()
	if len(owner) > maxOwnerLen || !utf8.ValidString(owner) || strings.IndexFunc(owner, unicode.IsControl) >= 0 {
		return nil, nil, invalidArg("owner", "must be at most %d bytes of text without control characters", maxOwnerLen)
	}
	plan := &syncPlan{scope: scope, owner: ownerOf(ctx, owner), force: req.GetForce(), prune: req.GetPrune(),
		async: req.GetAsync() && !req.GetDryRun()}
	if ed := req.GetExpectedDeletes(); ed != nil {
		if !plan.prune {
			return nil, nil, invalidArg("expected_deletes", "applies with prune only")
		}
		if n := len(ed.GetSecretNames()); n > maxBatch {
			return nil, nil, invalidArg("expected_deletes.secret_names", "holds %d names; at most %d", n, maxBatch)
		}
		plan.expectDeletes = make(map[string]bool, len(ed.GetSecretNames()))
		for _, n := range ed.GetSecretNames() {
			name, err := checkSecretName("expected_deletes.secret_names", n)
			if err != nil {
				return nil, nil, err
			}
			plan.expectDeletes[name] = true
		}
	}
	// A pruning sync that lists nothing deletes every secret its owner
	// wrote in the scope: most often an empty or unread manifest, not the
	// caller's intent. It runs only when expected_deletes confirms what
	// goes (the deletes of a dry run the caller saw); a dry run plans it.
	if plan.prune && !req.GetDryRun() && len(req.GetSecrets()) == 0 && plan.expectDeletes == nil {
		return nil, nil, invalidArg("secrets", "is empty, and with prune the sync would delete every secret its owner wrote in the scope; "+
			"to confirm, run it with dry_run to see what it deletes, then send those names as expected_deletes")
	}
	vis, ids := req.GetVisibility(), req.GetSelectedRepositoryIds()
	switch {
	case !scope.IsOrg() && vis != "":
		return nil, nil, invalidArg("visibility", "applies to organization scopes only")
	case !scope.IsOrg() && len(ids) > 0:
		return nil, nil, invalidArg("selected_repository_ids", "apply to organization scopes only")
	case scope.IsOrg() && vis == "":
		return nil, nil, invalidArg("visibility", "is required for an organization scope: \"all\", \"private\" or \"selected\"")
	case scope.IsOrg() && vis != visibilityAll && vis != visibilityPrivate && vis != visibilitySelected:
		return nil, nil, invalidArg("visibility", "%q is not one of \"all\", \"private\" or \"selected\"", truncate(vis, 30))
	case len(ids) > 0 && vis != visibilitySelected:
		return nil, nil, invalidArg("selected_repository_ids", "may be given only with visibility \"selected\"")
	}
	if err := checkRepositoryIDs("selected_repository_ids", ids); err != nil {
		return nil, nil, err
	}
	if scope.IsOrg() {
		plan.settings = state.Settings{Visibility: vis, SelectedRepositoryIDs: ids}
	}
	desired := make(map[string][]byte, len(req.GetSecrets()))
	keys := make([]string, 0, len(req.GetSecrets()))
	for k := range req.GetSecrets() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := req.GetSecrets()[k]
		name, err := checkSecretName("secrets", k)
		if err != nil {
			return nil, nil, err
		}
		if _, dup := desired[name]; dup {
			return nil, nil, invalidArg("secrets", "names %q twice (secret names are stored upper-case)", name)
		}
		if v == "" {
			return nil, nil, invalidArg("secrets", "the value of %s is empty", name)
		}
		if len(v) > maxValueBytes {
			return nil, nil, invalidArg("secrets", "the value of %s is %d bytes; GitHub's limit is %d bytes (48 KB)", name, len(v), maxValueBytes)
		}
		desired[name] = []byte(v)
	}
	return plan, desired, nil
}

// planSync validates a sync, checks the caller may read the scope, and
// plans each name from one listing of the scope and the broker's records.
//
// Access is judged before anything else about a secret, so that the plan
// tells a caller nothing about a secret it may not touch:
//   - A listed name the caller may not write is PERMISSION_DENIED and
//     nothing more: no fingerprint is compared (an UNCHANGED answer would
//     confirm a guess of the value), no record is looked at (no CONFLICT,
//     no recorded_owner). Its action is CREATE or UPDATE, from the listing
//     alone, when the caller may read the secret (what GetSecret would tell
//     it), and SYNC_ACTION_UNSPECIFIED when it may not, whether or not the
//     secret exists.
//   - A listed name the caller may write but not read is compared with
//     nothing (mayCompare): CREATE or UPDATE, never UNCHANGED or DRIFTED,
//     and written.
//   - A secret the sync does not list appears (DELETE with prune, or
//     FOREIGN) only when the caller may read it.
//   - With prune (not a dry run), a record of the owner's secret gone from
//     GitHub is dropped only when the caller may delete that secret, and
//     the drop is audited like any other change.
//
// A sync that is not a dry run is a change: the intent record of the call
// is written before the scope is listed, and when it cannot be written the
// sync fails with UNAVAILABLE and nothing goes upstream. The caller ends
// the call (plan.endCall) when it answers; planSync ends it itself when it
// fails after the intent was written.
func (s *Server) planSync(ctx context.Context, req *secretbrokerv1.SyncSecretsRequest) (plan *syncPlan, err error) {
	plan, desired, err := parseSync(ctx, req)
	if err != nil {
		s.rejected(ctx, rpcSyncSecrets, nil, req.GetParent(), err)
		return nil, err
	}
	scope := plan.scope
	parent := scopeName(scope)
	if err := s.check(ctx, rpcSyncSecrets, nil, verbRead, parent, s.maySome(ctx, verbRead, parent)); err != nil {
		return nil, err
	}
	if !req.GetDryRun() {
		// The call's own context is kept: the items record GitHub's
		// answers in their own change records.
		_, ch, berr := s.begin(ctx, rpcSyncSecrets, nil, parent, nil)
		if berr != nil {
			return nil, berr
		}
		plan.call = ch
		defer ch.endOnPanic(ctx)
		defer func() {
			if err != nil { // planSync's result: the caller's answer
				ch.end(ctx, err)
			}
		}()
	}
	listedAt := time.Now()
	list, err := s.listScope(ctx, scope)
	if err != nil {
		return nil, err
	}
	plan.listing, plan.listedAt = list, listedAt
	recs, err := s.listRecords(ctx, scope)
	if err != nil {
		// Without the records prune could not tell what the owner wrote.
		err = fmt.Errorf("state records of %s: %w", parent, err)
		if ctx.Err() != nil {
			return nil, err // the caller's deadline or cancellation
		}
		return nil, &recordsUnreadableError{err}
	}
	bySecret := recordsBySecret(recs, list)
	for name, value := range desired {
		plan.items = append(plan.items, s.planWrite(ctx, plan, name, value, bySecret))
	}
	for name := range list {
		if _, ok := desired[name]; ok {
			continue
		}
		res := secretResourceName(scope, name)
		rec := bySecret[name]
		owned := rec != nil && rec.Owner == plan.owner
		if owned && !plan.prune {
			// The owner's, no longer listed, without prune: left as it is.
			continue
		}
		if !s.may(ctx, verbRead, res) {
			// Neither its name nor its owner is the caller's to learn.
			continue
		}
		if owned {
			it := &syncItem{res: res, name: name, action: secretbrokerv1.SyncAction_SYNC_ACTION_DELETE, delete: true, run: true}
			// Changed straight at GitHub since the owner's write: another
			// updated_at, or (an organization secret) other settings, which
			// GitHub's selection routes change without moving updated_at.
			it.drift = changedSince(rec, list[name]) || !s.settingsStill(ctx, scope, name, rec, list[name])
			if err := s.check(ctx, rpcSyncSecrets, nil, verbDelete, res, s.may(ctx, verbDelete, res)); err != nil {
				it.err, it.run = err, false
			} else if it.drift && !plan.force {
				it.err, it.run = &changedSinceError{resource: res}, false
			}
			plan.items = append(plan.items, it)
			continue
		}
		it := &syncItem{res: res, name: name, action: secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN}
		if rec != nil {
			it.recordedOwner = rec.Owner
		}
		plan.items = append(plan.items, it)
	}
	if err := plan.checkExpectedDeletes(); err != nil {
		return nil, err
	}
	if plan.prune && !req.GetDryRun() {
		// Records of the owner's secrets gone from GitHub: nothing to
		// delete but the record.
		for _, r := range recs {
			_, name, _ := state.ParentOf(r.Name)
			if _, listed := list[name]; !listed && r.Owner == plan.owner {
				if _, wanted := desired[name]; !wanted {
					s.dropGoneRecord(ctx, scope, name, r)
				}
			}
		}
	}
	slices.SortFunc(plan.items, func(a, b *syncItem) int { return strings.Compare(a.name, b.name) })
	return plan, nil
}

// checkExpectedDeletes refuses a plan whose deletes are not the ones its
// caller expected (ExpectedDeletes), before anything is changed.
func (plan *syncPlan) checkExpectedDeletes() error {
	if plan.expectDeletes == nil {
		return nil
	}
	var unexpected, kept []string
	deletes := map[string]bool{}
	for _, it := range plan.items {
		if it.delete && it.run && it.err == nil {
			deletes[it.name] = true
			if !plan.expectDeletes[it.name] {
				unexpected = append(unexpected, it.name)
			}
		}
	}
	for name := range plan.expectDeletes {
		if !deletes[name] {
			kept = append(kept, name)
		}
	}
	if len(unexpected) == 0 && len(kept) == 0 {
		return nil
	}
	slices.Sort(unexpected)
	slices.Sort(kept)
	return &unexpectedDeletesError{scope: scopeName(plan.scope), unexpected: unexpected, kept: kept}
}

// unexpectedDeletesError is a pruning sync whose plan would delete other
// secrets than its caller expected: the scope changed since the plan the
// caller confirmed. Nothing was changed.
type unexpectedDeletesError struct {
	scope            string
	unexpected, kept []string // secret names
}

func (e *unexpectedDeletesError) Error() string {
	var parts []string
	if len(e.unexpected) > 0 {
		parts = append(parts, "it would also delete "+strings.Join(e.unexpected, ", "))
	}
	if len(e.kept) > 0 {
		parts = append(parts, "it would not delete "+strings.Join(e.kept, ", "))
	}
	return "the sync of " + e.scope + " no longer deletes what was expected (" + strings.Join(parts, "; ") +
		"): nothing was changed; plan it again (dry_run) and confirm the new plan"
}

// planWrite plans one name the sync lists. The caller's write access is
// judged first: a name it may not write is refused without a look at its
// record or its fingerprints (see planSync).
func (s *Server) planWrite(ctx context.Context, plan *syncPlan, name string, value []byte, bySecret map[string]*state.Record) *syncItem {
	scope := plan.scope
	res := secretResourceName(scope, name)
	now := seenIn(plan.listing, name)
	if err := s.check(ctx, rpcSyncSecrets, nil, verbWrite, res, s.may(ctx, verbWrite, res)); err != nil {
		it := &syncItem{res: res, name: name, err: err}
		if s.may(ctx, verbRead, res) {
			it.action = secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE
			if !now.exists {
				it.action = secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
			}
		}
		return it
	}
	it := &syncItem{res: res, name: name, value: value, run: true}
	p := &putPlan{scope: scope, name: name, plaintext: value, visibility: plan.settings.Visibility, repoIDs: plan.settings.SelectedRepositoryIDs}
	// A value its caller may not read is compared with nothing
	// (mayCompare): planned CREATE or UPDATE, never UNCHANGED or DRIFTED.
	pr, havePrints := s.printsOf(ctx, p)
	rec := bySecret[name]
	v := s.judgeAt(ctx, p, rec, pr, havePrints, plan.force, now)
	it.drift = v.drift
	switch {
	case rec != nil && rec.Owner != plan.owner:
		it.action, it.recordedOwner = secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT, rec.Owner
		if !plan.force {
			it.err, it.run = &conflictError{resource: res, owner: rec.Owner}, false
		}
	case v.unchanged:
		it.action, it.run = secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED, false
	case v.drift:
		it.action = secretbrokerv1.SyncAction_SYNC_ACTION_DRIFTED
	case !now.exists:
		it.action = secretbrokerv1.SyncAction_SYNC_ACTION_CREATE
	default:
		it.action = secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE
	}
	return it
}

// dropGoneRecord drops a prune's record listed (rec, stored under rec.Name:
// the secret's secretKey, or a legacy name) of secret name of scope, gone
// from GitHub, when the caller may delete the secret (else the record
// stays), audited as a change of the sync: intent, then outcome. Under the
// secret's write lock it drops the record only if it is still the one
// listed: a write that made the secret again since keeps its record. The
// policy and the audit see the name as the caller spelled it. It holds the
// secret's lease too (lockWrite), so that no replica's write of the secret
// lands between its read of the record and its removal.
func (s *Server) dropGoneRecord(ctx context.Context, scope upstream.Scope, name string, rec state.Record) {
	res := secretResourceName(scope, name)
	if !s.may(ctx, verbDelete, res) {
		return
	}
	_, ch, err := s.begin(ctx, rpcSyncSecrets, nil, res, nil)
	if err != nil {
		return // begin logged it; the record stays
	}
	held, unlock, err := s.lockWrite(ctx, secretKey(scope, name), leaseIfUp)
	if err != nil {
		ch.end(ctx, err)
		return
	}
	defer unlock()
	cur, ok := s.readRecord(held, rec.Name)
	if ok && cur != nil && cur.Name != secretKey(scope, name) {
		v := legacyView(*cur) // as listRecords listed it
		cur = &v
	}
	if !ok || cur == nil || !sameRecord(*cur, rec) {
		ch.end(ctx, nil) // written again, or gone already: nothing to drop
		return
	}
	err = s.state.store.DeleteRecord(held, rec.Name)
	if err != nil {
		s.log.WarnContext(ctx, "state: record cannot be removed", "resource", res, "err", err)
		err = fmt.Errorf("state record of %s: %w", res, err)
	}
	ch.end(ctx, err)
}

// Executor carries out the items of one sync or batch: the function an
// operation runner calls for each pending item, also after a restart
// (every step is idempotent: a write is judged again against the record
// and GitHub, a delete of a secret already gone succeeds). Items must have
// been authorized when the operation was accepted; an operation's items
// are authorized again as they run (reauthorize). An Executor is safe for
// concurrent use; call Finish once after the last item.
type Executor struct {
	s     *Server
	rpc   string
	owner string
	force bool
	// ownership: items of a name another owner wrote fail without force
	// (syncs); a batch's items do not look at owners.
	ownership bool
	// reauthorize: each item first checks, with the policy as it is now,
	// that the caller of its context may write its secret (delete it, for
	// a prune), so that access revoked after an operation was accepted
	// stops its remaining items, also after a resume. Set for the
	// operation runner's executors (execItem), before their first item; a
	// synchronous sync authorizes its items as it plans them.
	reauthorize bool
	// answer, when set, is what the caller is answered for an item that
	// ended with an error (a synchronous sync's batchTally.answer): its
	// outcome record holds that code (end). Unset (an operation's items),
	// the record holds its error's (outcomeCode).
	answer func(error) *status.Status

	mu       sync.Mutex
	listings map[string]*listing
	written  writtenSet
}

// listing is one scope's list, read once by the first item that needs it;
// the others wait for done (a channel, not a sync.Once: a waiter whose
// context ends stops waiting).
type listing struct {
	done    chan struct{}              // closed once secrets is set
	secrets map[string]upstream.Secret // nil when it could not be read
	read    time.Time                  // when it was asked for: it shows no later write
}

// listingFresh is how old a scope's listing may be for an item judged
// unchanged against it to be answered so without asking GitHub again: an
// operation's items run one a second or slower, for up to hours, and a
// secret changed behind the broker's back after the listing was read
// must not be reported unchanged. An older listing's "unchanged" is
// confirmed with one GET of the secret.
const listingFresh = time.Minute

// NewExecutor returns the executor of an operation of kind (SyncSecrets or
// BatchPutSecrets) writing as owner (recorded with every secret written);
// force writes unchanged values and, for a sync, takes over names another
// owner wrote.
func (s *Server) NewExecutor(kind state.OperationKind, owner string, force bool) *Executor {
	x := &Executor{s: s, owner: owner, force: force, listings: map[string]*listing{}}
	switch kind {
	case state.KindSyncSecrets:
		x.rpc, x.ownership = rpcSyncSecrets, true
	default:
		x.rpc = rpcBatchPut
	}
	if x.owner == "" {
		x.owner = anonymousOwner
	}
	return x
}

// Execute carries out one item and returns its result: its Code, Message
// and RetryAfter as the single call would have answered (and RetryAt, when
// that wait ends), Unchanged, Drift,
// Action (create, update, unchanged, drifted, conflict, delete, foreign;
// see SyncActionOf), Created and KeyID.
func (x *Executor) Execute(ctx context.Context, item state.PendingItem) state.ItemResult {
	var out itemOutcome
	err := x.s.safely(ctx, "operation item", func() error {
		out = x.execute(ctx, item)
		return out.err
	})
	st := statusOf(err)
	if _, ok := errors.AsType[*upstream.OutcomeUnknownError](err); ok && errors.Is(context.Cause(ctx), operation.ErrCancelRequested) {
		// Not "not run": the operation's cancel cut the item short after
		// GitHub was sent it. (Stopped by the runner instead, it stays
		// CANCELLED: interrupted, it runs again after the restart.)
		st = mayHaveApplied("the operation was cancelled", "this item")
	}
	retry, retryAt := retryOf(st)
	return state.ItemResult{Name: item.Name, Code: st.Code(), Message: st.Message(), RetryAfter: retry, RetryAt: retryAt,
		Unchanged: out.unchanged, Drift: out.drift, Action: out.action, Created: out.created, KeyID: string(out.keyID),
		RecordedOwner: out.recordedOwner}
}

// Finish reads back the updated_at of the secrets written (one listing per
// scope written to), so that they can be found unchanged next time.
func (x *Executor) Finish(ctx context.Context) { x.written.readBack(ctx, x.s) }

// itemOutcome is what executing one item did.
type itemOutcome struct {
	err error
	// answer is the item's answer (Executor.answer) its outcome record
	// holds; nil when the executor has no answer, or the item ended
	// without an outcome record.
	answer        *status.Status
	action        string
	unchanged     bool
	drift         bool
	keyID         upstream.KeyID
	recordedOwner string
	// created: GitHub answered the write 201.
	created bool
}

// scopeListing returns the scope's listing, read once, and when it was
// read; nil when it could not be read (the items of the scope are then
// written) or ctx ended while another item read it.
func (x *Executor) scopeListing(ctx context.Context, scope upstream.Scope) (map[string]upstream.Secret, time.Time) {
	x.mu.Lock()
	l := x.listings[scope.Path()]
	first := l == nil
	if first {
		l = &listing{done: make(chan struct{})}
		x.listings[scope.Path()] = l
	}
	x.mu.Unlock()
	if first {
		asked := time.Now()
		list, err := x.s.listScope(ctx, scope)
		if err != nil {
			x.s.log.DebugContext(ctx, "scope listing failed; its items are written", "scope", scope.Path(), "err", err)
		} else {
			l.secrets, l.read = list, asked
		}
		close(l.done)
		return l.secrets, l.read
	}
	select {
	case <-l.done:
		return l.secrets, l.read
	case <-ctx.Done():
		return nil, time.Time{}
	}
}

// predates reports whether rec is of an earlier secret of its name than
// the one the scope's listing already at hand shows (see predates), as a
// sync's plan judged it; without a listing at hand (an operation's first
// item of the scope, before it reads one) it cannot tell, and the record
// is kept.
func (x *Executor) predates(scope upstream.Scope, name string, rec *state.Record) bool {
	x.mu.Lock()
	l := x.listings[scope.Path()]
	x.mu.Unlock()
	if l == nil {
		return false
	}
	select {
	case <-l.done:
	default:
		return false // another item is listing it now
	}
	sec, ok := l.secrets[strings.ToUpper(name)]
	return ok && predates(rec, sec)
}

// listed reports whether scope's listing is at hand (read, or found
// unreadable): predates has judged with it.
func (x *Executor) listed(scope upstream.Scope) bool {
	x.mu.Lock()
	l := x.listings[scope.Path()]
	x.mu.Unlock()
	if l == nil {
		return false
	}
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// seed gives the executor scope's listing, asked for at asked and read
// already (by a sync's plan), so that its items do not read it again.
func (x *Executor) seed(scope upstream.Scope, list map[string]upstream.Secret, asked time.Time) {
	if list == nil {
		return
	}
	l := &listing{done: make(chan struct{}), secrets: list, read: asked}
	close(l.done)
	x.mu.Lock()
	x.listings[scope.Path()] = l
	x.mu.Unlock()
}

func (x *Executor) execute(ctx context.Context, item state.PendingItem) itemOutcome {
	scope, name, err := parseSecretName("name", item.Name)
	if err != nil {
		return itemOutcome{err: err}
	}
	res := secretResourceName(scope, name)
	if err := x.authorize(ctx, item, res); err != nil {
		return itemOutcome{err: err}
	}
	rec, _ := x.s.recordOf(ctx, scope, name)
	stale := rec != nil && x.predates(scope, name, rec)
	if stale {
		rec = nil // of an earlier secret of that name, as the plan judged it
	}
	if item.Delete {
		return x.delete(ctx, scope, name, rec, stale)
	}
	if item.ValueLost {
		return itemOutcome{err: invalidArg("value", "of %s was lost: the state key changed since the operation was accepted; send it again", res)}
	}
	out := itemOutcome{}
	conflict := x.ownership && rec != nil && rec.Owner != x.owner
	if conflict {
		out.recordedOwner = rec.Owner
		if !x.force && x.listed(scope) {
			// The listing at hand did not show rec to be of an earlier
			// secret of the name (predates, above).
			out.action, out.err = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT], &conflictError{resource: res, owner: rec.Owner}
			return out
		}
	}
	// The intent first: with the audit trail down nothing goes to GitHub,
	// not even the scope's listing or a GET of the secret.
	itemCtx, ch, err := x.s.begin(ctx, x.rpc, nil, res, item.Value)
	if err != nil {
		out.err = err
		return out
	}
	defer ch.endOnPanic(itemCtx)
	itemCtx = x.recheckAtAdmission(itemCtx, item, res)
	p := &putPlan{scope: scope, name: name, plaintext: item.Value, visibility: item.Settings.Visibility, repoIDs: item.Settings.SelectedRepositoryIDs}
	pr, havePrints := x.s.printsOf(ctx, p)
	list, read := x.scopeListing(ctx, scope)
	if conflict && x.predates(scope, name, rec) {
		// Only the listing, read now (the operation's first item of the
		// scope), shows rec to be of an earlier secret of the name, as
		// the plan judged it: not another owner's.
		rec, conflict, out.recordedOwner = nil, false, ""
	}
	if conflict && !x.force {
		err := &conflictError{resource: res, owner: rec.Owner}
		out.answer = x.end(itemCtx, ch, err, verdict{})
		out.action, out.err = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT], err
		return out
	}
	now := seenIn(list, name)
	if rec != nil && list != nil && !rec.WrittenAt.Before(read) {
		// The record is of a write made since the listing was asked for
		// (another call's, of this secret, at once): the listing may
		// predate it, and its updated_at judges nothing (compared, the
		// broker's own write would be drift). GitHub is asked again.
		now = x.s.seenByGet(ctx, scope, name)
	}
	// A record of this very item's write (ownWrite) is of the value it
	// sends: compared with it, a caller that may not read the secret
	// learns nothing it did not send (mayCompare), and the item reports
	// its write rather than writing again. Drift is still not told it
	// (only the operators are: judged blind again).
	own := pr.blind && ownWrite(ctx, rec)
	if own {
		pr.blind = false
	}
	v := judge(rec, pr, havePrints, x.force, now)
	if v.unchanged {
		if time.Since(read) > listingFresh {
			now = x.s.seenByGet(ctx, scope, name)
		}
		v = x.s.judgeAt(ctx, p, rec, pr, havePrints, x.force, now)
	}
	if own && !v.unchanged {
		seen := v.driftSeen
		v, pr.blind = verdict{}, true
		if seen {
			v = drifted(true)
		}
	}
	out.drift = v.drift
	if v.unchanged && !conflict {
		x.s.metrics.skipped(ctx, rpcShort(x.rpc))
		out.answer = x.end(itemCtx, ch, nil, v) // this run sent nothing
		out.action, out.unchanged, out.keyID = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_UNCHANGED], true, upstream.KeyID(rec.KeyID)
		if ownWrite(ctx, rec) {
			// This very item wrote the value, before a crash kept its
			// result from being stored: the result is that write's, as
			// a prune's delete repeated so is a DELETE (goneAlreadyError).
			out.unchanged, out.created = false, rec.Created
			out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE]
			if rec.Created {
				out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CREATE]
			}
		}
		return out
	}
	if v.driftSeen && !conflict {
		// Told to the operators even when the caller is not (blind).
		x.s.noteDrift(ctx, x.rpc, res)
	}
	switch {
	case conflict:
		out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT]
	case v.drift:
		out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_DRIFTED]
	case now.known && !now.exists:
		out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CREATE]
	default:
		out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE]
	}
	// The write is recorded under the secret's lock, in the order GitHub
	// applied this and any concurrent write of the secret.
	r := recordOf{prints: pr, havePrints: havePrints, owner: x.owner}
	if x.ownership && !x.force {
		// Another owner's write may have held the secret's lock while
		// this one waited for it: then the secret is theirs.
		r.check = func(cur *state.Record, readOK bool) error {
			switch {
			case !readOK:
				// Written now, the secret would become this owner's
				// whoever's it is.
				return &ownerUnknownError{resource: res}
			case cur != nil && cur.Owner != x.owner && !x.predates(scope, name, cur):
				return &conflictError{resource: res, owner: cur.Owner}
			}
			return nil
		}
	}
	w, keyID, err := x.s.putRecorded(itemCtx, p, r)
	out.answer = x.end(itemCtx, ch, err, v)
	if _, denied := errors.AsType[*deniedError](err); denied {
		// Refused when admitted (recheckAtAdmission): no action, as for
		// an item refused before it ran (authorize).
		return itemOutcome{err: err, answer: out.answer}
	}
	if ce, ok := errors.AsType[*conflictError](err); ok {
		out.action, out.recordedOwner, out.err = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CONFLICT], ce.owner, err
		return out
	}
	if err != nil {
		out.err = err
		return out
	}
	x.written.add(scope, name, pr.value)
	out.keyID, out.created = keyID, w.Created
	if ownWrite(ctx, rec) {
		// Written again (force, or the secret changed behind the
		// broker's back since this item's earlier write, which a crash
		// kept from being stored): created when either write created
		// the secret. GitHub answers the second write 204 when the first
		// created the secret, which the item did, and a caller that may
		// not read the secret is not told that it changed (drift, which
		// never makes a write a create); it answers 201 when the secret
		// was deleted since, as to a write without a crash. The record
		// says the same (writeLocked).
		out.created = rec.Created || w.Created
	}
	// Whether it was a create is GitHub's answer (201 or 204), not the
	// listing's: the listing may be old, or not read at all.
	if a := SyncActionOf(out.action); a == secretbrokerv1.SyncAction_SYNC_ACTION_CREATE || a == secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE {
		out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_UPDATE]
		if out.created {
			out.action = syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_CREATE]
		}
	}
	return out
}

// ownWrite reports whether rec, the record an item of an operation (ctx
// names it: withOperation) finds its value unchanged by, is the record of
// that operation's own write of the secret: the item ran before, and a
// crash (or a runner that lost the operation's lease) kept its result
// from being stored. An operation writes a secret in one item only, and
// the record of a write is stored once GitHub answered it, so the record
// is that item's write. Nothing else marks an item as started: the
// operation store records an item's result after it ran, never before
// it sends anything. An item not run before finds another write's record
// (a call's, another operation's), and is unchanged.
func ownWrite(ctx context.Context, rec *state.Record) bool {
	op := operationOf(ctx)
	return rec != nil && rec.Operation != "" && op == operationPrefix+rec.Operation
}

// authorize checks again, when the executor reauthorizes, that ctx's
// caller may write res (delete it, for a delete item) under the policy as
// it is now. A denied item fails with PERMISSION_DENIED, audited and
// counted as a call's denial is, before its record is read or anything
// goes upstream; it has no action (the caller may no longer be allowed to
// learn what it would have been). Without an Authorizer every item passes.
func (x *Executor) authorize(ctx context.Context, item state.PendingItem, res string) error {
	if !x.reauthorize {
		return nil
	}
	verb := itemVerb(item)
	return x.s.check(ctx, x.rpc, nil, verb, res, x.s.may(ctx, verb, res))
}

// itemVerb is what an item needs of its caller: delete for a delete, else
// write.
func itemVerb(item state.PendingItem) string {
	if item.Delete {
		return verbDelete
	}
	return verbWrite
}

// recheckAtAdmission returns ctx whose requests to GitHub check the
// item's authorization again once the pacer admits them (see authorize):
// an item may wait long for GitHub's budget, and a caller whose access was
// withdrawn meanwhile must not have it written then.
func (x *Executor) recheckAtAdmission(ctx context.Context, item state.PendingItem, res string) context.Context {
	if !x.reauthorize {
		return ctx
	}
	verb := itemVerb(item)
	// The refusal is the item's outcome (its change's record), not a
	// denial recorded apart: one intent, one outcome.
	return upstream.WithAdmitCheck(ctx, func(ctx context.Context) error {
		if x.s.may(ctx, verb, res) {
			return nil
		}
		return &deniedError{verb: verb, resource: res}
	})
}

// goneAlreadyError is a prune's delete of a secret with no record left
// that GitHub reports gone (404): deleted already, typically by this very
// item before a crash kept its result from being stored (the delete drops
// the record). Nothing is sent; the item is a DELETE that succeeded.
type goneAlreadyError struct{ resource string }

func (e *goneAlreadyError) Error() string { return e.resource + " is gone at GitHub already" }

// delete deletes a secret the owner wrote (a prune), and its record. A
// secret already gone counts as deleted, also when its record is gone
// too (a delete repeated after a restart: GitHub's 404, read under the
// secret's lock, says so); one that is no longer the owner's, or that
// still exists at GitHub without a record, is left alone. stale: rec
// (then nil) was of an earlier secret of the name, as the plan judged it.
func (x *Executor) delete(ctx context.Context, scope upstream.Scope, name string, rec *state.Record, stale bool) itemOutcome {
	res := secretResourceName(scope, name)
	if stale || rec != nil && rec.Owner != x.owner {
		out := itemOutcome{action: syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN], err: &notOwnedError{resource: res}}
		if rec != nil {
			out.recordedOwner = rec.Owner
		}
		return out
	}
	itemCtx, ch, err := x.s.begin(ctx, x.rpc, nil, res, nil)
	if err != nil {
		return itemOutcome{err: err}
	}
	defer ch.endOnPanic(itemCtx)
	itemCtx = x.recheckAtAdmission(itemCtx, state.PendingItem{Name: res, Delete: true}, res)
	// The owner is checked again as the delete begins: another owner's
	// write since the plan makes the secret theirs; and so does a secret
	// deleted and created again at GitHub since the owner's write, which
	// GitHub's answer to a GET made now tells (the plan's listing, or
	// none, may be older than that). A secret with no record at all is
	// this owner's delete done already when GitHub has it gone, and not
	// this owner's when GitHub still has it.
	var (
		now   *state.Record
		drift bool // GitHub's updated_at is not the owner's write's
	)
	err = x.s.deleteRecorded(itemCtx, scope, name, func(held context.Context, cur *state.Record) error {
		if now = cur; cur != nil && cur.Owner != x.owner {
			return &notOwnedError{resource: res}
		}
		sec, err := x.s.fresh.GetSecret(held, scope, name)
		switch {
		case isStatus(err, http.StatusNotFound) && cur == nil:
			// No record and no secret: deleted already (by this item,
			// before a restart). No DELETE is sent: without a record,
			// a secret made again since this GET is not this owner's.
			return &goneAlreadyError{resource: res}
		case isStatus(err, http.StatusNotFound):
			return nil // gone already: deleted
		case err != nil:
			return err
		case cur == nil:
			return &notOwnedError{resource: res} // at GitHub without a record of this owner's
		case predates(cur, sec):
			return &notOwnedError{resource: res}
		case changedSince(cur, sec):
			drift = true
			if !x.force {
				return &changedSinceError{resource: res}
			}
			return nil
		}
		// An organization secret's visibility or selection changed at
		// GitHub is a change too: the selection routes leave updated_at
		// as it was.
		now := seen{known: true, exists: true, updatedAt: sec.UpdatedAt, visibility: sec.Visibility}
		switch same, err := x.s.settingsMatch(held, scope, name, cur, now); {
		case err != nil && !x.force:
			x.s.log.WarnContext(held, "prune: whether the secret's settings changed at GitHub cannot be told; it is left alone", "resource", res, "err", err)
			return &settingsUnknownError{resource: res}
		case err == nil && !same:
			drift = true
			if !x.force {
				return &changedSinceError{resource: res}
			}
		}
		return nil
	})
	if _, gone := errors.AsType[*goneAlreadyError](err); gone || isStatus(err, http.StatusNotFound) {
		err = nil
	}
	answer := x.end(itemCtx, ch, err, verdict{})
	if _, denied := errors.AsType[*deniedError](err); denied {
		return itemOutcome{err: err, answer: answer} // refused when admitted: no action
	}
	if _, ok := errors.AsType[*notOwnedError](err); ok {
		out := itemOutcome{action: syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_FOREIGN], err: err, answer: answer}
		if now != nil {
			out.recordedOwner = now.Owner
		}
		return out
	}
	return itemOutcome{action: syncActionName[secretbrokerv1.SyncAction_SYNC_ACTION_DELETE], err: err, drift: drift, answer: answer}
}

// end writes the outcome record of an item's change ch, which ended with
// err (judged v), and returns the item's answer when the executor has
// one (answer): the record holds its code. Without one the record holds
// err's (outcomeCode) and end returns nil.
func (x *Executor) end(ctx context.Context, ch *change, err error, v verdict) *status.Status {
	if x.answer == nil {
		ch.endWith(ctx, err, v)
		return nil
	}
	st := x.answer(err)
	ch.endAnswered(ctx, st, v)
	return st
}
