// Command secretbroker-bench measures how the broker spends GitHub's rate
// limit budget. It runs the broker (service, upstream client and pacer
// behind a gRPC server on an in-memory connection) and a naive client
// against the embedded GitHub emulator with github.com's limits turned on,
// and prints one markdown table: upstream requests and points per logical
// write, secondary-limit violations, retries, peak concurrency, and the
// time taken against the least time the configured limits allow. Every
// write reported as done is checked in the emulator, value and all.
//
// The naive client does per secret what gh, Terraform and External
// Secrets do: fetch the scope's public key, seal, PUT, with
// --naive-concurrency writes at a time, no pacing and no retries.
//
// Nothing here is given a clock: the emulator, the pacer and the clients
// read package time. By default the command runs its scenarios in fake
// time: it runs this package's TestTables through the go tool ("go test
// -json -run ^TestTables$ ... -args -tables -- FLAGS" from the module
// root), which runs each scenario in a testing/synctest bubble and writes
// the tables to its output, and the command copies the tables to standard
// output. In a bubble time advances only when every goroutine waits, so
// 1,000 writes 1 s apart take the 1h8m19s they take on GitHub (its
// content-creation limit allows 500 an hour) in fake time and a few
// seconds of wall time, and the times in the table are exact.
// The go tool must therefore be on PATH and the command run from inside
// the module. --real-time runs the same scenarios in this process on the
// wall clock instead (as slow as GitHub would be: for checking).
//
// --resync runs the re-sync workload of issue 11 instead of the write
// tables (resync.go): secrets written once, again unchanged, with 10%
// changed, and with 1% changed behind the broker's back, by the broker
// (BatchPutSecrets and SyncSecrets) and by a naive client, with requests,
// points and time per phase.
//
// Usage:
//
//	go run ./cmd/secretbroker-bench [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr"
	"github.com/secretbroker/secretbroker/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "secretbroker-bench:", err)
		os.Exit(1)
	}
}

// config is what one run measures.
type config struct {
	realTime         bool
	writes           []int
	scopes           []int
	naiveConcurrency int
	latency          time.Duration // how long the emulator takes to answer a request it accepts
	pacing           upstream.Pacing
	replicas         int    // broker replicas sharing one budget through Redis (replicas.go)
	redisAddr        string // their Redis, host:port; the fake-time mode starts one when empty

	// The re-sync workload (resync.go), run instead of the write tables.
	resync        bool
	resyncSecrets int
	resyncScopes  int
	resyncGap     time.Duration // between one phase's end and the next's start
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{pacing: upstream.DefaultPacing()}
	fs := flag.NewFlagSet("secretbroker-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.realTime, "real-time", false, "run the scenarios in this process on the wall clock (as slow as GitHub: 1,000 writes 1 s apart take over an hour) instead of in fake time under go test")
	writes := fs.String("writes", "1,100,1000", "comma-separated numbers of writes per run (each at most 1000: one batch)")
	scopes := fs.String("scopes", "1,10", "comma-separated numbers of scopes the writes are spread over")
	fs.IntVar(&c.naiveConcurrency, "naive-concurrency", 10, "writes the naive client has in flight at once (Terraform's default parallelism)")
	fs.DurationVar(&c.latency, "latency", 0, "how long the emulator takes to answer each request its limits accept (0: no time; refusals are always answered at once)")
	fs.IntVar(&c.pacing.MaxInFlight, "upstream-max-in-flight", c.pacing.MaxInFlight, "the broker's --upstream-max-in-flight")
	fs.DurationVar(&c.pacing.WriteInterval, "upstream-write-interval", c.pacing.WriteInterval, "the broker's --upstream-write-interval")
	fs.IntVar(&c.pacing.PointsPerMinute, "upstream-points-per-minute", c.pacing.PointsPerMinute, "the broker's --upstream-points-per-minute")
	fs.IntVar(&c.replicas, "replicas", 1, "broker replicas sharing one GitHub budget through Redis, each sent its share of the writes at once (1 to 8)")
	fs.StringVar(&c.redisAddr, "redis-addr", "", "the replicas' Redis, host:port, for --replicas above 1 (the fake-time mode starts redis-server from PATH when empty; --real-time needs it)")
	fs.BoolVar(&c.resync, "resync", false, "run the re-sync workload (issue 11) instead of the write tables: --resync-secrets over --resync-scopes written once, again unchanged, with 10% changed, with 1% changed behind the broker's back")
	fs.IntVar(&c.resyncSecrets, "resync-secrets", 1000, "secrets of the re-sync workload (10 to 10000)")
	fs.IntVar(&c.resyncScopes, "resync-scopes", 10, "repository scopes the re-sync workload's secrets are spread over (1 to 100, at most one per secret; a scope holds at most 1000)")
	fs.DurationVar(&c.resyncGap, "resync-gap", time.Hour, "pause between the re-sync workload's phases (0 to 24h)")
	// flagerr's errors name a flag only when it is one of ours, any other
	// argument by its position: it may be a secret pasted by mistake.
	if err := flagerr.Parse(fs, args, 1, nil); err != nil {
		fs.Usage() // flagerr prints nothing, for -h neither
		return config{}, err
	}
	if c.replicas < 1 || c.replicas > 8 {
		return config{}, fmt.Errorf("--replicas must be between 1 and 8, got %d", c.replicas)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments (%d, from the %s argument on; not shown, as one may be a secret): secretbroker-bench takes flags only",
			fs.NArg(), flagerr.Ordinal(len(args)-fs.NArg()+1))
	}
	var err error
	if c.writes, err = intList(*writes, 1, 1000); err != nil {
		return config{}, fmt.Errorf("--writes: %w", err)
	}
	if c.scopes, err = intList(*scopes, 1, 100); err != nil {
		return config{}, fmt.Errorf("--scopes: %w", err)
	}
	if c.naiveConcurrency < 1 || c.naiveConcurrency > 100 {
		return config{}, fmt.Errorf("--naive-concurrency must be between 1 and 100, got %d", c.naiveConcurrency)
	}
	if c.latency < 0 || c.latency > 10*time.Second {
		return config{}, fmt.Errorf("--latency must be between 0 and 10s, got %v", c.latency)
	}
	if err := checkResync(c); err != nil {
		return config{}, err
	}
	return c, nil
}

func intList(s string, lo, hi int) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			// Not the entry: it may be a secret given by mistake.
			return nil, fmt.Errorf("want comma-separated numbers from %d to %d (the value is not shown, as it may be a secret)", lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// realMain checks the flags, then runs the scenarios on the wall clock
// (--real-time) or in fake time under go test.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.realTime {
		if c.replicas > 1 && c.redisAddr == "" {
			return errors.New("--replicas above 1 with --real-time needs --redis-addr")
		}
		if c.resync {
			return writeResync(ctx, c, stdout, measureResync)
		}
		return writeTables(ctx, c, stdout, measure)
	}
	return runTablesTest(ctx, args, stdout, stderr)
}

// measureFunc runs one client's n writes over k scopes: measure itself on
// the wall clock, or measure in a synctest bubble.
type measureFunc func(ctx context.Context, c config, client string, n, k int) (result, error)

// writeTables runs every scenario c asks for with run and writes the
// markdown table.
func writeTables(ctx context.Context, c config, stdout io.Writer, run measureFunc) error {
	timeIs := "fake (testing/synctest), exact"
	if c.realTime {
		timeIs = "the wall clock"
	}
	replicas := ""
	if c.replicas > 1 {
		replicas = fmt.Sprintf(" Broker replicas: %d, sharing one budget through Redis.", c.replicas)
	}
	fmt.Fprintf(stdout, "Emulator limits: %s; answers in %v. Broker pacing: %d in flight, writes %s apart, %d points a minute, %d writes a minute, %d an hour.%s Time: %s.\n\n",
		describeLimits(), c.latency, c.pacing.MaxInFlight, c.pacing.WriteInterval, c.pacing.PointsPerMinute,
		c.pacing.WritesPerMinute, c.pacing.WritesPerHour, replicas, timeIs)
	fmt.Fprintln(stdout, tableHeader)
	for _, n := range c.writes {
		for _, k := range c.scopes {
			if k > n {
				continue // fewer writes than scopes: some scopes get none
			}
			for _, client := range []string{"broker", "naive"} {
				r, err := run(ctx, c, client, n, k)
				if err != nil {
					return fmt.Errorf("%s, %d writes over %d scopes: %w", client, n, k, err)
				}
				fmt.Fprintln(stdout, r.row())
			}
		}
	}
	return nil
}
