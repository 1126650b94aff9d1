package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/secretbroker/secretbroker/service/state"
)

// TestStopDuringResumeClosesTheRunner: a signal while the start resumes
// the operations a previous process left (more than a page of them: the
// resume has started the first page's when it reads the next, and stops
// there) stops the start, and the operations it had started are stopped
// with it, their runner closed before the state store: none runs on
// after run returned. The runner's close was deferred only once the
// resume had worked, so they ran on, against a closed store, with no
// one to stop them.
func TestStopDuringResumeClosesTheRunner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := state.OpenBolt(dir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 101 // more than the resume's page of 100
	for i := range n {
		op := &state.Operation{ID: fmt.Sprintf("op%03d", i), Kind: state.KindBatchPutSecrets, Owner: "x",
			Pending: []state.PendingItem{{Name: "repos/octo/hello/actions/secrets/Q", Value: []byte("v")}}}
		op.Metadata.Total = 1
		if err := st.PutOperation(t.Context(), op); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// GitHub holds every request until the test ends: an item started
	// stays in flight until it is cut.
	release := make(chan struct{})
	github := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "held by the test", http.StatusBadGateway)
	}))
	t.Cleanup(github.Close)
	t.Cleanup(func() { close(release) }) // before github.Close, which waits for the held requests
	cfg, err := loadConfig([]string{"--upstream-url=" + github.URL, "--state-dir=" + dir, "--shutdown-timeout=1ms",
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0"},
		envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs syncBuffer
	h := onMessage{Handler: slog.NewTextHandler(&logs, nil), prefix: "operation resumed", do: cancel}
	left, err := runLabelledWith(t, ctx, cfg, slog.New(h))
	if err != nil {
		t.Fatalf("run = %v, want nil (stopped before serving)\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "stopped before serving") {
		t.Errorf("log does not say it stopped before serving:\n%s", logs.String())
	}
	if ran := stillRunning(left); ran != "" {
		t.Errorf("operations left running after the start ended:\n%s", ran)
	}
}

// stillRunning returns the records of goroutine profile left (as
// runLabelledWith returns it) that run an operation's item, or wait for
// one: those with a frame of the broker's code but for the last frames
// of a run or of an item's goroutine, which Close no longer waits for
// once they have said they are done (they may still be returning when
// run has returned). The HTTP client's own goroutines are not counted.
func stillRunning(left string) string {
	returning := []string{"operation.(*Runner).run+", "operation.(*Runner).untrack+", "operation.(*Runner).runItemFlushing.func1+"}
	var recs []string
	for rec := range strings.SplitSeq(left, "\n\n") {
		running := false
		for line := range strings.SplitSeq(rec, "\n") {
			if strings.HasPrefix(line, "#\t") && strings.Contains(line, "github.com/secretbroker/secretbroker/") &&
				!slices.ContainsFunc(returning, func(f string) bool { return strings.Contains(line, f) }) {
				running = true
			}
		}
		if running {
			recs = append(recs, rec)
		}
	}
	return strings.Join(recs, "\n\n")
}
