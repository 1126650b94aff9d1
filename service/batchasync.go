package service

import (
	"context"
	"errors"
	"fmt"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
)

// batchAsync accepts a BatchPutSecrets with async as an operation. What is
// wrong with the request as a whole is refused with INVALID_ARGUMENT and
// nothing is stored: a malformed item, two items naming one secret, a
// caller-sealed encrypted_value (see errSealedAsync), or items that
// disagree on force (the operation writes all its items with one force).
// The intent record of the call is then written: an audit trail that
// cannot be written refuses the call with UNAVAILABLE before anything goes
// upstream or is stored. Each item is then authorized (write) and its
// selected_repositories resolved: items refused there are the operation's
// first results, in the order sent, whatever refused them; the others are
// its pending work, written in the order of the request by the operation
// runner (judged unchanged, drifted or written as a batch is). As in a
// batch answered at once, a failed item's result names it as sent, a
// written (or unchanged) one as stored.
func (s *Server) batchAsync(ctx context.Context, req *secretbrokerv1.BatchPutSecretsRequest) (*secretbrokerv1.BatchPutSecretsResponse, error) {
	const op = "BatchPutSecrets"
	reqs := req.GetRequests()
	if len(reqs) > maxBatch {
		return nil, s.toStatus(ctx, op, invalidArg("requests", "holds %d items; a batch holds at most %d", len(reqs), maxBatch))
	}
	if s.authz != nil && callerOf(ctx) == "" {
		return nil, s.toStatus(ctx, op, errUnauthenticated)
	}
	plans := make([]*putPlan, len(reqs))
	secrets := make([]string, len(reqs))
	for i, r := range reqs {
		p, err := parsePut(r, nil)
		if err == nil && p.plaintext == nil {
			err = errSealedAsync
		}
		if err == nil && r.GetForce() != reqs[0].GetForce() {
			err = invalidArg("force", "differs from the first item's; an async batch writes every item with the same force: send force on every item or on none")
		}
		if err != nil {
			s.rejected(ctx, rpcBatchPut, indexOf(i), r.GetName(), err)
			return nil, s.toStatus(ctx, op, itemArg(i, err))
		}
		plans[i] = &p
		secrets[i] = secretKey(p.scope, p.name)
	}
	if rep := repeats(secrets); len(rep) > 0 {
		i := rep[len(rep)-1]
		s.rejected(ctx, rpcBatchPut, indexOf(i), reqs[i].GetName(), errRepeated())
		return nil, s.toStatus(ctx, op, itemArg(i, errRepeated()))
	}
	// Accepting the operation is a change: its intent record is written
	// before anything goes upstream (selected_repositories names are
	// resolved by listing), and when it cannot be written the call fails
	// with UNAVAILABLE and no operation is stored.
	_, call, err := s.begin(ctx, rpcBatchPut, nil, operationsCollection, nil)
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	o := &state.Operation{Kind: state.KindBatchPutSecrets, Caller: callerOf(ctx), ClientAddr: anonymousAddrOf(ctx),
		Owner: ownerOf(ctx, "")}
	if len(reqs) > 0 {
		o.Force = reqs[0].GetForce()
	}
	// Items refused here are the operation's first results, in the
	// order sent, whatever refused them.
	refused := make([]error, len(reqs))
	for i, p := range plans {
		res := secretResourceName(p.scope, p.name)
		if err := s.check(ctx, rpcBatchPut, indexOf(i), verbWrite, res, s.may(ctx, verbWrite, res)); err != nil {
			refused[i], plans[i] = err, nil
		}
	}
	for i, err := range s.resolveBatchNames(ctx, plans) {
		s.rejected(ctx, rpcBatchPut, indexOf(i), reqs[i].GetName(), err)
		refused[i], plans[i] = err, nil
	}
	for i, err := range refused {
		if err != nil {
			st := statusOf(err)
			retry, retryAt := retryOf(st)
			o.Results = append(o.Results, state.ItemResult{Name: reqs[i].GetName(), Code: st.Code(), Message: st.Message(),
				RetryAfter: retry, RetryAt: retryAt})
		}
	}
	for i, p := range plans {
		if p == nil {
			continue
		}
		item := state.PendingItem{
			Name:     secretResourceName(p.scope, p.name),
			Value:    p.plaintext,
			Settings: state.Settings{Visibility: p.visibility, SelectedRepositoryIDs: p.repoIDs},
		}
		if sent := reqs[i].GetName(); sent != item.Name {
			item.Sent = sent // a failed item is answered under it (toOperation)
		}
		o.Pending = append(o.Pending, item)
	}
	started, err := s.startOperation(ctx, op, o)
	call.end(withOperation(ctx, started.GetName()), err)
	if err != nil {
		return nil, err
	}
	return &secretbrokerv1.BatchPutSecretsResponse{Operation: started}, nil
}

// operationsCollection is the resource of an async batch's own audit
// records (the call that accepts the operation); its items have theirs.
const operationsCollection = "operations"

// errSealedAsync refuses a caller-sealed value in an async batch.
var errSealedAsync = invalidArg("encrypted_value",
	"is not accepted with async: an operation may resume after a restart or a key rotation, and the broker cannot seal a value it cannot read again with the scope's new key; send value (the broker seals it), or call without async")

// itemArg names item i of a batch in an INVALID_ARGUMENT error.
func itemArg(i int, err error) error {
	if ie, ok := errors.AsType[*invalidArgError](err); ok {
		return &invalidArgError{field: fmt.Sprintf("requests[%d].%s", i, ie.field), msg: ie.msg}
	}
	return err
}
