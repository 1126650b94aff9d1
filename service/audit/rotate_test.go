package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestRemovedOrRotatedFileIsReopened: a trail whose file is removed, or
// renamed away by a log rotation, writes its next records to a new file
// at its path (created 0600), not to the removed file, where they would
// be lost with every change they record, nor to the rotated one.
func TestRemovedOrRotatedFileIsReopened(t *testing.T) {
	tests := []struct {
		name string
		move func(path string) error
	}{
		{"removed", os.Remove},
		{"renamed", func(path string) error { return os.Rename(path, path+".1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l := Open(path, nil)
			defer l.Close()
			if err := l.Write(Record{Phase: PhaseIntent, Resource: "before"}); err != nil {
				t.Fatal(err)
			}
			if err := tt.move(path); err != nil {
				t.Fatal(err)
			}
			if err := l.Write(Record{Phase: PhaseIntent, Resource: "after"}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("the trail's path after the next record: %v", err)
			}
			if !strings.Contains(string(b), `"resource":"after"`) || strings.Contains(string(b), `"resource":"before"`) {
				t.Fatalf("%s holds %q, want the record written after the file went", path, b)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("new file's mode %v, want 0600", perm)
			}
		})
	}
}

// TestFileCreatedPrivate: the trail's file is created readable by its
// owner only.
func TestFileCreatedPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := Open(path, nil)
	defer l.Close()
	if err := l.Write(Record{Phase: PhaseIntent}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode %v, want 0600", perm)
	}
}

// TestConcurrentWritesStayWholeLines: records written at once by many
// goroutines, each larger than a pipe's atomic write, are whole lines of
// the file, one per record.
func TestConcurrentWritesStayWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := Open(path, nil)
	defer l.Close()
	const writers, each = 8, 50
	big := strings.Repeat("x", 6000)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := l.Write(Record{Phase: PhaseIntent, Resource: fmt.Sprintf("%d/%d/%s", w, i, big)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("a line that does not decode: %.80q", line)
		}
		seen[r.Resource] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct records, want %d", len(seen), writers*each)
	}
}
