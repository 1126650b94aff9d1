package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
)

// harness opens one Store implementation for the contract suite.
type harness struct {
	name string
	// open returns a new, empty store.
	open func(t *testing.T, opts Options) Store
	// reopen closes s and opens the same store again, as a restarted
	// broker would; nil for a store that does not persist.
	reopen func(t *testing.T, s Store, opts Options) Store
	// dump returns every byte the store holds.
	dump func(t *testing.T, s Store) []byte
	// held returns every operation ID s holds anywhere (stored or in
	// an index), sorted, once each.
	held func(t *testing.T, s Store) []string
	// corrupt replaces the stored bytes of operation id with raw,
	// leaving its index entries as they are.
	corrupt func(t *testing.T, s Store, id string, raw []byte)
}

func harnesses() []harness {
	return []harness{
		{
			name: "memory",
			open: func(t *testing.T, opts Options) Store {
				m, err := NewMemory(opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = m.Close() })
				return m
			},
			dump: func(t *testing.T, s Store) []byte {
				m := s.(*Memory)
				m.mu.RLock()
				defer m.mu.RUnlock()
				var b bytes.Buffer
				b.Write(m.key)
				for _, p := range m.records {
					for k, v := range p {
						b.WriteString(k)
						b.Write(v)
					}
				}
				for k, v := range m.ops {
					b.WriteString(k)
					b.Write(v)
				}
				return b.Bytes()
			},
			held: memoryHeld,
			corrupt: func(t *testing.T, s Store, id string, raw []byte) {
				m := s.(*Memory)
				m.mu.Lock()
				defer m.mu.Unlock()
				m.ops[id] = raw
			},
		},
		{
			name: "bolt",
			open: func(t *testing.T, opts Options) Store {
				return openBolt(t, t.TempDir(), opts)
			},
			reopen: func(t *testing.T, s Store, opts Options) Store {
				dir := filepath.Dir(s.(*Bolt).Path())
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				return openBolt(t, dir, opts)
			},
			dump: func(t *testing.T, s Store) []byte {
				b, err := os.ReadFile(s.(*Bolt).Path())
				if err != nil {
					t.Fatal(err)
				}
				return b
			},
			held: boltHeld,
			corrupt: func(t *testing.T, s Store, id string, raw []byte) {
				if err := s.(*Bolt).db.Update(func(tx *bolt.Tx) error {
					return tx.Bucket(bucketOperations).Put([]byte(id), raw)
				}); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
}

func openBolt(t testing.TB, dir string, opts Options) *Bolt {
	t.Helper()
	b, err := OpenBolt(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestContract(t *testing.T) {
	for _, h := range harnesses() {
		t.Run(h.name, func(t *testing.T) { runContract(t, h) })
	}
}

// runContract runs the contract suite on one implementation.
func runContract(t *testing.T, h harness) {
	t.Run("records", func(t *testing.T) { testRecords(t, h) })
	t.Run("invalid names", func(t *testing.T) { testInvalidNames(t, h) })
	t.Run("list by parent", func(t *testing.T) { testListByParent(t, h) })
	t.Run("operations", func(t *testing.T) { testOperations(t, h) })
	t.Run("list operations", func(t *testing.T) { testListOperations(t, h) })
	t.Run("list undecodable operations", func(t *testing.T) { testListUndecodable(t, h) })
	t.Run("update operation", func(t *testing.T) { testUpdateOperation(t, h) })
	t.Run("invalid operations", func(t *testing.T) { testInvalidOperations(t, h) })
	t.Run("key", func(t *testing.T) { testKey(t, h) })
	t.Run("concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("context and close", func(t *testing.T) { testContextAndClose(t, h) })
	t.Run("no value in the store", func(t *testing.T) { testNoValueInDump(t, h) })
	t.Run("retention", func(t *testing.T) { testRetention(t, h) })
	t.Run("retention prunes a bounded batch", func(t *testing.T) { testRetentionBounded(t, h) })
	if h.reopen != nil {
		t.Run("restart", func(t *testing.T) { testRestart(t, h) })
		t.Run("key across restarts", func(t *testing.T) { testKeyAcrossRestarts(t, h) })
	}
}

var t0 = time.Date(2026, 11, 27, 19, 0, 0, 500, time.UTC)

func fp(b byte) Fingerprint {
	var f Fingerprint
	for i := range f {
		f[i] = b
	}
	return f
}

func record(name string) Record {
	return Record{
		Name:             name,
		ValueFingerprint: fp(1),
		KeyID:            "568250167242549743",
		UpdatedAt:        t0.Add(-time.Second).Truncate(time.Second),
		Owner:            "deploy",
		WrittenAt:        t0,
	}
}

func testRecords(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	org := record("orgs/acme/actions/secrets/TOKEN")
	org.SettingsFingerprint = fp(2)
	zeroTimes := record("repos/o/r/agents/secrets/EMPTY")
	zeroTimes.UpdatedAt, zeroTimes.WrittenAt, zeroTimes.KeyID, zeroTimes.Owner = time.Time{}, time.Time{}, "", ""
	ranged := record("repos/o/r/actions/secrets/RANGED")
	ranged.UpdatedAtLatest = ranged.UpdatedAt.Add(3 * time.Second)
	spelled := record("repos/o/r/environments/prod%2Feu/secrets/SPELLED")
	spelled.Environment = "Prod/EU"
	local := record("repos/o/r/actions/secrets/LOCAL")
	local.WrittenAt = time.Date(2026, 11, 27, 20, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		rec  Record
	}{
		{"organization with settings", org},
		{"repository", record("repos/o/r/actions/secrets/X")},
		{"environment", record("repos/o/r/environments/prod%2Feu/secrets/X")},
		{"environment with its spelling", spelled},
		{"agents", record("orgs/acme/agents/secrets/X")},
		{"zero fields", zeroTimes},
		{"updated_at within a range", ranged},
		{"non-UTC time", local},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.GetRecord(ctx, tt.rec.Name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetRecord before put: %v, want ErrNotFound", err)
			}
			if err := s.PutRecord(ctx, tt.rec); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetRecord(ctx, tt.rec.Name)
			if err != nil {
				t.Fatal(err)
			}
			assertRecord(t, got, tt.rec)
			changed := tt.rec
			changed.ValueFingerprint, changed.KeyID = fp(9), "other"
			if err := s.PutRecord(ctx, changed); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.GetRecord(ctx, tt.rec.Name); !got.ValueFingerprint.Equal(fp(9)) || got.KeyID != "other" {
				t.Fatalf("after overwrite: %+v", got)
			}
			if err := s.DeleteRecord(ctx, tt.rec.Name); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetRecord(ctx, tt.rec.Name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetRecord after delete: %v, want ErrNotFound", err)
			}
			if err := s.DeleteRecord(ctx, tt.rec.Name); err != nil {
				t.Fatalf("deleting a missing record: %v, want nil", err)
			}
		})
	}
}

// assertRecord compares records, times by instant; a returned time is UTC.
func assertRecord(t *testing.T, got, want Record) {
	t.Helper()
	for _, tm := range []time.Time{got.UpdatedAt, got.UpdatedAtLatest, got.WrittenAt} {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("time %v not in UTC", tm)
		}
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) || !got.UpdatedAtLatest.Equal(want.UpdatedAtLatest) || !got.WrittenAt.Equal(want.WrittenAt) {
		t.Errorf("times: got %v %v %v, want %v %v %v", got.UpdatedAt, got.UpdatedAtLatest, got.WrittenAt, want.UpdatedAt, want.UpdatedAtLatest, want.WrittenAt)
	}
	got.UpdatedAt, got.UpdatedAtLatest, got.WrittenAt = time.Time{}, time.Time{}, time.Time{}
	want.UpdatedAt, want.UpdatedAtLatest, want.WrittenAt = time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("record:\n got %+v\nwant %+v", got, want)
	}
}

func testInvalidNames(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	for _, name := range []string{
		"",
		"orgs/acme/actions",
		"orgs/acme/actions/secrets/",
		"/secrets/X",
		"secrets/X",
		"orgs/acme/actions/secrets/X/Y",
		"orgs/acme/actions//secrets/X",
		"orgs/acme/actions/secrets/X\x00",
		"orgs/acme/actions/secrets/\xff",
		"orgs/acme/actions/secrets/" + strings.Repeat("A", maxNameLen),
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			if err := s.PutRecord(ctx, Record{Name: name}); !errors.Is(err, ErrInvalid) {
				t.Errorf("PutRecord: %v, want ErrInvalid", err)
			}
			if _, err := s.GetRecord(ctx, name); !errors.Is(err, ErrInvalid) {
				t.Errorf("GetRecord: %v, want ErrInvalid", err)
			}
			if err := s.DeleteRecord(ctx, name); !errors.Is(err, ErrInvalid) {
				t.Errorf("DeleteRecord: %v, want ErrInvalid", err)
			}
		})
	}
	for _, parent := range []string{"", "/", "orgs/acme/", "/orgs/acme/actions", "orgs/\x00"} {
		if _, err := s.ListRecords(ctx, parent); !errors.Is(err, ErrInvalid) {
			t.Errorf("ListRecords(%q): %v, want ErrInvalid", parent, err)
		}
	}
}

func testListByParent(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	names := []string{
		"orgs/acme/actions/secrets/B",
		"orgs/acme/actions/secrets/A",
		"orgs/acme/actions/secrets/A_LONGER",
		"orgs/acme2/actions/secrets/A",
		"orgs/acm/actions/secrets/A",
		"orgs/acme/agents/secrets/A",
		"repos/o/r/actions/secrets/X",
		"repos/o/r2/actions/secrets/X",
		"repos/o/r/agents/secrets/X",
		"repos/o/r/environments/e/secrets/X",
		"repos/o/r/environments/e2/secrets/X",
		"repos/o/r/environments/e%2Fsecrets/secrets/Y",
	}
	for _, n := range names {
		if err := s.PutRecord(ctx, record(n)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		parent string
		want   []string
	}{
		{"orgs/acme/actions", []string{"orgs/acme/actions/secrets/A", "orgs/acme/actions/secrets/A_LONGER", "orgs/acme/actions/secrets/B"}},
		{"orgs/acme2/actions", []string{"orgs/acme2/actions/secrets/A"}},
		{"orgs/acm/actions", []string{"orgs/acm/actions/secrets/A"}},
		{"orgs/acme/agents", []string{"orgs/acme/agents/secrets/A"}},
		{"orgs/acme", nil},
		{"orgs/acme/actions/secrets/A", nil},
		{"repos/o/r/actions", []string{"repos/o/r/actions/secrets/X"}},
		{"repos/o/r/agents", []string{"repos/o/r/agents/secrets/X"}},
		{"repos/o/r/environments/e", []string{"repos/o/r/environments/e/secrets/X"}},
		{"repos/o/r/environments/e%2Fsecrets", []string{"repos/o/r/environments/e%2Fsecrets/secrets/Y"}},
		{"repos/o/r", nil},
		{"orgs/nobody/actions", nil},
	}
	for _, tt := range tests {
		t.Run(tt.parent, func(t *testing.T) {
			got, err := s.ListRecords(ctx, tt.parent)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Error("ListRecords returned nil, want an empty slice")
			}
			var gotNames []string
			for _, r := range got {
				gotNames = append(gotNames, r.Name)
				if r.Owner != "deploy" || !r.ValueFingerprint.Equal(fp(1)) {
					t.Errorf("record %s: %+v", r.Name, r)
				}
			}
			if !slices.Equal(gotNames, tt.want) {
				t.Errorf("ListRecords(%q) = %q, want %q", tt.parent, gotNames, tt.want)
			}
		})
	}
	if err := s.DeleteRecord(ctx, "orgs/acme/actions/secrets/A"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListRecords(ctx, "orgs/acme/actions")
	if err != nil || len(got) != 2 {
		t.Fatalf("after delete: %d records, %v; want 2", len(got), err)
	}
}

// operation returns a full operation, values included.
func operation(id, caller string) *Operation {
	return &Operation{
		ID:         id,
		Caller:     caller,
		Kind:       KindSyncSecrets,
		Parent:     "orgs/acme/actions",
		Owner:      "deploy",
		Force:      true,
		Prune:      true,
		CreateTime: t0,
		UpdateTime: t0.Add(time.Minute),
		Metadata: Progress{
			Total: 5, Written: 1, Unchanged: 1, Failed: 1, Remaining: 2,
			EstimatedCompletion: t0.Add(17 * time.Minute),
		},
		Results: []ItemResult{
			{Name: "orgs/acme/actions/secrets/A", Code: codes.OK, Action: "create"},
			{Name: "orgs/acme/actions/secrets/B", Code: codes.OK, Unchanged: true, Action: "unchanged"},
			{Name: "orgs/acme/actions/secrets/C", Code: codes.PermissionDenied, Message: "denied by policy", Drift: true, Action: "drifted"},
		},
		Pending: []PendingItem{
			{Name: "orgs/acme/actions/secrets/D", Value: []byte("value of D"),
				Settings: Settings{Visibility: "selected", SelectedRepositoryIDs: []int64{3, 1, 2}}},
			{Name: "orgs/acme/actions/secrets/EMPTY", Value: []byte{}},
			{Name: "orgs/acme/actions/secrets/OLD", Delete: true},
		},
		Runner:     "9f86d081884c7d65",
		LeaseUntil: t0.Add(90 * time.Second),
	}
}

func assertOperation(t *testing.T, got, want *Operation) {
	t.Helper()
	if got == nil {
		t.Fatal("nil operation")
	}
	g, w := *got, *want
	for _, p := range []*[2]time.Time{
		{g.CreateTime, w.CreateTime}, {g.UpdateTime, w.UpdateTime},
		{g.Metadata.EstimatedCompletion, w.Metadata.EstimatedCompletion},
	} {
		if !p[0].Equal(p[1]) {
			t.Errorf("time %v, want %v", p[0], p[1])
		}
	}
	g.CreateTime, g.UpdateTime, g.Metadata.EstimatedCompletion = time.Time{}, time.Time{}, time.Time{}
	w.CreateTime, w.UpdateTime, w.Metadata.EstimatedCompletion = time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("operation:\n got %s\nwant %s", fmtOp(&g), fmtOp(&w))
	}
}

// fmtOp formats an operation for a failure message, values included
// (test values only).
func fmtOp(op *Operation) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+v", *op)
	for _, p := range op.Pending {
		fmt.Fprintf(&b, " [%s value=%q settings=%+v]", p.Name, p.Value, p.Settings)
	}
	return b.String()
}

func testOperations(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	if _, err := s.GetOperation(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetOperation of a missing one: %v, want ErrNotFound", err)
	}
	tests := []struct {
		name string
		op   *Operation
	}{
		{"full", operation("op1", "token:ci")},
		{"minimal", &Operation{ID: "op2", Kind: KindBatchPutSecrets}},
		{"done with error", func() *Operation {
			op := operation("op3", "token:ci")
			op.Done, op.CancelRequested, op.Pending = true, true, nil
			op.Error = &Status{Code: codes.Canceled, Message: "cancelled by the caller"}
			return op
		}()},
		{"lost value kept", func() *Operation {
			op := operation("op4", "token:ci")
			op.Pending = []PendingItem{{Name: "orgs/acme/actions/secrets/L", ValueLost: true}}
			return op
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutOperation(ctx, tt.op); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetOperation(ctx, tt.op.ID)
			if err != nil {
				t.Fatal(err)
			}
			assertOperation(t, got, tt.op)
			// The store keeps its own copy: changing what was put or
			// got changes nothing stored.
			if len(got.Pending) > 0 && len(got.Pending[0].Value) > 0 {
				got.Pending[0].Value[0] ^= 0xff
				again, err := s.GetOperation(ctx, tt.op.ID)
				if err != nil {
					t.Fatal(err)
				}
				assertOperation(t, again, tt.op)
			}
			if err := s.DeleteOperation(ctx, tt.op.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetOperation(ctx, tt.op.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after delete: %v, want ErrNotFound", err)
			}
			if err := s.DeleteOperation(ctx, tt.op.ID); err != nil {
				t.Fatalf("deleting a missing operation: %v", err)
			}
		})
	}
}

func ids(ops []*Operation) []string {
	var out []string
	for _, op := range ops {
		out = append(out, op.ID)
	}
	return out
}

func testListOperations(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	for _, c := range []struct {
		id, caller string
		done       bool
	}{
		{"a1", "alice", false}, {"a2", "alice", true}, {"a3", "alice", false},
		{"b1", "bob", false}, {"b2", "bob", true},
		{"c1", "alice2", false}, {"c2", "alic", false}, {"d1", "", false},
	} {
		op := operation(c.id, c.caller)
		op.Done = c.done
		if err := s.PutOperation(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		f    OperationFilter
		want []string
	}{
		{"all", OperationFilter{}, []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2", "d1"}},
		{"caller", OperationFilter{Caller: "alice"}, []string{"a1", "a2", "a3"}},
		{"caller is not a prefix", OperationFilter{Caller: "alic"}, []string{"c2"}},
		{"other caller", OperationFilter{Caller: "bob"}, []string{"b1", "b2"}},
		{"unknown caller", OperationFilter{Caller: "eve"}, nil},
		{"not done", OperationFilter{NotDone: true}, []string{"a1", "a3", "b1", "c1", "c2", "d1"}},
		{"caller not done", OperationFilter{Caller: "alice", NotDone: true}, []string{"a1", "a3"}},
		{"limit", OperationFilter{Limit: 3}, []string{"a1", "a2", "a3"}},
		{"after", OperationFilter{After: "a3", Limit: 2}, []string{"b1", "b2"}},
		{"after a missing ID", OperationFilter{After: "b", Limit: 2}, []string{"b1", "b2"}},
		{"caller after", OperationFilter{Caller: "alice", After: "a1"}, []string{"a2", "a3"}},
		{"caller after, not done, limit", OperationFilter{Caller: "alice", After: "a1", NotDone: true, Limit: 1}, []string{"a3"}},
		{"after the last", OperationFilter{After: "d1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListOperations(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if g := ids(got); !slices.Equal(g, tt.want) {
				t.Errorf("ListOperations(%+v) = %q, want %q", tt.f, g, tt.want)
			}
			for _, op := range got {
				if len(op.Pending) != 3 || string(op.Pending[0].Value) != "value of D" {
					t.Errorf("operation %s: pending not decoded", op.ID)
				}
			}
		})
	}
	// Moving an operation to another caller moves it in the index.
	op := operation("a1", "bob")
	if err := s.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateOperation(ctx, "a2", func(op *Operation) error { op.Caller = "bob"; return nil }); err != nil {
		t.Fatal(err)
	}
	for caller, want := range map[string][]string{"alice": {"a3"}, "bob": {"a1", "a2", "b1", "b2"}} {
		got, err := s.ListOperations(ctx, OperationFilter{Caller: caller})
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(got); !slices.Equal(g, want) {
			t.Errorf("after moving: caller %s has %q, want %q", caller, g, want)
		}
	}
	if err := s.DeleteOperation(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListOperations(ctx, OperationFilter{Caller: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if g := ids(got); !slices.Equal(g, []string{"a1", "a2", "b2"}) {
		t.Errorf("after delete: bob has %q", g)
	}
}

func testUpdateOperation(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	if err := s.PutOperation(ctx, operation("op", "alice")); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateOperation(ctx, "op", func(op *Operation) error {
		op.CancelRequested = true
		op.Metadata.Written++
		op.Results = append(op.Results, ItemResult{Name: op.Pending[0].Name, Code: codes.OK})
		op.Pending = op.Pending[1:]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := operation("op", "alice")
	want.CancelRequested = true
	want.Metadata.Written = 2
	want.Results = append(want.Results, ItemResult{Name: "orgs/acme/actions/secrets/D", Code: codes.OK})
	want.Pending = want.Pending[1:]
	assertOperation(t, got, want)
	stored, err := s.GetOperation(ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	assertOperation(t, stored, want)

	errStop := errors.New("stop")
	tests := []struct {
		name    string
		id      string
		fn      func(*Operation) error
		wantErr error
	}{
		{"fn fails", "op", func(op *Operation) error { op.Done = true; return errStop }, errStop},
		{"ID changed", "op", func(op *Operation) error { op.ID = "other"; return nil }, ErrInvalid},
		{"invalid result", "op", func(op *Operation) error { op.Metadata.Failed = -1; return nil }, ErrInvalid},
		{"missing", "missing", func(*Operation) error { return nil }, ErrNotFound},
		{"bad ID", "bad/id", func(*Operation) error { return nil }, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.UpdateOperation(ctx, tt.id, tt.fn); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			stored, err := s.GetOperation(ctx, "op")
			if err != nil {
				t.Fatal(err)
			}
			assertOperation(t, stored, want) // nothing stored
		})
	}
}

func testInvalidOperations(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	plant := "planted-Value-4f1c9e"
	tests := []struct {
		name string
		mod  func(op *Operation) *Operation
	}{
		{"nil", func(*Operation) *Operation { return nil }},
		{"empty ID", func(op *Operation) *Operation { op.ID = ""; return op }},
		{"ID with a slash", func(op *Operation) *Operation { op.ID = "a/b"; return op }},
		{"ID too long", func(op *Operation) *Operation { op.ID = strings.Repeat("a", maxIDLen+1); return op }},
		{"no kind", func(op *Operation) *Operation { op.Kind = ""; return op }},
		{"negative count", func(op *Operation) *Operation { op.Metadata.Remaining = -1; return op }},
		{"caller with a control character", func(op *Operation) *Operation { op.Caller = "a\nb"; return op }},
		{"pending name", func(op *Operation) *Operation { op.Pending[0].Name = "orgs/acme/actions"; return op }},
		{"delete with a value", func(op *Operation) *Operation {
			op.Pending[0].Delete = true
			return op
		}},
		{"lost with a value", func(op *Operation) *Operation {
			op.Pending[0].ValueLost = true
			return op
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := operation("op", "alice")
			op.Pending[0].Value = []byte(plant)
			op = tt.mod(op)
			err := s.PutOperation(ctx, op)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("PutOperation: %v, want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), plant) || strings.Contains(fmt.Sprintf("%+v", err), plant) {
				t.Fatalf("error holds the value: %v", err)
			}
		})
	}
	if _, err := s.GetOperation(ctx, "a/b"); !errors.Is(err, ErrInvalid) {
		t.Errorf("GetOperation(bad ID): %v, want ErrInvalid", err)
	}
	if err := s.DeleteOperation(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("DeleteOperation(empty ID): %v, want ErrInvalid", err)
	}
}

func testKey(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	k1, err := s.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) < MinKeyLen || bytes.Equal(k1, make([]byte, len(k1))) {
		t.Fatalf("generated key: %d bytes, all zero %v", len(k1), bytes.Equal(k1, make([]byte, len(k1))))
	}
	k1[0] ^= 0xff // the caller's copy
	k2, err := s.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k2[0] == k1[0] {
		t.Fatal("Key returned the store's own slice")
	}
	other, err := h.open(t, Options{}).Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, k2) {
		t.Fatal("two new stores generated the same key")
	}
	given := bytes.Repeat([]byte("k"), 40)
	g, err := h.open(t, Options{HMACKey: given}).Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, given) {
		t.Fatal("the operator's key was not used")
	}
}

func testConcurrent(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	base := operation("op", "alice")
	base.Metadata = Progress{}
	if err := s.PutOperation(ctx, base); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("orgs/acme/actions/secrets/W%d_%d", w, i)
				if err := s.PutRecord(ctx, record(name)); err != nil {
					errs <- err
					return
				}
				if _, err := s.GetRecord(ctx, name); err != nil {
					errs <- err
					return
				}
				if _, err := s.ListRecords(ctx, "orgs/acme/actions"); err != nil {
					errs <- err
					return
				}
				if _, err := s.UpdateOperation(ctx, "op", func(op *Operation) error {
					op.Metadata.Written++
					return nil
				}); err != nil {
					errs <- err
					return
				}
				if _, err := s.ListOperations(ctx, OperationFilter{Caller: "alice"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs, err := s.ListRecords(ctx, "orgs/acme/actions")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != workers*each {
		t.Errorf("%d records, want %d", len(recs), workers*each)
	}
	op, err := s.GetOperation(ctx, "op")
	if err != nil {
		t.Fatal(err)
	}
	if op.Metadata.Written != workers*each {
		t.Errorf("Written = %d after %d atomic increments: an update was lost", op.Metadata.Written, workers*each)
	}
}

func testContextAndClose(t *testing.T, h harness) {
	s := h.open(t, Options{})
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	name := "orgs/acme/actions/secrets/X"
	calls := func(ctx context.Context) map[string]error {
		_, getErr := s.GetRecord(ctx, name)
		_, listErr := s.ListRecords(ctx, "orgs/acme/actions")
		_, getOpErr := s.GetOperation(ctx, "op")
		_, updErr := s.UpdateOperation(ctx, "op", func(*Operation) error { return nil })
		_, listOpErr := s.ListOperations(ctx, OperationFilter{})
		_, keyErr := s.Key(ctx)
		return map[string]error{
			"PutRecord":       s.PutRecord(ctx, record(name)),
			"GetRecord":       getErr,
			"DeleteRecord":    s.DeleteRecord(ctx, name),
			"ListRecords":     listErr,
			"PutOperation":    s.PutOperation(ctx, operation("op", "a")),
			"GetOperation":    getOpErr,
			"UpdateOperation": updErr,
			"ListOperations":  listOpErr,
			"DeleteOperation": s.DeleteOperation(ctx, "op"),
			"Key":             keyErr,
		}
	}
	for call, err := range calls(cancelled) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v, want context.Canceled", call, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for call, err := range calls(t.Context()) {
		if call == "Key" {
			continue // a closed store may still hand out its key
		}
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", call, err)
		}
	}
}

// testNoValueInDump plants a known value in an operation and proves that
// the store's bytes hold it in no usual encoding.
func testNoValueInDump(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	plant := []byte("PLANTED-secret-value-7d3f0a9b2c")
	op := operation("opplant", "alice")
	op.Pending[0].Value = plant
	op.Pending[1].Value = append([]byte("prefix "), plant...)
	if err := s.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateOperation(ctx, "opplant", func(op *Operation) error { op.Metadata.Written++; return nil }); err != nil {
		t.Fatal(err)
	}
	key, err := s.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFingerprinter(key)
	if err != nil {
		t.Fatal(err)
	}
	rec := record("orgs/acme/actions/secrets/D")
	rec.ValueFingerprint = f.Value(plant)
	if err := s.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	dump := h.dump(t, s)
	if !bytes.Contains(dump, []byte("opplant")) || !bytes.Contains(dump, []byte(rec.ValueFingerprint.String())) {
		t.Fatal("the dump does not hold the operation or the record: the check below would prove nothing")
	}
	for enc, b := range map[string][]byte{
		"plain":     plant,
		"base64":    []byte(base64.StdEncoding.EncodeToString(plant)),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(plant)),
		"hex":       []byte(hex.EncodeToString(plant)),
		// A middle piece, in case an encoding splits at an offset.
		"plain part": plant[5:20],
	} {
		if bytes.Contains(dump, b) {
			t.Errorf("the store's bytes hold the value (%s)", enc)
		}
	}
	got, err := s.GetOperation(ctx, "opplant")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Pending[0].Value, plant) {
		t.Fatal("the planted value did not round-trip")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, got); strings.Contains(s, string(plant[5:20])) {
			t.Errorf("fmt %s of an operation prints the value: %s", verb, s)
		}
		if s := fmt.Sprintf(verb, got.Pending); strings.Contains(s, string(plant[5:20])) {
			t.Errorf("fmt %s of pending items prints the value: %s", verb, s)
		}
	}
}

func testRestart(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	rec := record("orgs/acme/actions/secrets/KEEP")
	rec.SettingsFingerprint = fp(7)
	if err := s.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	op := operation("running", "alice")
	if err := s.PutOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	done := operation("finished", "bob")
	done.Done, done.Pending = true, nil
	if err := s.PutOperation(ctx, done); err != nil {
		t.Fatal(err)
	}

	s = h.reopen(t, s, Options{})
	got, err := s.GetRecord(ctx, rec.Name)
	if err != nil {
		t.Fatal(err)
	}
	assertRecord(t, got, rec)
	resume, err := s.ListOperations(ctx, OperationFilter{NotDone: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resume) != 1 {
		t.Fatalf("after restart: %q to resume, want [running]", ids(resume))
	}
	assertOperation(t, resume[0], op)
	bobs, err := s.ListOperations(ctx, OperationFilter{Caller: "bob"})
	if err != nil || len(bobs) != 1 {
		t.Fatalf("after restart: bob's operations %q, %v", ids(bobs), err)
	}

	// Another server key (a new --state-hmac-key-file): the operation
	// still reads, its values are lost, nothing else is.
	s = h.reopen(t, s, Options{HMACKey: bytes.Repeat([]byte{0x42}, 32)})
	lost, err := s.GetOperation(ctx, "running")
	if err != nil {
		t.Fatal(err)
	}
	want := operation("running", "alice")
	want.Pending[0].Value, want.Pending[0].ValueLost = nil, true
	want.Pending[1].Value, want.Pending[1].ValueLost = nil, true
	assertOperation(t, lost, want)
	// Storing it again keeps the items lost; it does not fail.
	if err := s.PutOperation(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if again, err := s.GetOperation(ctx, "running"); err != nil || !again.Pending[0].ValueLost {
		t.Fatalf("stored again: %v, lost %v", err, again != nil && again.Pending[0].ValueLost)
	}
}

func testKeyAcrossRestarts(t *testing.T, h harness) {
	ctx := t.Context()
	s := h.open(t, Options{})
	k1, err := s.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = h.reopen(t, s, Options{})
	k2, err := s.Key(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, k2) {
		t.Fatal("the generated key changed across a restart")
	}
	given := bytes.Repeat([]byte("g"), 33)
	s = h.reopen(t, s, Options{HMACKey: given})
	if k, _ := s.Key(ctx); !bytes.Equal(k, given) {
		t.Fatal("the operator's key did not override the stored one")
	}
	s = h.reopen(t, s, Options{})
	if k, _ := s.Key(ctx); !bytes.Equal(k, k1) {
		t.Fatal("an operator's key replaced the stored generated key")
	}
}
