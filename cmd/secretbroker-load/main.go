// Command secretbroker-load measures whether the broker's inbound limits
// hold under load: whether a flood of concurrent large calls from one
// caller keeps the broker's resident memory (RSS) under 300 MB and another
// caller's cached GetPublicKey under 100 ms at the 99th percentile; and,
// in the batches scenario, whether the broker's upstream pacer keeps
// another caller's GetSecret under 50 ms at the 99th percentile while
// large batches go through it.
//
// It builds the broker (or takes --broker-bin) and runs it as a child
// process, so that its memory is measured alone, with --dev (the embedded
// GitHub emulator, loopback only; batches excepted, see below), three
// bearer-token callers ("flooder", "prober" and "grpc-prober", random
// tokens that are never printed) in a temporary --callers-file, and a
// --policy-file that allows them everything. The broker keeps its default
// inbound limits, except that --dev turns the
// per-caller rate limit off: the per-caller and total caps on calls in
// progress and the bound on request bytes in progress are what is tested.
// Each scenario runs against a fresh broker, whose RSS is read from
// /proc/PID/status (VmRSS) every 100 ms and whose peak (VmHWM) is read at
// the end; every connection goes to 127.0.0.1.
//
// Scenarios (--scenario, default all):
//
//   - flood: --flood-concurrency goroutines (default 300) over
//     --flood-conns connections send BatchPutSecrets of about --flood-bytes
//     (default 1 MiB: 64 values of 16 KiB) back to back, each with a 2 s
//     deadline, for --duration (default 20s), while the prober sends a
//     cached GetPublicKey every 10 ms over its own connection.
//   - gateway: the flood over the JSON gateway: each goroutine POSTs
//     /v1/secrets:batchPut with a JSON body of the same values, back to
//     back over its own keep-alive HTTP/1.1 connection, each request with
//     a 2 s timeout and "Grpc-Timeout: 2S" (the broker's deadline); the
//     prober GETs the cached public key through the gateway every 10 ms
//     and another caller (grpc-prober) sends GetPublicKey over gRPC every
//     10 ms, so that both kinds of caller are measured. Requests are
//     counted by HTTP status.
//   - metadata: 60 concurrent calls from the flooder, each with 15 MiB of
//     metadata, sent as raw HTTP/2 frames (a gRPC client refuses to send
//     more than the broker's advertised header limit): once as one 15 MiB
//     header value, once as 1,920 values of 8 KiB.
//   - cancel: 100 concurrent BatchPutSecrets of 1,000 values of 64 bytes
//     with no deadline, cancelled after 2 s; then SIGTERM with
//     --shutdown-timeout=15s, timing the broker's exit and counting its log
//     lines at WARN and above.
//
// One more scenario, batches, is not part of all: it measures the
// broker's upstream pacer rather than its front door. The GitHub emulator
// (upstream/emulator, demo data, no rate limits, a random token) runs in
// this process on a loopback port, and the broker runs without --dev
// against it (--upstream-url, the token as GITHUB_TOKEN in its environment
// only) with its pacing limits off (--upstream-write-interval=0
// --upstream-points-per-minute=0 --upstream-cpu-time-per-minute=0
// --upstream-writes-per-minute=0 --upstream-writes-per-hour=0
// --upstream-max-in-flight=100) and its
// per-caller limits off (--caller-max-concurrent=0 --caller-rps=0) so that
// the front door refuses none of the flooder's calls. --batches goroutines
// (default 50), each over its own connection, send --batch-rounds
// (default 1) BatchPutSecrets of --batch-items (default 1,000) values of
// 64 bytes, spread over three repositories' Actions scopes, each with a
// 60 s deadline, while the prober reads one secret with GetSecret (which
// goes to GitHub through the pacer) every 10 ms, for as long as they run
// and at most 120 s. The target is the prober's p99 under 50 ms.
//
// Another, compare, is not part of all either: it measures the broker's
// own cost per call beside what a caller could do without it. The GitHub
// emulator (no rate limits, a random token) runs in a child process of
// its own, this executable started again with
// SECRETBROKER_LOAD_EMULATOR_CHILD=1, so that the CPU time of each process
// is counted apart, and it counts the connections it accepts. The broker
// runs against it as in batches. In one run, --rounds (default 3)
// interleaved rounds measure each path at saturation (--workers closed-loop
// workers, default 32, for --duration) and at a fixed rate (--rate calls a
// second, default 1,000, an open loop timed from each call's scheduled
// send, for --duration): the floors (sealing a 64-byte value; a bare gRPC
// health Check to a server in this process; a bare HTTP/1.1 GET to a
// net/http server in this process answering the gateway's public key
// JSON, so that the two transports' own cost shows beside the gateway
// rows), a direct client (sealed PUTs
// straight to the emulator over a pooled HTTP client, key cached), and the
// broker's PutSecret of a 64-byte value and cached GetPublicKey, over gRPC
// and over the JSON gateway. Then an overload phase sends PutSecret at
// twice the broker's saturation throughput (or --overload-rate calls a
// second) for --duration and probes until its p50 is back to normal; it
// also reports the CPUs each process and the whole machine used during the
// flood, and how late this process started the admitted calls. --paths
// measures some of the paths only (the gRPC PutSecret always), for quicker
// experiments. It prints the medians, with CPU per call of
// the broker, this process and the emulator, new upstream connections per
// 1,000 calls, and the ratios issue 12 sets targets for.
//
// It prints one markdown table per scenario, and the command line, for
// docs/BENCHMARKS.md. Flags after "--" are passed to the broker (they come
// last, so they override this command's).
//
// Usage:
//
//	go run ./cmd/secretbroker-load [--scenario flood|gateway|metadata|cancel|batches|compare|all] [flags] [-- broker flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if isEmulatorChild() { // the compare scenario's emulator (emuchild.go)
		if err := emulatorChildMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "secretbroker-load (emulator):", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "secretbroker-load:", err)
		os.Exit(1)
	}
}
