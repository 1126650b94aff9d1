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
	"sync"
	"time"

	"golang.org/x/crypto/nacl/box"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/service"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/clock"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	benchOrg   = "bench-org"
	benchToken = "bench-token"
)

func describeLimits() string {
	l := emulator.GitHubLimits()
	return fmt.Sprintf("%d points a minute, %d concurrent requests, %d requests an hour",
		l.PointsPerMinute, l.MaxConcurrent, l.PrimaryPerHour)
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
	elapsed      time.Duration // on the emulator's clock
	minimum      time.Duration // the least time the broker's limits allow
}

const tableHeader = "| client | writes | scopes | written | lost | failed | requests/write | bound 1+K/N | points/write | violations | retries | peak in flight | time | least time | of the allowed rate |\n" +
	"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

func (r result) row() string {
	rate := "n/a"
	if r.client != "broker" {
		rate = "not paced"
	} else if r.minimum > 0 && r.elapsed > 0 {
		rate = fmt.Sprintf("%.1f%%", 100*r.minimum.Seconds()/r.elapsed.Seconds())
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %.3f | %.3f | %.2f | %d | %d | %d | %s | %s | %s |",
		r.client, r.writes, r.scopes, r.written, r.lost, r.failed,
		float64(r.requests)/float64(r.writes), 1+float64(r.scopes)/float64(r.writes),
		float64(r.points)/float64(r.writes), r.violations, r.retries, r.peakInFlight,
		r.elapsed.Round(100*time.Millisecond), r.minimum.Round(100*time.Millisecond), rate)
}

// leastTime is the least time n writes over k scopes take under p: the
// writes' spacing, and the points budget of a sliding minute (n writes of
// 5 points and k key fetches of 1; a window's budget may be spent at once,
// so only whole further windows count).
func leastTime(p upstream.Pacing, n, k int) time.Duration {
	var spacing, budget time.Duration
	if p.WriteInterval > 0 {
		spacing = time.Duration(n-1) * p.WriteInterval
	}
	if p.PointsPerMinute > 0 {
		points := 5*n + k
		windows := int(math.Ceil(float64(points)/float64(p.PointsPerMinute))) - 1
		budget = time.Duration(windows) * time.Minute
	}
	return max(spacing, budget)
}

// item is one logical write.
type item struct {
	scope string // REST path prefix, e.g. "repos/bench-org/repo-03/actions"
	name  string
	value string
}

// world is a fresh emulator with n items to write over k repositories.
type world struct {
	clk   clock.Clock
	emu   *emulator.Server
	url   string
	items []item
	stop  func()
}

func newWorld(c config, n, k int) (*world, error) {
	clk, err := clock.Scaled(c.scale)
	if err != nil {
		return nil, err
	}
	emu := emulator.New(emulator.Options{Token: benchToken, Clock: clk, Limits: emulator.GitHubLimits()})
	emu.AddOrg(benchOrg)
	for j := range k {
		emu.AddRepo(benchOrg, fmt.Sprintf("repo-%02d", j), true)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	w := &world{clk: clk, emu: emu, url: "http://" + ln.Addr().String(), stop: func() { _ = srv.Close() }}
	for i := range n {
		w.items = append(w.items, item{
			scope: fmt.Sprintf("repos/%s/repo-%02d/actions", benchOrg, i%k),
			name:  fmt.Sprintf("BENCH_%04d", i),
			value: rand.Text(),
		})
	}
	return w, nil
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

func measure(ctx context.Context, c config, client string, n, k int) (result, error) {
	w, err := newWorld(c, n, k)
	if err != nil {
		return result{}, err
	}
	defer w.stop()
	r := result{client: client, writes: n, scopes: k, minimum: leastTime(c.pacing, n, k)}
	var done []bool
	start := w.clk.Now()
	switch client {
	case "broker":
		done, r.retries, err = runBroker(ctx, c, w)
	default:
		done, err = runNaive(ctx, c, w)
	}
	r.elapsed = w.clk.Now().Sub(start)
	if err != nil {
		return result{}, err
	}
	w.check(&r, done)
	return r, nil
}

// runBroker sends every item in one BatchPutSecrets call to a broker on
// loopback.
func runBroker(ctx context.Context, c config, w *world) ([]bool, int, error) {
	up, err := upstream.New(upstream.Config{BaseURL: w.url, Token: benchToken, Pacing: &c.pacing})
	if err != nil {
		return nil, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	secretbrokerv1.RegisterSecretServiceServer(gs, service.New(up, service.Options{}))
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()

	req := &secretbrokerv1.BatchPutSecretsRequest{}
	for _, it := range w.items {
		req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
			Name:    it.scope + "/secrets/" + it.name,
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: it.value},
		})
	}
	resp, err := secretbrokerv1.NewSecretServiceClient(conn).BatchPutSecrets(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	done := make([]bool, len(w.items))
	for i, res := range resp.GetResults() {
		done[i] = res.GetCode() == code.Code_OK
	}
	return done, up.PacerStats().Retries, nil
}

// runNaive writes every item as gh, Terraform and External Secrets do:
// fetch the scope's key, seal, PUT, a few at a time, with plain HTTP
// requests: no pacing, no pause after a refusal and no retries.
func runNaive(ctx context.Context, c config, w *world) ([]bool, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	done := make([]bool, len(w.items))
	sem := make(chan struct{}, c.naiveConcurrency)
	var wg sync.WaitGroup
	for i, it := range w.items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done[i] = naivePut(ctx, hc, w.url, it) == nil
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
