package service

import (
	"context"
	"strings"

	"github.com/secretbroker/secretbroker/service/state"
	"github.com/secretbroker/secretbroker/upstream"
)

// A secret's record is kept under its secretKey: one record per GitHub
// secret, whatever the case of the organization, owner, repository and
// environment names a caller spells. Earlier versions kept it under the
// resource name as the writing caller spelled it; a record left under such a name (one
// whose scope has upper-case letters) is the secret's legacy record. It
// still serves the spelling that wrote it, as it did before: it is read
// when the key holds no record (recordOf, listRecords), moved to the key
// when the secret's write lock is taken (lockSecret), and removed with the
// secret (deleteRecorded). A legacy record under another caller's spelling
// stays unseen by this one, as it was before.

// legacyRecordName is where an earlier version kept the record of secret
// name of scope, as spelled: "" when that is its secretKey.
func legacyRecordName(scope upstream.Scope, name string) string {
	if n := secretResourceName(scope, strings.ToUpper(name)); n != secretKey(scope, name) {
		return n
	}
	return ""
}

// recordOf reads the record of secret name of scope: under its key, else
// its legacy record. false: the store could not say (see readRecord).
func (s *Server) recordOf(ctx context.Context, scope upstream.Scope, name string) (*state.Record, bool) {
	rec, ok := s.readRecord(ctx, secretKey(scope, name))
	if !ok || rec != nil {
		return rec, ok
	}
	if legacy := legacyRecordName(scope, name); legacy != "" {
		rec, ok := s.readRecord(ctx, legacy)
		if rec != nil {
			v := legacyView(*rec)
			rec = &v
		}
		return rec, ok
	}
	return nil, true
}

// legacyView is what a legacy record is still believed for: its owner,
// key_id, written_at and the updated_at GitHub reported after its write
// (drift, and whether the secret listed now is the one it wrote, see
// recordsBySecret), but not its fingerprints. A write or a selection
// change under another spelling locked and distrusted only that
// spelling's record, so a legacy record's fingerprints may describe a
// value or a selection GitHub no longer holds, with an updated_at that
// has not moved (a selection change leaves it): trusted, they would make
// a write be answered unchanged. Without them the next write of the
// secret goes to GitHub, and its record goes under the key.
func legacyView(r state.Record) state.Record {
	r.ValueFingerprint, r.SettingsFingerprint = state.Fingerprint{}, state.Fingerprint{}
	return r
}

// adoptRecord moves rec, a legacy record of secret name of scope, to the
// secret's key, and returns the record as now kept. A record already
// under the key, or none, is returned as it is. false: it could not be
// written under the key (the legacy record stays, and the caller writes
// as if the store had failed to read). The caller holds the secret's
// write lock.
func (s *Server) adoptRecord(ctx context.Context, scope upstream.Scope, name string, rec *state.Record) (*state.Record, bool) {
	key := secretKey(scope, name)
	if rec == nil || rec.Name == key {
		return rec, true
	}
	moved := *rec
	moved.Name = key
	if s.putRecord(ctx, moved) != nil {
		return nil, false
	}
	// A failure is logged and leaves a copy the key's record shadows.
	_ = s.dropRecord(ctx, rec.Name)
	return &moved, true
}

// listRecords lists the records of scope's secrets: those under its keys,
// and the legacy records (legacyView) under the scope as spelled of
// secrets that have none under their key. Each keeps the name it is
// stored under.
func (s *Server) listRecords(ctx context.Context, scope upstream.Scope) ([]state.Record, error) {
	recs, err := s.state.store.ListRecords(ctx, recordScope(scope))
	if err != nil || scopeName(scope) == recordScope(scope) {
		return recs, err
	}
	legacy, err := s.state.store.ListRecords(ctx, scopeName(scope))
	if err != nil {
		return nil, err
	}
	keyed := make(map[string]bool, len(recs))
	for _, r := range recs {
		keyed[recordSecret(r)] = true
	}
	for _, r := range legacy {
		if !keyed[recordSecret(r)] {
			recs = append(recs, legacyView(r))
		}
	}
	return recs, nil
}

// recordSecret is the name of the secret a record is of.
func recordSecret(r state.Record) string {
	_, name, _ := state.ParentOf(r.Name)
	return name
}

// recordsBySecret indexes records by the name of their secret, leaving
// out each record of a secret that list (the scope's listing) shows was
// created after that record's write (predates).
func recordsBySecret(recs []state.Record, list map[string]upstream.Secret) map[string]*state.Record {
	out := make(map[string]*state.Record, len(recs))
	for i := range recs {
		name := recordSecret(recs[i])
		if sec, ok := list[name]; ok && predates(&recs[i], sec) {
			continue
		}
		out[name] = &recs[i]
	}
	return out
}

// changedSince reports whether GitHub's updated_at of sec, r's secret,
// is not the one r's write left: the secret was changed straight at
// GitHub since. A record without an updated_at, or a secret listed
// without one, cannot tell.
func changedSince(r *state.Record, sec upstream.Secret) bool {
	return r != nil && r.UpdatedKnown() && !sec.UpdatedAt.IsZero() && !r.UpdatedMatches(sec.UpdatedAt)
}

// predates reports whether r is the record of an earlier secret of its
// name than sec, the one GitHub lists now: sec was created after the
// latest updated_at r's write can have left (both times are GitHub's).
// The secret r was written to was deleted behind the broker's back, or
// under another spelling of its scope (a legacy record), and another
// writer created sec: r's owner does not own it, and its updated_at says
// nothing of it. A record without an updated_at cannot tell, and is kept.
func predates(r *state.Record, sec upstream.Secret) bool {
	if !r.UpdatedKnown() || sec.CreatedAt.IsZero() {
		return false
	}
	latest := r.UpdatedAt
	if !r.UpdatedAtLatest.IsZero() {
		latest = r.UpdatedAtLatest
	}
	return sec.CreatedAt.After(latest)
}
