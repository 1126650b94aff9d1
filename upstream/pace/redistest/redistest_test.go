package redistest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// A started server answers PING; stopped, it does not; restarted, it
// answers on the same address.
func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("PING answered after Stop")
	}
	s.Restart()
	if err := ping(s.Addr); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}

// fakeTB records a Skip or a Fatal and ends the goroutine, as testing does.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) {
	f.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

// Without redis-server on PATH, Start skips naming the Debian package,
// and under CI=true fails instead.
func TestMissingRedisServer(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", ci)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(f)
			}()
			<-done
			msg := f.skipped
			if ci == "true" {
				msg = f.failed
				if f.skipped != "" {
					t.Errorf("skipped under CI=true: %s", f.skipped)
				}
			} else if f.failed != "" {
				t.Errorf("failed without CI: %s", f.failed)
			}
			if !strings.Contains(msg, "Debian package redis-server") {
				t.Errorf("message %q does not name the Debian package", msg)
			}
		})
	}
}
