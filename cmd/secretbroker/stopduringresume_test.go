package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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
	cfg, err := loadConfig([]string{"--upstream-url=http://127.0.0.1:1", "--state-dir=" + dir, "--shutdown-timeout=1ms",
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
// runLabelledWith returns it) that are not runs of operations the
// runner's Close has let go: a run that Close no longer waits for may
// still be returning (in untrack, after telling Close, or in its last
// frame) when run has returned, and is not left running.
func stillRunning(left string) string {
	var recs []string
	for rec := range strings.SplitSeq(left, "\n\n") {
		returning := true
		for line := range strings.SplitSeq(rec, "\n") {
			if !strings.HasPrefix(line, "#\t") {
				continue // the count and addresses, the labels
			}
			if !strings.Contains(line, "operation.(*Runner).run+") && !strings.Contains(line, "operation.(*Runner).untrack+") &&
				!strings.Contains(line, "\tsync.") && !strings.Contains(line, "\truntime.") && !strings.Contains(line, "\tinternal/") {
				returning = false
			}
		}
		if !returning {
			recs = append(recs, rec)
		}
	}
	return strings.Join(recs, "\n\n")
}
