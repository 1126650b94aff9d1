package redistest

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
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

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
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

// hold listens on a loopback port until the test's end: a port another
// process took.
func hold(t *testing.T, port int) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func redisServer(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not in PATH")
	}
	return path
}

// A port taken between its pick and redis-server's bind: Start picks
// another and the server answers there.
func TestStartPortTaken(t *testing.T) {
	path := redisServer(t)
	taken := hold(t, 0)
	picks := 0
	pick := func() (int, error) {
		picks++
		if picks == 1 {
			return taken, nil
		}
		return freePort()
	}
	s := start(t, path, pick)
	if picks != 2 {
		t.Errorf("%d ports picked, want 2", picks)
	}
	if s.port == taken {
		t.Fatalf("the server is on the taken port %d", taken)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatal(err)
	}
}

// Every port taken: Start gives up after startAttempts, saying why.
func TestStartEveryPortTaken(t *testing.T) {
	path := redisServer(t)
	taken := hold(t, 0)
	picks := 0
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start(f, path, func() (int, error) { picks++; return taken, nil })
	}()
	<-done
	if picks != startAttempts {
		t.Errorf("%d ports picked, want %d", picks, startAttempts)
	}
	if !strings.Contains(f.failed, "were taken") || !strings.Contains(f.failed, "Address already in use") {
		t.Errorf("failure %q does not say the ports were taken", f.failed)
	}
}

// A port taken while the server is stopped: Restart keeps its port, so it
// fails, naming the port and that it was taken.
func TestRestartPortTaken(t *testing.T) {
	f := &fakeTB{TB: t}
	s := Start(f)
	s.Stop()
	hold(t, s.port)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Restart()
	}()
	<-done
	want := "Restart keeps port " + strconv.Itoa(s.port) + ", and another process took it"
	if !strings.Contains(f.failed, want) {
		t.Errorf("failure %q, want it to say %q", f.failed, want)
	}
}
