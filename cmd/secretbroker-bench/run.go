package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	benchOrg   = "bench-org"
	benchToken = "bench-token"
	// emulatorURL is the emulator's base URL. It is never dialed: every
	// request goes through handlerTransport.
	emulatorURL = "http://emulator.invalid"
)

func describeLimits() string {
	l := emulator.GitHubLimits()
	return fmt.Sprintf("%d points a minute, %d concurrent requests, %v of response time (CPU time) a minute, %d requests an hour, %d writes a minute and %d an hour",
		l.PointsPerMinute, l.MaxConcurrent, l.CPUPerMinute, l.PrimaryPerHour, l.WritesPerMinute, l.WritesPerHour)
}

// result is what one run measured.
type result struct {
	client       string
	writes       int
	scopes       int
	written      int // reported written and found in the emulator with the right value
	lost         int // reported written but missing or wrong in the emulator
	failed       int // reported not written
	requests     int // every request the emulator received, refused ones included
	points       int // points of the requests the emulator accepted
	violations   int // secondary and primary rate-limit answers
	retries      int
	peakInFlight int
	elapsed      time.Duration // read from package time: fake time in a synctest bubble
	minimum      time.Duration // the least time the broker's limits allow
	replicas     int           // brokers that shared the writes; 0 for the naive client
}

// tableHeader heads the write tables. Two bounds on requests a write: issue
// 3's 1+K/N (a key fetch per scope, a PUT per write), and the broker's
// since issue 11, which reads GitHub's updated_at back after writing (a
// listing page per scope per 100 secrets written), per replica: 1+(K+P)/N
// with one replica (brokerRequests).
const tableHeader = "| client | writes | scopes | written | lost | failed | requests/write | bound 1+K/N | with read-back 1+(K+P)/N | points/write | violations | retries | peak in flight | time | least time | of the allowed rate |\n" +
	"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

func (r result) row() string {
	rate := "n/a"
	if !strings.HasPrefix(r.client, "broker") {
		rate = "not paced"
	} else if r.minimum > 0 && r.elapsed > 0 {
		rate = fmt.Sprintf("%.1f%%", 100*r.minimum.Seconds()/r.elapsed.Seconds())
	}
	readBack := "–" // the naive client reads nothing back
	if r.replicas > 0 {
		readBack = fmt.Sprintf("%.3f", float64(brokerRequests(r.writes, r.scopes, r.replicas))/float64(r.writes))
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %.3f | %.3f | %s | %.2f | %d | %d | %d | %s | %s | %s |",
		r.client, r.writes, r.scopes, r.written, r.lost, r.failed,
		float64(r.requests)/float64(r.writes), 1+float64(r.scopes)/float64(r.writes), readBack,
		float64(r.points)/float64(r.writes), r.violations, r.retries, r.peakInFlight,
		r.elapsed.Round(100*time.Millisecond), r.minimum.Round(100*time.Millisecond), rate)
}

// brokerRequests is the least requests replicas brokers send for n
// writes spread round robin over k scopes (item i to scope i%k) and over
// the replicas (item i to replica i%replicas), each replica sending its
// share in one batch: per replica and scope it writes to, a key fetch and,
// since issue 11, a listing of the whole scope at the end (a page per 100
// secrets in it, the other replicas' included) to read GitHub's
// updated_at back; and a PUT per write.
func brokerRequests(n, k, replicas int) int {
	type pair struct{ replica, scope int }
	touched := map[pair]bool{}
	inScope := make([]int, k)
	for i := range n {
		touched[pair{i % replicas, i % k}] = true
		inScope[i%k]++
	}
	requests := n
	for p := range touched {
		requests += 1 + (inScope[p.scope]+99)/100
	}
	return requests
}

// leastTime is the least time n writes over k scopes take under p, with
// answers in no time: the k key fetches at once, then each write at the
// earliest moment its limits allow, one after another: the writes'
// spacing, the points budget of a sliding minute (writes 5 points, key
// fetches 1) and the content budgets of a sliding minute and hour.
func leastTime(p upstream.Pacing, n, k int) time.Duration {
	type event struct {
		at             time.Duration
		points, writes int
	}
	events := []event{}
	if k > 0 {
		events = append(events, event{0, k, 0}) // the key fetches
	}
	// freeAt returns the earliest time from t when need more of what
	// weight counts fit limit over window: the oldest events leave it.
	freeAt := func(from, window time.Duration, limit, need int, weight func(event) int) time.Duration {
		used := 0
		for _, e := range events {
			if e.at+window > from {
				used += weight(e)
			}
		}
		t := from
		for _, e := range events {
			if used+need <= limit {
				break
			}
			if w := weight(e); w > 0 && e.at+window > from {
				used -= w
				t = e.at + window
			}
		}
		return t
	}
	points := func(e event) int { return e.points }
	writes := func(e event) int { return e.writes }
	var t, last time.Duration
	for i := range n {
		at := t
		if i > 0 {
			at = max(at, last+p.WriteInterval)
		}
		if p.PointsPerMinute > 0 {
			at = max(at, freeAt(at, time.Minute, p.PointsPerMinute, 5, points))
		}
		if p.WritesPerMinute > 0 {
			at = max(at, freeAt(at, time.Minute, p.WritesPerMinute, 1, writes))
		}
		if p.WritesPerHour > 0 {
			at = max(at, freeAt(at, time.Hour, p.WritesPerHour, 1, writes))
		}
		events = append(events, event{at, 5, 1})
		t, last = at, at
	}
	return t
}

// item is one logical write.
type item struct {
	scope string // REST path prefix, e.g. "repos/bench-org/repo-03/actions"
	name  string
	value string
}

// handlerTransport serves every request in memory with the emulator's
// handler, in the caller's goroutine. Nothing touches a socket, so a run
// fits in a testing/synctest bubble, where a loopback connection would
// never block durably and fake time would stop.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	defer func() {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		// The emulator drops a connection, as net/http's server does, by
		// panicking with http.ErrAbortHandler: here, when the request's
		// context ends during an injected latency.
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			resp, err = nil, fmt.Errorf("%s %s: the emulator dropped the connection", r.Method, r.URL.Path)
		}
	}()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// world is a fresh emulator with n items to write over k repositories.
// Neither the emulator nor the clients are given a clock: they read
// package time, which is fake inside a synctest bubble.
type world struct {
	emu   *emulator.Server
	hc    *http.Client // reaches the emulator in memory
	items []item
}

func newWorld(n, k int, latency time.Duration) *world {
	emu := emulator.New(emulator.Options{Token: benchToken, Limits: emulator.GitHubLimits()})
	if latency > 0 {
		// Every request the limits accept is answered latency after it
		// arrived, in flight meanwhile; refusals are answered at once.
		emu.InjectFault(emulator.Fault{Latency: latency, Times: math.MaxInt})
	}
	emu.AddOrg(benchOrg)
	for j := range k {
		emu.AddRepo(benchOrg, fmt.Sprintf("repo-%02d", j), true)
	}
	w := &world{emu: emu, hc: &http.Client{Transport: handlerTransport{emu}, Timeout: 30 * time.Second}}
	for i := range n {
		w.items = append(w.items, item{
			scope: fmt.Sprintf("repos/%s/repo-%02d/actions", benchOrg, i%k),
			name:  fmt.Sprintf("BENCH_%04d", i),
			value: rand.Text(),
		})
	}
	return w
}

// check counts the items reported written that the emulator holds with
// the right value.
func (w *world) check(r *result, done []bool) {
	for i, it := range w.items {
		if !done[i] {
			r.failed++
			continue
		}
		got, err := w.emu.Open(it.scope, it.name)
		if err != nil || string(got) != it.value {
			r.lost++
			continue
		}
		r.written++
	}
	st := w.emu.Stats()
	r.requests = st.Requests
	r.points = st.Points
	r.violations = st.SecondaryViolations + st.PrimaryViolations
	r.peakInFlight = st.PeakInFlight
}

// measure runs one client's n writes over k scopes against a fresh
// emulator. Its times are read from package time: run inside a
// testing/synctest bubble, they are exact fake times, and the run takes
// no longer than the computing does.
func measure(ctx context.Context, c config, client string, n, k int) (result, error) {
	w := newWorld(n, k, c.latency)
	r := result{client: client, writes: n, scopes: k, minimum: leastTime(c.pacing, n, k)}
	var done []bool
	var err error
	start := time.Now()
	switch client {
	case "broker":
		r.replicas = max(c.replicas, 1)
		if c.replicas > 1 {
			r.client = fmt.Sprintf("broker ×%d", c.replicas)
			done, r.retries, err = runReplicas(ctx, c, w)
			break
		}
		done, r.retries, err = runBroker(ctx, c, w)
	default:
		done, err = runNaive(ctx, c, w)
	}
	r.elapsed = time.Since(start)
	if err != nil {
		return result{}, err
	}
	w.check(&r, done)
	return r, nil
}

// runBroker sends every item in one BatchPutSecrets call to the broker's
// gRPC server on an in-memory connection (bufconn).
func runBroker(ctx context.Context, c config, w *world) ([]bool, int, error) {
	up, err := upstream.New(upstream.Config{BaseURL: emulatorURL, Token: benchToken, Pacing: &c.pacing, HTTPClient: w.hc})
	if err != nil {
		return nil, 0, err
	}
	done, err := serveBatch(ctx, up, w.items)
	if err != nil {
		return nil, 0, err
	}
	return done, up.PacerStats().Retries, nil
}

// serveBatch sends items in one BatchPutSecrets call to a broker on up,
// behind a gRPC server on an in-memory connection (bufconn), and reports
// which were written.
func serveBatch(ctx context.Context, up *upstream.Client, items []item) ([]bool, error) {
	client, stop, err := startBroker(up)
	if err != nil {
		return nil, err
	}
	defer stop()

	req := &secretbrokerv1.BatchPutSecretsRequest{}
	for _, it := range items {
		req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
			Name:    it.scope + "/secrets/" + it.name,
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: it.value},
		})
	}
	resp, err := client.BatchPutSecrets(ctx, req)
	if err != nil {
		return nil, err
	}
	done := make([]bool, len(items))
	for i, res := range resp.GetResults() {
		done[i] = res.GetCode() == code.Code_OK
	}
	return done, nil
}

// startBroker serves a broker on up behind a gRPC server on an in-memory
// connection (bufconn) and returns a client of it, and a function that
// stops both.
func startBroker(up *upstream.Client) (secretbrokerv1.SecretServiceClient, func(), error) {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	secretbrokerv1.RegisterSecretServiceServer(gs, service.New(up, service.Options{}))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	stopServer := func() {
		gs.Stop()
		<-served
	}
	conn, err := grpc.NewClient("passthrough:///secretbroker-bench",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		stopServer()
		return nil, nil, err
	}
	return secretbrokerv1.NewSecretServiceClient(conn), func() {
		_ = conn.Close()
		stopServer()
	}, nil
}

// runNaive writes every item as gh, Terraform and External Secrets do:
// fetch the scope's key, seal, PUT, a few at a time, with plain HTTP
// requests: no pacing, no pause after a refusal and no retries.
func runNaive(ctx context.Context, c config, w *world) ([]bool, error) {
	done := make([]bool, len(w.items))
	sem := make(chan struct{}, c.naiveConcurrency)
	var wg sync.WaitGroup
	for i, it := range w.items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done[i] = naivePut(ctx, w.hc, emulatorURL, it) == nil
		})
	}
	wg.Wait()
	return done, ctx.Err()
}

func naivePut(ctx context.Context, hc *http.Client, base string, it item) error {
	var pk struct {
		KeyID string `json:"key_id"`
		Key   string `json:"key"`
	}
	if err := call(ctx, hc, http.MethodGet, base+"/"+it.scope+"/secrets/public-key", nil, &pk); err != nil {
		return err
	}
	var key [32]byte
	if err := decodeKey(pk.Key, &key); err != nil {
		return err
	}
	sealed, err := box.SealAnonymous(nil, []byte(it.value), &key, rand.Reader)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"encrypted_value": encode(sealed), "key_id": pk.KeyID})
	if err != nil {
		return err
	}
	return call(ctx, hc, http.MethodPut, base+"/"+it.scope+"/secrets/"+it.name, body, nil)
}

// call sends one request to the emulator and decodes a 2xx answer into
// out when out is not nil.
func call(ctx context.Context, hc *http.Client, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: %s", method, resp.Status)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
