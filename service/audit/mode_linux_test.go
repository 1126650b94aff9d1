package audit

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFIFOKeepsItsMode: a FIFO at the trail's path (a log shipper reading
// its other end) is written as it is, its mode untouched: it holds no
// records for later readers, and its mode decides who may open the other
// end. /dev/stdout and /dev/null, devices, are the same case.
func TestFIFOKeepsItsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	// The reader first: opening a FIFO to write waits for one.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := Open(path, nil)
	defer l.Close()
	if err := l.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if err := l.Write(Record{Phase: PhaseIntent, Resource: "r"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o644 {
		t.Errorf("the FIFO's mode is %04o after the trail opened it, want 0644 as it was", perm)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || !strings.Contains(line, `"resource":"r"`) {
		t.Errorf("read %q, %v from the FIFO, want the record", line, err)
	}
}

// notOwnedHelperEnv names, in the child process of
// TestFileOfAnotherUserOpenToOthers, the file it opens.
const notOwnedHelperEnv = "AUDIT_TEST_NOT_OWNED_FILE"

// TestFileOfAnotherUserOpenToOthers: a trail run as a user that does not
// own its file, which is open to others (0666), cannot make it 0600: it
// does not write to it, and Err says why (a *ModeError naming the mode).
// The trail runs in a child process as nobody, the file being root's, so
// the test needs root.
func TestFileOfAnotherUserOpenToOthers(t *testing.T) {
	if path := os.Getenv(notOwnedHelperEnv); path != "" {
		notOwnedChild(t, path)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the trail as another user than the file's owner")
	}
	// A directory nobody may enter, holding the file and a copy of the
	// test binary (the build's directory is root's alone): t.TempDir and
	// the test's directory above it are the test's, opened to others;
	// the directories above must be open already.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := filepath.Dir(filepath.Dir(dir)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s cannot be entered by another user", d)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "audit.test")
	copyFile(t, exe, bin, 0o755)
	path := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^TestFileOfAnotherUserOpenToOthers$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), notOwnedHelperEnv+"="+path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child checked the trail") {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o666 || fi.Size() != 0 {
		t.Errorf("file after the child: mode %04o, %d bytes; want 0666 and empty", perm, fi.Size())
	}
}

// notOwnedChild is TestFileOfAnotherUserOpenToOthers's child, run as
// nobody: it opens path, root's, mode 0666.
func notOwnedChild(t *testing.T, path string) {
	l := Open(path, nil)
	defer l.Close()
	err := l.Err()
	me, ok := errors.AsType[*ModeError](err)
	if !ok {
		t.Fatalf("Err = %v, want a *ModeError", err)
	}
	if me.Mode != 0o666 || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("ModeError %+v, want mode 0666 and a permission error", me)
	}
	for _, want := range []string{path, "0666", "cannot be made 0600", "operation not permitted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err = %q, want it to say %q", err, want)
		}
	}
	if err := l.Write(Record{Phase: PhaseIntent}); err == nil {
		t.Error("Write to a file open to others succeeded")
	}
	t.Log("child checked the trail")
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
