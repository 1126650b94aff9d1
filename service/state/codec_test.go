package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestRecordFormat pins the stored encoding of a record.
func TestRecordFormat(t *testing.T) {
	r := Record{
		Name:                "orgs/acme/actions/secrets/TOKEN",
		ValueFingerprint:    fp(0xab),
		SettingsFingerprint: fp(0x01),
		KeyID:               "568250167242549743",
		UpdatedAt:           time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC),
		Owner:               "deploy",
		WrittenAt:           time.Date(2026, 11, 27, 20, 0, 0, 500_000_000, time.FixedZone("CET", 3600)),
		Operation:           "0194a1b2c3d4e5f60718293a4b5c6d7e",
		Created:             true,
		FingerprintKey:      "0123456789abcdef",
	}
	b, err := encodeRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"name":"orgs/acme/actions/secrets/TOKEN",` +
		`"value_fingerprint":"` + strings.Repeat("ab", 32) + `",` +
		`"settings_fingerprint":"` + strings.Repeat("01", 32) + `",` +
		`"key_id":"568250167242549743","updated_at":"2026-11-27T19:00:00Z",` +
		`"owner":"deploy","written_at":"2026-11-27T19:00:00.5Z",` +
		`"fingerprint_key":"0123456789abcdef",` +
		`"operation":"0194a1b2c3d4e5f60718293a4b5c6d7e","created":true}`
	if string(b) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", b, want)
	}
	if back, err := decodeRecord(b); err != nil || back.Operation != r.Operation || !back.Created || back.FingerprintKey != r.FingerprintKey {
		t.Fatalf("decoded %+v, %v; want the operation, created and the fingerprint key back", back, err)
	}
	b, err = encodeRecord(Record{Name: "repos/o/r/actions/secrets/X"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"name":"repos/o/r/actions/secrets/X"}`; string(b) != want {
		t.Fatalf("zero fields: got %s, want %s", b, want)
	}
}

// TestOperationFormat pins the stored encoding of an operation and opens
// its sealed value by the documented format.
func TestOperationFormat(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	op := &Operation{
		ID: "op1", Caller: "token:ci", Kind: KindBatchPutSecrets,
		CreateTime: time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC),
		Metadata:   Progress{Total: 2, Remaining: 2},
		Pending: []PendingItem{
			{Name: "orgs/acme/actions/secrets/A", Value: []byte("va"), Settings: Settings{Visibility: "selected", SelectedRepositoryIDs: []int64{2, 1}}},
			{Name: "orgs/acme/actions/secrets/B", Delete: true},
		},
	}
	b, err := encodeOperation(s, op)
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	sealedB64 := j["pending"].([]any)[0].(map[string]any)["value"].(string)
	want := `{"v":1,"id":"op1","caller":"token:ci","kind":"BatchPutSecrets","create_time":"2026-11-27T19:00:00Z",` +
		`"metadata":{"total":2,"written":0,"unchanged":0,"failed":0,"remaining":2},` +
		`"pending":[{"name":"orgs/acme/actions/secrets/A","visibility":"selected","selected_repository_ids":[2,1],"value":"` + sealedB64 + `"},` +
		`{"name":"orgs/acme/actions/secrets/B","delete":true}]}`
	if string(b) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", b, want)
	}
	sealed, err := base64.StdEncoding.DecodeString(sealedB64)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.open("op1", "orgs/acme/actions/secrets/A", sealed); err != nil || string(v) != "va" {
		t.Fatalf("the stored value does not open as documented: %q, %v", v, err)
	}
}

// TestPendingSentFormat pins the encoding of a pending item's name as
// sent (added after the format above, which an item without one keeps)
// and its round trip.
func TestPendingSentFormat(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	op := &Operation{ID: "op1", Kind: KindBatchPutSecrets, Metadata: Progress{Total: 1, Remaining: 1},
		Pending: []PendingItem{{Name: "orgs/acme/actions/secrets/A", Delete: true, Sent: "orgs/acme/actions/secrets/a"}}}
	b, err := encodeOperation(s, op)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"id":"op1","kind":"BatchPutSecrets","metadata":{"total":1,"written":0,"unchanged":0,"failed":0,"remaining":1},` +
		`"pending":[{"name":"orgs/acme/actions/secrets/A","delete":true,"sent":"orgs/acme/actions/secrets/a"}]}`
	if string(b) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", b, want)
	}
	got, err := decodeOperation(s, b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Pending, op.Pending) {
		t.Fatalf("decoded %+v, want %+v", got.Pending, op.Pending)
	}
}

// TestOperationClientAddrFormat pins the encoding of an unauthenticated
// caller's address (added after the format above, which an operation
// without one keeps) and its round trip: the runner's bound counts a
// resumed operation by it.
func TestOperationClientAddrFormat(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	op := &Operation{ID: "op1", ClientAddr: "192.0.2.1", Kind: KindBatchPutSecrets, Metadata: Progress{Total: 1, Remaining: 1},
		Pending: []PendingItem{{Name: "orgs/acme/actions/secrets/A", Delete: true}}}
	b, err := encodeOperation(s, op)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"id":"op1","client_addr":"192.0.2.1","kind":"BatchPutSecrets","metadata":{"total":1,"written":0,"unchanged":0,"failed":0,"remaining":1},` +
		`"pending":[{"name":"orgs/acme/actions/secrets/A","delete":true}]}`
	if string(b) != want {
		t.Fatalf("encoding:\n got %s\nwant %s", b, want)
	}
	got, err := decodeOperation(s, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientAddr != op.ClientAddr || got.Caller != "" {
		t.Fatalf("decoded caller %q, address %q; want none, %q", got.Caller, got.ClientAddr, op.ClientAddr)
	}
	op.ClientAddr = "192.0.2.1\n"
	if _, err := encodeOperation(s, op); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an address with a control character: %v, want ErrInvalid", err)
	}
}

// TestOperationLeaseFormat pins the encoding of an operation's lease
// (added after the format above, which an operation without a lease keeps)
// and its round trip; a released lease (zero LeaseUntil) keeps the runner
// only.
func TestOperationLeaseFormat(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	head := `{"v":1,"id":"op1","kind":"SyncSecrets","metadata":{"total":0,"written":0,"unchanged":0,"failed":0,"remaining":0}`
	tests := []struct {
		name   string
		runner string
		until  time.Time
		want   string
	}{
		{"held", "3f2a9c", time.Date(2026, 11, 27, 20, 0, 30, 250_000_000, time.FixedZone("CET", 3600)),
			head + `,"runner":"3f2a9c","lease_until":"2026-11-27T19:00:30.25Z"}`},
		{"released", "3f2a9c", time.Time{}, head + `,"runner":"3f2a9c"}`},
		{"never held", "", time.Time{}, head + `}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := &Operation{ID: "op1", Kind: KindSyncSecrets, Runner: tt.runner, LeaseUntil: tt.until}
			b, err := encodeOperation(s, op)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("encoding:\n got %s\nwant %s", b, tt.want)
			}
			got, err := decodeOperation(s, b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Runner != tt.runner || !got.LeaseUntil.Equal(tt.until) || (got.LeaseUntil.Location() != time.UTC && !tt.until.IsZero()) {
				t.Fatalf("decoded lease %q until %v, want %q until %v in UTC", got.Runner, got.LeaseUntil, tt.runner, tt.until)
			}
		})
	}
}

// TestOperationResultFormat pins the encoding of an item result with
// its key_id (kept since async results carry it), its recorded owner,
// retry_after and retry_at, not_run and sent, and decodes a result stored
// before (TestOperationResultRetryAtFromOlder for retry_at):
// without created, key_id, recorded_owner, retry_after, not_run or sent,
// it decodes with false, "" and 0.
func TestOperationResultFormat(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	head := `{"v":1,"id":"op1","kind":"BatchPutSecrets","metadata":{"total":2,"written":2,"unchanged":0,"failed":0,"remaining":0}`
	written := ItemResult{Name: "orgs/acme/actions/secrets/A", Action: "create", Created: true, KeyID: "568250167242549743"}
	failed := ItemResult{Name: "orgs/acme/actions/secrets/B", Code: codes.NotFound, Message: "gone"}
	tests := []struct {
		name    string
		results []ItemResult
		stored  string
	}{
		{"with key_id", []ItemResult{written, failed}, head + `,"results":[` +
			`{"name":"orgs/acme/actions/secrets/A","code":0,"action":"create","created":true,"key_id":"568250167242549743"},` +
			`{"name":"orgs/acme/actions/secrets/B","code":5,"message":"gone"}]}`},
		{"stored before key_id", []ItemResult{{Name: written.Name, Action: "create"}}, head + `,"results":[` +
			`{"name":"orgs/acme/actions/secrets/A","code":0,"action":"create"}]}`},
		{"with recorded_owner", []ItemResult{{Name: written.Name, Code: codes.FailedPrecondition, Message: "theirs", Action: "conflict", RecordedOwner: "team-a"}},
			head + `,"results":[` +
				`{"name":"orgs/acme/actions/secrets/A","code":9,"message":"theirs","action":"conflict","recorded_owner":"team-a"}]}`},
		{"with retry_after", []ItemResult{{Name: written.Name, Code: codes.Unavailable, Message: "later", RetryAfter: time.Minute,
			RetryAt: time.Date(2026, 11, 27, 19, 1, 0, 500, time.UTC)}},
			head + `,"results":[` +
				`{"name":"orgs/acme/actions/secrets/A","code":14,"message":"later","retry_after":60000000000,"retry_at":"2026-11-27T19:01:00.0000005Z"}]}`},
		{"not run", []ItemResult{{Name: written.Name, Code: codes.Canceled, Message: "not run", NotRun: true}},
			head + `,"results":[` +
				`{"name":"orgs/acme/actions/secrets/A","code":1,"message":"not run","not_run":true}]}`},
		{"with sent", []ItemResult{{Name: written.Name, Code: codes.NotFound, Message: "gone", Sent: "orgs/acme/actions/secrets/a"}},
			head + `,"results":[` +
				`{"name":"orgs/acme/actions/secrets/A","code":5,"message":"gone","sent":"orgs/acme/actions/secrets/a"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeOperation(s, []byte(tt.stored))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Results, tt.results) {
				t.Fatalf("decoded results %+v, want %+v", got.Results, tt.results)
			}
			b, err := encodeOperation(s, got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.stored {
				t.Fatalf("encoding:\n got %s\nwant %s", b, tt.stored)
			}
		})
	}
}

// TestOperationResultRetryAtFromOlder: a result stored before retry_at,
// with a retry_after, decodes with a RetryAt of its operation's
// update_time (its create_time without one) plus retry_after, never
// before the wait it was answered ends, and encodes with it; one in an
// operation without times keeps its retry_after alone. A retry_at out of
// range is refused.
func TestOperationResultRetryAtFromOlder(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	const (
		created = "2026-11-27T19:00:00Z"
		updated = "2026-11-27T19:00:30Z"
		result  = `"results":[{"name":"orgs/acme/actions/secrets/A","code":14,"message":"later","retry_after":60000000000`
	)
	op := func(times, retryAt string) string {
		return `{"v":1,"id":"op1","kind":"BatchPutSecrets"` + times + `,"metadata":{"total":1,"written":0,"unchanged":0,"failed":1,"remaining":0},` +
			result + retryAt + `}]}`
	}
	tests := []struct {
		name, times string
		want        time.Time // zero: none
	}{
		{"updated", `,"create_time":"` + created + `","update_time":"` + updated + `"`, time.Date(2026, 11, 27, 19, 1, 30, 0, time.UTC)},
		{"created only", `,"create_time":"` + created + `"`, time.Date(2026, 11, 27, 19, 1, 0, 0, time.UTC)},
		{"without times", ``, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeOperation(s, []byte(op(tt.times, "")))
			if err != nil {
				t.Fatal(err)
			}
			r := got.Results[0]
			if r.RetryAfter != time.Minute || !r.RetryAt.Equal(tt.want) {
				t.Fatalf("decoded retry after %v at %v, want 1m0s at %v", r.RetryAfter, r.RetryAt, tt.want)
			}
			b, err := encodeOperation(s, got)
			if err != nil {
				t.Fatal(err)
			}
			want := op(tt.times, "")
			if !tt.want.IsZero() {
				want = op(tt.times, `,"retry_at":"`+tt.want.Format(time.RFC3339Nano)+`"`)
			}
			if string(b) != want {
				t.Fatalf("encoding:\n got %s\nwant %s", b, want)
			}
		})
	}
	if _, err := decodeOperation(s, []byte(op("", `,"retry_at":"0000-01-01T00:00:00+01:00"`))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a retry_at out of range: %v, want ErrCorrupt", err)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	name := `"name":"orgs/acme/actions/secrets/X"`
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"not JSON", `{`},
		{"null", `null`},
		{"no version", `{` + name + `}`},
		{"other version", `{"v":2,` + name + `}`},
		{"trailing data", `{"v":1,` + name + `}{}`},
		{"trailing garbage", `{"v":1,` + name + `} x`},
		{"bad name", `{"v":1,"name":"orgs/acme/actions"}`},
		{"short fingerprint", `{"v":1,` + name + `,"value_fingerprint":"abcd"}`},
		{"zero fingerprint spelled out", `{"v":1,` + name + `,"value_fingerprint":"` + strings.Repeat("00", 32) + `"}`},
		{"bad time", `{"v":1,` + name + `,"updated_at":"yesterday"}`},
		{"time out of range in UTC", `{"v":1,` + name + `,"updated_at":"0000-01-01T00:00:00+01:00"}`},
		{"wrong type", `{"v":1,` + name + `,"owner":7}`},
		{"range without its start", `{"v":1,` + name + `,"updated_at_latest":"2026-11-27T21:00:00Z"}`},
		{"range ending before it starts", `{"v":1,` + name + `,"updated_at":"2026-11-27T21:00:02Z","updated_at_latest":"2026-11-27T21:00:00Z"}`},
		{"bad operation ID", `{"v":1,` + name + `,"operation":"operations/x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord([]byte(tt.in)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord(%s): %v, want ErrCorrupt", tt.in, err)
			}
		})
	}
	if _, err := decodeRecord([]byte(`{"v":1,` + name + `,"new_field":true}`)); err != nil {
		t.Fatalf("an unknown field: %v, want it ignored", err)
	}
}

func TestDecodeOperationRejects(t *testing.T) {
	s, _ := newSealer(sealTestKey)
	sealed := base64.StdEncoding.EncodeToString(s.seal("op", "orgs/a/actions/secrets/X", []byte("v")))
	head := `{"v":1,"id":"op","kind":"SyncSecrets","metadata":{}`
	item := func(fields string) string {
		return head + `,"pending":[{"name":"orgs/a/actions/secrets/X"` + fields + `}]}`
	}
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"other version", `{"v":3,"id":"op","kind":"SyncSecrets"}`},
		{"no ID", `{"v":1,"kind":"SyncSecrets"}`},
		{"bad ID", `{"v":1,"id":"a b","kind":"SyncSecrets"}`},
		{"no kind", `{"v":1,"id":"op"}`},
		{"negative count", `{"v":1,"id":"op","kind":"SyncSecrets","metadata":{"failed":-1}}`},
		{"unknown code", head + `,"results":[{"name":"x","code":99}]}`},
		{"item without a value", item(``)},
		{"delete with a value", item(`,"delete":true,"value":"` + sealed + `"`)},
		{"lost with a value", item(`,"value_lost":true,"value":"` + sealed + `"`)},
		{"value not base64", item(`,"value":"!!"`)},
		{"value too short", item(`,"value":"AQID"`)},
		{"bad item name", head + `,"pending":[{"name":"x","delete":true}]}`},
		{"trailing data", head + `}]`},
		{"bad lease time", head + `,"lease_until":"soon"}`},
		{"lease out of range in UTC", head + `,"lease_until":"9999-12-31T23:59:59-01:00"}`},
		{"runner not text", head + `,"runner":"a\u0000b"}`},
		{"name sent not text", item(`,"delete":true,"sent":"a\u0000b"`)},
		{"runner wrong type", head + `,"runner":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeOperation(s, []byte(tt.in)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeOperation(%s): %v, want ErrCorrupt", tt.in, err)
			}
		})
	}
	op, err := decodeOperation(s, []byte(item(`,"value":"`+sealed+`"`)))
	if err != nil || string(op.Pending[0].Value) != "v" {
		t.Fatalf("a good item: %v", err)
	}
	// A value sealed for another item does not open: the item is lost,
	// the operation still decodes.
	moved := strings.Replace(item(`,"value":"`+sealed+`"`), "secrets/X", "secrets/Y", 1)
	op, err = decodeOperation(s, []byte(moved))
	if err != nil || !op.Pending[0].ValueLost || op.Pending[0].Value != nil {
		t.Fatalf("a moved value: %v, %+v", err, op)
	}
}

func seedOperations(f *testing.F, s *sealer) {
	for _, op := range []*Operation{
		operation("op1", "token:ci"),
		{ID: "x", Kind: "k"},
		func() *Operation {
			op := operation("op3", "")
			op.Done, op.Error = true, &Status{Code: 1, Message: "cancelled"}
			op.Pending = []PendingItem{{Name: "orgs/a/actions/secrets/L", ValueLost: true}}
			return op
		}(),
		func() *Operation {
			op := operation("op5", "token:ci")
			op.Pending = []PendingItem{
				{Name: "orgs/a/actions/secrets/A", Value: []byte("planted-value-7f3a")},
				{Name: "orgs/a/actions/secrets/B", Value: []byte{}},
				{Name: "orgs/a/actions/secrets/C", Delete: true},
			}
			return op
		}(),
		func() *Operation {
			op := operation("op4", "token:ci")
			op.Runner, op.LeaseUntil = "9f86d081884c7d65", time.Date(2026, 11, 27, 20, 0, 30, 0, time.UTC)
			return op
		}(),
	} {
		b, err := encodeOperation(s, op)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"id":"op","kind":"k","metadata":{},"results":[{"name":"x","code":"NOT_FOUND"}]}`))
	f.Add([]byte(`{"v":1,"id":"op","kind":"k","metadata":{},"pending":[{"name":"orgs/a/actions/secrets/X","selected_repository_ids":[]}]}`))
	f.Add([]byte(`{"v":1,"id":"op","kind":"k","create_time":"9999-12-31T23:59:59-01:00"}`))
	f.Add([]byte(`null`))
}

// FuzzDecodeOperation: the decoder never panics, and what it accepts
// encodes again and decodes to the same operation.
func FuzzDecodeOperation(f *testing.F) {
	s, err := newSealer(sealTestKey)
	if err != nil {
		f.Fatal(err)
	}
	seedOperations(f, s)
	f.Fuzz(func(t *testing.T, in []byte) {
		op, err := decodeOperation(s, in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a decode error that is not ErrCorrupt: %v", err)
			}
			return
		}
		b, err := encodeOperation(s, op)
		if err != nil {
			t.Fatalf("decoded but does not encode: %v", err)
		}
		again, err := decodeOperation(s, b)
		if err != nil {
			t.Fatalf("encoded but does not decode: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(op, again) {
			t.Fatalf("round trip changed the operation:\n%s\n%s", fmtOp(op), fmtOp(again))
		}
		checkSealedValues(t, s, op, b)
	})
}

// checkSealedValues checks what the encoding b of op promises of its
// pending values: no value shows in b (unless it is text b holds
// anyway), and a sealed value opens only where it was sealed: moved to
// another operation or item, or with one bit flipped, the item decodes
// with its value lost (or the operation is refused as corrupt), never
// with another value.
func checkSealedValues(t *testing.T, s *sealer, op *Operation, b []byte) {
	t.Helper()
	lost := *op
	lost.Pending = slices.Clone(op.Pending)
	for i := range lost.Pending {
		if !lost.Pending[i].Delete {
			lost.Pending[i].Value, lost.Pending[i].ValueLost = nil, true
		}
	}
	without, err := encodeOperation(s, &lost)
	if err != nil {
		t.Fatalf("the operation with its values lost does not encode: %v", err)
	}
	for _, p := range op.Pending {
		if len(p.Value) >= 8 && !bytes.Contains(without, p.Value) &&
			(bytes.Contains(b, p.Value) || bytes.Contains(b, []byte(base64.StdEncoding.EncodeToString(p.Value)))) {
			t.Fatalf("the encoding shows item %s's value: %s", p.Name, b)
		}
	}
	var j operationJSON
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	for i, pj := range j.Pending {
		if pj.Value == nil {
			continue
		}
		for _, alter := range []func(*operationJSON){
			func(j *operationJSON) { j.ID += "x" },
			func(j *operationJSON) { j.Pending[i].Name += "X" },
			func(j *operationJSON) { v := bytes.Clone(pj.Value); v[len(v)-1] ^= 1; j.Pending[i].Value = v },
			func(j *operationJSON) { v := bytes.Clone(pj.Value); v[1] ^= 0x80; j.Pending[i].Value = v },
		} {
			altered := j
			altered.Pending = slices.Clone(j.Pending)
			alter(&altered)
			ab, err := json.Marshal(altered)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeOperation(s, ab)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("an altered sealed value: an error that is not ErrCorrupt: %v", err)
				}
				continue
			}
			if p := got.Pending[i]; !p.ValueLost || p.Value != nil {
				t.Fatalf("item %d opened, altered, to %q (lost %v)", i, p.Value, p.ValueLost)
			}
		}
	}
}

// FuzzDecodeRecord: the decoder never panics, and what it accepts encodes
// to the same bytes on a second round.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []Record{record("orgs/acme/actions/secrets/A"), {Name: "repos/o/r/actions/secrets/B"}} {
		b, err := encodeRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"name":"orgs/a/actions/secrets/X","updated_at":"2026-01-01T00:00:00+14:00","NAME":"y"}`))
	f.Add([]byte(`{"v":1,"name":"a/secrets/b","value_fingerprint":""}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeRecord(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a decode error that is not ErrCorrupt: %v", err)
			}
			return
		}
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatalf("decoded but does not encode: %v", err)
		}
		again, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("encoded but does not decode: %v\n%s", err, b)
		}
		if again != r {
			t.Fatalf("round trip changed the record: %+v, %+v", r, again)
		}
		b2, err := encodeRecord(again)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("the encoding is not stable: %s, %s", b, b2)
		}
	})
}
