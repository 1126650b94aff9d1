// Package redistest starts a real redis-server for tests: from PATH, on a
// free loopback port, without persistence, stopped when the test ends.
// Where redis-server is missing the test is skipped with a message naming
// the Debian package to install (redis-server), except when the
// environment has CI=true, where it fails.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Package is the Debian package that provides redis-server.
const Package = "redis-server"

// startTimeout bounds how long a redis-server may take to start.
const startTimeout = 10 * time.Second

// startAttempts bounds how many ports Start tries: a port free when it
// was picked can be taken by another process before redis-server binds
// it.
const startAttempts = 5

// errPortTaken is a redis-server that could not bind its port because
// another process holds it.
var errPortTaken = errors.New("port taken by another process")

// Server is one redis-server process of a test. Stop and Restart
// simulate a crash and a restart without persistence (empty). They may be
// called from inside a testing/synctest bubble: the process and the
// goroutines that watch it belong to a manager goroutine started by Start,
// outside any bubble, so that a running server never keeps a bubble's
// fake time from advancing.
type Server struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string

	tb   testing.TB
	path string
	port int

	reqs    chan bool  // to the manager: true start, false stop
	replies chan error // from the manager

	// Owned by the manager goroutine.
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server for tb and stops it at tb's cleanup. Call
// it outside any synctest bubble.
func Start(tb testing.TB) *Server {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		msg := fmt.Sprintf("redis-server is not in PATH: install the Debian package %s (apt-get install -y %s)", Package, Package)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg + "; CI=true requires it")
		}
		tb.Skip(msg)
	}
	return start(tb, path, freePort)
}

// start is Start with the port picker given: pick returns a loopback port
// that was free a moment ago. Where redis-server finds it taken, another
// port is picked, up to startAttempts times.
func start(tb testing.TB, path string, pick func() (int, error)) *Server {
	tb.Helper()
	s := &Server{tb: tb, path: path, reqs: make(chan bool), replies: make(chan error)}
	go s.manage()
	tb.Cleanup(func() {
		s.Stop()
		close(s.reqs)
	})
	var err error
	for range startAttempts {
		port, perr := pick()
		if perr != nil {
			tb.Fatalf("redistest: finding a free port: %v", perr)
		}
		// Set before the request: the manager reads them after it.
		s.port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.call(true); err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) {
			tb.Fatal(err)
		}
	}
	tb.Fatalf("redistest: %d ports in a row were taken before redis-server could bind them: %v", startAttempts, err)
	return nil
}

// freePort is a loopback port free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// manage runs the requests: the process is started and stopped here.
func (s *Server) manage() {
	for start := range s.reqs {
		if start {
			s.replies <- s.start()
			continue
		}
		if s.cmd != nil {
			_ = s.cmd.Process.Kill()
			<-s.done
			s.cmd = nil
		}
		s.replies <- nil
	}
}

func (s *Server) call(start bool) error {
	s.reqs <- start
	return <-s.replies
}

// Stop kills the server (SIGKILL: a crash); its data is gone. Stopping a
// stopped server does nothing.
func (s *Server) Stop() { _ = s.call(false) }

// Restart starts the stopped server again on the same port, empty. It
// cannot move to another port (its clients know the address): where
// another process took the port while the server was stopped, the test
// fails saying so.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.call(true); err != nil {
		if errors.Is(err, errPortTaken) {
			s.tb.Fatalf("redistest: Restart keeps port %d, and another process took it while the server was stopped: %v", s.port, err)
		}
		s.tb.Fatal(err)
	}
}

// start runs redis-server and waits until it says it accepts connections
// and answers PING.
func (s *Server) start() error {
	cmd := exec.Command(s.path,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: starting redis-server: %w", err)
	}
	ready := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		var tail []string
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if !signalled {
				tail = append(tail, line)
				if strings.Contains(line, "Ready to accept connections") {
					signalled = true
					ready <- nil
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
		err := cmd.Wait()
		if !signalled {
			ready <- exitedEarly(s.port, err, tail)
		}
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case err := <-ready:
		if err != nil {
			<-done
			return err
		}
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redistest: redis-server did not start within %v", startTimeout)
	}
	s.cmd, s.done = cmd, done
	if err := ping(s.Addr); err != nil {
		_ = cmd.Process.Kill()
		<-done
		s.cmd = nil
		return err
	}
	return nil
}

// exitedEarly is the error of a redis-server that exited before it was
// ready, with its output; errPortTaken where it could not bind its port.
func exitedEarly(port int, exit error, tail []string) error {
	out := strings.Join(tail, " | ")
	if strings.Contains(out, "Address already in use") {
		return fmt.Errorf("redistest: redis-server could not bind 127.0.0.1:%d: %w (%v): %s", port, errPortTaken, exit, out)
	}
	return fmt.Errorf("redistest: redis-server exited before it was ready (%v): %s", exit, out)
}

// ping sends PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, startTimeout)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(startTimeout))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return fmt.Errorf("redistest: PING: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("redistest: PING: %w", err)
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redistest: PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
