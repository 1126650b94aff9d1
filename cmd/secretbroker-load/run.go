package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/secretbroker/secretbroker/cmd/internal/flagerr"
	"github.com/secretbroker/secretbroker/cmd/internal/heapfloor"
	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// What the scenarios send, and the targets they are measured against.
const (
	// repoScope is the demo repository's Actions scope, which --dev seeds.
	repoScope = "repos/octo-org/hello-world/actions"

	floodCallTimeout  = 2 * time.Second
	floodItemBytes    = 16 << 10
	maxBatchItems     = 1000      // the broker's largest batch
	maxCallsPerWorker = 1_000_000 // a bound on each flood loop besides --duration

	probeInterval = 10 * time.Millisecond
	probeTimeout  = 5 * time.Second
	warmAttempts  = 50

	metadataCalls       = 60
	metadataBytes       = 15 << 20
	metadataHeaderBytes = 8 << 10
	metadataCallTimeout = 30 * time.Second
	maxFramesRead       = 10_000

	cancelCalls      = 100
	cancelItems      = 1000
	cancelValueBytes = 64
	cancelAfter      = 2 * time.Second

	rssInterval     = 100 * time.Millisecond
	maxRSSSamples   = 1_000_000
	shutdownTimeout = 15 * time.Second
	healthTimeout   = 60 * time.Second
	exitWait        = 60 * time.Second

	// rssTarget is 300 MB (10^6 bytes, the stricter reading).
	rssTarget = 300_000_000
	p99Target = 100 * time.Millisecond
)

// Caller names in the callers file and the policy.
const (
	flooderName = "flooder"
	proberName  = "prober"
	// grpcProberName is the gateway scenario's gRPC prober, a caller of
	// its own so that its calls do not count against the prober's limits.
	grpcProberName = "grpc-prober"
)

// allScenarios are the scenarios of --scenario all: the front door's.
func allScenarios() []string { return []string{"flood", "gateway", "metadata", "cancel"} }

// otherScenarios are the scenarios --scenario all leaves out: batches
// measures the upstream pacer, not the front door.
func otherScenarios() []string { return []string{"batches", "compare"} }

// options is what one run does.
type options struct {
	selfHeapFloor    int64 // this process's heap floor; 0: Go's collector as it is (GOGC set)
	scenarios        []string
	duration         time.Duration
	floodConcurrency int
	floodConns       int
	floodBytes       int
	batches          int    // the batches scenario's concurrent batches
	batchItems       int    // ... values in each
	batchRounds      int    // ... batches each of its goroutines sends, one after another
	workers          int    // compare scenario: closed-loop workers at saturation
	rate             int    // ... calls per second at the fixed rate
	rounds           int    // ... interleaved rounds, whose medians are reported
	overloadRate     int    // ... the overload phase's calls a second; 0: twice the saturation throughput
	paths            string // ... the paths measured (short names, comma-separated); empty: all
	brokerBin        string
	brokerArgs       []string // after "--", passed to the broker last
	args             []string // as given, for the printed command line

	// tokens are the flooder's, the prober's and the gRPC prober's bearer
	// tokens, and the GitHub token of the batches scenario's emulator;
	// random when empty (tests plant known ones).
	flooderToken, proberToken, grpcProberToken, githubToken string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{args: slices.Clone(args)}
	own := args
	if i := slices.Index(args, "--"); i >= 0 {
		own, o.brokerArgs = args[:i], slices.Clone(args[i+1:])
	}
	fs := flag.NewFlagSet("secretbroker-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: secretbroker-load [flags] [-- broker flags]

secretbroker-load runs the broker as a child process (--dev, bearer-token
callers "flooder" and "prober", default inbound limits) and measures its RSS
and the prober's latency under a flood, oversized metadata, and cancelled
calls followed by SIGTERM; the flood runs over gRPC (flood) and over the
JSON gateway (gateway). The batches scenario, which all leaves out,
measures the upstream pacer instead: a broker without --dev, against a
GitHub emulator in this process with its pacing limits off, takes
concurrent 1,000-item batches while another caller's GetSecret is timed.
The compare scenario, also left out of all, measures the broker's cost per
call beside a direct client and the floors (sealing, a bare gRPC call),
at saturation, at a fixed rate and at twice saturation, against an
emulator in a child process. Flags after -- are passed to the broker.

Flags:
`)
		fs.PrintDefaults()
	}
	scenario := fs.String("scenario", "all", "`scenario` to run: "+strings.Join(scenarioNames(), ", ")+
		" or all ("+strings.Join(allScenarios(), ", ")+")")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long the flood lasts")
	fs.IntVar(&o.floodConcurrency, "flood-concurrency", 300, "flood goroutines, each sending one call after another")
	fs.IntVar(&o.floodConns, "flood-conns", 4, "gRPC connections the flood goroutines share (the broker allows 128 calls in progress on one); the gateway scenario opens an HTTP/1.1 connection per goroutine")
	fs.IntVar(&o.floodBytes, "flood-bytes", 1<<20, "about how many `bytes` of values each flood call holds (values of 16 KiB)")
	fs.IntVar(&o.batches, "batches", 50, "batches scenario: concurrent BatchPutSecrets, each from its own goroutine over its own connection")
	fs.IntVar(&o.batchItems, "batch-items", maxBatchItems, "batches scenario: values of 64 bytes in each batch (at most 1,000)")
	fs.IntVar(&o.batchRounds, "batch-rounds", 1, "batches scenario: batches each goroutine sends, one after another")
	fs.IntVar(&o.workers, "workers", 32, "compare scenario: closed-loop workers at saturation")
	fs.IntVar(&o.rate, "rate", 1000, "compare scenario: calls per second at the fixed rate (open loop)")
	fs.IntVar(&o.rounds, "rounds", 3, "compare scenario: interleaved rounds; medians are reported")
	fs.StringVar(&o.paths, "paths", "", "compare scenario: the paths measured, comma-separated (seal, health, http, direct, grpc-put, gateway-put, grpc-key, gateway-key; default all); grpc-put always is, and ratios that need a path left out say so")
	fs.IntVar(&o.overloadRate, "overload-rate", 0, "compare scenario: calls per second of the overload phase (default 0: twice the broker's gRPC PutSecret throughput at saturation)")
	fs.StringVar(&o.brokerBin, "broker-bin", "", "broker `binary` to run (default: go build ./cmd/secretbroker into a temporary directory)")
	// flagerr's errors name a flag only when it is one of ours, any other
	// argument by its position: it may be a secret pasted by mistake.
	if err := flagerr.Parse(fs, own, 1, nil); err != nil {
		fs.Usage()
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments (%d, from the %s argument on; not shown, as one may be a secret): broker flags go after --",
			fs.NArg(), flagerr.Ordinal(len(own)-fs.NArg()+1))
	}
	switch {
	case *scenario == "all":
		o.scenarios = allScenarios()
	case slices.Contains(scenarioNames(), *scenario):
		o.scenarios = []string{*scenario}
	default:
		return options{}, fmt.Errorf("--scenario must be one of %s or all (the value is not shown, as it may be a secret)", strings.Join(scenarioNames(), ", "))
	}
	switch {
	case o.duration <= 0:
		return options{}, fmt.Errorf("--duration must be positive, got %s", o.duration)
	case o.floodConcurrency < 1:
		return options{}, fmt.Errorf("--flood-concurrency must be at least 1, got %d", o.floodConcurrency)
	case o.floodConns < 1 || o.floodConns > o.floodConcurrency:
		return options{}, fmt.Errorf("--flood-conns must be between 1 and --flood-concurrency (%d), got %d", o.floodConcurrency, o.floodConns)
	case o.floodBytes < 1 || o.floodBytes > maxBatchItems*floodItemBytes:
		return options{}, fmt.Errorf("--flood-bytes must be between 1 and %d (1,000 values of 16 KiB), got %d", maxBatchItems*floodItemBytes, o.floodBytes)
	case o.batches < 1:
		return options{}, fmt.Errorf("--batches must be at least 1, got %d", o.batches)
	case o.batchItems < 1 || o.batchItems > maxBatchItems:
		return options{}, fmt.Errorf("--batch-items must be between 1 and %d, got %d", maxBatchItems, o.batchItems)
	case o.batchRounds < 1:
		return options{}, fmt.Errorf("--batch-rounds must be at least 1, got %d", o.batchRounds)
	case o.workers < 1:
		return options{}, fmt.Errorf("--workers must be at least 1, got %d", o.workers)
	case o.rate < 1 || o.rate > 1_000_000:
		return options{}, fmt.Errorf("--rate must be between 1 and 1000000, got %d", o.rate)
	case o.overloadRate < 0 || o.overloadRate > 1_000_000:
		return options{}, fmt.Errorf("--overload-rate must be between 0 (twice saturation) and 1000000, got %d", o.overloadRate)
	case o.rounds < 1:
		return options{}, fmt.Errorf("--rounds must be at least 1, got %d", o.rounds)
	}
	return o, nil
}

// scenarioNames are every scenario --scenario names.
func scenarioNames() []string { return append(allScenarios(), otherScenarios()...) }

// floodShape returns how many values a flood call holds and how long each
// is: values of 16 KiB, or one shorter value.
func floodShape(floodBytes int) (items, valueBytes int) {
	if floodBytes <= floodItemBytes {
		return 1, floodBytes
	}
	items = (floodBytes + floodItemBytes - 1) / floodItemBytes
	return items, floodBytes / items
}

// realMain parses args and runs the chosen scenarios, writing the tables to
// stdout and progress to stderr.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// This process is the callers: at thousands of calls a second its
	// collector, under Go's default, ran dozens of times a second, and its
	// pauses and mark assists delayed the calls it timed, counted as the
	// broker's latency (docs/BENCHMARKS.md, issue 12). It gets a heap
	// floor (cmd/internal/heapfloor, as the broker's --gc-heap-floor) of
	// 256 MiB, four times the broker's default 64 MiB: it is the callers,
	// whose heap (a goroutine and its timings for every call in flight,
	// tens of thousands in the overload phase) is larger than the
	// broker's, and the figures in docs/BENCHMARKS.md since 27492dc were
	// measured with it. The broker and the emulator run with their own
	// settings.
	if _, gogcSet := os.LookupEnv("GOGC"); !gogcSet {
		o.selfHeapFloor = selfHeapFloor
	}
	defer heapfloor.Start(o.selfHeapFloor, false, slog.New(slog.DiscardHandler))()
	return run(ctx, o, stdout, stderr)
}

// selfHeapFloor is the load command's own heap floor (heapfloor.Start).
const selfHeapFloor = 256 << 20

// selfCollector says how this process's collector ran.
func selfCollector(floor int64) string {
	if floor == 0 {
		return " This process's collector ran as GOGC in the environment says."
	}
	return fmt.Sprintf(" This process (the callers) ran its collector with a %d MiB heap floor (cmd/internal/heapfloor; "+
		"GOGC in the environment turns it off), so that its own collections are not timed as the broker's latency.", floor>>20)
}

// run runs o's scenarios, each against a fresh broker.
func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	env, cleanup, err := newRunEnv(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer cleanup()

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(stdout, "Command:\n\n```sh\n%s\n```\n\n", commandLine(o.args))
	flags := ""
	if slices.ContainsFunc(o.scenarios, func(s string) bool { return slices.Contains(allScenarios(), s) }) {
		flags = fmt.Sprintf(" Broker flags: `%s`.", strings.Join(env.brokerFlags(placeholderAddr, placeholderAddr), " "))
	}
	fmt.Fprintf(stdout, "Machine: %d CPUs, load average at start %s.%s "+
		"MB are 10^6 bytes; RSS is VmRSS and peak RSS VmHWM from /proc/PID/status.%s\n\n",
		runtime.NumCPU(), firstFields(string(load), 3), flags, selfCollector(o.selfHeapFloor))

	for _, s := range o.scenarios {
		if err := ctx.Err(); err != nil {
			return err
		}
		var t table
		switch s {
		case "flood", "gateway":
			run := runFlood
			if s == "gateway" {
				run = runGateway
			}
			r, err := run(ctx, o, env)
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			t = r.table(o)
		case "metadata":
			r, err := runMetadata(ctx, o, env)
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			t = r.table()
		case "cancel":
			r, err := runCancel(ctx, o, env)
			if err != nil {
				return fmt.Errorf("cancel: %w", err)
			}
			t = r.table()
		case "batches":
			r, err := runBatches(ctx, o, env)
			if err != nil {
				return fmt.Errorf("batches: %w", err)
			}
			t = r.table(o, env)
		case "compare":
			r, err := runCompare(ctx, o, env)
			if err != nil {
				return fmt.Errorf("compare: %w", err)
			}
			if _, err := io.WriteString(stdout, r.markdown()); err != nil {
				return fmt.Errorf("writing the tables: %w", err)
			}
			continue
		}
		if _, err := io.WriteString(stdout, t.markdown()); err != nil {
			return fmt.Errorf("writing the table: %w", err)
		}
	}
	return nil
}

// newRunEnv prepares what every scenario's broker needs: the binary
// (built unless o names one), the callers file with the hashes of o's
// tokens (random ones when o has none) and the policy, in a temporary
// directory that cleanup removes.
func newRunEnv(ctx context.Context, o options, stderr io.Writer) (env *runEnv, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "secretbroker-load-")
	if err != nil {
		return nil, nil, fmt.Errorf("temporary directory: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if o.flooderToken == "" {
		o.flooderToken = rand.Text()
	}
	if o.proberToken == "" {
		o.proberToken = rand.Text()
	}
	if o.grpcProberToken == "" {
		o.grpcProberToken = rand.Text()
	}
	if o.githubToken == "" {
		o.githubToken = rand.Text()
	}
	env = &runEnv{
		bin:         o.brokerBin,
		extra:       o.brokerArgs,
		secret:      []string{o.flooderToken, o.proberToken, o.grpcProberToken, o.githubToken},
		githubToken: o.githubToken,
		stderr:      stderr,
	}
	if env.bin == "" {
		env.bin = filepath.Join(dir, "secretbroker")
		fmt.Fprintln(stderr, "building ./cmd/secretbroker ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", env.bin, "github.com/secretbroker/secretbroker/cmd/secretbroker")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return nil, nil, fmt.Errorf("building the broker: %w", err)
		}
	}
	env.callersFile = filepath.Join(dir, "callers.yaml")
	if err := os.WriteFile(env.callersFile, callersYAML([]caller{
		{name: flooderName, token: o.flooderToken}, {name: proberName, token: o.proberToken},
		{name: grpcProberName, token: o.grpcProberToken},
	}), 0o600); err != nil {
		return nil, nil, fmt.Errorf("callers file: %w", err)
	}
	env.policyFile = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(env.policyFile, []byte(policyYAML()), 0o600); err != nil {
		return nil, nil, fmt.Errorf("policy file: %w", err)
	}
	return env, cleanup, nil
}

// commandLine is the command as typed, its arguments shell-quoted.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./cmd/secretbroker-load"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func firstFields(s string, n int) string {
	f := strings.Fields(s)
	if len(f) > n {
		f = f[:n]
	}
	if len(f) == 0 {
		return "unknown"
	}
	return strings.Join(f, " ")
}

// caller is a bearer-token caller of the callers file.
type caller struct{ name, token string }

// callersYAML is a callers file listing each caller with the hex SHA-256
// of its token; the tokens themselves are not in it.
func callersYAML(callers []caller) []byte {
	var b bytes.Buffer
	b.WriteString("callers:\n")
	for _, c := range callers {
		sum := sha256.Sum256([]byte(c.token))
		fmt.Fprintf(&b, "  - name: %s\n    token_sha256: %s\n", c.name, hex.EncodeToString(sum[:]))
	}
	return b.Bytes()
}

// policyYAML allows the flooder and the probers every verb on everything.
func policyYAML() string {
	return `rules:
  - callers: ["token:` + flooderName + `", "token:` + proberName + `", "token:` + grpcProberName + `"]
    verbs: [read, write, delete, manage_repositories]
    resources: ["**"]
`
}

// runEnv is what every scenario's broker shares.
type runEnv struct {
	bin                     string
	callersFile, policyFile string
	extra                   []string
	// secret are the flooder's, prober's and gRPC prober's tokens and the
	// GitHub token, in that order; redacted from anything printed.
	secret      []string
	githubToken string // the batches scenario's emulator's
	stderr      io.Writer
}

// adminAddr is the child brokers' admin listen address.
const adminAddr = "127.0.0.1:0"

// placeholderAddr stands for a listen address in printed flags.
const placeholderAddr = "127.0.0.1:PORT"

// brokerFlags are the broker's flags: dev mode, the callers, the policy,
// the shutdown timeout, then the pass-through flags.
func (e *runEnv) brokerFlags(grpcAddr, httpAddr string) []string {
	return e.flags([]string{"--dev"}, grpcAddr, httpAddr)
}

// flags are mode (the flags that say where GitHub is), the listen
// addresses, the callers, the policy, the shutdown timeout, more, then
// the pass-through flags.
func (e *runEnv) flags(mode []string, grpcAddr, httpAddr string, more ...string) []string {
	return slices.Concat(mode, []string{
		"--grpc-addr=" + grpcAddr,
		"--http-addr=" + httpAddr,
		"--callers-file=" + e.callersFile,
		"--policy-file=" + e.policyFile,
		"--shutdown-timeout=" + shutdownTimeout.String(),
	}, more, e.extra)
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	return addr, nil
}

// brokerProc is a running broker child process.
type brokerProc struct {
	cmd      *exec.Cmd
	pid      int
	grpcAddr string
	httpAddr string // the JSON gateway's
	log      *logScan
	done     chan struct{} // closed when the process has exited
	waitErr  error         // set before done is closed
}

// launch is how a broker is started: its flags, given its listen
// addresses, and what is added to its environment.
type launch struct {
	flags func(grpcAddr, httpAddr string) []string
	env   []string
}

// start starts a --dev broker (brokerFlags) and waits until its gRPC
// health check answers SERVING. The caller must call kill (harmless after
// stop).
func (e *runEnv) start(ctx context.Context) (*brokerProc, error) {
	return e.startWith(ctx, launch{flags: e.brokerFlags})
}

// startWith starts a broker as l says and waits until its gRPC health
// check answers SERVING. The caller must call kill (harmless after stop).
func (e *runEnv) startWith(ctx context.Context, l launch) (*brokerProc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken between freePort and the broker's bind
		b, err := e.startOnce(ctx, l)
		if err == nil {
			return b, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (e *runEnv) startOnce(ctx context.Context, l launch) (*brokerProc, error) {
	grpcAddr, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	httpAddr, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	b := &brokerProc{
		grpcAddr: grpcAddr,
		httpAddr: httpAddr,
		log:      newLogScan(e.secret),
		done:     make(chan struct{}),
	}
	// The admin listener on a port of the kernel's choosing, so that two
	// brokers never collide on the default :9091; nothing here reads it.
	// First, so that a pass-through --admin-addr wins.
	b.cmd = exec.Command(e.bin, slices.Concat([]string{"--admin-addr=" + adminAddr}, l.flags(grpcAddr, httpAddr))...)
	b.cmd.Env = append(childEnv(os.Environ()), l.env...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the broker: %w", err)
	}
	b.pid = b.cmd.Process.Pid
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.done)
	}()
	if err := b.waitServing(ctx); err != nil {
		b.kill()
		return nil, fmt.Errorf("%w; the broker's last log lines:\n%s", err, strings.Join(b.log.lastLines(), "\n"))
	}
	return b, nil
}

// childEnv is the environment without SECRETBROKER_* variables (the broker
// runs with its defaults and the flags given) and without GITHUB_TOKEN,
// which --dev does not use and the batches scenario sets itself.
func childEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if strings.HasPrefix(kv, "SECRETBROKER_") || strings.HasPrefix(kv, "GITHUB_TOKEN=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// waitServing polls the gRPC health check until it answers SERVING.
func (b *brokerProc) waitServing(ctx context.Context) error {
	conn, err := grpc.NewClient("passthrough:///"+b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("health-check connection: %w", err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-b.done:
			return fmt.Errorf("the broker exited before serving: %v", b.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("the broker did not answer SERVING within %s: %w", healthTimeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and returns how long the process took to exit. After
// exitWait it is killed and stop returns an error.
func (b *brokerProc) stop() (time.Duration, error) {
	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-b.done:
		d := time.Since(start)
		if b.waitErr != nil {
			return d, fmt.Errorf("the broker exited with %w", b.waitErr)
		}
		return d, nil
	case <-time.After(exitWait):
		b.kill()
		return time.Since(start), fmt.Errorf("the broker had not exited %s after SIGTERM; killed", exitWait)
	}
}

// kill kills the process if it still runs, and waits for it.
func (b *brokerProc) kill() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Kill()
	<-b.done
}

// procStatus reads VmRSS and VmHWM, in bytes, from /proc/PID/status.
func procStatus(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the broker's status: %w", err)
	}
	return parseStatus(data)
}

// parseStatus reads VmRSS and VmHWM, in bytes, from the content of a
// /proc/PID/status file, where they are in kB (KiB).
func parseStatus(data []byte) (rss, hwm int64, err error) {
	var gotRSS, gotHWM bool
	for line := range strings.SplitSeq(string(data), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: unexpected %s line %q", key, line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			rss, gotRSS = n<<10, true
		} else {
			hwm, gotHWM = n<<10, true
		}
	}
	if !gotRSS || !gotHWM {
		return 0, 0, errors.New("/proc status: no VmRSS or VmHWM line")
	}
	return rss, hwm, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procCPU reads the CPU time (user and system) a process has used from
// /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the broker's stat: %w", err)
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the content
// of a /proc/PID/stat file. The command name (field 2) is in parentheses
// and may hold spaces, so fields are counted after its closing one.
func parseStatCPU(data []byte) (time.Duration, error) {
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// procReadBytes reads rchar, the bytes a process has read with read(2)
// and the like (sockets included), from /proc/PID/io.
func procReadBytes(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the broker's io: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc io: rchar: %w", err)
			}
			return n, nil
		}
	}
	return 0, errors.New("/proc io: no rchar line")
}

// ownCPU is the CPU time (user and system) this process has used.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSeries is what a sampler saw.
type rssSeries struct {
	samples   []int64       // VmRSS, bytes
	hwm       int64         // the highest VmHWM read
	cpu       time.Duration // the broker's CPU time when last read
	readBytes int64         // bytes the broker had read (sockets included) when last read
}

// sampleRSS reads the process's VmRSS every interval until stop is
// called or the process is gone, and returns the samples from stop.
func sampleRSS(pid int, interval time.Duration) (stop func() rssSeries) {
	quit := make(chan struct{})
	out := make(chan rssSeries, 1)
	go func() {
		var s rssSeries
		gone := false
		// read takes one sample; false when the process is gone.
		read := func() bool {
			rss, hwm, err := procStatus(pid)
			if err != nil {
				return false
			}
			s.samples = append(s.samples, rss)
			s.hwm = max(s.hwm, hwm)
			if cpu, err := procCPU(pid); err == nil {
				s.cpu = cpu
			}
			if n, err := procReadBytes(pid); err == nil {
				s.readBytes = n
			}
			return true
		}
		t := time.NewTicker(interval)
		defer t.Stop()
		for len(s.samples) < maxRSSSamples && !gone {
			gone = !read()
			select {
			case <-quit:
				if !gone {
					read() // a last sample at the end
				}
				out <- s
				return
			case <-t.C:
			}
		}
		<-quit
		out <- s
	}()
	var once sync.Once
	var s rssSeries
	return func() rssSeries {
		once.Do(func() {
			close(quit)
			s = <-out
		})
		return s
	}
}

// logScan reads the broker's log (text lines with --dev, JSON lines
// without) and counts what the reports need. It is an io.Writer for the child's stdout and stderr.
type logScan struct {
	secret []string

	mu        sync.Mutex
	partial   []byte
	lines     int
	warnPlus  int            // lines at WARN or ERROR
	warnMsgs  map[string]int // "LEVEL msg" (and code, for gRPC calls) of those lines
	callCodes map[string]int // code of each "gRPC call" line of SecretService
	lastCall  time.Time      // when the last such line arrived
	tail      []string
}

const (
	logTailLines   = 30
	maxLogLineSize = 64 << 10
)

func newLogScan(secret []string) *logScan {
	return &logScan{secret: secret, warnMsgs: map[string]int{}, callCodes: map[string]int{}}
}

func (l *logScan) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(l.partial) < maxLogLineSize {
				l.partial = append(l.partial, p[:min(len(p), maxLogLineSize-len(l.partial))]...)
			}
			break
		}
		line := p[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.lineLocked(string(line))
		p = p[i+1:]
	}
	return n, nil
}

func (l *logScan) lineLocked(line string) {
	l.lines++
	for _, s := range l.secret {
		if s != "" {
			line = strings.ReplaceAll(line, s, "[redacted]")
		}
	}
	l.tail = append(l.tail, line)
	if len(l.tail) > logTailLines {
		l.tail = l.tail[1:]
	}
	var f logFields
	if strings.HasPrefix(line, "{") {
		f = jsonLogFields(line)
	} else {
		f = logFields{Level: logField(line, "level"), Msg: logField(line, "msg"),
			Method: logField(line, "method"), Code: logField(line, "code")}
	}
	if f.Msg == "gRPC call" && strings.HasPrefix(f.Method, "/secretbroker.v1.SecretService/") {
		l.callCodes[f.Code]++
		l.lastCall = time.Now()
	}
	if f.Level == "WARN" || f.Level == "ERROR" {
		l.warnPlus++
		key := f.Level + " " + strconv.Quote(f.Msg)
		if f.Code != "" {
			key += " code=" + f.Code
		}
		l.warnMsgs[key]++
	}
}

// logFields are the fields of a log line that the reports read; a field
// the line does not have, or not as a string, is "".
type logFields struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Method string `json:"method"`
	Code   string `json:"code"`
}

// logField returns the value of key=value in a slog text line, unquoted.
func logField(line, key string) string {
	for i := 0; ; {
		j := strings.Index(line[i:], key+"=")
		if j < 0 {
			return ""
		}
		j += i
		if j > 0 && line[j-1] != ' ' {
			i = j + len(key) + 1
			continue
		}
		v := line[j+len(key)+1:]
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				return ""
			}
			s, _ := strconv.Unquote(q)
			return s
		}
		if k := strings.IndexByte(v, ' '); k >= 0 {
			v = v[:k]
		}
		return v
	}
}

// jsonLogFields returns the fields of a slog JSON line (none for a line
// that is not JSON). It decodes into logFields, not a map: the broker
// writes a line for every call, and decoding every value into a map took
// about twice the CPU (BenchmarkLogScanCallLine), counted as the callers'
// (docs/BENCHMARKS.md, issue 12).
func jsonLogFields(line string) logFields {
	var f logFields
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			return logFields{} // not JSON: no fields
		}
		// A field of another type stays "", the others are read.
	}
	return f
}

// logSnapshot is a copy of a logScan's counts.
type logSnapshot struct {
	lines     int
	warnPlus  int
	warnMsgs  map[string]int
	callCodes map[string]int
	lastCall  time.Time
}

func (l *logScan) snapshot() logSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return logSnapshot{
		lines: l.lines, warnPlus: l.warnPlus,
		warnMsgs: maps.Clone(l.warnMsgs), callCodes: maps.Clone(l.callCodes),
		lastCall: l.lastCall,
	}
}

func (l *logScan) lastLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.tail)
}

// bearerToken sends "authorization: Bearer TOKEN" with every call.
type bearerToken struct{ token string }

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// String keeps the token out of anything formatted.
func (bearerToken) String() string { return "bearerToken([redacted])" }

// dial opens a client connection to addr (one TCP connection) for a caller.
func dial(addr, token string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearerToken{token: token}),
	)
	if err != nil {
		return nil, fmt.Errorf("connection to the broker: %w", err)
	}
	return conn, nil
}

// randomValues returns n distinct random strings of size bytes (hex).
func randomValues(n, size int) []string {
	out := make([]string, n)
	buf := make([]byte, (size+1)/2)
	for i := range out {
		_, _ = rand.Read(buf) // never fails
		out[i] = hex.EncodeToString(buf)[:size]
	}
	return out
}

// batchRequest is a BatchPutSecrets of values to prefix_<first+i> in the
// demo repository.
func batchRequest(prefix string, first int, values []string) *secretbrokerv1.BatchPutSecretsRequest {
	return scopeBatchRequest(repoScope, prefix, first, values)
}

// scopeBatchRequest is a BatchPutSecrets of values to prefix_<first+i> in
// scope.
func scopeBatchRequest(scope, prefix string, first int, values []string) *secretbrokerv1.BatchPutSecretsRequest {
	req := &secretbrokerv1.BatchPutSecretsRequest{Requests: make([]*secretbrokerv1.PutSecretRequest, len(values))}
	for i, v := range values {
		req.Requests[i] = &secretbrokerv1.PutSecretRequest{
			Name:    secretName(scope, prefix, first+i),
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: v},
		}
	}
	return req
}

// floodSecretName is the demo repository's secret prefix_i.
func floodSecretName(prefix string, i int) string { return secretName(repoScope, prefix, i) }

// secretName is scope's secret prefix_i.
func secretName(scope, prefix string, i int) string {
	return fmt.Sprintf("%s/secrets/%s_%d", scope, prefix, i)
}

// codeName is a status code's canonical name, as in google.rpc.Code
// (RESOURCE_EXHAUSTED).
func codeName(c codes.Code) string { return rpccode.Code(c).String() }

// tally counts outcomes by name; safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k] += n
}

func (t *tally) counts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.m)
}

// floodResult is what a flood scenario measured: the flood over gRPC, or
// the gateway scenario's over the JSON gateway.
type floodResult struct {
	gateway           bool // the flood went through the JSON gateway
	items, valueBytes int
	bodyBytes         int64 // gateway: the largest JSON body sent
	dials             int64 // gateway: TCP connections the flood opened
	elapsed           time.Duration
	selfCPU           time.Duration  // this process's CPU time during the flood
	calls             map[string]int // whole calls by gRPC code, or requests by HTTP status
	itemCodes         map[string]int // items of answered calls by code
	probes            []probeResult  // one per prober
	rss               rssSeries
	exit              time.Duration
	exitErr           error
	log               logSnapshot
}

// runFlood runs the flood scenario against a fresh broker.
func runFlood(ctx context.Context, o options, env *runEnv) (floodResult, error) {
	r := floodResult{}
	r.items, r.valueBytes = floodShape(o.floodBytes)
	values := randomValues(r.items, r.valueBytes) // shared by every call: strings are immutable

	b, probe, closeAll, err := startFlood(ctx, env, "flood", "prober", env.secret[1])
	if err != nil {
		return r, err
	}
	defer closeAll()
	flood := make([]secretbrokerv1.SecretServiceClient, o.floodConns)
	for i := range flood {
		conn, err := dial(b.grpcAddr, env.secret[0])
		if err != nil {
			return r, err
		}
		defer conn.Close()
		flood[i] = secretbrokerv1.NewSecretServiceClient(conn)
	}
	reqs := make([]*secretbrokerv1.BatchPutSecretsRequest, o.floodConcurrency)
	for w := range reqs {
		reqs[w] = batchRequest("FLOOD", w*r.items, values)
	}

	fmt.Fprintf(env.stderr, "flood: %d goroutines over %d connections, %d values of %d bytes a call, for %s ...\n",
		o.floodConcurrency, o.floodConns, r.items, r.valueBytes, o.duration)
	var calls, items tally
	err = floodLoad(ctx, o, b, func(ctx context.Context, w int) {
		resp, err := flood[w%len(flood)].BatchPutSecrets(ctx, reqs[w])
		calls.add(codeName(status.Code(err)), 1)
		for _, res := range resp.GetResults() {
			items.add(res.GetCode().String(), 1)
		}
	}, []prober{probe}, &r)
	r.calls, r.itemCodes = calls.counts(), items.counts()
	return r, err
}

// startFlood starts a broker for a flood scenario and a gRPC prober named
// name, the caller with token, over its own connection, its public key
// cached. closeAll closes the connection and kills the broker.
func startFlood(ctx context.Context, env *runEnv, scenario, name, token string) (b *brokerProc, p prober, closeAll func(), err error) {
	fmt.Fprintf(env.stderr, "%s: starting the broker ...\n", scenario)
	b, err = env.start(ctx)
	if err != nil {
		return nil, prober{}, nil, err
	}
	conn, err := dial(b.grpcAddr, token)
	if err != nil {
		b.kill()
		return nil, prober{}, nil, err
	}
	closeAll = func() {
		_ = conn.Close()
		b.kill()
	}
	p = grpcProber(name, secretbrokerv1.NewSecretServiceClient(conn))
	if err := warm(ctx, p); err != nil {
		closeAll()
		return nil, prober{}, nil, err
	}
	return b, p, closeAll, nil
}

// floodLoad runs call from o.floodConcurrency goroutines (w is the
// goroutine's number), one call after another, each with a
// floodCallTimeout deadline, for o.duration, while each prober probes
// every probeInterval. It samples b's RSS meanwhile, stops b at the end
// and records all that, but not the calls' outcomes, in r.
func floodLoad(ctx context.Context, o options, b *brokerProc, call func(ctx context.Context, w int), probers []prober, r *floodResult) error {
	stopRSS := sampleRSS(b.pid, rssInterval)
	selfCPU := ownCPU()
	start := time.Now()
	end := start.Add(o.duration)
	var wg sync.WaitGroup
	for w := range o.floodConcurrency {
		wg.Go(func() {
			for n := 0; n < maxCallsPerWorker && ctx.Err() == nil && time.Now().Before(end); n++ {
				cctx, cancel := context.WithTimeout(ctx, floodCallTimeout)
				call(cctx, w)
				cancel()
			}
		})
	}
	waits := make([]func() probeResult, len(probers))
	for i, p := range probers {
		waits[i] = probeLoop(ctx, p, int(o.duration/probeInterval), nil)
	}
	wg.Wait()
	for _, wait := range waits {
		r.probes = append(r.probes, wait())
	}
	r.elapsed = time.Since(start)
	r.selfCPU = ownCPU() - selfCPU
	r.rss = stopRSS()
	if err := ctx.Err(); err != nil {
		return err
	}
	r.exit, r.exitErr = b.stop()
	r.log = b.log.snapshot()
	return nil
}

// prober is a named probe: probe makes one call, names its answer ("OK",
// "HTTP 200") and says whether it succeeded.
type prober struct {
	name  string
	probe func(ctx context.Context) (answer string, ok bool)
}

// grpcProber sends the demo repository's GetPublicKey through c.
func grpcProber(name string, c secretbrokerv1.SecretServiceClient) prober {
	req := &secretbrokerv1.GetPublicKeyRequest{Parent: repoScope}
	return prober{name: name, probe: func(ctx context.Context) (string, bool) {
		_, err := c.GetPublicKey(ctx, req)
		return codeName(status.Code(err)), err == nil
	}}
}

// warm probes until a probe succeeds: the key is cached, the secret
// readable.
func warm(ctx context.Context, p prober) error {
	var answer string
	for range warmAttempts {
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		a, ok := p.probe(cctx)
		cancel()
		if ok {
			return nil
		}
		answer = a
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("warming up: the %s failed %d times, last answer %s", p.name, warmAttempts, answer)
}

// probeResult is what a prober measured.
type probeResult struct {
	name      string
	latencies []time.Duration // every probe's, whatever its answer
	codes     map[string]int  // answers
	ok        int             // probes that succeeded
}

// probeLoop starts n probes, one every probeInterval, each in its own
// goroutine so that a slow answer does not delay the next probe (no
// coordinated omission); it starts no more once stop is closed (nil: never
// closed). wait waits for every probe's answer.
func probeLoop(ctx context.Context, p prober, n int, stop <-chan struct{}) (wait func() probeResult) {
	var (
		mu  sync.Mutex
		res = probeResult{name: p.name, codes: map[string]int{}}
		wg  sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		for range n {
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case <-t.C:
			}
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				start := time.Now()
				answer, ok := p.probe(cctx)
				d := time.Since(start)
				mu.Lock()
				res.latencies = append(res.latencies, d)
				res.codes[answer]++
				if ok {
					res.ok++
				}
				mu.Unlock()
			})
		}
	}()
	return func() probeResult {
		<-done
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return res
	}
}

// metadataVariant is one way to send metadataBytes of metadata.
type metadataVariant struct {
	name        string
	headers     int
	headerBytes int
}

func metadataVariants() []metadataVariant {
	return []metadataVariant{
		{name: "one 15 MiB value", headers: 1, headerBytes: metadataBytes},
		{name: "1,920 values of 8 KiB", headers: metadataBytes / metadataHeaderBytes, headerBytes: metadataHeaderBytes},
	}
}

// metadataRun is one variant's outcome.
type metadataRun struct {
	variant  metadataVariant
	outcomes map[string]int
	wireMax  int64 // the most header-block bytes one call had written when it ended
	wireSize int64 // the header block's size on the wire (HPACK)
	elapsed  time.Duration
	rss      rssSeries
	exit     time.Duration
	exitErr  error
	log      logSnapshot
}

type metadataResult struct{ runs []metadataRun }

// runMetadata runs each metadata variant against a fresh broker.
func runMetadata(ctx context.Context, _ options, env *runEnv) (metadataResult, error) {
	var res metadataResult
	for _, v := range metadataVariants() {
		r, err := runMetadataVariant(ctx, env, v)
		if err != nil {
			return res, fmt.Errorf("%s: %w", v.name, err)
		}
		res.runs = append(res.runs, r)
	}
	return res, nil
}

func runMetadataVariant(ctx context.Context, env *runEnv, v metadataVariant) (metadataRun, error) {
	r := metadataRun{variant: v}
	block, err := headerBlock(env.secret[0], v)
	if err != nil {
		return r, err
	}
	r.wireSize = int64(len(block))
	body, err := grpcFrame(&secretbrokerv1.GetPublicKeyRequest{Parent: repoScope})
	if err != nil {
		return r, err
	}

	fmt.Fprintf(env.stderr, "metadata (%s): starting the broker ...\n", v.name)
	b, err := env.start(ctx)
	if err != nil {
		return r, err
	}
	defer b.kill()

	fmt.Fprintf(env.stderr, "metadata (%s): %d concurrent calls ...\n", v.name, metadataCalls)
	stopRSS := sampleRSS(b.pid, rssInterval)
	start := time.Now()
	var out tally
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range metadataCalls {
		wg.Go(func() {
			outcome, sent := rawCall(ctx, b.grpcAddr, block, body)
			out.add(outcome, 1)
			mu.Lock()
			r.wireMax = max(r.wireMax, sent)
			mu.Unlock()
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.rss = stopRSS()
	r.outcomes = out.counts()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.exit, r.exitErr = b.stop()
	r.log = b.log.snapshot()
	return r, nil
}

// headerBlock is the HPACK-encoded header block of a GetPublicKey call
// from the caller with token, with v's metadata (random hex values).
func headerBlock(token string, v metadataVariant) ([]byte, error) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/secretbroker.v1.SecretService/GetPublicKey"},
		{Name: ":authority", Value: "127.0.0.1"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "authorization", Value: "Bearer " + token, Sensitive: true},
	}
	for _, f := range fields {
		if err := enc.WriteField(f); err != nil {
			return nil, fmt.Errorf("encoding headers: %w", err)
		}
	}
	value := randomValues(1, v.headerBytes)[0]
	for i := range v.headers {
		// Never indexed, so that every field is sent in full.
		f := hpack.HeaderField{Name: fmt.Sprintf("x-load-pad-%04d", i), Value: value, Sensitive: true}
		if err := enc.WriteField(f); err != nil {
			return nil, fmt.Errorf("encoding headers: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// grpcFrame is m as a gRPC length-prefixed message.
func grpcFrame(m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshalling: %w", err)
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...), nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w  io.Writer
	n  int64
	mu sync.Mutex
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingWriter) written() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// rawCall sends one call with the header block over its own HTTP/2
// connection, frame by frame, and returns how the broker answered and how
// many bytes of the header block had been written by then.
func rawCall(ctx context.Context, addr string, block, body []byte) (outcome string, sent int64) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "dial failed", 0
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(metadataCallTimeout))
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	answer := make(chan string, 1)
	go func() { answer <- readAnswer(conn) }()

	cw := &countingWriter{w: conn}
	fr := http2.NewFramer(cw, nil)
	writeErr := func() error {
		if _, err := io.WriteString(cw, http2.ClientPreface); err != nil {
			return err
		}
		if err := fr.WriteSettings(); err != nil {
			return err
		}
		const frameSize = 16 << 10 // the broker's SETTINGS_MAX_FRAME_SIZE (HTTP/2's default)
		first := block[:min(len(block), frameSize)]
		rest := block[len(first):]
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(rest) == 0}); err != nil {
			return err
		}
		for len(rest) > 0 {
			chunk := rest[:min(len(rest), frameSize)]
			rest = rest[len(chunk):]
			if err := fr.WriteContinuation(1, len(rest) == 0, chunk); err != nil {
				return err
			}
		}
		return fr.WriteData(1, true, body)
	}()
	prelude := int64(len(http2.ClientPreface) + 9) // preface and an empty SETTINGS frame
	sent = max(cw.written()-prelude, 0)

	select {
	case a := <-answer:
		if writeErr != nil {
			a += " (while sending)"
		}
		return a, min(sent, int64(len(block)))
	case <-ctx.Done():
		return "cancelled", min(sent, int64(len(block)))
	}
}

// readAnswer reads frames until the broker answers stream 1 or closes the
// connection, and names the answer.
func readAnswer(conn net.Conn) string {
	fr := http2.NewFramer(io.Discard, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	goaway := ""
	for range maxFramesRead {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			switch {
			case goaway != "":
				return goaway
			case errors.As(err, &ne) && ne.Timeout():
				return "no answer within " + metadataCallTimeout.String()
			case errors.Is(err, syscall.ECONNRESET):
				return "connection reset by the broker (TCP RST)"
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return "connection closed by the broker (EOF)"
			default:
				return "connection failed: " + errorKind(err)
			}
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				continue
			}
			if s := f.PseudoValue("status"); s != "" && s != "200" {
				return "HTTP " + s
			}
			if gs := grpcStatus(f.RegularFields()); gs != "" {
				n, err := strconv.Atoi(gs)
				if err != nil {
					return "grpc-status " + gs
				}
				return codeName(codes.Code(n))
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			goaway = "GOAWAY " + f.ErrCode.String()
			if f.ErrCode != http2.ErrCodeNo {
				return goaway
			}
		}
	}
	return fmt.Sprintf("no answer in %d frames", maxFramesRead)
}

// errorKind names an error without its message, which holds addresses.
func errorKind(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return fmt.Sprintf("%T", err)
}

// grpcStatus is the grpc-status field's value, if any.
func grpcStatus(fields []hpack.HeaderField) string {
	for _, f := range fields {
		if f.Name == "grpc-status" {
			return f.Value
		}
	}
	return ""
}

// cancelResult is what the cancel scenario measured.
type cancelResult struct {
	calls         map[string]int // client-side codes
	callsReturned time.Duration  // from the cancel to the last client call's return
	endedBefore   map[string]int // SecretService calls the broker had logged as ended at SIGTERM, by code
	endedAfter    map[string]int // ... by the time it exited
	lastCallLine  time.Duration  // from the cancel to the broker's last "gRPC call" line
	rss           rssSeries
	exit          time.Duration
	exitErr       error
	log           logSnapshot
}

// runCancel runs the cancel scenario against a fresh broker.
func runCancel(ctx context.Context, _ options, env *runEnv) (cancelResult, error) {
	var r cancelResult
	values := randomValues(cancelItems, cancelValueBytes)

	fmt.Fprintf(env.stderr, "cancel: starting the broker ...\n")
	b, err := env.start(ctx)
	if err != nil {
		return r, err
	}
	defer b.kill()
	conn, err := dial(b.grpcAddr, env.secret[0])
	if err != nil {
		return r, err
	}
	defer conn.Close()
	client := secretbrokerv1.NewSecretServiceClient(conn)

	fmt.Fprintf(env.stderr, "cancel: %d calls of %d values, cancelled after %s ...\n", cancelCalls, cancelItems, cancelAfter)
	stopRSS := sampleRSS(b.pid, rssInterval)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cancelled := make(chan time.Time, 1)
	timer := time.AfterFunc(cancelAfter, func() {
		cancelled <- time.Now()
		cancel()
	})
	defer timer.Stop()
	var calls tally
	var wg sync.WaitGroup
	for w := range cancelCalls {
		req := batchRequest(fmt.Sprintf("CANCEL_%d", w), 0, values)
		wg.Go(func() {
			_, err := client.BatchPutSecrets(cctx, req)
			calls.add(codeName(status.Code(err)), 1)
		})
	}
	wg.Wait()
	var at time.Time
	select {
	case at = <-cancelled:
	default: // every call returned before the cancel
		at = time.Now()
		timer.Stop()
	}
	r.callsReturned = time.Since(at)
	r.calls = calls.counts()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.endedBefore = b.log.snapshot().callCodes
	r.exit, r.exitErr = b.stop()
	r.rss = stopRSS() // sampled until the process exited
	r.log = b.log.snapshot()
	r.endedAfter = r.log.callCodes
	if !r.log.lastCall.IsZero() {
		r.lastCallLine = r.log.lastCall.Sub(at)
	}
	return r, nil
}

// percentile is the p-th percentile (0 < p ≤ 100) of sorted samples by the
// nearest-rank method; false when there are none.
func percentile[T cmp.Ordered](sorted []T, p float64) (T, bool) {
	var zero T
	if len(sorted) == 0 || p <= 0 || p > 100 {
		return zero, false
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1], true
}

// table is a two-column markdown table under a heading.
type table struct {
	title string
	note  string
	rows  [][2]string
}

func (t *table) add(figure, value string) { t.rows = append(t.rows, [2]string{figure, value}) }

func (t table) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", t.title)
	if t.note != "" {
		b.WriteString(t.note + "\n\n")
	}
	b.WriteString("| figure | value |\n| --- | ---: |\n")
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	b.WriteString("\n")
	return b.String()
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// countsText formats counts as "CODE n, CODE n" with the largest first.
func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// rssRows adds the RSS figures of a series.
func rssRows(t *table, s rssSeries) {
	sorted := slices.Sorted(slices.Values(s.samples))
	t.add("broker peak RSS (VmHWM)", mb(s.hwm))
	if top, ok := percentile(sorted, 100); ok {
		t.add("broker RSS, highest / median sample", mb(top)+" / "+mb(medianSorted(sorted)))
	}
	t.add("RSS samples (every 100 ms)", strconv.Itoa(len(s.samples)))
	t.add("broker CPU time (user + system), whole process life", secs(s.cpu))
	t.add("bytes the broker read (rchar: sockets, files), whole process life", mb(s.readBytes))
}

// exitRows adds the shutdown figures.
func exitRows(t *table, exit time.Duration, exitErr error, log logSnapshot) {
	v := secs(exit)
	if exitErr != nil {
		v += " (" + exitErr.Error() + ")"
	}
	t.add("broker exit after SIGTERM", v)
	t.add("broker log lines at WARN or above", strconv.Itoa(log.warnPlus))
	if log.warnPlus > 0 {
		t.add("… of which", countsText(log.warnMsgs))
	}
}

func (r floodResult) table(o options) table {
	var t table
	calls := "calls"
	if r.gateway {
		calls = "requests"
		t.title = fmt.Sprintf("gateway: %d concurrent JSON batchPut requests of %d values of %d bytes, for %s", o.floodConcurrency, r.items, r.valueBytes, o.duration)
		t.note = fmt.Sprintf("One caller (flooder) POSTs %s (a JSON body of %d bytes) back to back from %d goroutines, "+
			"each over its own keep-alive HTTP/1.1 connection, each request with a %s timeout and Grpc-Timeout: %s; "+
			"another (prober) GETs the cached public key, %s, every %s over its own connections, and a third (grpc-prober) "+
			"sends GetPublicKey over gRPC every %s. Requests are counted by HTTP status (or transport error); items by their result code in 200 answers.",
			batchPutPath, r.bodyBytes, o.floodConcurrency, floodCallTimeout, timeoutHeader(floodCallTimeout),
			publicKeyPath, probeInterval, probeInterval)
	} else {
		t.title = fmt.Sprintf("flood: %d concurrent calls of %d values of %d bytes, for %s", o.floodConcurrency, r.items, r.valueBytes, o.duration)
		t.note = fmt.Sprintf("One caller (flooder) sends BatchPutSecrets back to back from %d goroutines over %d connections, "+
			"each call with a %s deadline; another (prober) sends a cached GetPublicKey every %s over its own connection. "+
			"Whole calls are counted by their gRPC code; items by their result code in answered calls.",
			o.floodConcurrency, o.floodConns, floodCallTimeout, probeInterval)
	}
	t.add("target: peak RSS < 300 MB", yesNo(r.rss.hwm > 0 && r.rss.hwm < rssTarget))
	for _, p := range r.probes {
		p99, ok := percentile(slices.Sorted(slices.Values(p.latencies)), 99)
		t.add("target: "+p.name+" p99 < 100 ms, every probe OK", yesNo(ok && p99 < p99Target && p.ok == len(p.latencies)))
	}
	rssRows(&t, r.rss)
	n := total(r.calls)
	t.add("load generator CPU time during the flood (same machine)", secs(r.selfCPU))
	t.add("flood "+calls, fmt.Sprintf("%d (%.0f/s)", n, float64(n)/r.elapsed.Seconds()))
	if r.gateway {
		t.add("flood requests by HTTP status", countsText(r.calls))
		t.add("TCP connections the flood opened", strconv.FormatInt(r.dials, 10))
	} else {
		t.add("flood calls by code", countsText(r.calls))
	}
	t.add("items in answered flood "+calls+" by code", countsText(r.itemCodes))
	t.add("SecretService calls the broker logged, by code", countsText(r.log.callCodes))
	for _, p := range r.probes {
		probeRows(&t, p)
	}
	exitRows(&t, r.exit, r.exitErr, r.log)
	return t
}

// probeRows adds a prober's figures: its probes, their answers and their
// latency percentiles.
func probeRows(t *table, p probeResult) {
	sorted := slices.Sorted(slices.Values(p.latencies))
	t.add(p.name+": probes", strconv.Itoa(len(p.latencies)))
	t.add(p.name+": probes by answer", countsText(p.codes))
	for _, q := range []float64{50, 90, 99, 100} {
		name := fmt.Sprintf("%s latency p%g", p.name, q)
		if q == 100 {
			name = p.name + " latency max"
		}
		if v, ok := percentile(sorted, q); ok {
			t.add(name, ms(v))
		} else {
			t.add(name, "n/a")
		}
	}
}

func (r metadataResult) table() table {
	t := table{
		title: fmt.Sprintf("metadata: %d concurrent calls with 15 MiB of metadata each", metadataCalls),
		note: "Each call is one GetPublicKey from the flooder on its own HTTP/2 connection, sent frame by frame " +
			"(HEADERS and 16 KiB CONTINUATION frames), with 15 MiB of header values; a fresh broker per variant.",
	}
	for _, run := range r.runs {
		name := run.variant.name
		t.add(name+": answers", countsText(run.outcomes))
		t.add(name+": header block on the wire (HPACK) / most one call wrote into its socket before the answer",
			mb(run.wireSize)+" / "+mb(run.wireMax))
		t.add(name+": bytes the broker read (rchar), whole process life", mb(run.rss.readBytes))
		t.add(name+": broker peak RSS (VmHWM)", mb(run.rss.hwm))
		t.add(name+": target peak RSS < 300 MB", yesNo(run.rss.hwm > 0 && run.rss.hwm < rssTarget))
		t.add(name+": all calls answered in", secs(run.elapsed))
		t.add(name+": broker log lines at WARN or above", strconv.Itoa(run.log.warnPlus))
		if run.exitErr != nil {
			t.add(name+": broker exit", run.exitErr.Error())
		}
	}
	return t
}

func (r cancelResult) table() table {
	t := table{
		title: fmt.Sprintf("cancel: %d concurrent batches of %d values, cancelled after %s, then SIGTERM", cancelCalls, cancelItems, cancelAfter),
		note: fmt.Sprintf("The flooder sends %d BatchPutSecrets of %d values of %d bytes with no deadline on one connection "+
			"and cancels them all after %s; then the broker (--shutdown-timeout=%s) gets SIGTERM.",
			cancelCalls, cancelItems, cancelValueBytes, cancelAfter, shutdownTimeout),
	}
	t.add("target: peak RSS < 300 MB", yesNo(r.rss.hwm > 0 && r.rss.hwm < rssTarget))
	t.add("calls by code (client)", countsText(r.calls))
	t.add("last client call returned after the cancel", ms(r.callsReturned))
	t.add("calls the broker had logged as ended at SIGTERM", countsText(r.endedBefore))
	t.add("calls the broker had logged as ended at exit", countsText(r.endedAfter))
	if r.lastCallLine > 0 {
		t.add("broker's last call line after the cancel", ms(r.lastCallLine))
	}
	rssRows(&t, r.rss)
	exitRows(&t, r.exit, r.exitErr, r.log)
	return t
}
