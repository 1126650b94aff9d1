package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

// What the batches scenario sends, and its target.
const (
	batchValueBytes  = 64
	batchCallTimeout = 60 * time.Second
	// maxBatchProbing bounds how long the prober probes, however long the
	// batches take.
	maxBatchProbing = 120 * time.Second
	// batchesP99Target is the prober's GetSecret p99 while the batches run.
	batchesP99Target = 50 * time.Millisecond
	// probeSecret is the secret the prober reads; written once first.
	probeSecret = repoScope + "/secrets/PROBE"
)

// batchScopes are the demo organization's repositories' Actions scopes the
// batches are spread over, goroutine w writing to the (w mod 3)th.
func batchScopes() []string {
	return []string{
		"repos/octo-org/hello-world/actions",
		"repos/octo-org/secret-sauce/actions",
		"repos/octo-org/docs/actions",
	}
}

// pacingOffFlags turn the broker's upstream pacing limits off (up to
// GitHub's 100 requests in flight) and its per-caller inbound limits, so
// that the front door refuses none of the flooder's concurrent calls.
func pacingOffFlags() []string {
	return []string{
		"--upstream-write-interval=0",
		"--upstream-points-per-minute=0",
		"--upstream-cpu-time-per-minute=0",
		"--upstream-writes-per-minute=0",
		"--upstream-writes-per-hour=0",
		"--upstream-max-in-flight=100",
		"--caller-max-concurrent=0",
		"--caller-rps=0",
	}
}

// batchesFlags are the batches scenario's broker flags: GitHub at
// upstreamURL (the token is in the environment), pacing limits off, and
// no bound on calls at work, so that all the concurrent batches are
// admitted (with pacing off their items seldom wait for the pacer).
func (e *runEnv) batchesFlags(upstreamURL, grpcAddr, httpAddr string) []string {
	return e.flags([]string{"--upstream-url=" + upstreamURL}, grpcAddr, httpAddr, append(pacingOffFlags(), "--max-working-calls=0")...)
}

// compareFlags are the compare scenario's broker flags: GitHub at
// upstreamURL, pacing limits off, the broker's own inbound bounds as they
// are by default (the overload phase measures them).
func (e *runEnv) compareFlags(upstreamURL, grpcAddr, httpAddr string) []string {
	return e.flags([]string{"--upstream-url=" + upstreamURL}, grpcAddr, httpAddr, pacingOffFlags()...)
}

// batchesResult is what the batches scenario measured.
type batchesResult struct {
	calls     map[string]int // whole batches by gRPC code
	itemCodes map[string]int // items of answered batches by code
	elapsed   time.Duration  // from the first batch's start to the last one's return
	brokerCPU time.Duration  // the broker's CPU time meanwhile
	selfCPU   time.Duration  // this process's (emulator and clients) meanwhile
	upstream  emulator.Stats // the emulator's counters at the end
	requests  int            // requests the emulator received while the batches ran
	routes    map[string]int // ... by route, of upstreamRoutes
	probe     probeResult
	rss       rssSeries
	exit      time.Duration
	exitErr   error
	log       logSnapshot
}

// runBatches runs the batches scenario: a GitHub emulator in this
// process, without rate limits, and a broker without --dev against it,
// its pacing limits off; o.batches goroutines, each over its own
// connection, send o.batchRounds BatchPutSecrets of o.batchItems values
// one after another while the prober reads probeSecret every
// probeInterval over its own.
func runBatches(ctx context.Context, o options, env *runEnv) (batchesResult, error) {
	var r batchesResult
	em := emulator.New(emulator.Options{Token: env.githubToken})
	em.SeedDemo()
	upstreamURL, stopEmulator, err := serveEmulator(ctx, em)
	if err != nil {
		return r, err
	}
	defer stopEmulator()

	fmt.Fprintf(env.stderr, "batches: starting the broker against the emulator ...\n")
	b, err := env.startWith(ctx, launch{
		flags: func(grpcAddr, httpAddr string) []string { return env.batchesFlags(upstreamURL, grpcAddr, httpAddr) },
		env:   []string{"GITHUB_TOKEN=" + env.githubToken},
	})
	if err != nil {
		return r, err
	}
	defer b.kill()

	probeConn, err := dial(b.grpcAddr, env.secret[1])
	if err != nil {
		return r, err
	}
	defer probeConn.Close()
	probeClient := secretbrokerv1.NewSecretServiceClient(probeConn)
	if err := putProbeSecret(ctx, probeClient); err != nil {
		return r, err
	}
	probe := secretProber("prober", probeClient)
	if err := warm(ctx, probe); err != nil {
		return r, err
	}

	clients := make([]secretbrokerv1.SecretServiceClient, o.batches)
	for w := range clients {
		conn, err := dial(b.grpcAddr, env.secret[0])
		if err != nil {
			return r, err
		}
		defer conn.Close()
		clients[w] = secretbrokerv1.NewSecretServiceClient(conn)
	}
	values := randomValues(o.batchItems, batchValueBytes) // shared by every batch: strings are immutable
	scopes := batchScopes()
	reqs := make([][]*secretbrokerv1.BatchPutSecretsRequest, o.batches)
	for w := range reqs {
		for round := range o.batchRounds {
			first := (round*o.batches + w) * o.batchItems // every item names a secret of its own
			reqs[w] = append(reqs[w], scopeBatchRequest(scopes[w%len(scopes)], "BATCH", first, values))
		}
	}

	fmt.Fprintf(env.stderr, "batches: %d goroutines, each sending %d batch(es) of %d values of %d bytes (deadline %s) ...\n",
		o.batches, o.batchRounds, o.batchItems, batchValueBytes, batchCallTimeout)
	stopRSS := sampleRSS(b.pid, rssInterval)
	brokerCPU, _ := procCPU(b.pid) // 0 when unreadable: the figure is then the whole life's
	selfCPU := ownCPU()
	requests, routes := em.Stats().Requests, routeCounts(em)
	stopProbing := make(chan struct{})
	waitProbes := probeLoop(ctx, probe, int(maxBatchProbing/probeInterval), stopProbing)
	start := time.Now()
	var calls, items tally
	var wg sync.WaitGroup
	for w, client := range clients {
		wg.Go(func() {
			for _, req := range reqs[w] {
				if ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, batchCallTimeout)
				resp, err := client.BatchPutSecrets(cctx, req)
				cancel()
				calls.add(codeName(status.Code(err)), 1)
				for _, res := range resp.GetResults() {
					items.add(res.GetCode().String(), 1)
				}
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	close(stopProbing)
	r.probe = waitProbes()
	r.requests = em.Stats().Requests - requests
	r.routes = routeCounts(em)
	for k, n := range routes {
		r.routes[k] -= n
	}
	r.selfCPU = ownCPU() - selfCPU
	r.rss = stopRSS()
	r.brokerCPU = r.rss.cpu - brokerCPU
	r.calls, r.itemCodes = calls.counts(), items.counts()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.exit, r.exitErr = b.stop()
	r.log = b.log.snapshot()
	r.upstream = em.Stats()
	return r, nil
}

// serveEmulator serves em on a free loopback port until stop is called,
// and returns its base URL.
func serveEmulator(ctx context.Context, em *emulator.Server) (baseURL string, stop func(), err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("the emulator's listener: %w", err)
	}
	srv := &http.Server{Handler: em, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ErrServerClosed once stop closes it
	}()
	return "http://" + ln.Addr().String(), func() {
		_ = srv.Close()
		<-done
	}, nil
}

// upstreamRoutes are the emulator's routes the batches scenario uses.
func upstreamRoutes() []string {
	return []string{emulator.RoutePutRepoSecret, emulator.RouteGetRepoSecret, emulator.RouteGetRepoPublicKey, emulator.RouteListRepoSecrets}
}

// routeCounts is how many requests em received on each of upstreamRoutes.
func routeCounts(em *emulator.Server) map[string]int {
	m := map[string]int{}
	for _, route := range upstreamRoutes() {
		m[route] = em.Count(route)
	}
	return m
}

// putProbeSecret writes probeSecret, which the prober then reads.
func putProbeSecret(ctx context.Context, c secretbrokerv1.SecretServiceClient) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := c.PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
		Name:    probeSecret,
		Payload: &secretbrokerv1.PutSecretRequest_Value{Value: randomValues(1, batchValueBytes)[0]},
	})
	if err != nil {
		return fmt.Errorf("writing %s: %s", probeSecret, codeName(status.Code(err)))
	}
	return nil
}

// secretProber reads probeSecret through c: a GetSecret, which the broker
// does not cache, so that every probe goes to GitHub through its pacer.
func secretProber(name string, c secretbrokerv1.SecretServiceClient) prober {
	req := &secretbrokerv1.GetSecretRequest{Name: probeSecret}
	return prober{name: name, probe: func(ctx context.Context) (string, bool) {
		_, err := c.GetSecret(ctx, req)
		return codeName(status.Code(err)), err == nil
	}}
}

func (r batchesResult) table(o options, env *runEnv) table {
	t := table{
		title: fmt.Sprintf("batches: %d concurrent batches of %d values of %d bytes, pacing limits off", o.batches, o.batchItems, batchValueBytes),
		note: fmt.Sprintf("Not part of --scenario all: this measures the broker's upstream pacer, not its front door. "+
			"A GitHub emulator without rate limits runs in the load command's process; the broker runs without --dev against it, "+
			"the token in its environment, with `%s`: pacing limits off (writes unspaced, no points budget, 100 requests in flight), "+
			"and the per-caller limits off so that the front door refuses none of the flooder's calls. "+
			"One caller (flooder) sends BatchPutSecrets from %d goroutines at once, each over its own connection (%d a goroutine, one after another), "+
			"each with a %s deadline, spread over %s; "+
			"another (prober) sends GetSecret of %s, which goes to GitHub through the pacer, every %s over its own connection "+
			"while they run (at most %s); the broker coalesces identical reads in flight, so probes that overlap may share one GET. "+
			"Whole batches are counted by their gRPC code; items by their result code.",
			strings.Join(env.batchesFlags("http://127.0.0.1:PORT", placeholderAddr, placeholderAddr), " "),
			o.batches, o.batchRounds, batchCallTimeout, strings.Join(batchScopes(), ", "),
			probeSecret, probeInterval, maxBatchProbing),
	}
	p99, ok := percentile(slices.Sorted(slices.Values(r.probe.latencies)), 99)
	t.add("target: prober p99 < 50 ms, every probe OK", yesNo(ok && p99 < batchesP99Target && r.probe.ok == len(r.probe.latencies)))
	n := total(r.calls)
	t.add("batches", fmt.Sprintf("%d (%d goroutines × %d)", n, o.batches, o.batchRounds))
	t.add("batches by code", countsText(r.calls))
	t.add("items by code", countsText(r.itemCodes))
	t.add("batches' wall time (first start to last return)", secs(r.elapsed))
	t.add("items written (OK) per second", fmt.Sprintf("%.0f", float64(r.itemCodes["OK"])/r.elapsed.Seconds()))
	t.add("emulator requests while the batches ran", fmt.Sprintf("%d (%.0f/s)", r.requests, float64(r.requests)/r.elapsed.Seconds()))
	t.add("… by route", countsText(r.routes))
	t.add("emulator requests in flight at most", strconv.Itoa(r.upstream.PeakInFlight))
	t.add("broker CPU time during the batches", secs(r.brokerCPU))
	t.add("load command CPU time during the batches (emulator and clients, same machine)", secs(r.selfCPU))
	rssRows(&t, r.rss)
	t.add("SecretService calls the broker logged, by code", countsText(r.log.callCodes))
	probeRows(&t, r.probe)
	exitRows(&t, r.exit, r.exitErr, r.log)
	return t
}
