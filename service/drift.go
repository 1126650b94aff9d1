package service

import (
	"context"
	"sort"

	"google.golang.org/protobuf/types/known/timestamppb"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// DetectDrift compares a scope at GitHub (every page of its list, 100
// secrets a page) with the broker's records of it:
//
//   - drifted: a record with GitHub's updated_at after the broker's write,
//     and GitHub now reporting another updated_at, or (an organization
//     secret) other settings than the broker wrote: its visibility, or
//     its selected repositories (a request per 100 of them, for each
//     secret whose recorded visibility is selected);
//   - unmanaged: a secret at GitHub without a record (never written by the
//     broker, or the record was lost);
//   - missing: a record whose secret GitHub no longer lists.
//
// A record that knows no updated_at is neither drifted nor unmanaged; one
// that knows a range of it (a PutSecret's) reports its start as the
// recorded updated_at. It needs read on some secret of the scope, and lists only the
// secrets the caller may read.
func (s *Server) DetectDrift(ctx context.Context, req *secretbrokerv1.DetectDriftRequest) (*secretbrokerv1.DetectDriftResponse, error) {
	const op = "DetectDrift"
	scope, err := parseParent("parent", req.GetParent())
	if err == nil {
		err = s.check(ctx, rpcDetectDrift, nil, verbRead, scopeName(scope), s.maySome(ctx, verbRead, scopeName(scope)))
	}
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	// A report, not a write: it may share a listing in flight.
	list, err := listScopeOn(ctx, s.up, scope)
	if err != nil {
		return nil, s.toStatus(ctx, op, err)
	}
	recs, err := s.listRecords(ctx, scope)
	if err != nil {
		// Without the records every secret would look unmanaged: fail
		// rather than mislead.
		return nil, s.toStatus(ctx, op, err)
	}
	bySecret := recordsBySecret(recs, list)
	resp := &secretbrokerv1.DetectDriftResponse{}
	names := make([]string, 0, len(list))
	for name := range list {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		res := secretResourceName(scope, name)
		if !s.may(ctx, verbRead, res) {
			continue
		}
		sec := list[name]
		r := bySecret[name]
		switch {
		case r == nil:
			resp.Unmanaged = append(resp.Unmanaged, toSecret(scope, sec))
		case r.UpdatedKnown() && (!r.UpdatedMatches(sec.UpdatedAt) || !s.settingsStill(ctx, scope, name, r, sec)):
			resp.Drifted = append(resp.Drifted, &secretbrokerv1.DriftedSecret{
				Secret:            toSecret(scope, sec),
				RecordedUpdatedAt: timestamppb.New(r.UpdatedAt),
				Owner:             r.Owner,
			})
		}
	}
	for _, r := range recs {
		// Kept under the secret's key (secretKey), or a legacy name; the
		// policy and the answer see the name in the caller's spelling.
		_, name, _ := state.ParentOf(r.Name)
		res := secretResourceName(scope, name)
		if _, ok := list[name]; ok || !s.may(ctx, verbRead, res) {
			continue
		}
		resp.Missing = append(resp.Missing, res)
	}
	s.readDone(ctx, rpcDetectDrift, scopeName(scope))
	return resp, nil
}

// settingsStill reports whether GitHub holds the organization settings the
// record r of name holds, sec being the scope listing's entry; it is true
// when that cannot be read (drift is reported only when seen).
func (s *Server) settingsStill(ctx context.Context, scope upstream.Scope, name string, r *state.Record, sec upstream.Secret) bool {
	held, ok := s.settingsHeld(ctx, scope, name, r, seen{known: true, exists: true, updatedAt: sec.UpdatedAt, visibility: sec.Visibility})
	return held || !ok
}
