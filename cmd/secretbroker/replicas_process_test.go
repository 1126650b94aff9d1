package main

// Two broker processes, built from this package, share one GitHub
// credential's budget through a real redis-server, against one emulator
// in the test process with github.com's limits on (points, concurrency,
// primary quota, content limits), so that every request over a limit is
// counted as a violation. The scenarios are issue 10's "Done when" for
// replicas:
//
//   - both driven at once: zero violations, every acknowledged write at
//     the emulator with its value, the combined write rate logged;
//   - Redis killed mid-run and restarted empty: /readyz degraded (200)
//     while it is down and ok once it is back, zero violations, no
//     acknowledged write lost;
//   - one replica killed (SIGKILL) while its write holds the shared write
//     slot: the other's batch completes, every item OK, zero violations.
//
// The writes are 200 ms apart (--upstream-write-interval) so that the
// test takes seconds. The content budgets are github.com's (80 writes a
// minute, 500 an hour), set on both sides, and do not bind: each scenario
// writes at most 48 times against a fresh emulator and Redis. The points
// budget (900 a minute) does not bind either. What binds is the shared
// write spacing.
//
// Redis starts each scenario holding an epoch created a minute ago, as a
// Redis that has served the replicas for a while and has no requests in
// its windows: the brokers join it and pace from the shared state from
// their first write (a Redis without one gets a new epoch, in which
// nobody spends before redisstate.DefaultSeedGrace; scenario 2's restart
// shows that case). Scenarios 1 and 3 check that the brokers kept that
// epoch and that Redis' log of writes holds every write they granted: a
// broker pacing on its own would break no limit in so few writes, but
// would leave its writes out of that log.
//
// Nothing here asserts a duration: the rate and the waits are logged.

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	secretbrokerv1 "github.com/secretbroker/secretbroker/gen/secretbroker/v1"
	"github.com/secretbroker/secretbroker/upstream"
	"github.com/secretbroker/secretbroker/upstream/emulator"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
)

const (
	// replicaWriteInterval is the brokers' --upstream-write-interval.
	replicaWriteInterval = 200 * time.Millisecond
	// replicaScenarioTimeout bounds one scenario, brokers' start included.
	replicaScenarioTimeout = 90 * time.Second
	// replicaCallTimeout bounds one BatchPutSecrets.
	replicaCallTimeout = 60 * time.Second
)

// replicaScopes are the demo organization's Actions scopes; broker i
// writes to the ith.
func replicaScopes() []string {
	return []string{
		"repos/octo-org/hello-world/actions",
		"repos/octo-org/docs/actions",
	}
}

// putArrival is a PUT the emulator accepted (2xx): when it arrived, and
// its path.
type putArrival struct {
	at   time.Time
	path string
}

// putHold holds the at-th PUT whose path contains path until release is
// closed or its client goes away, then answers 502 without passing it to
// the emulator: the broker sending it dies with it in flight. With
// accepted, the emulator gets and accepts the PUT first, and only its
// answer is held (and lost): the write is at GitHub, unknown to the
// broker.
type putHold struct {
	path     string
	at       int
	accepted bool
	held     chan struct{} // closed when the PUT is held
	release  chan struct{}
	once     sync.Once

	seen int // guarded by putRecorder.mu
}

// free closes release, once, whoever calls it first (the test or its
// cleanup).
func (h *putHold) free() { h.once.Do(func() { close(h.release) }) }

// putRecorder serves the emulator and records the PUTs it accepted.
type putRecorder struct {
	next http.Handler
	hold *putHold // nil: none

	mu      sync.Mutex
	puts    []putArrival
	changed chan struct{} // closed and replaced at every accepted PUT
}

func newPutRecorder(next http.Handler, hold *putHold) *putRecorder {
	return &putRecorder{next: next, hold: hold, changed: make(chan struct{})}
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (p *putRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		p.next.ServeHTTP(w, r)
		return
	}
	at := time.Now()
	if h := p.hold; h != nil && strings.Contains(r.URL.Path, "/"+h.path+"/") {
		p.mu.Lock()
		h.seen++
		hold := h.seen == h.at
		p.mu.Unlock()
		if hold {
			if h.accepted {
				rr := httptest.NewRecorder()
				p.next.ServeHTTP(rr, r)
				if rr.Code/100 == 2 {
					p.record(at, r.URL.Path)
				}
			}
			close(h.held)
			select {
			case <-h.release:
			case <-r.Context().Done():
			}
			http.Error(w, "held by the test", http.StatusBadGateway)
			return
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	p.next.ServeHTTP(sw, r)
	if sw.code/100 != 2 {
		return
	}
	p.record(at, r.URL.Path)
}

// record adds an accepted PUT of path that arrived at at.
func (p *putRecorder) record(at time.Time, path string) {
	p.mu.Lock()
	p.puts = append(p.puts, putArrival{at: at, path: path})
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// accepted returns the accepted PUTs so far, in arrival order.
func (p *putRecorder) accepted() []putArrival {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.puts)
	slices.SortFunc(out, func(a, b putArrival) int { return a.at.Compare(b.at) })
	return out
}

// waitAccepted waits until the emulator has accepted n PUTs; false when
// ctx ends first.
func (p *putRecorder) waitAccepted(ctx context.Context, n int) bool {
	for {
		p.mu.Lock()
		got, changed := len(p.puts), p.changed
		p.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// replicaRig is one scenario's world: an emulator, a Redis and two
// broker processes sharing the emulator's credential through it.
type replicaRig struct {
	token   string
	emu     *emulator.Server
	rec     *putRecorder
	redis   *redistest.Server
	brokers []*procBroker
	clients []secretbrokerv1.SecretServiceClient
	epoch   string // the epoch Redis held before the brokers started
}

// sharedKey is the token credential's Redis key named by letter, in
// redisstate's layout (prefix, credential hash tag, letter; see its
// scripts.go): "e" the epoch, "w" the log of writes.
func sharedKey(letter string) string {
	return redisstate.DefaultPrefix + "{" + upstream.Credential + "}:" + letter
}

// epochKey is the Redis key of the token credential's epoch.
func epochKey() string { return sharedKey("e") }

// newReplicaRig starts the emulator (its PUTs through hold, when not
// nil), a Redis holding an established epoch, and two brokers.
func newReplicaRig(ctx context.Context, t *testing.T, bin string, hold *putHold) *replicaRig {
	t.Helper()
	rig := &replicaRig{token: "ghp_" + rand.Text()}
	rig.emu = emulator.New(emulator.Options{Token: rig.token, Limits: emulator.GitHubLimits()})
	rig.emu.SeedDemo()
	rig.rec = newPutRecorder(rig.emu, hold)
	srv := httptest.NewServer(rig.rec) // 127.0.0.1
	t.Cleanup(srv.Close)
	if hold != nil {
		t.Cleanup(hold.free) // before srv.Close, which waits for the held PUT: cleanups run last-in first
	}

	rig.redis = redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: rig.redis.Addr})
	defer rc.Close()
	rig.epoch = "established-by-the-test:" + strconv.FormatInt(time.Now().Add(-time.Minute).UnixMilli(), 10)
	if err := rc.Set(ctx, epochKey(), rig.epoch, 0).Err(); err != nil {
		t.Fatalf("seeding the epoch: %v", err)
	}

	tokenFile := filepath.Join(t.TempDir(), "github-token")
	if err := os.WriteFile(tokenFile, []byte(rig.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		b := startProcBroker(t, "broker"+strconv.Itoa(i), bin, append(pacedProcArgs(srv.URL, tokenFile),
			"--redis-url=redis://"+rig.redis.Addr,
			"--expected-replicas=2",
		)...)
		conn, err := grpc.NewClient("passthrough:///"+b.addrs.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		rig.brokers = append(rig.brokers, b)
		rig.clients = append(rig.clients, secretbrokerv1.NewSecretServiceClient(conn))
	}
	return rig
}

// batchOutcome is what one BatchPutSecrets returned.
type batchOutcome struct {
	acked  map[string]string // "scope/NAME" → value, of the items answered OK
	failed []string          // "NAME: CODE message" of the others
	err    error             // the call's
}

// putBatch sends n items of fresh random values to scope, named
// prefix_0 ... prefix_<n-1>, and returns what was acknowledged.
func putBatch(ctx context.Context, c secretbrokerv1.SecretServiceClient, scope, prefix string, n int) batchOutcome {
	req := &secretbrokerv1.BatchPutSecretsRequest{}
	values := map[string]string{}
	for i := range n {
		name := fmt.Sprintf("%s_%d", prefix, i)
		values[name] = "value-" + rand.Text()
		req.Requests = append(req.Requests, &secretbrokerv1.PutSecretRequest{
			Name:    scope + "/secrets/" + name,
			Payload: &secretbrokerv1.PutSecretRequest_Value{Value: values[name]},
		})
	}
	ctx, cancel := context.WithTimeout(ctx, replicaCallTimeout)
	defer cancel()
	resp, err := c.BatchPutSecrets(ctx, req)
	out := batchOutcome{acked: map[string]string{}, err: err}
	for i, res := range resp.GetResults() {
		name := fmt.Sprintf("%s_%d", prefix, i)
		if res.GetCode() == rpccode.Code_OK {
			out.acked[scope+"/"+name] = values[name]
		} else {
			out.failed = append(out.failed, fmt.Sprintf("%s: %s %s", name, res.GetCode(), res.GetMessage()))
		}
	}
	return out
}

// putBatches sends one batch per broker at once, broker i's to its scope,
// and waits for them.
func (rig *replicaRig) putBatches(ctx context.Context, n int) []batchOutcome {
	out := make([]batchOutcome, len(rig.clients))
	var wg sync.WaitGroup
	for i, c := range rig.clients {
		wg.Go(func() { out[i] = putBatch(ctx, c, replicaScopes()[i], "R"+strconv.Itoa(i), n) })
	}
	wg.Wait()
	return out
}

// checkBatchOK fails t unless the batch was answered with every item OK.
func checkBatchOK(t *testing.T, who string, o batchOutcome, n int) {
	t.Helper()
	if o.err != nil {
		t.Errorf("%s: BatchPutSecrets: %v", who, o.err)
		return
	}
	if len(o.failed) > 0 || len(o.acked) != n {
		t.Errorf("%s: %d of %d items OK; failed: %v", who, len(o.acked), n, o.failed)
	}
}

// checkEmulator fails t if the emulator counted a violation or misses an
// acknowledged write (or holds another value).
func (rig *replicaRig) checkEmulator(t *testing.T, acked map[string]string) {
	t.Helper()
	st := rig.emu.Stats()
	if st.SecondaryViolations != 0 || st.ContentViolations != 0 || st.PrimaryViolations != 0 {
		t.Errorf("the emulator counted violations: secondary %d, content %d, primary %d",
			st.SecondaryViolations, st.ContentViolations, st.PrimaryViolations)
	}
	for key, want := range acked {
		i := strings.LastIndexByte(key, '/')
		got, err := rig.emu.Open(key[:i], key[i+1:])
		if err != nil {
			t.Errorf("acknowledged %s is not at the emulator: %v", key, err)
			continue
		}
		if string(got) != want {
			t.Errorf("acknowledged %s: the emulator holds another value", key)
		}
	}
}

// checkShared fails t unless Redis still holds the epoch the test
// seeded (the brokers joined it rather than starting a new one) and its
// log of writes (redisstate's "w" key, one entry per write granted, kept
// an hour) holds writes entries: every write both brokers granted went
// through the shared state.
func (rig *replicaRig) checkShared(ctx context.Context, t *testing.T, writes int) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: rig.redis.Addr})
	defer rc.Close()
	got, err := rc.Get(ctx, epochKey()).Result()
	if err != nil || got != rig.epoch {
		t.Errorf("Redis' epoch is %q (%v), want the seeded %q", got, err, rig.epoch)
	}
	n, err := rc.ZCard(ctx, sharedKey("w")).Result()
	if err != nil || n != int64(writes) {
		t.Errorf("Redis' log of writes holds %d entries (%v), want %d", n, err, writes)
	}
}

// checkLogs fails t if a broker's log holds the GitHub token or a value.
func (rig *replicaRig) checkLogs(t *testing.T, acked map[string]string) {
	t.Helper()
	for _, b := range rig.brokers {
		text := b.log.text()
		if strings.Contains(text, rig.token) {
			t.Errorf("%s's log holds the GitHub token", b.name)
		}
		for key, v := range acked {
			if strings.Contains(text, v) {
				t.Errorf("%s's log holds the value of %s", b.name, key)
			}
		}
	}
}

// logRate logs the combined rate of the accepted PUTs against the
// permitted one, and the closest two arrivals.
func logRate(t *testing.T, puts []putArrival) {
	t.Helper()
	if len(puts) < 2 {
		t.Logf("%d PUTs accepted: no rate", len(puts))
		return
	}
	span := puts[len(puts)-1].at.Sub(puts[0].at)
	closest := time.Duration(-1)
	for i := 1; i < len(puts); i++ {
		if d := puts[i].at.Sub(puts[i-1].at); closest < 0 || d < closest {
			closest = d
		}
	}
	rate := float64(len(puts)-1) / span.Seconds()
	permitted := float64(time.Second) / float64(replicaWriteInterval)
	t.Logf("combined rate at the emulator: %d PUTs in %v, %.3f writes/s, %.1f%% of the permitted %.0f/s (one write per %v); closest two arrivals %v apart",
		len(puts), span.Round(time.Millisecond), rate, 100*rate/permitted, permitted, replicaWriteInterval, closest.Round(time.Millisecond))
}

func merged(outs ...batchOutcome) map[string]string {
	m := map[string]string{}
	for _, o := range outs {
		for k, v := range o.acked {
			m[k] = v
		}
	}
	return m
}

// pacedProcArgs are the flags of a broker process that writes to the
// GitHub at url (its token in tokenFile) paced by GitHub's limits as the
// emulator enforces them, one write per replicaWriteInterval, and serves
// unauthenticated calls.
func pacedProcArgs(url, tokenFile string) []string {
	lim := emulator.GitHubLimits()
	return []string{
		"--upstream-url=" + url,
		"--upstream-token-file=" + tokenFile,
		"--allow-unauthenticated",
		"--upstream-write-interval=" + replicaWriteInterval.String(),
		"--upstream-points-per-minute=" + strconv.Itoa(lim.PointsPerMinute),
		"--upstream-writes-per-minute=" + strconv.Itoa(lim.WritesPerMinute),
		"--upstream-writes-per-hour=" + strconv.Itoa(lim.WritesPerHour),
		"--shutdown-timeout=2s",
	}
}

// TestReplicaProcesses runs the scenarios against the broker binary.
func TestReplicaProcesses(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		redistest.Start(t) // skips, or fails under CI=true, naming the package
	}
	bin := buildBrokerBinary(t)

	t.Run("driven at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), replicaScenarioTimeout)
		defer cancel()
		rig := newReplicaRig(ctx, t, bin, nil)
		const items = 12
		outs := rig.putBatches(ctx, items)
		for i, o := range outs {
			checkBatchOK(t, rig.brokers[i].name, o, items)
		}
		acked := merged(outs...)
		rig.checkEmulator(t, acked)
		puts := rig.rec.accepted()
		if len(puts) != 2*items {
			t.Errorf("the emulator accepted %d PUTs, want %d: one per item", len(puts), 2*items)
		}
		rig.checkShared(ctx, t, 2*items)
		rig.checkLogs(t, acked)
		logRate(t, puts)
	})

	t.Run("redis restarted empty", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), replicaScenarioTimeout)
		defer cancel()
		rig := newReplicaRig(ctx, t, bin, nil)
		const (
			items        = 24
			beforeStop   = 6 // PUTs accepted before Redis is killed
			duringOutage = 4 // ... and at least these while it is down
		)
		done := make(chan []batchOutcome, 1)
		go func() { done <- rig.putBatches(ctx, items) }()

		if !rig.rec.waitAccepted(ctx, beforeStop) {
			t.Fatalf("the emulator did not get %d PUTs", beforeStop)
		}
		rig.redis.Stop()
		stopped := len(rig.rec.accepted())
		for _, b := range rig.brokers {
			body := b.pollReadyz(ctx, t, "200 degraded while Redis is down", func(code int, body string) bool {
				return code == http.StatusOK && strings.HasPrefix(body, "ok (degraded: ") && strings.Contains(body, "Redis unreachable")
			})
			t.Logf("%s /readyz while Redis is down: %s", b.name, body)
		}
		if !rig.rec.waitAccepted(ctx, stopped+duringOutage) {
			t.Fatalf("the brokers did not write %d times while Redis was down", duringOutage)
		}
		rig.redis.Restart()
		restarted := len(rig.rec.accepted())
		for _, b := range rig.brokers {
			b.pollReadyz(ctx, t, `200 "ok" once Redis is back`, func(code int, body string) bool {
				return code == http.StatusOK && body == "ok"
			})
		}

		var outs []batchOutcome
		select {
		case outs = <-done:
		case <-ctx.Done():
			t.Fatal("the batches did not return")
		}
		for i, o := range outs {
			checkBatchOK(t, rig.brokers[i].name, o, items)
		}
		acked := merged(outs...)
		rig.checkEmulator(t, acked)
		puts := rig.rec.accepted()
		if len(puts) != 2*items {
			t.Errorf("the emulator accepted %d PUTs, want %d: one per item", len(puts), 2*items)
		}
		if restarted >= len(puts) {
			t.Errorf("every PUT arrived before Redis was restarted (%d): nothing was written after", restarted)
		}
		rig.checkLogs(t, acked)
		t.Logf("PUTs accepted: %d before Redis was killed, %d more before it was restarted, %d after",
			stopped, restarted-stopped, len(puts)-restarted)
		logRate(t, puts)
	})

	t.Run("one replica killed mid-batch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), replicaScenarioTimeout)
		defer cancel()
		const (
			items  = 12
			killAt = 3 // broker0's PUT held, and broker0 killed while it is
		)
		hold := &putHold{path: replicaScopes()[0], at: killAt, held: make(chan struct{}), release: make(chan struct{})}
		rig := newReplicaRig(ctx, t, bin, hold)
		victim, survivor := rig.brokers[0], rig.brokers[1]

		outs := make([]batchOutcome, 2)
		var wg sync.WaitGroup
		for i, c := range rig.clients {
			wg.Go(func() { outs[i] = putBatch(ctx, c, replicaScopes()[i], "R"+strconv.Itoa(i), items) })
		}
		select {
		case <-hold.held:
		case <-ctx.Done():
			t.Fatalf("%s's PUT %d never arrived", victim.name, killAt)
		}
		victim.kill(t)
		killed := time.Now()
		hold.free()
		wg.Wait()

		if outs[0].err == nil || status.Code(outs[0].err) == codes.OK {
			t.Errorf("%s's batch returned no error although it was killed during it", victim.name)
		}
		if len(outs[0].acked) != 0 {
			t.Errorf("%s acknowledged %d items of the batch it was killed in", victim.name, len(outs[0].acked))
		}
		checkBatchOK(t, survivor.name, outs[1], items)
		rig.checkEmulator(t, outs[1].acked)
		var survivors, victims int
		var firstAfter time.Time
		for _, p := range rig.rec.accepted() {
			if !strings.Contains(p.path, "/"+replicaScopes()[1]+"/") {
				victims++
				continue
			}
			survivors++
			if firstAfter.IsZero() && p.at.After(killed) {
				firstAfter = p.at
			}
		}
		if survivors != items {
			t.Errorf("the emulator accepted %d of %s's PUTs, want %d: one per item", survivors, survivor.name, items)
		}
		if victims != killAt-1 {
			t.Errorf("the emulator accepted %d of %s's PUTs, want the %d before the held one", victims, victim.name, killAt-1)
		}
		if code, body := survivor.readyz(ctx); code != http.StatusOK || body != "ok" {
			t.Errorf("%s /readyz after the other replica died: %d %q, want 200 ok", survivor.name, code, body)
		}
		rig.checkShared(ctx, t, killAt+items) // the held write was granted too
		rig.checkLogs(t, merged(outs...))
		if !firstAfter.IsZero() {
			t.Logf("%s's first write after %s was killed holding the write slot: %v later (the slot's lease is max(3 × %v, 1s))",
				survivor.name, victim.name, firstAfter.Sub(killed).Round(time.Millisecond), replicaWriteInterval)
		}
	})
}
