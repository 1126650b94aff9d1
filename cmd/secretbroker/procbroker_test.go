package main

// Helpers for tests that run the broker as a child process: building the
// binary, starting it on loopback ports of the kernel's choosing (read
// back from its "secretbroker serving" log line), waiting until /readyz
// answers, polling /readyz, and killing it at cleanup.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the process helpers: guards against a hung test only.
const (
	procBuildTimeout = 3 * time.Minute
	procStartTimeout = 30 * time.Second
	procPollInterval = 25 * time.Millisecond
	procHTTPTimeout  = time.Second
	procExitTimeout  = 10 * time.Second
	procLogTail      = 40
)

// buildBrokerBinary builds ./cmd/secretbroker (without -race) into a
// temporary directory of t and returns its path. Without go in PATH the
// test is skipped, except under CI=true, where it fails.
func buildBrokerBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		msg := "the go command is not in PATH: cannot build the broker binary"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true requires it")
		}
		t.Skip(msg)
	}
	bin := filepath.Join(t.TempDir(), "secretbroker")
	ctx, cancel := context.WithTimeout(t.Context(), procBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/secretbroker/secretbroker/cmd/secretbroker")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("building the broker: %v\n%s", err, out.String())
	}
	return bin
}

// procLog collects a child broker's log lines (JSON, one per line) and
// reads the listen addresses from its "secretbroker serving" line.
type procLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	serving chan procAddrs // gets the addresses once
	sent    bool
}

// procAddrs are a broker's listen addresses.
type procAddrs struct{ grpc, http, admin string }

func newProcLog() *procLog { return &procLog{serving: make(chan procAddrs, 1)} }

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			break
		}
		line := string(append(l.partial, p[:i]...))
		l.partial = l.partial[:0]
		p = p[i+1:]
		l.lines = append(l.lines, line)
		if l.sent {
			continue
		}
		var rec struct {
			Msg   string `json:"msg"`
			GRPC  string `json:"grpc_addr"`
			HTTP  string `json:"http_addr"`
			Admin string `json:"admin_addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "secretbroker serving" {
			l.sent = true
			l.serving <- procAddrs{grpc: rec.GRPC, http: rec.HTTP, admin: rec.Admin}
		}
	}
	return n, nil
}

// text is every line so far.
func (l *procLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// tail is the last procLogTail lines.
func (l *procLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-procLogTail):], "\n")
}

// procBroker is a running broker child process.
type procBroker struct {
	name  string
	addrs procAddrs
	log   *procLog
	cmd   *exec.Cmd
	done  chan struct{} // closed once the process has exited
	err   error         // Wait's, set before done is closed
}

// procEnv is the test's environment without what would change the
// child's configuration behind the flags' back.
func procEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "SECRETBROKER_") || strings.HasPrefix(name, "OTEL_") ||
			slices.Contains([]string{"GITHUB_TOKEN", envRedisPassword}, name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// startProcBroker starts bin with args (listeners on 127.0.0.1:0 are
// added first, so args may override them) and waits until its /readyz
// answers 200. The process is killed at t's cleanup.
func startProcBroker(t *testing.T, name, bin string, args ...string) *procBroker {
	t.Helper()
	b := &procBroker{name: name, log: newProcLog(), done: make(chan struct{})}
	b.cmd = exec.Command(bin, slices.Concat([]string{
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--log-format=json",
	}, args)...)
	b.cmd.Env = procEnv()
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("%s: starting the broker: %v", name, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		b.kill(t)
		if t.Failed() {
			t.Logf("%s's last log lines:\n%s", name, b.log.tail())
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), procStartTimeout)
	defer cancel()
	select {
	case b.addrs = <-b.log.serving:
	case <-b.done:
		t.Fatalf("%s exited before serving (%v):\n%s", name, b.err, b.log.tail())
	case <-ctx.Done():
		t.Fatalf("%s did not log that it serves within %v:\n%s", name, procStartTimeout, b.log.tail())
	}
	b.pollReadyz(ctx, t, "ready", func(code int, _ string) bool { return code == http.StatusOK })
	return b
}

// stop sends SIGTERM unless the process has exited, and waits for it to
// end: its shutdown writes the log lines still pending in its batcher,
// which a SIGKILL would lose.
func (b *procBroker) stop(t *testing.T) {
	t.Helper()
	b.end(t, syscall.SIGTERM)
}

// kill sends SIGKILL unless the process has exited, and waits for it.
func (b *procBroker) kill(t *testing.T) {
	t.Helper()
	b.end(t, syscall.SIGKILL)
}

// end sends sig unless the process has exited, and waits for it to exit.
func (b *procBroker) end(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-b.done:
		return
	default:
	}
	if err := b.cmd.Process.Signal(sig); err != nil {
		t.Errorf("%s: %v: %v", b.name, sig, err)
	}
	select {
	case <-b.done:
	case <-time.After(procExitTimeout):
		t.Errorf("%s: still running %v after %v", b.name, procExitTimeout, sig)
	}
}

func (b *procBroker) readyz(ctx context.Context) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, procHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addrs.admin+"/readyz", nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// pollReadyz asks /readyz every procPollInterval until ok accepts the
// answer, and fails t, naming what was awaited and the last answer, when
// ctx ends first or the process exits. It returns the accepted body.
func (b *procBroker) pollReadyz(ctx context.Context, t *testing.T, what string, ok func(code int, body string) bool) string {
	t.Helper()
	tick := time.NewTicker(procPollInterval)
	defer tick.Stop()
	last := "no answer yet"
	for {
		code, body := b.readyz(ctx)
		if ok(code, body) {
			return body
		}
		last = fmt.Sprintf("%d %q", code, body)
		select {
		case <-b.done:
			t.Fatalf("%s exited (%v) while waiting for /readyz: %s; last answer %s", b.name, b.err, what, last)
		case <-ctx.Done():
			t.Fatalf("%s: /readyz never answered %s: last answer %s", b.name, what, last)
		case <-tick.C:
		}
	}
}
