package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
)

// runLabelled runs run with cfg under a pprof label naming the test, which
// every goroutine it starts inherits, and returns the stacks of the
// goroutines still running with that label once it has returned, and its
// error.
func runLabelled(t *testing.T, cfg Config) (left string, err error) {
	t.Helper()
	return runLabelledWith(t, t.Context(), cfg, slog.New(slog.DiscardHandler))
}

// runLabelledWith is runLabelled with run's context and logger.
func runLabelledWith(t *testing.T, ctx context.Context, cfg Config, logger *slog.Logger) (left string, err error) {
	t.Helper()
	label := "failed-start:" + t.Name()
	pprof.Do(ctx, pprof.Labels("test", label), func(ctx context.Context) {
		err = run(ctx, cfg, logger, io.Discard, nil)
	})
	var prof bytes.Buffer
	if perr := pprof.Lookup("goroutine").WriteTo(&prof, 1); perr != nil {
		t.Fatal(perr)
	}
	var recs []string
	for rec := range strings.SplitSeq(prof.String(), "\n\n") {
		// os/signal's loop is the process's, started by its first
		// signal.Notify (main's, before run), whoever calls it.
		if strings.Contains(rec, `"`+label+`"`) && !strings.Contains(rec, "os/signal.loop") {
			recs = append(recs, rec)
		}
	}
	return strings.Join(recs, "\n\n"), err
}

// TestFailedStartActsOnNothing: a start that fails (a port in use, an
// unreadable certificate, an audit key missing) leaves nothing running and
// does nothing first. The listeners and the TLS material were set up last,
// after the state store had been opened and the operations it held
// resumed (sending their writes to GitHub: a run of the binary on a busy
// --admin-addr logged "operations resumed", wrote an item, then exited 1),
// and after the front door had started the policy file's watcher and
// SIGHUP's loop, which a failure after them left running.
func TestFailedStartActsOnNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	callers := writeFile(t, "callers.yaml", "callers:\n  - name: deployer\n    token_sha256: "+sha256Hex(deployerToken)+"\n")
	policy := writeFile(t, "policy.yaml", accessPolicy)

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "gRPC port in use", args: []string{"--grpc-addr=" + busy.Addr().String()}, wantErr: "gRPC listener"},
		{name: "admin port in use", args: []string{"--admin-addr=" + busy.Addr().String()}, wantErr: "admin listener"},
		{name: "certificate missing", args: []string{"--tls-cert-file=/nonexistent/tls.crt", "--tls-key-file=/nonexistent/tls.key"}, wantErr: "TLS"},
		{name: "audit key missing", args: []string{"--audit-hmac-key-file=/nonexistent/audit-key"}, wantErr: "audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			stateDir, auditLog := filepath.Join(dir, "state"), filepath.Join(dir, "audit.log")
			args := append([]string{
				"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0",
				"--upstream-url=http://127.0.0.1:1", "--shutdown-timeout=2s",
				"--callers-file=" + callers, "--policy-file=" + policy,
				"--state-dir=" + stateDir, "--audit-log=" + auditLog,
			}, tt.args...)
			cfg, err := loadConfig(args, envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			left, err := runLabelled(t, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run = %v, want an error about the %s", err, tt.wantErr)
			}
			if left != "" {
				t.Errorf("goroutines left running after the failed start:\n%s", left)
			}
			if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
				t.Errorf("the state store was opened before the start failed (%v), and the operations it holds resumed", err)
			}
			if _, err := os.Stat(auditLog); !os.IsNotExist(err) {
				t.Errorf("the audit trail was opened before the start failed (%v)", err)
			}
		})
	}
}
