package access

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// logRecorder is a slog.Handler that keeps every record as one line.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

// take returns the lines logged since the last call.
func (r *logRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	lines := r.lines
	r.lines = nil
	return lines
}

// policyWith returns a policy file granting verb on resource to caller.
func policyWith(caller, verb, resource string) string {
	return fmt.Sprintf("rules:\n  - callers: [%q]\n    verbs: [%s]\n    resources: [%q]\n", caller, verb, resource)
}

// brokenPolicy is an invalid policy file holding a planted value, which no
// log line or error may show.
const (
	planted      = "PLANTED-c2VjcmV0LXZhbHVl"
	brokenPolicy = "# " + planted + "\nrules:\n  - callers: [\"token:" + planted + "\"]\n    verbs: [read]\n    resourcez: [\"orgs/acme/**\"]\n"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTestWatcher(t *testing.T, content string) (*Watcher, string, *logRecorder) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, content)
	logs := &logRecorder{}
	w, err := NewWatcher(path, slog.New(logs))
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	return w, path, logs
}

// wantLogs checks that the lines logged since the last check are, in
// order, at the given levels and contain the given substrings, and that
// none shows the planted value.
func wantLogs(t *testing.T, logs *logRecorder, want ...string) {
	t.Helper()
	got := logs.take()
	if len(got) != len(want) {
		t.Fatalf("logged %d lines %q, want %d like %q", len(got), got, len(want), want)
	}
	for i, line := range got {
		if !strings.Contains(line, want[i]) {
			t.Errorf("log line %q does not contain %q", line, want[i])
		}
		if strings.Contains(line, planted) {
			t.Errorf("log line %q shows the file's content", line)
		}
	}
}

const (
	ciA = "token:ci-a"
	ciB = "token:ci-b"
	res = "orgs/acme/actions/secrets/X"
)

func TestNewWatcher(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewWatcher(filepath.Join(dir, "missing.yaml"), nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("NewWatcher on a missing file: error %v, want one naming the file", err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	writeFile(t, broken, brokenPolicy)
	_, err := NewWatcher(broken, nil)
	if err == nil || !strings.Contains(err.Error(), "resourcez") {
		t.Errorf("NewWatcher on an invalid file: error %v, want one naming the unknown field", err)
	} else if strings.Contains(err.Error(), planted) {
		t.Errorf("error %q shows the file's content", err)
	}

	w, _, logs := newTestWatcher(t, policyWith(ciA, Read, res))
	if w.Policy().Rules() != 1 || !w.Allow(ciA, Read, res) || w.Allow(ciB, Read, res) {
		t.Error("the watcher does not hold the file's policy")
	}
	if !w.AllowSome(ciA, Read, "orgs/acme/actions") || w.AllowEvery(ciA, Read, "orgs/acme/actions") {
		t.Error("the watcher's AllowSome and AllowEvery do not follow the file's policy")
	}
	wantLogs(t, logs) // the caller logs the start
}

func TestReload(t *testing.T) {
	w, path, logs := newTestWatcher(t, policyWith(ciA, Read, res))

	writeFile(t, path, policyWith(ciB, Read, res))
	if err := w.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if w.Allow(ciA, Read, res) || !w.Allow(ciB, Read, res) {
		t.Error("Reload did not replace the policy")
	}
	wantLogs(t, logs, "INFO access policy loaded path="+path+" rules=1")

	good := w.Policy()
	writeFile(t, path, brokenPolicy)
	err := w.Reload()
	if err == nil || !strings.Contains(err.Error(), "resourcez") {
		t.Errorf("Reload of a broken file: error %v, want one naming the unknown field", err)
	} else if strings.Contains(err.Error(), planted) {
		t.Errorf("error %q shows the file's content", err)
	}
	if w.Policy() != good || !w.Allow(ciB, Read, res) {
		t.Error("a broken file replaced the last good policy")
	}
	wantLogs(t, logs, "WARN access policy not reloaded, keeping the last good policy")

	// Reload re-reads even when nothing changed.
	if err := w.Reload(); err == nil {
		t.Error("Reload of the same broken file succeeded")
	}
	wantLogs(t, logs, "WARN")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Reload of a missing file: error %v, want no such file", err)
	}
	if !w.Allow(ciB, Read, res) {
		t.Error("a missing file replaced the last good policy")
	}
	wantLogs(t, logs, "WARN")

	writeFile(t, path, "rules: []\n")
	if err := w.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if w.Allow(ciB, Read, res) || w.Policy().Rules() != 0 {
		t.Error("an empty policy did not replace the last one")
	}
	wantLogs(t, logs, "INFO access policy loaded path="+path+" rules=0")
}

// TestRun drives Run's ticker with fake time: a change is picked up on the
// next tick, an unchanged file is not reloaded, and a broken file is
// logged once per distinct content and never replaces the good policy.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Second
		w, path, logs := newTestWatcher(t, policyWith(ciA, Read, res))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			w.Run(ctx, interval)
			close(done)
		}()
		// tick waits out one interval and for Run to finish its check.
		tick := func() {
			time.Sleep(interval)
			synctest.Wait()
		}

		writeFile(t, path, policyWith(ciB, Write, res))
		time.Sleep(interval - time.Second)
		synctest.Wait()
		if !w.Allow(ciA, Read, res) {
			t.Error("the policy changed before the tick")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if w.Allow(ciA, Read, res) || !w.Allow(ciB, Write, res) {
			t.Error("Run did not reload the changed file on its tick")
		}
		wantLogs(t, logs, "INFO access policy loaded path="+path+" rules=1")

		tick()
		tick()
		wantLogs(t, logs) // unchanged content: no reload

		good := w.Policy()
		writeFile(t, path, brokenPolicy)
		for range 3 {
			tick()
		}
		if w.Policy() != good {
			t.Error("a broken file replaced the last good policy")
		}
		wantLogs(t, logs, "WARN access policy not reloaded") // once for three ticks

		writeFile(t, path, brokenPolicy+"# another broken version\n")
		tick()
		tick()
		wantLogs(t, logs, "WARN access policy not reloaded") // once per distinct content

		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		tick()
		tick()
		wantLogs(t, logs, "WARN access policy not reloaded") // read errors too
		if w.Policy() != good {
			t.Error("a missing file replaced the last good policy")
		}

		writeFile(t, path, policyWith(ciA, Delete, res))
		tick()
		if !w.Allow(ciA, Delete, res) || w.Allow(ciB, Write, res) {
			t.Error("Run did not recover from a broken file")
		}
		wantLogs(t, logs, "INFO access policy loaded")

		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return when its context was done")
		}
	})
}

// TestRunSymlinkSwap updates the file the way Kubernetes updates a mounted
// ConfigMap: the path is a symlink through "..data", which is atomically
// renamed to point at a new timestamped directory.
func TestRunSymlinkSwap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		version := func(name, content string) {
			if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, name, "policy.yaml"), content)
			// ln -s name ..data_tmp && mv ..data_tmp ..data
			tmp := filepath.Join(dir, "..data_tmp")
			if err := os.Symlink(name, tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		version("..2026_01_01_00_00_00.1", policyWith(ciA, Read, res))
		path := filepath.Join(dir, "policy.yaml")
		if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
			t.Fatal(err)
		}
		logs := &logRecorder{}
		w, err := NewWatcher(path, slog.New(logs))
		if err != nil {
			t.Fatalf("NewWatcher: %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go w.Run(ctx, time.Minute)

		// The new version's file keeps the old one's modification time, so
		// only a content comparison notices.
		old := filepath.Join(dir, "..2026_01_01_00_00_00.1", "policy.yaml")
		info, err := os.Stat(old)
		if err != nil {
			t.Fatal(err)
		}
		version("..2026_01_01_00_05_00.2", policyWith(ciB, Read, res))
		if err := os.Chtimes(filepath.Join(dir, "..2026_01_01_00_05_00.2", "policy.yaml"), info.ModTime(), info.ModTime()); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
			t.Fatal(err)
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		if w.Allow(ciA, Read, res) || !w.Allow(ciB, Read, res) {
			t.Error("Run did not follow the ..data swap")
		}
		wantLogs(t, logs, "INFO access policy loaded")
	})
}

// TestConcurrentAllow checks under -race that readers never block on or
// race with reloads.
func TestConcurrentAllow(t *testing.T) {
	w, path, _ := newTestWatcher(t, policyWith(ciA, Read, res))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Every policy written below allows ciA to read.
				if !w.Allow(ciA, Read, res) {
					t.Error("a reader saw a policy denying ciA")
					return
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, path, policyWith(ciA, Read, res)+fmt.Sprintf("# version %d\n", i))
		if err := w.Reload(); err != nil {
			t.Errorf("Reload: %v", err)
		}
		w.check()
	}
	close(stop)
	wg.Wait()
}
