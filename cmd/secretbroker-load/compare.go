package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// What the compare scenario sends, and its targets.
const (
	compareValueBytes  = 64
	compareNames       = 100 // the secrets written, CMP_0 to CMP_99, in turn
	compareCallTimeout = 10 * time.Second
	compareGRPCConns   = 4 // connections the saturation workers share
	// refuseWithin is how soon an overload refusal must come.
	refuseWithin = 100 * time.Millisecond
	// recoveryProbeEvery and recoveryRun: after the flood, a PutSecret
	// every 10 ms; the broker has recovered when 10 in a row all succeed
	// and their median (the mean of the middle two) is at most twice the
	// p50 at the fixed rate.
	recoveryProbeEvery = 10 * time.Millisecond
	recoveryRun        = 10
	// maxOverloadInFlight bounds the overload phase's calls in flight, to
	// protect this process; calls beyond it are not sent and counted.
	maxOverloadInFlight = 50_000
)

// The compare scenario's paths through the broker's JSON gateway.
const (
	gatewaySecretPrefix = "/v1/" + repoScope + "/secrets/"
	directOwnerRepo     = "octo-org/hello-world"
)

// Names of the compare scenario's paths, the rows of its tables.
const (
	pathSeal       = "floor: seal 64 bytes (nacl box.SealAnonymous + base64)"
	pathHealth     = "floor: bare gRPC unary (health Check, in-process server)"
	pathHTTP       = "floor: bare HTTP/1.1 GET (net/http, in-process server, the public key's JSON answer)"
	pathDirect     = "direct client: sealed PUT to the emulator (pooled, key cached)"
	pathGRPCPut    = "broker gRPC PutSecret"
	pathGatewayPut = "broker gateway PUT (PutSecret)"
	pathGRPCKey    = "broker gRPC GetPublicKey (cached)"
	pathGatewayKey = "broker gateway GET public-key (cached)"
)

// comparePaths are the paths in the order they are measured in a round.
func comparePaths() []string {
	return []string{pathSeal, pathHealth, pathHTTP, pathDirect, pathGRPCPut, pathGatewayPut, pathGRPCKey, pathGatewayKey}
}

// pathShortNames are the names --paths takes.
var pathShortNames = map[string]string{
	"seal": pathSeal, "health": pathHealth, "http": pathHTTP, "direct": pathDirect,
	"grpc-put": pathGRPCPut, "gateway-put": pathGatewayPut, "grpc-key": pathGRPCKey, "gateway-key": pathGatewayKey,
}

// selectPaths returns the paths --paths names (comma-separated short
// names; empty: all), in comparePaths' order. The gRPC PutSecret is always
// one: the overload phase is measured against it.
func selectPaths(list string) ([]string, error) {
	if list == "" {
		return comparePaths(), nil
	}
	want := map[string]bool{pathGRPCPut: true}
	for name := range strings.SplitSeq(list, ",") {
		path, ok := pathShortNames[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("--paths: unknown path %q (seal, health, http, direct, grpc-put, gateway-put, grpc-key, gateway-key)", name)
		}
		want[path] = true
	}
	return slices.DeleteFunc(comparePaths(), func(p string) bool { return !want[p] }), nil
}

// callFunc makes the i-th call: i picks the secret, the value and the
// gRPC connection. The compare scenario's calls are sequenced: they take
// i from one counter across every path and phase instead.
type callFunc func(ctx context.Context, i int) error

// phase is one measurement of one path: saturation or fixed rate.
type phase struct {
	calls, errs int
	elapsed     time.Duration
	lat         []time.Duration // sorted; of every call, a failed one at the time it failed
	selfCPU     time.Duration   // this process
	brokerCPU   time.Duration
	emuCPU      time.Duration
	newConns    int64 // connections the emulator accepted
	upstream    int   // requests the emulator served
}

// figures are a phase's numbers.
type figures struct {
	calls, errs                   float64
	rps                           float64
	p50, p99, p999                float64 // ms
	selfCPU, brokerCPU, emuCPU    float64 // µs per call
	connsPer1000, upstreamPerCall float64
}

func (p phase) figures() figures {
	f := figures{calls: float64(p.calls), errs: float64(p.errs)}
	if p.elapsed > 0 {
		f.rps = float64(p.calls-p.errs) / p.elapsed.Seconds()
	}
	pct := func(q float64) float64 {
		v, _ := percentile(p.lat, q)
		return float64(v.Microseconds()) / 1000
	}
	f.p50, f.p99, f.p999 = pct(50), pct(99), pct(99.9)
	if p.calls > 0 {
		n := float64(p.calls)
		f.selfCPU = float64(p.selfCPU.Microseconds()) / n
		f.brokerCPU = float64(p.brokerCPU.Microseconds()) / n
		f.emuCPU = float64(p.emuCPU.Microseconds()) / n
		f.connsPer1000 = float64(p.newConns) * 1000 / n
		f.upstreamPerCall = float64(p.upstream) / n
	}
	return f
}

// compareResult is what the compare scenario measured.
type compareResult struct {
	workers, rate, rounds int
	phaseLen              time.Duration
	sat, fixed            map[string][]figures // by path, one per round
	overload              overloadResult
	overloadRateSet       bool // --overload-rate, not twice the saturation throughput
	brokerFlags           []string
}

// median is the median of get over fs, one per round (medianSorted: the
// mean of the middle two for an even count of rounds).
func median(fs []figures, get func(figures) float64) float64 {
	v := make([]float64, len(fs))
	for i, f := range fs {
		v[i] = get(f)
	}
	slices.Sort(v)
	return medianSorted(v)
}

// compareEnv is what the compare scenario's calls use.
type compareEnv struct {
	emu        *emulatorProc
	broker     *brokerProc
	values     []string
	key        *[32]byte
	keyID      string
	direct     *http.Client
	gateway    *http.Client
	floor      *http.Client // to the bare HTTP floor
	floorURL   string
	grpcs      []secretbrokerv1.SecretServiceClient
	health     healthpb.HealthClient
	token      string // the flooder's
	githubAuth string
}

// runCompare runs the compare scenario: the emulator in a child process,
// the broker against it with pacing off, each path at saturation and at a
// fixed rate in o.rounds interleaved rounds, then an overload phase.
func runCompare(ctx context.Context, o options, env *runEnv) (compareResult, error) {
	r := compareResult{workers: o.workers, rate: o.rate, rounds: o.rounds, phaseLen: o.duration,
		sat: map[string][]figures{}, fixed: map[string][]figures{}}
	emu, err := startEmulatorChild(ctx, env.githubToken)
	if err != nil {
		return r, err
	}
	defer emu.stop()

	fmt.Fprintf(env.stderr, "compare: starting the broker against the emulator (pid %d) ...\n", emu.pid)
	r.brokerFlags = env.compareFlags("http://127.0.0.1:PORT", placeholderAddr, placeholderAddr)
	b, err := env.startWith(ctx, launch{
		flags: func(grpcAddr, httpAddr string) []string { return env.compareFlags(emu.url, grpcAddr, httpAddr) },
		env:   []string{"GITHUB_TOKEN=" + env.githubToken},
	})
	if err != nil {
		return r, err
	}
	defer b.kill()

	ce := &compareEnv{emu: emu, broker: b, values: randomValues(compareNames, compareValueBytes),
		token: env.secret[0], githubAuth: "Bearer " + env.githubToken}
	ce.direct, _ = newHTTPClient(o.workers + 16)
	defer ce.direct.CloseIdleConnections()
	ce.gateway, _ = newHTTPClient(o.workers + 16)
	defer ce.gateway.CloseIdleConnections()
	for range compareGRPCConns {
		conn, err := dial(b.grpcAddr, env.secret[0])
		if err != nil {
			return r, err
		}
		defer conn.Close()
		ce.grpcs = append(ce.grpcs, secretbrokerv1.NewSecretServiceClient(conn))
	}
	stopHealth, healthAddr, err := serveHealth(ctx)
	if err != nil {
		return r, err
	}
	defer stopHealth()
	hconn, err := grpc.NewClient("passthrough:///"+healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return r, fmt.Errorf("health connection: %w", err)
	}
	defer hconn.Close()
	ce.health = healthpb.NewHealthClient(hconn)
	if err := ce.fetchKey(ctx); err != nil {
		return r, err
	}
	answer, err := ce.gatewayAnswer(ctx, publicKeyPath)
	if err != nil {
		return r, err
	}
	stopFloor, floorAddr, err := serveHTTPFloor(ctx, answer)
	if err != nil {
		return r, err
	}
	defer stopFloor()
	ce.floor, _ = newHTTPClient(o.workers + 16)
	defer ce.floor.CloseIdleConnections()
	ce.floorURL = "http://" + floorAddr + publicKeyPath
	calls := sequenced(ce.calls())
	paths, err := selectPaths(o.paths)
	if err != nil {
		return r, err
	}
	for _, path := range paths {
		if err := warmPath(ctx, calls[path], o.workers); err != nil {
			return r, fmt.Errorf("warming %s: %w", path, err)
		}
	}

	for round := range o.rounds {
		for _, path := range roundOrder(paths, round) {
			if err := ctx.Err(); err != nil {
				return r, err
			}
			fmt.Fprintf(env.stderr, "compare: round %d/%d: %s: %d workers for %s, then %d/s for %s ...\n",
				round+1, o.rounds, path, o.workers, o.duration, o.rate, o.duration)
			p, err := ce.measure(ctx, path, func() (phase, error) { return saturate(ctx, calls[path], o.workers, o.duration), nil })
			if err != nil {
				return r, err
			}
			r.sat[path] = append(r.sat[path], p.figures())
			p, err = ce.measure(ctx, path, func() (phase, error) { return fixedRate(ctx, calls[path], o.rate, o.duration), nil })
			if err != nil {
				return r, err
			}
			r.fixed[path] = append(r.fixed[path], p.figures())
		}
	}

	satRPS := median(r.sat[pathGRPCPut], func(f figures) float64 { return f.rps })
	normal := median(r.fixed[pathGRPCPut], func(f figures) float64 { return f.p50 })
	normalP99 := median(r.fixed[pathGRPCPut], func(f figures) float64 { return f.p99 })
	rate := 2 * satRPS
	if o.overloadRate > 0 {
		rate, r.overloadRateSet = float64(o.overloadRate), true
	}
	fmt.Fprintf(env.stderr, "compare: overload: gRPC PutSecret at %.0f/s for %s ...\n", rate, o.duration)
	r.overload, err = overload(ctx, calls[pathGRPCPut], b, emu.pid, rate, o.duration, normal, normalP99)
	if err != nil {
		return r, err
	}
	return r, ctx.Err()
}

// roundOrder is the order of the paths in round (from 0): as given in
// even rounds, reversed in odd ones, so that what a path leaves behind
// (connections closing, the collector, the emulator's map growing) does
// not always fall on the same next path.
func roundOrder(paths []string, round int) []string {
	if round%2 == 0 {
		return paths
	}
	r := slices.Clone(paths)
	slices.Reverse(r)
	return r
}

// warmPath makes compareNames calls one after another (keys cached,
// every secret written once), then a few calls from each of workers
// goroutines at once, so that the pools of connections, the client's and
// the broker's to the emulator, hold what saturation needs before
// anything is measured: new connections then count churn, not the pools
// filling.
func warmPath(ctx context.Context, call callFunc, workers int) error {
	for i := range compareNames {
		if err := call(ctx, i); err != nil {
			return err
		}
	}
	const each = 4
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := call(ctx, w*each+i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}

// measure runs run and adds the CPU times and emulator counters of what
// it did.
func (ce *compareEnv) measure(ctx context.Context, _ string, run func() (phase, error)) (phase, error) {
	self0 := ownCPU()
	broker0, _ := procCPU(ce.broker.pid)
	emu0, _ := procCPU(ce.emu.pid)
	st0, err := ce.emu.stats(ctx)
	if err != nil {
		return phase{}, err
	}
	p, err := run()
	if err != nil {
		return p, err
	}
	p.selfCPU = ownCPU() - self0
	broker1, _ := procCPU(ce.broker.pid)
	emu1, _ := procCPU(ce.emu.pid)
	p.brokerCPU, p.emuCPU = broker1-broker0, emu1-emu0
	st1, err := ce.emu.stats(ctx)
	if err != nil {
		return p, err
	}
	// The stats request itself opens no API connection: it has a port of
	// its own.
	p.newConns, p.upstream = st1.Connections-st0.Connections, st1.Requests-st0.Requests
	return p, nil
}

// saturate runs call from workers goroutines, one call after another, for
// d: a closed loop. Failed calls are latency samples too, timed to their
// failure, so that the percentiles cover every call.
func saturate(ctx context.Context, call callFunc, workers int, d time.Duration) phase {
	var mu sync.Mutex
	var p phase
	var next atomic.Int64
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			for time.Now().Before(end) && ctx.Err() == nil {
				i := int(next.Add(1))
				t := time.Now()
				if err := call(ctx, i); err != nil {
					errs++ // and a sample too, at the time it failed
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			p.lat = append(p.lat, lat...)
			p.errs += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	p.calls = len(p.lat)
	slices.Sort(p.lat)
	return p
}

// fixedRate starts a call every 1/rate s for d, each in its own goroutine
// (an open loop), and times each from when it was scheduled to be sent,
// so that a slow answer delays no later call's clock (no coordinated
// omission). Failed calls are latency samples too, timed to their failure.
func fixedRate(ctx context.Context, call callFunc, rate int, d time.Duration) phase {
	var mu sync.Mutex
	var p phase
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		sched := start.Add(time.Duration(i) * interval)
		if w := time.Until(sched); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			err := call(ctx, i)
			l := time.Since(sched)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.errs++ // and a sample too, at the time it failed
			}
			p.lat = append(p.lat, l)
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	p.calls = len(p.lat)
	slices.Sort(p.lat)
	return p
}

// compareValue is the value of the i-th call, which writes secret
// i%compareNames: one of values (hex, compareValueBytes long) with its
// last 16 characters the call's index in hex, so that no two calls write
// the same value. With i from one counter across every path and phase
// (sequenced), no write repeats the value its secret last got, whatever
// the paths between, and none is skipped as unchanged (the broker's record
// would skip a repeated one, issue 11): every broker PutSecret seals and
// PUTs, as the direct client does.
func compareValue(values []string, i int) string {
	return fmt.Sprintf("%s%016x", values[i%len(values)][:compareValueBytes-16], uint64(i))
}

// sequenced returns calls with i taken from one counter that every path
// and phase shares (warm-ups, saturation, fixed rate, overload, recovery
// probes), not the index the phase passes: a phase's indexes start at 0
// again, and the broker's two PutSecret paths write the same secrets.
func sequenced(calls map[string]callFunc) map[string]callFunc {
	next := new(atomic.Int64)
	out := make(map[string]callFunc, len(calls))
	for path, call := range calls {
		out[path] = func(ctx context.Context, _ int) error { return call(ctx, int(next.Add(1)-1)) }
	}
	return out
}

// calls are the paths' calls, unsequenced.
func (ce *compareEnv) calls() map[string]callFunc {
	value := func(i int) string { return compareValue(ce.values, i) }
	name := func(i int) string { return fmt.Sprintf("CMP_%d", i%compareNames) }
	client := func(i int) secretbrokerv1.SecretServiceClient { return ce.grpcs[i%len(ce.grpcs)] }
	keyReq := &secretbrokerv1.GetPublicKeyRequest{Parent: repoScope}
	body := func(i int) []byte { return []byte(`{"value":"` + value(i) + `"}`) } // hex needs no escaping
	return map[string]callFunc{
		pathSeal: func(_ context.Context, i int) error {
			_, err := sealValue(ce.key, value(i))
			return err
		},
		pathHealth: func(ctx context.Context, _ int) error {
			ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
			defer cancel()
			_, err := ce.health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
		pathHTTP: func(ctx context.Context, _ int) error {
			ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ce.floorURL, nil)
			if err != nil {
				return fmt.Errorf("request: %w", err)
			}
			req.Header.Set("Authorization", "Bearer "+ce.token)
			return doStatus(ce.floor, req)
		},
		pathDirect: func(ctx context.Context, i int) error {
			return ce.directPut(ctx, name(i), value(i))
		},
		pathGRPCPut: func(ctx context.Context, i int) error {
			ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
			defer cancel()
			_, err := client(i).PutSecret(ctx, &secretbrokerv1.PutSecretRequest{
				Name:    secretName(repoScope, "CMP", i%compareNames),
				Payload: &secretbrokerv1.PutSecretRequest_Value{Value: value(i)},
			})
			return err
		},
		pathGatewayPut: func(ctx context.Context, i int) error {
			return ce.gatewayDo(ctx, http.MethodPut, gatewaySecretPrefix+name(i), body(i))
		},
		pathGRPCKey: func(ctx context.Context, i int) error {
			ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
			defer cancel()
			_, err := client(i).GetPublicKey(ctx, keyReq)
			return err
		},
		pathGatewayKey: func(ctx context.Context, _ int) error {
			return ce.gatewayDo(ctx, http.MethodGet, publicKeyPath, nil)
		},
	}
}

// sealValue seals value for key and base64-encodes it, as the broker and
// any well-written client do.
func sealValue(key *[32]byte, value string) (string, error) {
	sealed, err := box.SealAnonymous(nil, []byte(value), key, rand.Reader)
	if err != nil {
		return "", fmt.Errorf("sealing: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// fetchKey reads the demo repository's public key from the emulator once,
// for the seal floor and the direct client.
func (ce *compareEnv) fetchKey(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ce.emu.url+"/repos/"+directOwnerRepo+"/actions/secrets/public-key", nil)
	if err != nil {
		return fmt.Errorf("public key request: %w", err)
	}
	req.Header.Set("Authorization", ce.githubAuth)
	resp, err := ce.direct.Do(req)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	defer resp.Body.Close()
	var k struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil {
		return fmt.Errorf("public key: HTTP %d: %w", resp.StatusCode, err)
	}
	raw, err := base64.StdEncoding.DecodeString(k.Key)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("public key: HTTP %d, not a 32-byte key", resp.StatusCode)
	}
	ce.key, ce.keyID = (*[32]byte)(raw), k.KeyID
	return nil
}

// directPut seals value and PUTs it to the emulator as the secret name.
func (ce *compareEnv) directPut(ctx context.Context, name, value string) error {
	sealed, err := sealValue(ce.key, value)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"encrypted_value": sealed, "key_id": ce.keyID})
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, ce.emu.url+"/repos/"+directOwnerRepo+"/actions/secrets/"+name, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", ce.githubAuth)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Content-Type", "application/json")
	return doStatus(ce.direct, req)
}

// gatewayDo sends a request to the broker's gateway as the flooder.
func (ce *compareEnv) gatewayDo(ctx context.Context, method, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ce.broker.httpAddr+path, rd)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+ce.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return doStatus(ce.gateway, req)
}

// doStatus sends req and reads the answer; an answer other than 2xx is an
// error naming its status.
func doStatus(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s", transportKind(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// gatewayAnswer is the body of the broker gateway's 200 answer to a GET
// of path.
func (ce *compareEnv) gatewayAnswer(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, compareCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ce.broker.httpAddr+path, nil)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+ce.token)
	resp, err := ce.gateway.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d (%v)", path, resp.StatusCode, err)
	}
	return body, nil
}

// serveHTTPFloor serves answer as JSON to every request, with net/http's
// defaults, on a loopback port: the bare HTTP/1.1 floor, what a JSON
// call costs before any gateway work.
func serveHTTPFloor(ctx context.Context, answer []byte) (stop func(), addr string, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("HTTP floor listener: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }, ln.Addr().String(), nil
}

// serveHealth serves gRPC health (SERVING) on a loopback port: the bare
// unary floor.
func serveHealth(ctx context.Context) (stop func(), addr string, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("health listener: %w", err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	return srv.Stop, ln.Addr().String(), nil
}

// overloadResult is what the overload phase measured.
type overloadResult struct {
	rate            float64
	sent, notSent   int
	codes           map[string]int
	refusedFast     int           // answered RESOURCE_EXHAUSTED within refuseWithin
	admittedP50     time.Duration // of OK calls
	admittedP99     time.Duration
	sendLagP99      time.Duration                                // of OK calls: from the scheduled send to the call's start in this process
	fromSendP99     time.Duration                                // of OK calls: from the call's start
	cores           struct{ broker, self, emu, machine float64 } // CPUs busy during the flood (machine: all processes, from /proc/stat)
	normalP50       time.Duration                                // the fixed-rate p50 recovery is measured against
	normalP99       time.Duration                                // the fixed-rate p99 the admitted p99 is measured against
	peakRSS         int64                                        // highest VmRSS sample during the phase and recovery
	hwm             int64
	recovered       bool
	recovery        time.Duration // from the flood's end to the first probe of the run that recovered
	recoveryProbes  int
	probeCodes      map[string]int // the recovery probes' answers
	lastProbeMedian time.Duration
}

// overload sends call at rate for d (an open loop, each call with
// compareCallTimeout), then a probe every recoveryProbeEvery until the
// median of recoveryRun probes in a row is at most twice normalP50 (ms),
// or until the flood's calls have had time to end and recoveryRun more.
func overload(ctx context.Context, call callFunc, b *brokerProc, emuPID int, rate float64, d time.Duration, normalP50, normalP99 float64) (overloadResult, error) {
	r := overloadResult{rate: rate, codes: map[string]int{}, probeCodes: map[string]int{},
		normalP50: time.Duration(normalP50 * float64(time.Millisecond)),
		normalP99: time.Duration(normalP99 * float64(time.Millisecond))}
	if rate <= 0 {
		return r, errors.New("no saturation throughput to double")
	}
	interval := time.Duration(float64(time.Second) / rate)
	if interval <= 0 {
		return r, fmt.Errorf("overload rate %.0f/s: more than one call a nanosecond", rate)
	}
	stopRSS := sampleRSS(b.pid, rssInterval)
	n := int(d / interval)
	var mu sync.Mutex
	var ok, okLag, okFromSend []time.Duration
	var inFlight atomic.Int64
	self0, broker0, emu0, machine0 := ownCPU(), procCPUOrZero(b.pid), procCPUOrZero(emuPID), machineCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		sched := start.Add(time.Duration(i) * interval)
		if w := time.Until(sched); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		if inFlight.Load() >= maxOverloadInFlight {
			r.notSent++
			continue
		}
		r.sent++
		inFlight.Add(1)
		wg.Go(func() {
			defer inFlight.Add(-1)
			began := time.Now()
			err := call(ctx, i)
			l := time.Since(sched)
			mu.Lock()
			defer mu.Unlock()
			r.codes[codeName(status.Code(err))]++
			if err == nil {
				ok = append(ok, l)
				okLag = append(okLag, began.Sub(sched))
				okFromSend = append(okFromSend, time.Since(began))
			} else if refusedFast(status.Code(err), l) {
				r.refusedFast++
			}
		})
	}
	floodEnd := time.Now()
	if wall := floodEnd.Sub(start).Seconds(); wall > 0 {
		r.cores.self = (ownCPU() - self0).Seconds() / wall
		r.cores.broker = (procCPUOrZero(b.pid) - broker0).Seconds() / wall
		r.cores.emu = (procCPUOrZero(emuPID) - emu0).Seconds() / wall
		r.cores.machine = machineCPU().busySince(machine0) / wall
	}

	// Recovery: probes every recoveryProbeEvery, timed from their
	// scheduled send, until recoveryRun in a row succeed with a median at
	// most twice the normal p50.
	limit := compareCallTimeout + d + 2*time.Second
	target := 2 * r.normalP50
	all := make([]recoveryProbe, int(limit/recoveryProbeEvery)) // written by the probes under mu
	sent := 0
	var pwg sync.WaitGroup
	for i := range all {
		sched := floodEnd.Add(time.Duration(i) * recoveryProbeEvery)
		if w := time.Until(sched); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		pwg.Go(func() {
			err := call(ctx, i)
			l := time.Since(sched)
			mu.Lock()
			all[i] = recoveryProbe{at: sched.Sub(floodEnd), lat: l, answered: true, failed: err != nil}
			r.probeCodes[codeName(status.Code(err))]++
			mu.Unlock()
		})
		if i%recoveryRun == 0 {
			mu.Lock()
			_, _, done := firstRecovered(all[:sent], target)
			mu.Unlock()
			if done {
				break
			}
		}
	}
	pwg.Wait()
	wg.Wait()
	probes := all[:sent]
	s := stopRSS()
	r.peakRSS = slices.Max(append(s.samples, 0))
	r.hwm = s.hwm
	slices.Sort(ok)
	r.admittedP50, _ = percentile(ok, 50)
	r.admittedP99, _ = percentile(ok, 99)
	slices.Sort(okLag)
	slices.Sort(okFromSend)
	r.sendLagP99, _ = percentile(okLag, 99)
	r.fromSendP99, _ = percentile(okFromSend, 99)
	r.recoveryProbes = len(probes)
	r.recovery, r.lastProbeMedian, r.recovered = firstRecovered(probes, target)
	return r, ctx.Err()
}

// refusedFast says whether an overload call that ended with code after l
// was refused as the issue asks: RESOURCE_EXHAUSTED (shed, with a
// RetryInfo) within refuseWithin. Another error, however fast, is not a
// refusal.
func refusedFast(code codes.Code, l time.Duration) bool {
	return code == codes.ResourceExhausted && l <= refuseWithin
}

// recoveryProbe is one probe after the flood: when it was scheduled,
// from the flood's end, its latency (to its answer or its failure), and
// whether it has been answered and failed.
type recoveryProbe struct {
	at, lat          time.Duration
	answered, failed bool
}

// firstRecovered finds the first run of recoveryRun answered probes in a
// row that all succeeded and whose median latency is at most target, and
// returns when its first probe was scheduled; otherwise the last complete
// run's median (failed probes timed to their failure).
func firstRecovered(probes []recoveryProbe, target time.Duration) (at, med time.Duration, ok bool) {
	lat := make([]time.Duration, recoveryRun)
next:
	for i := 0; i+recoveryRun <= len(probes); i++ {
		failed := false
		for j := range lat {
			if !probes[i+j].answered {
				continue next // not answered yet
			}
			lat[j] = probes[i+j].lat
			failed = failed || probes[i+j].failed
		}
		slices.Sort(lat)
		med = medianSorted(lat)
		if !failed && med <= target {
			return probes[i].at, med, true
		}
	}
	return 0, med, false
}

// medianSorted is the median of sorted: the middle value, or the mean of
// the two middle values for an even count (an integer's truncated); 0 for
// none. Every median the command reports is taken with it.
func medianSorted[T ~int64 | ~float64](sorted []T) T {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	}
	return sorted[n/2-1] + (sorted[n/2]-sorted[n/2-1])/2
}

// markdown prints the compare scenario's tables.
func (r compareResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### compare: the broker's own cost, side by side (medians of %d interleaved rounds)\n\n", r.rounds)
	fmt.Fprintf(&b, "One process and one run: the GitHub emulator without rate limits runs in a child process of this command "+
		"(so that its CPU time is counted apart); the broker runs without --dev against it with `%s` "+
		"(pacing and per-caller limits off, default inbound caps otherwise). Each value is 64 bytes, written in turn to %d secrets of %s; "+
		"every call's value is its own (its last 16 hex digits are the call's number, counted across every path and phase), so no write repeats the value a secret last got and none is skipped as unchanged. "+
		"Saturation: %d workers in a closed loop for %s (gRPC over %d connections, HTTP/1.1 keep-alive, idle connections kept for the whole run). "+
		"Fixed rate: %d calls/s in an open loop for %s, latency timed from each call's scheduled send. "+
		"The paths run in the order below in odd rounds, in the reverse order in even ones. "+
		"Calls: the median of the rounds; errors: the total over every round; a failed call is a latency sample at the time it failed, "+
		"and every target that uses a path with errors is not met. "+
		"CPU per call: user + system time of each process during the phase, divided by the phase's calls: the broker's, "+
		"this process's (the clients; the floors' servers too) and the emulator's. "+
		"New upstream connections: connections the emulator accepted during the phase, per 1,000 calls.\n\n",
		strings.Join(r.brokerFlags, " "), compareNames, repoScope, r.workers, r.phaseLen, compareGRPCConns, r.rate, r.phaseLen)
	for _, ph := range []struct {
		title string
		m     map[string][]figures
	}{{fmt.Sprintf("At saturation (%d workers)", r.workers), r.sat}, {fmt.Sprintf("At %d calls/s", r.rate), r.fixed}} {
		fmt.Fprintf(&b, "%s:\n\n", ph.title)
		b.WriteString("| path | calls (errors) | calls/s | p50 | p99 | p99.9 | broker CPU/call | client CPU/call | emulator CPU/call | new upstream conns / 1,000 calls |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, path := range comparePaths() {
			fs, ok := ph.m[path]
			if !ok {
				continue // not measured (--paths)
			}
			med := func(get func(figures) float64) float64 { return median(fs, get) }
			fmt.Fprintf(&b, "| %s | %.0f (%d) | %.0f | %.2f ms | %.2f ms | %.2f ms | %s | %.0f µs | %s | %s |\n",
				path, med(func(f figures) float64 { return f.calls }), totalErrors(fs),
				med(func(f figures) float64 { return f.rps }),
				med(func(f figures) float64 { return f.p50 }), med(func(f figures) float64 { return f.p99 }),
				med(func(f figures) float64 { return f.p999 }),
				orDash(isBrokerPath(path), fmt.Sprintf("%.0f µs", med(func(f figures) float64 { return f.brokerCPU }))),
				med(func(f figures) float64 { return f.selfCPU }),
				orDash(usesEmulator(path), fmt.Sprintf("%.0f µs", med(func(f figures) float64 { return f.emuCPU }))),
				orDash(usesEmulator(path), fmt.Sprintf("%.1f", med(func(f figures) float64 { return f.connsPer1000 }))))
		}
		b.WriteString("\n")
	}

	b.WriteString("Ratios (each from the medians above, measured in the same run) against the issue's targets:\n\n")
	b.WriteString("| figure | value | target | met |\n| --- | ---: | ---: | --- |\n")
	for _, row := range r.ratios() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	b.WriteString("\n")
	b.WriteString(r.overloadMarkdown())
	return b.String()
}

// overloadMarkdown prints the overload phase's table.
func (r compareResult) overloadMarkdown() string {
	var b strings.Builder
	o := r.overload
	why := "twice the saturation throughput"
	if r.overloadRateSet {
		why = "set by --overload-rate"
	}
	fmt.Fprintf(&b, "Overload: gRPC PutSecret at %.0f calls/s (%s) for %s, an open loop, each call with a %s deadline; "+
		"then a PutSecret every %s until %d in a row succeed with a median at most twice the p50 at %d calls/s (%s).\n\n",
		o.rate, why, r.phaseLen, compareCallTimeout, recoveryProbeEvery, recoveryRun, r.rate, ms(o.normalP50))
	b.WriteString("| figure | value | target | met |\n| --- | ---: | ---: | --- |\n")
	excess := o.sent - o.codes["OK"]
	fmt.Fprintf(&b, "| calls sent | %d | | |\n", o.sent)
	if o.notSent > 0 {
		fmt.Fprintf(&b, "| calls not sent (%d in flight already) | %d | | |\n", maxOverloadInFlight, o.notSent)
	}
	fmt.Fprintf(&b, "| calls by code | %s | | |\n", countsText(o.codes))
	refused := fmt.Sprintf("%d of %d not admitted (RESOURCE_EXHAUSTED within 100 ms)", o.refusedFast, excess)
	if excess == 0 {
		refused = "none: every call was queued and admitted"
	}
	fmt.Fprintf(&b, "| excess calls refused within 100 ms | %s | all of them | %s |\n",
		refused, yesNo(excess > 0 && o.refusedFast == excess))
	// The targets measured against the fixed-rate gRPC PutSecret's p50
	// and p99 are not met when that path had errors.
	grpcErrs := r.errorsNote(pathGRPCPut)
	limit := (3 * o.normalP99).Round(time.Microsecond) // printed exactly, in µs
	p99, met := shown(msFloat(o.admittedP99), 1, func(v float64) bool { return v > 0 && v <= msFloat(limit) })
	fmt.Fprintf(&b, "| admitted calls' p50 / p99 | %s / %s ms | p99 ≤ 3 × %.3f ms = %.3f ms | %s |\n",
		ms(o.admittedP50), p99, msFloat(o.normalP99), msFloat(limit), verdict(met, grpcErrs))
	fmt.Fprintf(&b, "| CPUs busy during the flood: broker / this process (the callers) / emulator / the whole machine (of %d) | %.2f / %.2f / %.2f / %.2f | | |\n",
		runtime.NumCPU(), o.cores.broker, o.cores.self, o.cores.emu, o.cores.machine)
	fmt.Fprintf(&b, "| … of which this process's lag in starting a call / from its start, p99 each | %s / %s | | |\n", ms(o.sendLagP99), ms(o.fromSendP99))
	rss, met := shown(float64(o.peakRSS)/1e6, 1, func(v float64) bool { return v > 0 && v < 150 })
	fmt.Fprintf(&b, "| broker RSS, highest sample / peak (VmHWM, whole life) | %s MB / %s | < 150 MB | %s |\n",
		rss, mb(o.hwm), yesNo(met))
	rec := fmt.Sprintf("not within %s of probes (last median %s)", secs(time.Duration(o.recoveryProbes)*recoveryProbeEvery), ms(o.lastProbeMedian))
	if o.recovered {
		rec = secs(o.recovery)
	}
	fmt.Fprintf(&b, "| p50 back to normal after the flood ends | %s; probes by code: %s | ≤ 2 s | %s |\n\n",
		rec, countsText(o.probeCodes), verdict(o.recovered && o.recovery <= 2*time.Second, grpcErrs))
	return b.String()
}

// msFloat is d in milliseconds.
func msFloat(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// shown formats v with digits decimals and says whether v meets its
// target (ok). Where the rounded value would seem to say otherwise (0.698
// printed 0.70 against "≥ 0.7"), it prints as many more digits as it takes
// for the printed value to meet the target exactly when v does, so that
// a value and its verdict never disagree.
func shown(v float64, digits int, ok func(float64) bool) (string, bool) {
	met := ok(v)
	for d := digits; d <= digits+6; d++ {
		s := strconv.FormatFloat(v, 'f', d, 64)
		if p, err := strconv.ParseFloat(s, 64); err == nil && ok(p) == met {
			return s, met
		}
	}
	return strconv.FormatFloat(v, 'f', -1, 64), met // exactly v
}

// verdict is yesNo(met), except that a target measured on a path with
// errors (errs, errorsNote's text) is not met, and says why.
func verdict(met bool, errs string) string {
	if errs != "" {
		return "**no** (" + errs + ")"
	}
	return yesNo(met)
}

// totalErrors is the failed calls of every round in fs.
func totalErrors(fs []figures) int {
	n := 0.0
	for _, f := range fs {
		n += f.errs
	}
	return int(n)
}

// errorsNote names the paths among paths that had failed calls, at
// saturation or at the fixed rate, in any round, with their counts;
// empty when none did.
func (r compareResult) errorsNote(paths ...string) string {
	var parts []string
	for _, p := range paths {
		if n := totalErrors(r.sat[p]) + totalErrors(r.fixed[p]); n > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d errors", shortName(p), n))
		}
	}
	return strings.Join(parts, ", ")
}

// shortName is path's --paths name.
func shortName(path string) string {
	for short, p := range pathShortNames {
		if p == path {
			return short
		}
	}
	return path
}

// ratios are the figures: name, value, target, met.
func (r compareResult) ratios() [][4]string {
	sat := func(path string, get func(figures) float64) float64 { return median(r.sat[path], get) }
	fix := func(path string, get func(figures) float64) float64 { return median(r.fixed[path], get) }
	rps := func(f figures) float64 { return f.rps }
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	atLeast := func(t float64) func(float64) bool { return func(v float64) bool { return v >= t } }
	positiveAtMost := func(t float64) func(float64) bool { return func(v float64) bool { return v > 0 && v <= t } }
	ratio := func(v float64, ok func(float64) bool) (string, bool) { return shown(v, 2, ok) }

	thr, thrMet := ratio(div(sat(pathGRPCPut, rps), sat(pathDirect, rps)), atLeast(0.6))
	brokerCPU := sat(pathGRPCPut, func(f figures) float64 { return f.brokerCPU })
	directCPU := sat(pathDirect, func(f figures) float64 { return f.selfCPU })
	cpu, cpuMet := ratio(div(brokerCPU, directCPU), positiveAtMost(1.6))
	conns := func(m map[string][]figures, path string) float64 {
		return median(m[path], func(f figures) float64 { return f.connsPer1000 })
	}
	atMost10 := func(v float64) bool { return v <= 10 }
	satConns, satConnsMet := shown(conns(r.sat, pathGRPCPut), 1, atMost10)
	fixConns, fixConnsMet := shown(conns(r.fixed, pathGRPCPut), 1, atMost10)
	gwPut, gwPutMet := ratio(div(sat(pathGatewayPut, rps), sat(pathGRPCPut, rps)), atLeast(0.7))
	gwKey, gwKeyMet := ratio(div(sat(pathGatewayKey, rps), sat(pathGRPCKey, rps)), atLeast(0.7))
	floors := div(sat(pathHTTP, rps), sat(pathHealth, rps))
	p99 := func(f figures) float64 { return f.p99 }
	bp99, dp99 := fix(pathGRPCPut, p99), fix(pathDirect, p99)
	above, aboveMet := shown(bp99-dp99, 2, func(v float64) bool { return bp99 > 0 && v <= 5 })
	if !strings.HasPrefix(above, "-") {
		above = "+" + above
	}
	rows := []struct {
		row  [4]string
		met  bool
		uses []string // the paths the verdict is measured on
		show []string // the paths the value shows
	}{
		{[4]string{"broker gRPC PutSecret throughput / direct client's", thr, "≥ 0.6"}, thrMet,
			[]string{pathGRPCPut, pathDirect}, []string{pathDirect}},
		{[4]string{"broker CPU per PutSecret / direct client's (at saturation)", fmt.Sprintf("%s× (%.0f µs against %.0f µs)", cpu, brokerCPU, directCPU), "≤ 1.6×"}, cpuMet,
			[]string{pathGRPCPut, pathDirect}, []string{pathDirect}},
		{[4]string{"new upstream connections per 1,000 broker gRPC PutSecrets, at saturation / at the fixed rate",
			fmt.Sprintf("%s / %s (direct client: %.1f / %.1f)", satConns, fixConns, conns(r.sat, pathDirect), conns(r.fixed, pathDirect)),
			"≤ 10"}, satConnsMet && fixConnsMet,
			[]string{pathGRPCPut}, []string{pathDirect}},
		{[4]string{"gateway / gRPC throughput, PutSecret", gwPut, "≥ 0.7"}, gwPutMet,
			[]string{pathGatewayPut, pathGRPCPut}, []string{pathGatewayPut}},
		{[4]string{"gateway / gRPC throughput, cached GetPublicKey", gwKey, "≥ 0.7"}, gwKeyMet,
			[]string{pathGatewayKey, pathGRPCKey}, []string{pathGRPCKey, pathGatewayKey}},
		{[4]string{fmt.Sprintf("p99 at %d calls/s, broker gRPC PutSecret minus direct client", r.rate),
			fmt.Sprintf("%s ms (%.2f ms against %.2f ms, %.1f×)", above, bp99, dp99, div(bp99, dp99)), "≤ +5 ms"}, aboveMet,
			[]string{pathGRPCPut, pathDirect}, []string{pathDirect}},
		{[4]string{"floors: bare HTTP/1.1 GET / bare gRPC unary throughput (the transports alone, for the gateway rows)", fmt.Sprintf("%.2f", floors), "–", "–"}, false,
			nil, []string{pathHealth, pathHTTP}},
	}
	out := make([][4]string, len(rows))
	for i, row := range rows {
		out[i] = row.row
		if row.uses != nil {
			out[i][3] = verdict(row.met, r.errorsNote(row.uses...))
		}
		// A row with a path not measured (--paths) says so instead of a
		// ratio of nothing.
		for _, p := range row.show {
			if _, ok := r.sat[p]; !ok {
				out[i][1], out[i][3] = "not measured (--paths)", "–"
			}
		}
	}
	return out
}

func isBrokerPath(path string) bool { return strings.HasPrefix(path, "broker ") }

func usesEmulator(path string) bool {
	return path == pathDirect || path == pathGRPCPut || path == pathGatewayPut
}

func orDash(ok bool, s string) string {
	if ok {
		return s
	}
	return "–"
}

// procCPUOrZero is procCPU, 0 when it cannot be read.
func procCPUOrZero(pid int) time.Duration {
	d, _ := procCPU(pid)
	return d
}

// cpuTimes is the machine's CPU time from /proc/stat: busy (every state
// but idle and iowait) and all, in clock ticks.
type cpuTimes struct{ busy, all float64 }

// machineCPU reads /proc/stat's first line; zero when it cannot.
func machineCPU() cpuTimes {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseProcStat(string(data))
}

// parseProcStat reads the machine's CPU times from the content of
// /proc/stat; zero when its first line is not the "cpu" total.
func parseProcStat(data string) cpuTimes {
	line, _, _ := strings.Cut(data, "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, v := range f[1:] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return cpuTimes{}
		}
		if i >= 8 { // guest and guest_nice are counted in user and nice already
			break
		}
		t.all += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t
}

// busySince is the CPU-seconds the machine was busy since t0, at
// USER_HZ = 100 ticks a second (the value every Linux ABI reports).
func (t cpuTimes) busySince(t0 cpuTimes) float64 {
	if t.all == 0 || t0.all == 0 {
		return 0
	}
	return (t.busy - t0.busy) / 100
}
