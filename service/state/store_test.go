package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A printable key, so that the test can look for it in errors.
	printable := []byte("KEYBYTES-0123456789abcdefghijklmnopqrstuvwxyz")
	tests := []struct {
		name    string
		path    string
		want    []byte
		wantErr error
	}{
		{"32 bytes", write("k32", bytes.Repeat([]byte{0}, 32)), bytes.Repeat([]byte{0}, 32), nil},
		{"raw, newline kept", write("nl", append(slicesClone(printable), '\n')), append(slicesClone(printable), '\n'), nil},
		{"4096 bytes", write("max", bytes.Repeat([]byte{7}, 4096)), bytes.Repeat([]byte{7}, 4096), nil},
		{"31 bytes", write("k31", printable[:31]), nil, ErrBadKey},
		{"empty", write("empty", nil), nil, ErrBadKey},
		{"4097 bytes", write("big", bytes.Repeat(printable[:1], 4097)), nil, ErrBadKey},
		{"missing", filepath.Join(dir, "missing"), nil, ErrBadKey},
		{"a directory", dir, nil, ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadKeyFile(tt.path)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("key %d bytes, want %d", len(got), len(tt.want))
			}
			if err != nil && strings.Contains(err.Error(), string(printable[:20])) {
				t.Fatalf("the error holds key bytes: %v", err)
			}
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func TestNewOperationID(t *testing.T) {
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 100 {
		id := NewOperationID(now.Add(time.Duration(i) * time.Millisecond))
		if err := checkID(id); err != nil {
			t.Fatal(err)
		}
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("ID %q: want 32 lower-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("ID %q twice", id)
		}
		seen[id] = true
		if id <= prev {
			t.Fatalf("ID %q made later sorts before %q", id, prev)
		}
		prev = id
	}
	a, b := NewOperationID(now), NewOperationID(now)
	if a == b || a[:12] != b[:12] {
		t.Fatalf("same millisecond: %q, %q", a, b)
	}
}

func TestParentOf(t *testing.T) {
	tests := []struct {
		name, parent, secret string
		ok                   bool
	}{
		{"orgs/acme/actions/secrets/TOKEN", "orgs/acme/actions", "TOKEN", true},
		{"repos/o/r/environments/prod%2Feu/secrets/X", "repos/o/r/environments/prod%2Feu", "X", true},
		{"repos/o/r/environments/secrets/secrets/X", "repos/o/r/environments/secrets", "X", true},
		{"orgs/acme/actions", "", "", false},
		{"orgs/acme/actions/secrets/X/Y", "", "", false},
		{"/secrets/X", "", "", false},
	}
	for _, tt := range tests {
		p, s, ok := ParentOf(tt.name)
		if p != tt.parent || s != tt.secret || ok != tt.ok {
			t.Errorf("ParentOf(%q) = %q, %q, %v; want %q, %q, %v", tt.name, p, s, ok, tt.parent, tt.secret, tt.ok)
		}
	}
}

func TestPendingItemFormatting(t *testing.T) {
	p := PendingItem{Name: "orgs/a/actions/secrets/X", Value: []byte("hunter2-planted")}
	for _, s := range []string{p.String(), p.GoString()} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, p.Name) {
			t.Errorf("formatted as %q", s)
		}
	}
}

func TestNewMemoryBadKey(t *testing.T) {
	for _, n := range []int{1, 31, 4097} {
		if _, err := NewMemory(Options{HMACKey: make([]byte, n)}); !errors.Is(err, ErrBadKey) {
			t.Errorf("NewMemory with a %d-byte key: %v, want ErrBadKey", n, err)
		}
	}
}
