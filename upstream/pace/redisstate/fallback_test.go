package redisstate_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// lockedBuffer is a log sink for several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

var ok204 = pace.RateLimit{Status: 204, Remaining: -1, Used: -1}

// spend starts and completes reads of one point at now until the State
// refuses one; it returns how many it granted.
func spend(t *testing.T, st pace.State, now time.Time, prefix string, most int) int {
	t.Helper()
	for i := range most {
		g := pace.Grant{ID: prefix + strconv.Itoa(i), Cost: 1}
		if !st.Start(context.Background(), now, g).OK {
			return i
		}
		st.Done(context.Background(), now, g, ok204)
	}
	return most
}

// Redis unreachable: each replica falls back to its share of the budget,
// counting what every replica had used at its last heartbeat, logs one line,
// and says so. Redis back empty: the replicas re-seed it from their
// records, wait out the grace, and find the budget as spent as it was,
// not fresh.
func TestFallbackAndReseed(t *testing.T) {
	srv := redistest.Start(t)
	t0 := statetest.T0
	logs := &lockedBuffer{}
	lim := pace.StateLimits{PointsPerMinute: 100}
	mk := func() *redisstate.State {
		s, err := redisstate.New(redisstate.Options{Client: newClient(t, srv), Credential: "fallback", Limits: lim,
			ExpectedReplicas: 2, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Sync(context.Background(), t0.Add(-time.Hour))
		return s
	}
	a, b := mk(), mk()
	ctx := context.Background()

	// Shared: A spends 60 of the 100 points, B the other 40.
	if n := spend(t, a, t0, "a", 60); n != 60 {
		t.Fatalf("A granted %d of 60", n)
	}
	if n := spend(t, b, t0, "b", 100); n != 40 {
		t.Fatalf("B granted %d, want the 40 left", n)
	}

	// The heartbeats a second before the outage: the snapshots B falls
	// back on.
	beat := t0.Add(9 * time.Second)
	a.Sync(ctx, beat)
	b.Sync(ctx, beat)
	srv.Stop()
	now := t0.Add(10 * time.Second)
	// B falls back: its share is 50, and the replicas had used 100 at its
	// last heartbeat: nothing until those leave the window.
	if n := spend(t, b, now, "b2-", 10); n != 0 {
		t.Errorf("B granted %d during the outage, with the shared budget spent", n)
	}
	for range 3 {
		b.Sync(ctx, now)
	}
	if up, since := b.Up(); up || !since.Equal(now) {
		t.Errorf("B: up %v since %v, want down since %v", up, since, now)
	}
	if got := logs.count("Redis unreachable"); got != 1 {
		t.Errorf("%d outage log lines from one replica, want 1", got)
	}
	if !strings.Contains(b.Status(), "Redis unreachable") {
		t.Errorf("Status %q", b.Status())
	}
	// A window after the heartbeat (the snapshot does not say when the
	// points were spent, only that they counted then), B spends its
	// share, 50.
	later := beat.Add(pace.Window)
	if n := spend(t, b, later, "b3-", 100); n != 50 {
		t.Errorf("B granted %d from its local share, want 50", n)
	}

	// Redis back, empty. Each replica re-seeds on its next Sync; the new
	// epoch's grace keeps them on their local shares meanwhile.
	srv.Restart()
	back := later.Add(time.Second)
	a.Sync(ctx, back)
	b.Sync(ctx, back)
	if up, _ := b.Up(); !up || b.Status() != "" {
		t.Fatalf("B not back on the shared budget: %s", b.Status())
	}
	if got := logs.count("Redis is reachable again"); got != 1 {
		t.Errorf("%d recovery log lines, want 1 (A never saw the outage)", got)
	}
	// After the grace, the shared budget holds B's 50: A gets 50, not 100.
	after := back.Add(redisstate.DefaultSeedGrace)
	if n := spend(t, a, after, "a2-", 100); n != 50 {
		t.Errorf("A granted %d from the re-seeded budget, want the 50 left", n)
	}
}

// seededPair returns two replicas' States of cred on srv, seeded an hour
// before T0, after A granted one read at T0 answered with left of the
// primary quota remaining for ten minutes.
func seededPair(t *testing.T, srv *redistest.Server, cred string, lim pace.StateLimits, left int) (a, b *redisstate.State) {
	t.Helper()
	ctx, t0 := context.Background(), statetest.T0
	a = newState(t, newClient(t, srv), cred, lim, 2)
	b = newState(t, newClient(t, srv), cred, lim, 2)
	a.Sync(ctx, t0.Add(-time.Hour))
	b.Sync(ctx, t0.Add(-time.Hour))
	g0 := pace.Grant{ID: "g0", Cost: pace.ReadPoints}
	if !a.Start(ctx, t0, g0).OK {
		t.Fatal("g0 refused")
	}
	a.Done(ctx, t0, g0, pace.RateLimit{Status: 200, Remaining: left, Used: 5000 - left, Reset: t0.Add(10 * time.Minute)})
	return a, b
}

// A request whose completion never reached Redis (its Done timed out)
// stops counting as in flight once its replica re-seeds Redis from its
// record: the re-seed lowers the request's end to its completion. Else it
// would hold the bound on requests in flight against the primary quota
// left, on every replica, as if still in flight.
func TestReseedTakesLostCompletion(t *testing.T) {
	srv := redistest.Start(t)
	t0 := statetest.T0
	ctx := context.Background()
	a, b := seededPair(t, srv, "lost-done", pace.StateLimits{}, 1)
	g1 := pace.Grant{ID: "g1", Cost: pace.ReadPoints}
	if !a.Start(ctx, t0, g1).OK {
		t.Fatal("g1 refused")
	}
	// g1's Done meets a Redis that does not answer in time: A records
	// the completion and falls back.
	pauser := newClient(t, srv)
	if err := pauser.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	a.Done(ctx, t0.Add(time.Second), g1, ok204)
	if err := pauser.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	if up, _ := a.Up(); up {
		t.Fatal("A is up after its Done timed out; the test shows nothing")
	}
	a.Sync(ctx, t0.Add(2*time.Second)) // back: A re-seeds Redis
	if up, _ := a.Up(); !up {
		t.Fatalf("A is not back: %s", a.Status())
	}
	// One left, none in flight: B may send it.
	if v := b.Start(ctx, t0.Add(3*time.Second), pace.Grant{ID: "g2", Cost: pace.ReadPoints}); !v.OK {
		t.Fatalf("B's Start = %+v, want granted: g1 still counts as in flight", v)
	}
}

// A request whose completion never reached Redis stops counting as in
// flight against the CPU-time budget too once its replica re-seeds Redis:
// it counts what it took, not its time so far.
func TestReseedTakesLostResponseTime(t *testing.T) {
	srv := redistest.Start(t)
	t0 := statetest.T0
	ctx := context.Background()
	lim := pace.StateLimits{CPUPerMinute: 30 * time.Second}
	a, b := seededPair(t, srv, "lost-took", lim, 100)
	g1 := pace.Grant{ID: "g1", Cost: pace.ReadPoints, CPU: 2 * time.Second}
	if !a.Start(ctx, t0, g1).OK {
		t.Fatal("g1 refused")
	}
	pauser := newClient(t, srv)
	if err := pauser.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	g1.Took = time.Second
	a.Done(ctx, t0.Add(time.Second), g1, ok204)
	if err := pauser.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	if up, _ := a.Up(); up {
		t.Fatal("A is up after its Done timed out; the test shows nothing")
	}
	a.Sync(ctx, t0.Add(2*time.Second)) // back: A re-seeds Redis
	// At +50s g1 would count 40 s in flight; done, it counts its 1 s.
	now := t0.Add(50 * time.Second)
	if v := b.Start(ctx, now, pace.Grant{ID: "g2", Cost: pace.ReadPoints, CPU: 20 * time.Second}); !v.OK {
		t.Fatalf("B's Start = %+v, want granted: g1 still counts as in flight", v)
	}
	if v := b.Start(ctx, now, pace.Grant{ID: "g3", Cost: pace.ReadPoints, CPU: 10 * time.Second}); v.OK || v.Why != pace.ReasonCPU {
		t.Fatalf("B's Start = %+v, want a wait for ReasonCPU: 1 s + 20 s + 10 s is over 30 s", v)
	}
}

// Redis unreachable: a replica keeps its part of the primary quota left
// in flight (remaining / ExpectedReplicas), and the other replicas' use
// from its last snapshot, which it counts against the budgets, is no
// request of its own there.
func TestFallbackPrimaryShare(t *testing.T) {
	srv := redistest.Start(t)
	t0 := statetest.T0
	ctx := context.Background()
	a, b := seededPair(t, srv, "fallback-primary", pace.StateLimits{PointsPerMinute: 900}, 4)
	if !b.Start(ctx, t0, pace.Grant{ID: "b0", Cost: pace.ReadPoints}).OK { // in flight at A's heartbeat
		t.Fatal("b0 refused")
	}
	a.Sync(ctx, t0.Add(time.Second)) // A's snapshot: B's request in flight
	srv.Stop()
	now := t0.Add(2 * time.Second)
	granted := 0
	for i := range 4 {
		if a.Start(ctx, now, pace.Grant{ID: "a" + strconv.Itoa(i), Cost: pace.ReadPoints}).OK {
			granted++
		}
	}
	if up, _ := a.Up(); up {
		t.Fatal("A is up with Redis stopped; the test shows nothing")
	}
	if granted != 2 {
		t.Errorf("A on its local share granted %d requests at once with 4 left and 2 replicas, want 2", granted)
	}
}
