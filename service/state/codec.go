package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
)

// The stored encoding, the same bytes in every store, is one JSON object
// per record and per operation, with a format version "v" (1). A decoder
// refuses another version, trailing data, and anything that fails the
// checks Put applies; it ignores unknown fields (a later version may add
// some). Times are RFC 3339 in UTC with nanoseconds; zero times, zero
// fingerprints, false and empty fields are left out.
//
// A record:
//
//	{"v":1,"name":"orgs/acme/actions/secrets/TOKEN",
//	 "value_fingerprint":"<64 hex>","settings_fingerprint":"<64 hex>",
//	 "key_id":"568250167242549743","updated_at":"2026-11-27T19:00:00Z",
//	 "owner":"deploy","written_at":"2026-11-27T19:00:00.5Z",
//	 "fingerprint_key":"<16 hex>","operation":"<operation ID>","created":true}
//
// "operation" and "created" (the operation whose item made the write, and
// whether GitHub answered it 201) are left out for a call's write.
//
// An operation:
//
//	{"v":1,"id":"...","caller":"token:ci","kind":"SyncSecrets",
//	 "parent":"orgs/acme/actions","owner":"deploy","force":true,"prune":true,
//	 "create_time":"...","update_time":"...","done":true,"cancel_requested":true,
//	 "error":{"code":1,"message":"cancelled"},
//	 "metadata":{"total":3,"written":1,"unchanged":1,"failed":0,"remaining":1,
//	             "estimated_completion":"..."},
//	 "results":[{"name":"...","code":0,"unchanged":true,"action":"unchanged",
//	             "key_id":"568250167242549743"},
//	            {"name":"...","code":9,"message":"...","action":"conflict","recorded_owner":"team-a"},
//	            {"name":"...","code":0,"action":"create","created":true,"key_id":"568250167242549743"}],
//	 "pending":[{"name":"...","visibility":"selected","selected_repository_ids":[1,2],
//	             "value":"<base64 of the sealed value, seal.go>"},
//	            {"name":"...","delete":true},
//	            {"name":"...","value_lost":true}],
//	 "runner":"<runner ID>","lease_until":"..."}
//
// "runner" and "lease_until" (the operation's lease, service/operation)
// are left out when empty, so an operation without a lease encodes as it
// did before they were added. A result's "created", "key_id" and
// "recorded_owner" were added later too: a result stored without them
// decodes with false and "". A result's "retry_after" (nanoseconds, the
// delay as answered when the item failed) came with "retry_at" (when
// that delay ends) later still; one stored with retry_after only
// decodes with a retry_at of the operation's update_time plus it.
//
// A value never appears in the encoding: "value" is the sealed value.
const formatVersion = 1

type recordJSON struct {
	V                   int         `json:"v"`
	Name                string      `json:"name"`
	ValueFingerprint    Fingerprint `json:"value_fingerprint,omitzero"`
	SettingsFingerprint Fingerprint `json:"settings_fingerprint,omitzero"`
	KeyID               string      `json:"key_id,omitempty"`
	UpdatedAt           time.Time   `json:"updated_at,omitzero"`
	UpdatedAtLatest     time.Time   `json:"updated_at_latest,omitzero"`
	Owner               string      `json:"owner,omitempty"`
	WrittenAt           time.Time   `json:"written_at,omitzero"`
	Environment         string      `json:"environment,omitempty"`
	FingerprintKey      string      `json:"fingerprint_key,omitempty"`
	Operation           string      `json:"operation,omitempty"`
	Created             bool        `json:"created,omitempty"`
}

type statusJSON struct {
	Code    codes.Code `json:"code"`
	Message string     `json:"message,omitempty"`
}

type progressJSON struct {
	Total               int       `json:"total"`
	Written             int       `json:"written"`
	Unchanged           int       `json:"unchanged"`
	Failed              int       `json:"failed"`
	Remaining           int       `json:"remaining"`
	EstimatedCompletion time.Time `json:"estimated_completion,omitzero"`
}

type resultJSON struct {
	Name      string     `json:"name"`
	Code      codes.Code `json:"code"`
	Message   string     `json:"message,omitempty"`
	Unchanged bool       `json:"unchanged,omitempty"`
	Drift     bool       `json:"drift,omitempty"`
	Action    string     `json:"action,omitempty"`
	Created   bool       `json:"created,omitempty"`
	KeyID     string     `json:"key_id,omitempty"`
	// RecordedOwner came later still: a result stored without it decodes
	// with "".
	RecordedOwner string `json:"recorded_owner,omitempty"`
	// RetryAfter (nanoseconds) came later still: a result stored without
	// it decodes with 0.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// RetryAt came last (after NotRun and Sent): a result stored without
	// it, with a retry_after, decodes with its operation's update_time
	// (its create_time without one) plus retry_after (see
	// ItemResult.RetryAt).
	RetryAt time.Time `json:"retry_at,omitzero"`
	// NotRun came later still: a result stored without it decodes with
	// false (an operation stored then has no result for an item it never
	// ran).
	NotRun bool `json:"not_run,omitempty"`
	// Sent came later still: a result stored without it decodes with "".
	Sent string `json:"sent,omitempty"`
}

type pendingJSON struct {
	Name                  string  `json:"name"`
	Visibility            string  `json:"visibility,omitempty"`
	SelectedRepositoryIDs []int64 `json:"selected_repository_ids,omitempty"`
	Delete                bool    `json:"delete,omitempty"`
	// Value is the sealed value; encoding/json writes []byte as base64.
	Value     []byte `json:"value,omitempty"`
	ValueLost bool   `json:"value_lost,omitempty"`
	// Sent came later: an item stored without it decodes with "".
	Sent string `json:"sent,omitempty"`
}

type operationJSON struct {
	V      int    `json:"v"`
	ID     string `json:"id"`
	Caller string `json:"caller,omitempty"`
	// ClientAddr came later: an operation stored without it decodes
	// with "".
	ClientAddr      string        `json:"client_addr,omitempty"`
	Kind            OperationKind `json:"kind"`
	Parent          string        `json:"parent,omitempty"`
	Owner           string        `json:"owner,omitempty"`
	Force           bool          `json:"force,omitempty"`
	Prune           bool          `json:"prune,omitempty"`
	CreateTime      time.Time     `json:"create_time,omitzero"`
	UpdateTime      time.Time     `json:"update_time,omitzero"`
	Done            bool          `json:"done,omitempty"`
	CancelRequested bool          `json:"cancel_requested,omitempty"`
	Error           *statusJSON   `json:"error,omitempty"`
	Metadata        progressJSON  `json:"metadata"`
	Results         []resultJSON  `json:"results,omitempty"`
	Pending         []pendingJSON `json:"pending,omitempty"`
	Runner          string        `json:"runner,omitempty"`
	LeaseUntil      time.Time     `json:"lease_until,omitzero"`
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// checkTimes refuses a decoded time that does not encode again: RFC 3339
// allows an offset that moves year 0 or 9999 out of range in UTC.
func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if y := t.Year(); !t.IsZero() && (y < 0 || y > 9999) {
			return fmt.Errorf("%w: a time outside years 0 to 9999", ErrCorrupt)
		}
	}
	return nil
}

// encodeRecord encodes a record after checking its name.
func encodeRecord(r Record) ([]byte, error) {
	if err := checkName(r.Name); err != nil {
		return nil, err
	}
	if r.Operation != "" {
		if err := checkID(r.Operation); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(recordJSON{
		V:                   formatVersion,
		Name:                r.Name,
		ValueFingerprint:    r.ValueFingerprint,
		SettingsFingerprint: r.SettingsFingerprint,
		KeyID:               r.KeyID,
		UpdatedAt:           utc(r.UpdatedAt),
		UpdatedAtLatest:     utc(r.UpdatedAtLatest),
		Owner:               r.Owner,
		WrittenAt:           utc(r.WrittenAt),
		Environment:         r.Environment,
		FingerprintKey:      r.FingerprintKey,
		Operation:           r.Operation,
		Created:             r.Created,
	})
	if err != nil {
		return nil, fmt.Errorf("state: encode record %s: %w", r.Name, err)
	}
	return b, nil
}

// decodeStrict decodes one JSON value and refuses trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimLeft(b[d.InputOffset():], " \t\r\n")) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// decodeRecord decodes a stored record.
func decodeRecord(b []byte) (Record, error) {
	var j recordJSON
	if err := decodeStrict(b, &j); err != nil {
		return Record{}, fmt.Errorf("state: decode record: %w: %w", ErrCorrupt, err)
	}
	if j.V != formatVersion {
		return Record{}, fmt.Errorf("state: decode record: %w: format version %d, want %d", ErrCorrupt, j.V, formatVersion)
	}
	if err := checkName(j.Name); err != nil {
		return Record{}, fmt.Errorf("state: decode record: %w: %w", ErrCorrupt, err)
	}
	if err := checkTimes(utc(j.UpdatedAt), utc(j.UpdatedAtLatest), utc(j.WrittenAt)); err != nil {
		return Record{}, fmt.Errorf("state: decode record %s: %w", j.Name, err)
	}
	if !j.UpdatedAtLatest.IsZero() && (j.UpdatedAt.IsZero() || j.UpdatedAtLatest.Before(j.UpdatedAt)) {
		return Record{}, fmt.Errorf("state: decode record %s: %w: updated_at_latest without updated_at or before it", j.Name, ErrCorrupt)
	}
	if j.Operation != "" {
		if err := checkID(j.Operation); err != nil {
			return Record{}, fmt.Errorf("state: decode record %s: %w: %w", j.Name, ErrCorrupt, err)
		}
	}
	return Record{
		Name:                j.Name,
		ValueFingerprint:    j.ValueFingerprint,
		SettingsFingerprint: j.SettingsFingerprint,
		KeyID:               j.KeyID,
		UpdatedAt:           utc(j.UpdatedAt),
		UpdatedAtLatest:     utc(j.UpdatedAtLatest),
		Owner:               j.Owner,
		WrittenAt:           utc(j.WrittenAt),
		Environment:         j.Environment,
		FingerprintKey:      j.FingerprintKey,
		Operation:           j.Operation,
		Created:             j.Created,
	}, nil
}

// encodeOperation checks op and encodes it, sealing its pending values.
func encodeOperation(s *sealer, op *Operation) ([]byte, error) {
	if err := checkOperation(op); err != nil {
		return nil, err
	}
	j := operationJSON{
		V:               formatVersion,
		ID:              op.ID,
		Caller:          op.Caller,
		ClientAddr:      op.ClientAddr,
		Kind:            op.Kind,
		Parent:          op.Parent,
		Owner:           op.Owner,
		Force:           op.Force,
		Prune:           op.Prune,
		CreateTime:      utc(op.CreateTime),
		UpdateTime:      utc(op.UpdateTime),
		Done:            op.Done,
		CancelRequested: op.CancelRequested,
		Runner:          op.Runner,
		LeaseUntil:      utc(op.LeaseUntil),
		Metadata: progressJSON{
			Total:               op.Metadata.Total,
			Written:             op.Metadata.Written,
			Unchanged:           op.Metadata.Unchanged,
			Failed:              op.Metadata.Failed,
			Remaining:           op.Metadata.Remaining,
			EstimatedCompletion: utc(op.Metadata.EstimatedCompletion),
		},
	}
	if op.Error != nil {
		j.Error = &statusJSON{Code: op.Error.Code, Message: op.Error.Message}
	}
	for _, r := range op.Results {
		rj := resultJSON(r)
		rj.RetryAt = utc(r.RetryAt)
		j.Results = append(j.Results, rj)
	}
	for _, p := range op.Pending {
		pj := pendingJSON{
			Name:                  p.Name,
			Visibility:            p.Settings.Visibility,
			SelectedRepositoryIDs: p.Settings.SelectedRepositoryIDs,
			Delete:                p.Delete,
			ValueLost:             p.ValueLost,
			Sent:                  p.Sent,
		}
		if !p.Delete && !p.ValueLost {
			pj.Value = s.seal(op.ID, p.Name, p.Value)
		}
		j.Pending = append(j.Pending, pj)
	}
	b, err := json.Marshal(j)
	if err != nil {
		// The error names the operation only: json.Marshal of these
		// types fails on nothing that holds a value.
		return nil, fmt.Errorf("state: encode operation %s: %w", op.ID, err)
	}
	return b, nil
}

// decodeOperation decodes a stored operation and opens its pending
// values. A value that does not authenticate (the server key changed) sets
// ValueLost on its item; any other fault is an error wrapping ErrCorrupt.
func decodeOperation(s *sealer, b []byte) (*Operation, error) {
	var j operationJSON
	if err := decodeStrict(b, &j); err != nil {
		return nil, fmt.Errorf("state: decode operation: %w: %w", ErrCorrupt, err)
	}
	if j.V != formatVersion {
		return nil, fmt.Errorf("state: decode operation: %w: format version %d, want %d", ErrCorrupt, j.V, formatVersion)
	}
	op := &Operation{
		ID:              j.ID,
		Caller:          j.Caller,
		ClientAddr:      j.ClientAddr,
		Kind:            j.Kind,
		Parent:          j.Parent,
		Owner:           j.Owner,
		Force:           j.Force,
		Prune:           j.Prune,
		CreateTime:      utc(j.CreateTime),
		UpdateTime:      utc(j.UpdateTime),
		Done:            j.Done,
		CancelRequested: j.CancelRequested,
		Runner:          j.Runner,
		LeaseUntil:      utc(j.LeaseUntil),
		Metadata: Progress{
			Total:               j.Metadata.Total,
			Written:             j.Metadata.Written,
			Unchanged:           j.Metadata.Unchanged,
			Failed:              j.Metadata.Failed,
			Remaining:           j.Metadata.Remaining,
			EstimatedCompletion: utc(j.Metadata.EstimatedCompletion),
		},
	}
	if err := checkTimes(op.CreateTime, op.UpdateTime, op.Metadata.EstimatedCompletion, op.LeaseUntil); err != nil {
		return nil, fmt.Errorf("state: decode operation %s: %w", j.ID, err)
	}
	if j.Error != nil {
		op.Error = &Status{Code: j.Error.Code, Message: j.Error.Message}
	}
	for _, rj := range j.Results {
		r := ItemResult(rj)
		r.RetryAt = utc(r.RetryAt)
		if err := checkTimes(r.RetryAt); err != nil {
			return nil, fmt.Errorf("state: decode operation %s: result %s: %w", j.ID, r.Name, err)
		}
		if r.RetryAt.IsZero() && r.RetryAfter > 0 {
			// Stored before retry_at: the item failed at or before the
			// operation's last update.
			from := op.UpdateTime
			if from.IsZero() {
				from = op.CreateTime
			}
			if at := from.Add(r.RetryAfter); !from.IsZero() && checkTimes(at) == nil {
				r.RetryAt = at
			}
		}
		op.Results = append(op.Results, r)
	}
	for i, pj := range j.Pending {
		p := PendingItem{
			Name:      pj.Name,
			Settings:  Settings{Visibility: pj.Visibility},
			Delete:    pj.Delete,
			ValueLost: pj.ValueLost,
			Sent:      pj.Sent,
		}
		if len(pj.SelectedRepositoryIDs) > 0 {
			p.Settings.SelectedRepositoryIDs = pj.SelectedRepositoryIDs
		}
		switch {
		case pj.Delete || pj.ValueLost:
			if pj.Value != nil {
				return nil, fmt.Errorf("state: decode operation %s: pending item %d: %w: a delete or lost item holds a value", j.ID, i, ErrCorrupt)
			}
		case pj.Value == nil:
			return nil, fmt.Errorf("state: decode operation %s: pending item %d: %w: no value", j.ID, i, ErrCorrupt)
		default:
			v, err := s.open(j.ID, pj.Name, pj.Value)
			switch {
			case errors.Is(err, errSealOpen):
				p.ValueLost = true
			case err != nil:
				return nil, fmt.Errorf("state: decode operation %s: pending item %d: %w", j.ID, i, err)
			default:
				p.Value = v
			}
		}
		op.Pending = append(op.Pending, p)
	}
	if err := checkOperation(op); err != nil {
		return nil, fmt.Errorf("state: decode operation: %w: %w", ErrCorrupt, err)
	}
	return op, nil
}
