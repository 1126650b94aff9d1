package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/service/state"
)

// lockWaitMsg is the start of the line the broker logs once it waits for
// its state file's lock, which another process holds: a step of its start
// that a test can hold it in for as long as the lock wait lasts
// (--state-lock-timeout), by holding the lock.
const lockWaitMsg = "state store: waiting for the lock on its file"

// heldStateDir returns a --state-dir whose file's lock the test holds
// until its cleanup.
func heldStateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	st, err := state.OpenBolt(dir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return dir
}

// onMessage is a slog.Handler that calls do for each record whose
// message starts with prefix.
type onMessage struct {
	slog.Handler
	prefix string
	do     func()
}

func (h onMessage) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.do()
	}
	return h.Handler.Handle(ctx, r)
}

func (h onMessage) WithAttrs(as []slog.Attr) slog.Handler {
	return onMessage{h.Handler.WithAttrs(as), h.prefix, h.do}
}

func (h onMessage) WithGroup(name string) slog.Handler {
	return onMessage{h.Handler.WithGroup(name), h.prefix, h.do}
}

// TestStopDuringStart: a signal while the broker starts (here: while it
// waits for its state file's lock, which the test holds, or before run
// begins) ends the start where it is, leaves nothing running, says it stopped before serving and
// is no failure: run returns nil, as after a graceful shutdown. It made
// the start fail ("context canceled", exit 1) once it had reached the
// operations' resume, or waited out the lock and failed on it. Without
// the signal, the lock held past the wait is still a failed start.
func TestStopDuringStart(t *testing.T) {
	for _, tc := range []struct {
		name        string
		held        bool // the state file's lock held by the test
		signal      bool // a signal once the broker waits for the lock
		signalFirst bool // a signal before run starts (the state in memory)
		wantErr     string
	}{
		{name: "signal while the lock is held", held: true, signal: true},
		{name: "signal before the start", signalFirst: true},
		{name: "lock held past the wait", held: true, wantErr: "locked by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--upstream-url=http://127.0.0.1:1",
				"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"}
			if tc.held {
				// Past the wait only if no signal ends it: the signal
				// has no deadline to beat.
				wait := "--state-lock-timeout=10m"
				if !tc.signal {
					wait = "--state-lock-timeout=50ms"
				}
				args = append(args, "--state-dir="+heldStateDir(t), wait)
			}
			cfg, err := loadConfig(args, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var logs strings.Builder
			var h slog.Handler = slog.NewTextHandler(&logs, nil)
			if tc.signal {
				h = onMessage{Handler: h, prefix: lockWaitMsg, do: cancel}
			}
			if tc.signalFirst {
				cancel()
			}
			left, err := runLabelledWith(t, ctx, cfg, slog.New(h))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("run = %v, want error %q\n%s", err, tc.wantErr, logs.String())
			}
			if left != "" {
				t.Errorf("goroutines left running after the start ended:\n%s", left)
			}
			if got, want := strings.Contains(logs.String(), "stopped before serving"), tc.wantErr == ""; got != want {
				t.Errorf("log says it stopped before serving: %t, want %t\n%s", got, want, logs.String())
			}
			if strings.Contains(logs.String(), "secretbroker serving") {
				t.Errorf("it served:\n%s", logs.String())
			}
		})
	}
}

// TestSignalDuringStartExitsZero: the binary sent SIGTERM while it starts
// (held in its state file's lock wait) exits 0, saying it stopped before
// serving, where it exited 1 as crashed; a start that fails (the lock
// held past the wait) still exits 1.
func TestSignalDuringStartExitsZero(t *testing.T) {
	bin := buildBrokerBinary(t)
	for _, tc := range []struct {
		name     string
		signal   bool
		wait     string // --state-lock-timeout: the signal has no deadline to beat
		wantCode int
		wantLog  string
	}{
		{name: "SIGTERM while the lock is held", signal: true, wait: "10m", wantCode: 0, wantLog: "stopped before serving"},
		{name: "lock held past the wait", wait: "50ms", wantCode: 1, wantLog: "locked by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := newProcLog()
			cmd := exec.Command(bin, "--dev", "--state-dir="+heldStateDir(t), "--state-lock-timeout="+tc.wait, "--log-format=json",
				"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0")
			cmd.Env = procEnv()
			cmd.Stdout, cmd.Stderr = log, log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				if cmd.ProcessState == nil {
					_ = cmd.Process.Kill()
					<-done
				}
			})
			ctx, cancel := context.WithTimeout(t.Context(), procStartTimeout)
			defer cancel()
			var err error
			exited := false
			if tc.signal {
				// Wait for the line that says it waits for the lock
				// (its log is read as it comes; this polls it).
				tick := time.NewTicker(procPollInterval)
				defer tick.Stop()
				for !strings.Contains(log.text(), lockWaitMsg) {
					select {
					case err = <-done:
						t.Fatalf("exited (%v) before waiting for the lock:\n%s", err, log.tail())
					case <-ctx.Done():
						t.Fatalf("never logged that it waits for the lock:\n%s", log.tail())
					case <-tick.C:
					}
				}
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err = <-done:
				exited = true
			case <-ctx.Done():
			}
			if !exited {
				t.Fatalf("still running after %v:\n%s", procStartTimeout, log.tail())
			}
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, tc.wantCode, log.tail())
			}
			if !strings.Contains(log.text(), tc.wantLog) {
				t.Errorf("log does not say %q:\n%s", tc.wantLog, log.tail())
			}
			if strings.Contains(log.text(), "secretbroker serving") {
				t.Errorf("it served:\n%s", log.tail())
			}
		})
	}
}
