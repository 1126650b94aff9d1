// Command secretbroker serves secretbroker.v1.SecretService: it writes
// GitHub Actions and Agents secrets for internal callers, which send a
// plaintext value that the broker seals with the scope's public key before
// it writes it to GitHub. The API is served over gRPC (with health checks
// and server reflection, whose descriptors keep the proto's comments for
// grpcurl describe) and as JSON through grpc-gateway, with the OpenAPI
// document at /openapi.json.
//
// Every flag has a matching SECRETBROKER_* environment variable; run
// "secretbroker -h" for the list. The GitHub token is read from
// --upstream-token-file, else from GITHUB_TOKEN, and is never a flag value.
//
// With --dev the broker runs against an embedded GitHub emulator seeded
// with demo data, listens on loopback only, and prints copy-paste grpcurl
// and curl commands:
//
//	go run ./cmd/secretbroker --dev
//
// An admin listener (--admin-addr, plain HTTP) serves /healthz, /readyz
// and /metrics (Prometheus' text format), and /debug/pprof/ with
// --admin-pprof. The gRPC health service (and the gateway's /healthz)
// follows /readyz: NOT_SERVING until /readyz answers 200 (the GitHub
// credential verified), SERVING from then on, shedding or not.
//
// SIGINT or SIGTERM starts a graceful shutdown: /readyz turns 503 and
// health checks NOT_SERVING, in-flight calls drain for up to
// --shutdown-timeout, and the process exits 0. One before the broker
// serves stops the start where it is and exits 0 too ("stopped before
// serving"); a start that fails exits 1. A second signal kills it at
// once. SIGHUP reads --policy-file again, and never ends the process.
//
// "secretbroker --version" prints the version, from the binary's build
// information (module version, VCS revision, Go version), and exits 0; the
// start-up log line carries the same string as its version attribute.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/secretbroker/secretbroker/cmd/internal/heapfloor"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/liblog"
	"github.com/secretbroker/secretbroker/cmd/secretbroker/internal/logbatch"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling so that a
	// second one kills the process during a slow shutdown.
	go func() {
		<-ctx.Done()
		stop()
	}()
	// SIGHUP asks for the policy file to be read again (run's reload
	// loop listens for it while it serves). It must never end the broker:
	// not without a policy file, nor during the shutdown, once that loop
	// has stopped listening. This channel keeps Go's handler installed for
	// the process's life; a signal that finds it full is dropped, so
	// nothing needs to read it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)

	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "secretbroker: %v\n", err)
		os.Exit(1)
	}
}

// realMain prints the version if args ask for it; otherwise it reads the
// configuration from args and the environment and serves until ctx is
// done, logging (and writing the --dev banner) to stderr through a
// logbatch.Writer, whose pending lines are written before it returns (a crash
// of the process loses the lines of the last few microseconds).
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if wantsVersion(args) {
		if _, err := fmt.Fprintf(stdout, "secretbroker %s\n", buildVersion()); err != nil {
			return fmt.Errorf("write version: %w", err)
		}
		return nil
	}
	cfg, err := loadConfig(args, os.LookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logs := logbatch.New(stderr)
	defer logs.Close()
	logger := newLogger(cfg, logs)
	liblog.RouteGRPC(logger)
	warnUnknownEnv(logger, os.Environ())
	// The process's collector is tuned here, not in run, which tests
	// start many times in one process.
	stopFloor := heapfloor.Start(cfg.GCHeapFloor, cfg.gogcSet, logger)
	defer stopFloor()
	return run(ctx, cfg, logger, logs, nil)
}
