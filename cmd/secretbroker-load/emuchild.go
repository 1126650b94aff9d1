package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// The compare scenario runs the GitHub emulator in a child process of its
// own, this same executable started with emulatorChildEnv set, so that
// the CPU time of the load process (the clients) and of the broker does
// not include the emulator's. The child reads its token from
// emulatorTokenEnv (never from its arguments), serves the emulator
// without rate limits on one loopback port and its counters on another,
// prints "API-URL STATS-URL" on a line to stdout, and exits when its
// stdin is closed.
const (
	emulatorChildEnv = "SECRETBROKER_LOAD_EMULATOR_CHILD"
	emulatorTokenEnv = "SECRETBROKER_LOAD_EMULATOR_TOKEN"
	emulatorStartMax = 30 * time.Second
)

// emulatorChildStats is what the child's stats port answers.
type emulatorChildStats struct {
	Connections int64 `json:"connections"` // connections the API port accepted
	Requests    int   `json:"requests"`    // requests the emulator served
}

// isEmulatorChild says whether this process was started as the compare
// scenario's emulator.
func isEmulatorChild() bool { return os.Getenv(emulatorChildEnv) == "1" }

// emulatorChildMain serves the emulator until stdin closes.
func emulatorChildMain(stdin io.Reader, stdout io.Writer) error {
	em := emulator.New(emulator.Options{Token: os.Getenv(emulatorTokenEnv)})
	em.SeedDemo()
	var lc net.ListenConfig
	api, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("emulator listener: %w", err)
	}
	stats, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("emulator stats listener: %w", err)
	}
	apiSrv := &http.Server{Handler: em, ConnState: em.ConnState, ReadHeaderTimeout: 10 * time.Second}
	statsSrv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(emulatorChildStats{Connections: em.Connections(), Requests: em.Stats().Requests})
	})}
	go func() { _ = apiSrv.Serve(api) }()
	go func() { _ = statsSrv.Serve(stats) }()
	if _, err := fmt.Fprintf(stdout, "http://%s http://%s\n", api.Addr(), stats.Addr()); err != nil {
		return fmt.Errorf("writing the addresses: %w", err)
	}
	_, _ = io.Copy(io.Discard, stdin) // until the parent closes it or exits
	_ = apiSrv.Close()
	_ = statsSrv.Close()
	return nil
}

// emulatorProc is a running emulator child.
type emulatorProc struct {
	cmd      *exec.Cmd
	pid      int
	url      string // the API's base URL
	statsURL string
	stdin    io.Closer
	client   *http.Client // for the stats port only
	done     chan struct{}
}

// startEmulatorChild starts this executable as the emulator, accepting
// token. The caller must call stop.
func startEmulatorChild(ctx context.Context, token string) (*emulatorProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(childEnv(os.Environ()), emulatorChildEnv+"=1", emulatorTokenEnv+"="+token)
	// The child's own stderr: kept (the last few KiB) for an error, not
	// copied into stderr, which this process writes to meanwhile.
	cmd.Stderr = &tailBuffer{max: 4 << 10}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("emulator stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("emulator stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the emulator: %w", err)
	}
	e := &emulatorProc{cmd: cmd, pid: cmd.Process.Pid, stdin: stdin, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(e.done)
	}()
	var line string
	select {
	case line = <-lines:
	case <-ctx.Done():
		e.stop()
		return nil, ctx.Err()
	case <-time.After(emulatorStartMax):
		e.stop()
		return nil, errors.New("the emulator did not start in time")
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		e.stop()
		return nil, fmt.Errorf("the emulator printed %q, not its addresses; its stderr: %q", line, cmd.Stderr.(*tailBuffer).String())
	}
	e.url, e.statsURL = f[0], f[1]
	return e, nil
}

// stats reads the child's counters.
func (e *emulatorProc) stats(ctx context.Context) (emulatorChildStats, error) {
	var s emulatorChildStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.statsURL, nil)
	if err != nil {
		return s, fmt.Errorf("emulator stats: %w", err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("emulator stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("emulator stats: %w", err)
	}
	return s, nil
}

// stop closes the child's stdin, which ends it, and waits; it kills the
// child if it has not exited after exitWait.
func (e *emulatorProc) stop() {
	_ = e.stdin.Close()
	select {
	case <-e.done:
	case <-time.After(exitWait):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
