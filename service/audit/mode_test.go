package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExistingFileMadePrivate: a regular file already at the trail's path
// with a mode open to others (one left by an earlier run or a tool, or
// created anew by a log rotation between two records) is made 0600 when
// the trail opens it, keeping what it held; it was written as it was,
// readable by others.
func TestExistingFileMadePrivate(t *testing.T) {
	tests := []struct {
		name string
		mode os.FileMode
		// rotated: the file appears after the trail's first record, as a
		// log rotation's "create 0644" would make it.
		rotated bool
	}{
		{name: "0644 at start", mode: 0o644},
		{name: "0640 at start", mode: 0o640},
		{name: "0666 at start", mode: 0o666},
		{name: "0620 at start", mode: 0o620},
		{name: "0600 at start", mode: 0o600},
		{name: "0644 after a rotation", mode: 0o644, rotated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			create := func() {
				t.Helper()
				if err := os.WriteFile(path, []byte("{\"earlier\":true}\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // not cut by the umask
					t.Fatal(err)
				}
			}
			if !tt.rotated {
				create()
			}
			l := Open(path, nil)
			defer l.Close()
			if err := l.Err(); err != nil {
				t.Fatalf("Err = %v", err)
			}
			if tt.rotated {
				if err := l.Write(Record{Phase: PhaseIntent, Resource: "before"}); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				create()
			}
			if err := l.Write(Record{Phase: PhaseIntent, Resource: "r"}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("mode %04o after the trail opened the file, want 0600", perm)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), "{\"earlier\":true}\n") || !strings.Contains(string(b), `"resource":"r"`) {
				t.Errorf("file holds %q, want its earlier line and the record after it", b)
			}
		})
	}
}
