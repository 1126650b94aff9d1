package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fsAppendFL is the inode flag of an append-only file (chattr +a), which
// golang.org/x/sys/unix does not name.
const fsAppendFL = 0x20

// TestAuditFileOpenToOthersAtStart: an existing audit file open to others
// than its owner is made 0600 when the broker starts; one whose mode the
// broker cannot change (here an append-only file, chattr +a, as another
// user's would be) stops the start, saying why, instead of a broker that
// refuses every change until someone reads its log.
func TestAuditFileOpenToOthersAtStart(t *testing.T) {
	tests := []struct {
		name       string
		appendOnly bool
		wantErr    []string // nil: the broker starts
		wantMode   os.FileMode
	}{
		{name: "the broker may change it", wantMode: 0o600},
		{name: "append-only", appendOnly: true, wantErr: []string{"--audit-log", "0644", "cannot be made 0600", "operation not permitted"}, wantMode: 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.appendOnly {
				setAppendOnly(t, path)
			}
			trail, err := openAudit(Config{AuditLog: path}, slog.New(slog.DiscardHandler))
			if trail != nil {
				defer trail.Close()
			}
			if tt.wantErr == nil {
				if err != nil || trail.Err() != nil {
					t.Fatalf("openAudit: %v, trail: %v; want a working trail", err, trail.Err())
				}
			} else {
				if err == nil {
					t.Fatalf("openAudit: nil error, trail.Err() = %v; want the start stopped", trail.Err())
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("openAudit: %q, want it to say %q", err, want)
					}
				}
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != tt.wantMode {
				t.Errorf("mode %04o, want %04o", perm, tt.wantMode)
			}
		})
	}
}

// setAppendOnly sets path's append-only flag until the test ends, or
// skips the test where it cannot (without CAP_LINUX_IMMUTABLE, or on a
// file system without the flag).
func setAppendOnly(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Skipf("reading the file's flags: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags|fsAppendFL); err != nil {
		t.Skipf("making the file append-only: %v", err)
	}
	t.Cleanup(func() {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
			t.Errorf("clearing the append-only flag: %v", err)
		}
	})
}
