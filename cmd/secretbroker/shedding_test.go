package main

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
)

// TestFloodIsShed: one caller fills its calls in progress with calls held
// at GitHub (a gated emulator); its next call, over gRPC and over the
// gateway, is refused at once with RESOURCE_EXHAUSTED and a RetryInfo
// (429 and Retry-After), health stays SERVING, and another caller's call
// goes through and succeeds. Callers are told apart by their address
// (no authentication configured): the flood comes from 127.0.0.1, the
// other caller from 127.0.0.2.
func TestFloodIsShed(t *testing.T) {
	gh := newFakeGitHub(t)
	cfg := prodConfig(t, gh.URL, 5*time.Second)
	const perCaller = 4
	cfg.CallerMaxConcurrent, cfg.CallerRPS = perCaller, 0
	cfg.ShedSchedLatency = 0 // the adaptive bound has its own tests; here the count decides
	b := startBroker(t, cfg)
	svc := secretbrokerv1.NewSecretServiceClient(b.conn)
	ctx := t.Context()

	// The flood: perCaller calls held at GitHub. Its next call is
	// refused at once.
	flood := holdAtGitHub(ctx, svc, gh, perCaller)
	wantShed(t, b, "calls in progress")

	// Another caller, from another address, is served.
	other, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got := make(chan error, 1)
	go func() {
		_, err := secretbrokerv1.NewSecretServiceClient(other).GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/acme/actions"})
		got <- err
	}()
	select {
	case <-gh.arrived: // it passed the front door and reached GitHub
	case err := <-got:
		t.Fatalf("the other caller's call ended before it reached GitHub: %v", err)
	}
	gh.unblock()
	if err := <-got; err != nil {
		t.Fatalf("the other caller's call: %v, want OK", err)
	}
	for range perCaller {
		if err := <-flood; status.Code(err) == codes.ResourceExhausted {
			t.Errorf("a call admitted before the limit was reached was refused afterwards: %v", err)
		}
	}
}

// holdAtGitHub starts n GetPublicKey calls, each for another organization
// (no two share a key fetch), and returns once all of them are held at
// gh; their results go to the channel it returns.
func holdAtGitHub(ctx context.Context, svc secretbrokerv1.SecretServiceClient, gh *fakeGitHub, n int) <-chan error {
	held := make(chan error, n)
	for i := range n {
		go func() {
			_, err := svc.GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/held-" + strconv.Itoa(i) + "/actions"})
			held <- err
		}()
	}
	for range n {
		<-gh.arrived
	}
	return held
}

// wantShed checks that the next call of b's test client is refused at
// once with RESOURCE_EXHAUSTED, a message holding why and a RetryInfo,
// that the next JSON call is a 429 with Retry-After, and that health stays
// SERVING while the broker sheds.
func wantShed(t *testing.T, b *broker, why string) {
	t.Helper()
	ctx := t.Context()
	_, err := secretbrokerv1.NewSecretServiceClient(b.conn).GetPublicKey(ctx, &secretbrokerv1.GetPublicKeyRequest{Parent: "orgs/acme/actions"})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), why) || retryInfo(st) <= 0 {
		t.Fatalf("a call over the bound: %v (details %v), want RESOURCE_EXHAUSTED (%s) with a RetryInfo", err, st.Details(), why)
	}
	resp, err := b.http.Get("http://" + b.httpAddr + "/v1/orgs/acme/actions/secrets/public-key")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a JSON call over the bound: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Health follows readiness, which waits for the credential check (the
	// broker runs as in production): once it passed, shedding must not
	// turn health NOT_SERVING.
	if !b.logs.waitFor("GitHub credential verified", 1, 30*time.Second) {
		t.Fatal("the credential was never verified")
	}
	for _, svcName := range []string{"", "secretbroker.v1.SecretService"} {
		hr, err := healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svcName})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q while shedding: %v %v, want SERVING", svcName, hr, err)
		}
	}
}

// retryInfo returns the RetryInfo delay of st, 0 without one.
func retryInfo(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// TestCPUShed: the adaptive bound shrinks while the scheduler latency is
// over the target (not below its floor), refuses calls over it at once
// with a RetryInfo delay, and grows back one place per sample while the
// latency is under the target and the calls fill it, up to its ceiling.
func TestCPUShed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const target = 5 * time.Millisecond
		lat := time.Duration(0)
		c := newCPUShed(target, 8, 100)
		c.sched = func() time.Duration { return lat }
		if got := c.bound(); got != 100 {
			t.Fatalf("bound at start %d, want the ceiling 100", got)
		}
		var releases []func()
		admit := func() *refusal {
			t.Helper()
			rel, refused := c.admit()
			if refused == nil {
				releases = append(releases, rel)
			}
			return refused
		}

		// Over the target: one decrease per sample, never below the floor.
		lat = 20 * time.Millisecond
		want := 100.0
		for i := range 10 {
			time.Sleep(shedSampleEvery)
			rel, r := c.admit() // takes the sample; nothing else in progress
			if r != nil {
				t.Fatalf("sample %d: refused with nothing in progress, bound %d", i, c.bound())
			}
			rel()
			want = math.Max(8, want*shedDecrease)
			if got := c.bound(); got != int(want) {
				t.Fatalf("sample %d: bound %d, want %d", i, got, int(want))
			}
		}
		if c.bound() != 8 {
			t.Fatalf("bound %d after 10 samples over the target, want the floor 8", c.bound())
		}
		// Calls over the bound are refused at once, within a sample
		// period (no new sample).
		for len(releases) < 8 {
			if r := admit(); r != nil {
				t.Fatalf("refused with %d in progress under a bound of 8: %s", len(releases), r.reason)
			}
		}
		r := admit()
		if r == nil || r.retryAfter <= 0 {
			t.Fatalf("the 9th call: %+v, want a refusal with a retry delay", r)
		}
		// One call ends: its place goes to the next; a second release is
		// harmless.
		releases[0]()
		releases[0]()
		releases = releases[1:]
		if r := admit(); r != nil {
			t.Fatalf("after a release: refused: %s", r.reason)
		}

		// Under the target with the bound full: it grows by a sixteenth
		// per sample, at least one place.
		lat = time.Millisecond
		want = 8
		for i := 0; want < 100; i++ {
			time.Sleep(shedSampleEvery)
			want = math.Min(100, want+math.Max(1, want/shedGrowth))
			for len(releases) < int(want)-1 { // fill the bound
				if r := admit(); r != nil {
					t.Fatalf("recovery sample %d: refused with %d in progress: %s", i, len(releases), r.reason)
				}
			}
			if r := admit(); r != nil {
				t.Fatalf("recovery sample %d: refused: %s", i, r.reason)
			}
			if got := c.bound(); got != int(want) {
				t.Fatalf("recovery sample %d: bound %d, want %d", i, got, int(want))
			}
		}
		// At the ceiling it stays, however full.
		time.Sleep(shedSampleEvery)
		if r := admit(); r == nil || c.bound() != 100 {
			t.Fatalf("at the ceiling with 100 in progress: refused %v, bound %d; want a refusal and 100", r, c.bound())
		}
		// Under the target with the bound not in use: it stays.
		for _, rel := range releases {
			rel()
		}
		releases = nil
		before := c.bound()
		time.Sleep(shedSampleEvery)
		if r := admit(); r != nil {
			t.Fatalf("idle: refused: %s", r.reason)
		}
		if got := c.bound(); got != before {
			t.Fatalf("idle sample moved the bound from %d to %d", before, got)
		}
	})
}

// TestHistQuantile reads a quantile from histogram buckets.
func TestHistQuantile(t *testing.T) {
	inf := math.Inf(1)
	buckets := []float64{0, 0.001, 0.01, 0.1, inf}
	tests := []struct {
		name   string
		counts []uint64
		q      float64
		want   time.Duration
	}{
		{"empty", []uint64{0, 0, 0, 0}, 0.9, 0},
		{"all in the first bucket", []uint64{10, 0, 0, 0}, 0.9, time.Millisecond},
		{"90 percent fast", []uint64{90, 10, 0, 0}, 0.9, time.Millisecond},
		{"89 percent fast", []uint64{89, 11, 0, 0}, 0.9, 10 * time.Millisecond},
		{"tail in the unbounded bucket", []uint64{1, 0, 0, 9}, 0.9, 100 * time.Millisecond},
		{"median", []uint64{50, 50, 0, 0}, 0.5, time.Millisecond},
		{"median past the first half", []uint64{49, 51, 0, 0}, 0.5, 10 * time.Millisecond},
		{"one count", []uint64{0, 0, 1, 0}, 0.01, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := histQuantile(tt.counts, buckets, tt.q); got != tt.want {
				t.Fatalf("histQuantile(%v, %v) = %v, want %v", tt.counts, tt.q, got, tt.want)
			}
		})
	}
}

// TestSchedSamplerReads: the runtime's histogram is there and read.
func TestSchedSamplerReads(t *testing.T) {
	var s schedSampler
	_ = s.quantile() // the first read only sets the baseline
	if s.prev == nil {
		t.Fatalf("the runtime has no %s histogram", schedMetric)
	}
	if got := s.quantile(); got < 0 {
		t.Fatalf("p90 %v, want at least 0", got)
	}
}

// TestShedFlags: the shedding flags' defaults, and a bad value named.
func TestShedFlags(t *testing.T) {
	cfg := prodConfig(t, "http://127.0.0.1:1", time.Second)
	if cfg.UpstreamMaxQueue != 1000 || cfg.MaxQueueWait != 5*time.Minute || cfg.ShedSchedLatency != 0 {
		t.Fatalf("defaults: %+v", cfg.Shedding)
	}
	p := cfg.UpstreamPacing()
	if p.MaxQueue != 1000 || p.MaxQueueWait != 5*time.Minute {
		t.Fatalf("pacing: MaxQueue %d, MaxQueueWait %v", p.MaxQueue, p.MaxQueueWait)
	}
	if newShed(cfg) != nil {
		t.Fatal("an adaptive bound by default: it is opt-in")
	}
	cfg.ShedSchedLatency = 5 * time.Millisecond
	if newShed(cfg) == nil {
		t.Fatal("no adaptive bound with --shed-sched-latency=5ms")
	}
	for _, tt := range []struct{ flag, want string }{
		{"--max-queue-wait=-1s", "--max-queue-wait"},
		{"--upstream-max-queue=-1", "--upstream-max-queue"},
		{"--shed-sched-latency=-1ms", "--shed-sched-latency"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			_, err := loadConfig([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", tt.flag},
				envMap(map[string]string{"GITHUB_TOKEN": testToken}), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("loadConfig(%s): %v, want an error naming %s", tt.flag, err, tt.want)
			}
		})
	}
}
