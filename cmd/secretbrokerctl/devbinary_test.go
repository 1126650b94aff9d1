package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// devBinaryTimeout bounds the whole test: two builds, the broker's start,
// and the runs.
const devBinaryTimeout = 4 * time.Minute

// TestSyncAgainstDevBinary builds secretbroker and secretbrokerctl, starts
// "secretbroker --dev" on loopback ports it picks (learning the gRPC one
// from its banner), and runs "secretbrokerctl sync" against it as a script
// would: standard input and output not terminals. It skips when the go
// command is not on PATH, except under CI=true where it fails.
func TestSyncAgainstDevBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go command is needed to build the binaries: %v", err)
		}
		t.Skipf("the go command is not on PATH (%v): not building the binaries", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), devBinaryTimeout)
	defer cancel()
	dir := t.TempDir()
	build := exec.CommandContext(ctx, goBin, "build", "-o", dir+string(filepath.Separator),
		"github.com/secretbroker/secretbroker/cmd/secretbroker",
		"github.com/secretbroker/secretbroker/cmd/secretbrokerctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := cleanEnv()

	// Not tied to ctx: the cleanup stops it with an interrupt, as a
	// person would, and kills it only if it does not stop.
	broker := exec.Command(filepath.Join(dir, "secretbroker"), "--dev",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	broker.Env = env
	brokerErr, err := broker.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	addrCh := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(brokerErr)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if rest, ok := strings.CutPrefix(line, "  gRPC "); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					select {
					case addrCh <- f[0]:
					default:
					}
				}
			}
		}
		_, _ = io.Copy(io.Discard, brokerErr)
	}()
	t.Cleanup(func() {
		_ = broker.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- broker.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = broker.Process.Kill()
			<-done
		}
		<-drained
		if strings.Contains(logs.String(), plantedValue) {
			t.Errorf("the planted value reached the broker's output:\n%s", logs.String())
		}
	})
	var addr string
	select {
	case addr = <-addrCh:
	case <-ctx.Done():
		t.Fatalf("secretbroker --dev printed no gRPC address:\n%s", logs.String())
	}

	run := func(args ...string) result {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "secretbrokerctl"), append(args[:1:1], append([]string{"--addr", addr}, args[1:]...)...)...)
		cmd.Env = env
		cmd.Stdin = nil // the null device: not a terminal
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("%v: %v", args, err)
		}
		r := result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
		if strings.Contains(r.all(), plantedValue) {
			t.Errorf("%v printed the planted value:\n%s", args, r.all())
		}
		if strings.Contains(r.all(), "\r") || strings.Contains(r.all(), "[y/N]") {
			t.Errorf("%v drew a bar or prompted without a terminal:\n%s", args, r.all())
		}
		return r
	}

	scope := "repos/octo-org/hello-world/actions"
	both := writeFile(t, "both.env", []byte("DEV_ONE="+plantedValue+"\nDEV_TWO=dev-two-value\n"))
	one := writeFile(t, "one.env", []byte("DEV_ONE="+plantedValue+"\n"))

	r := run("sync", "--from-env-file", both, "--owner", "dev-test", scope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"DEV_ONE": "create", "DEV_TWO": "create"})
	wantContains(t, "stdout", r.stdout, "2 written, 0 deleted, 0 unchanged, 0 failed",
		"sync "+scope+": 2/2 done (2 written, 0 deleted, 0 unchanged, 0 failed; 0 foreign left alone)") // the operation's last progress line
	if strings.Contains(r.stderr, "does not run operations") {
		t.Errorf("secretbroker --dev ran no operation:\n%s", r.stderr)
	}

	r = run("sync", "--from-env-file", both, "--owner", "dev-test", scope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "0 written, 0 deleted, 2 unchanged, 0 failed")

	r = run("sync", "--from-env-file", one, "--owner", "dev-test", "--prune", scope)
	wantCode(t, r, exitUsage)
	wantContains(t, "stderr", r.stderr, "--yes")

	r = run("sync", "--from-env-file", one, "--owner", "dev-test", "--prune", "--yes", scope)
	wantCode(t, r, exitOK)
	wantPlan(t, r.stdout, map[string]string{"DEV_ONE": "unchanged", "DEV_TWO": "delete"})
	// The progress line counts the delete as deleted, never as written.
	wantContains(t, "stdout", r.stdout, "0 written, 1 deleted, 1 unchanged, 0 failed",
		"sync "+scope+": 2/2 done (0 written, 1 deleted, 1 unchanged, 0 failed; 0 foreign left alone)")

	r = run("drift", "--exit-code", scope)
	wantCode(t, r, exitOK)
	wantContains(t, "stdout", r.stdout, "no drift in "+scope)
}

// cleanEnv is the process's environment without SECRETBROKER_ variables,
// which would configure the broker or the client.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECRETBROKER_") {
			env = append(env, kv)
		}
	}
	return env
}
