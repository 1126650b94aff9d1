package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestWriteOneLinePerRecord runs in a synctest bubble, whose clock starts
// at midnight UTC on 2000-01-01: the record's time is exact.
func TestWriteOneLinePerRecord(t *testing.T) {
	synctest.Test(t, testWriteOneLinePerRecord)
}

func testWriteOneLinePerRecord(t *testing.T) {
	time.Sleep(10 * time.Hour)
	var buf bytes.Buffer
	key := bytes.Repeat([]byte{7}, MinKeyBytes)
	l := NewWriter(&buf, key)
	const planted = "planted-value-6b1f"
	item := 3
	recs := []Record{
		{Phase: PhaseIntent, Caller: "token:ci", RPC: "/secretbroker.v1.SecretService/BatchPutSecrets", Item: &item,
			Resource: "orgs/acme/actions/secrets/X", ValueHMAC: l.ValueHMAC([]byte(planted))},
		{Phase: PhaseOutcome, Caller: "token:ci", RPC: "/secretbroker.v1.SecretService/DeleteSecret",
			Resource: "orgs/acme/actions/secrets/Y", Outcome: "OK", UpstreamStatus: 204, TraceID: "abc"},
	}
	for _, r := range recs {
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(buf.String(), planted) {
		t.Fatalf("the trail holds the plaintext value:\n%s", buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(planted))
	want := map[string]any{
		"time": "2000-01-01T10:00:00Z", "phase": "intent", "caller": "token:ci",
		"rpc": "/secretbroker.v1.SecretService/BatchPutSecrets", "item": float64(3),
		"resource": "orgs/acme/actions/secrets/X", "value_hmac": hex.EncodeToString(m.Sum(nil)),
	}
	if len(first) != len(want) {
		t.Errorf("first record has fields %v, want %v", first, want)
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("first record %s = %v, want %v", k, first[k], v)
		}
	}
	var second map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if second["outcome"] != "OK" || second["upstream_status"] != float64(204) || second["trace_id"] != "abc" {
		t.Errorf("second record = %v", second)
	}
	if _, ok := second["item"]; ok {
		t.Errorf("a record of a single call has an item: %v", second)
	}
}

func TestValueHMACWithoutKey(t *testing.T) {
	if got := NewWriter(&bytes.Buffer{}, nil).ValueHMAC([]byte("v")); got != "" {
		t.Fatalf("ValueHMAC without a key = %q, want empty", got)
	}
	var nilLog *Log
	if err := nilLog.Write(Record{}); err != nil || nilLog.ValueHMAC([]byte("v")) != "" || nilLog.Err() != nil {
		t.Fatal("a nil Log must be a disabled trail")
	}
}

func TestWriteFailsClosed(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	l := Open("/dev/full", nil)
	if err := l.Err(); err != nil {
		t.Fatalf("opening /dev/full: %v", err)
	}
	defer l.Close()
	if err := l.Write(Record{Phase: PhaseIntent}); err == nil {
		t.Fatal("Write to a full device returned nil")
	}
	if l.Failures() != 1 {
		t.Fatalf("Failures = %d, want 1", l.Failures())
	}
}

func TestOpenRetriesUntilThePathWorks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "audit.log")
	l := Open(path, nil)
	defer l.Close()
	if l.Err() == nil {
		t.Fatal("Err = nil for a file in a missing directory")
	}
	if err := l.Write(Record{Phase: PhaseIntent}); err == nil {
		t.Fatal("Write succeeded without a file")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{Phase: PhaseIntent, Resource: "r"}); err != nil {
		t.Fatalf("Write after the directory appeared: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"resource":"r"`) {
		t.Fatalf("file holds %q", b)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(Record{}); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(short, []byte("too-short-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, bytes.Repeat([]byte("k"), 40), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadKey(short)
	if err == nil || strings.Contains(err.Error(), "too-short-secret") {
		t.Fatalf("ReadKey(short) error = %v; want an error without the content", err)
	}
	if k, err := ReadKey(long); err != nil || len(k) != 40 {
		t.Fatalf("ReadKey(long) = %d bytes, %v", len(k), err)
	}
	if _, err := ReadKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("ReadKey of a missing file returned nil")
	}
}
