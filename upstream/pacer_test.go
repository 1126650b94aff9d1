package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/clock"
)

// arrival is one request as a pacing test server saw it.
type arrival struct {
	Method string
	Path   string
	At     time.Time // on the test clock, when the handler started
	Header http.Header
	Body   string
	Caller string // the test's own tag, from the X-Test-Caller header
}

// paceServer is a loopback server that records when each request
// arrived on the test clock and how many were in flight at once, and
// answers with handle (nil: 204 for writes, {} for reads). n is the
// arrival's index, from 0.
type paceServer struct {
	*httptest.Server
	clk    clock.Clock
	handle func(n int, a arrival, w http.ResponseWriter, r *http.Request)

	mu                      sync.Mutex
	arrivals                []arrival
	inFlight, peak          int
	writesInFlight, peakW   int
	handlerDelay            time.Duration // wall time each handler sleeps
	handlerDelayAlternating bool
}

func newPaceServer(t *testing.T, clk clock.Clock, handle func(n int, a arrival, w http.ResponseWriter, r *http.Request)) *paceServer {
	t.Helper()
	s := &paceServer{clk: clk, handle: handle}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *paceServer) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a := arrival{Method: r.Method, Path: r.URL.EscapedPath(), At: s.clk.Now(), Header: r.Header.Clone(), Body: string(b), Caller: r.Header.Get("X-Test-Caller")}
	write := isWrite(r.Method)
	s.mu.Lock()
	n := len(s.arrivals)
	s.arrivals = append(s.arrivals, a)
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	if write {
		s.writesInFlight++
		s.peakW = max(s.peakW, s.writesInFlight)
	}
	delay := s.handlerDelay
	if s.handlerDelayAlternating && n%2 == 1 {
		delay = 0
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		if write {
			s.writesInFlight--
		}
		s.mu.Unlock()
	}()
	if delay > 0 {
		time.Sleep(delay)
	}
	if s.handle != nil {
		s.handle(n, a, w, r)
		return
	}
	defaultAnswer(w, r)
}

// newGatedServer returns a server on a 1000x clock that holds its first
// request in flight until gate is closed, and answers the others at once.
func newGatedServer(t *testing.T) (*paceServer, chan struct{}) {
	gate := make(chan struct{})
	s := newPaceServer(t, testClock(t, 1000), func(n int, a arrival, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			<-gate
		}
		defaultAnswer(w, r)
	})
	return s, gate
}

func defaultAnswer(w http.ResponseWriter, r *http.Request) {
	if isWrite(r.Method) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{}`)
}

func (s *paceServer) Arrivals() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

func (s *paceServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

func (s *paceServer) Peaks() (all, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.peakW
}

// pacedClient returns a Client for s with pacing p on s's clock.
func pacedClient(t *testing.T, s *paceServer, p Pacing) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: s.URL, Token: testToken, Pacing: &p, Clock: s.clk})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testClock returns a clock running factor times faster than the wall
// clock.
func testClock(t *testing.T, factor float64) clock.Clock {
	t.Helper()
	clk, err := clock.Scaled(factor)
	if err != nil {
		t.Fatal(err)
	}
	return clk
}

// waitQueued waits (bounded) until n requests are queued in c's pacer.
func waitQueued(t *testing.T, c *Client, n int) {
	t.Helper()
	for range 5000 {
		c.pacer.mu.Lock()
		q := c.pacer.queued
		c.pacer.mu.Unlock()
		if q == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d requests never got queued", n)
}

// runAll runs n calls concurrently and returns their errors.
func runAll(n int, call func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = call(i) })
	}
	wg.Wait()
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
}

var testPut = PutSecretBody{EncryptedValue: "c2VhbGVk", KeyID: "k1"}

func TestDefaultPacing(t *testing.T) {
	want := Pacing{MaxInFlight: 10, WriteInterval: time.Second, PointsPerMinute: 900, MaxAttempts: 5,
		BackoffBase: time.Second, BackoffMax: 60 * time.Second, SecondaryPause: 60 * time.Second}
	if got := DefaultPacing(); got != want {
		t.Errorf("DefaultPacing() = %+v, want %+v", got, want)
	}
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.pacing != want {
		t.Errorf("nil Config.Pacing gives %+v, want the default", c.pacing)
	}
	if c.clk == nil || c.log == nil {
		t.Errorf("defaults: clock %v, logger %v", c.clk, c.log)
	}
}

func TestPacingValidation(t *testing.T) {
	mod := func(f func(*Pacing)) Pacing {
		p := DefaultPacing()
		f(&p)
		return p
	}
	for _, tc := range []struct {
		name string
		p    Pacing
		ok   bool
		want int // MaxInFlight after New, when ok
	}{
		{"default", DefaultPacing(), true, 10},
		{"MaxInFlight 0 is 10", mod(func(p *Pacing) { p.MaxInFlight = 0 }), true, 10},
		{"MaxInFlight 1", mod(func(p *Pacing) { p.MaxInFlight = 1 }), true, 1},
		{"MaxInFlight 100", mod(func(p *Pacing) { p.MaxInFlight = 100 }), true, 100},
		{"MaxInFlight 101", mod(func(p *Pacing) { p.MaxInFlight = 101 }), false, 0},
		{"MaxInFlight -1", mod(func(p *Pacing) { p.MaxInFlight = -1 }), false, 0},
		{"WriteInterval 0", mod(func(p *Pacing) { p.WriteInterval = 0 }), true, 10},
		{"WriteInterval negative", mod(func(p *Pacing) { p.WriteInterval = -time.Second }), false, 0},
		{"points off", mod(func(p *Pacing) { p.PointsPerMinute = 0 }), true, 10},
		{"points 4", mod(func(p *Pacing) { p.PointsPerMinute = 4 }), false, 0},
		{"points 5", mod(func(p *Pacing) { p.PointsPerMinute = 5 }), true, 10},
		{"points negative", mod(func(p *Pacing) { p.PointsPerMinute = -1 }), false, 0},
		{"MaxAttempts 0", mod(func(p *Pacing) { p.MaxAttempts = 0 }), false, 0},
		{"MaxAttempts 1", mod(func(p *Pacing) { p.MaxAttempts = 1 }), true, 10},
		{"backoff max below base", mod(func(p *Pacing) { p.BackoffMax = time.Millisecond }), false, 0},
		{"backoff negative", mod(func(p *Pacing) { p.BackoffBase = -1 }), false, 0},
		{"backoff zero", mod(func(p *Pacing) { p.BackoffBase, p.BackoffMax = 0, 0 }), true, 10},
		{"secondary pause negative", mod(func(p *Pacing) { p.SecondaryPause = -1 }), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Pacing: &tc.p})
			if tc.ok != (err == nil) {
				t.Fatalf("New: err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && c.pacing.MaxInFlight != tc.want {
				t.Errorf("MaxInFlight %d, want %d", c.pacing.MaxInFlight, tc.want)
			}
		})
	}
}

func TestMaxInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes bool
	}{
		{"reads, 1", 1, false},
		{"reads, 4", 4, false},
		{"unspaced writes, 3", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPaceServer(t, testClock(t, 1000), nil)
			s.handlerDelay = time.Millisecond
			p := DefaultPacing()
			p.MaxInFlight, p.WriteInterval, p.PointsPerMinute = tc.max, 0, 0
			c := pacedClient(t, s, p)
			const n = 40
			noErrors(t, runAll(n, func(i int) error {
				if tc.writes {
					return c.DeleteSecret(t.Context(), repActions, fmt.Sprint("S", i))
				}
				_, err := c.GetSecret(t.Context(), repActions, fmt.Sprint("S", i))
				return err
			}))
			peak, _ := s.Peaks()
			if peak > tc.max {
				t.Errorf("%d requests in flight at the server, want at most %d", peak, tc.max)
			}
			st := c.PacerStats()
			if st.PeakInFlight > tc.max || st.PeakInFlight < 1 || st.InFlight != 0 || st.Requests != n {
				t.Errorf("stats %+v: want peak in 1..%d, none in flight, %d requests", st, tc.max, n)
			}
			if got := s.Count(); got != n {
				t.Errorf("server saw %d requests, want %d", got, n)
			}
		})
	}
}

// Writes go one at a time and each starts at least WriteInterval after the
// previous one; reads are neither serialized nor spaced.
func TestWritesSerializedAndSpaced(t *testing.T) {
	clk := testClock(t, 10) // 1 s is 100 ms of wall time
	s := newPaceServer(t, clk, nil)
	s.handlerDelay = 2 * time.Millisecond // 20 ms on the test clock
	p := DefaultPacing()
	p.PointsPerMinute = 0
	c := pacedClient(t, s, p)
	const writes, reads = 5, 5
	noErrors(t, runAll(writes+reads, func(i int) error {
		switch {
		case i >= writes:
			_, err := c.GetSecret(t.Context(), repActions, "R")
			return err
		case i%2 == 0:
			return c.DeleteSecret(t.Context(), repActions, fmt.Sprint("S", i))
		default:
			_, err := c.PutSecret(t.Context(), repActions, fmt.Sprint("S", i), testPut)
			return err
		}
	}))
	if _, w := s.Peaks(); w != 1 {
		t.Errorf("%d writes in flight at once at the server, want 1", w)
	}
	var last time.Time
	n := 0
	// The server sees the spacing of the dispatches blurred by how long
	// each request takes to reach it, which on a loaded machine can be
	// milliseconds.
	const tolerance = 150 * time.Millisecond // on the test clock: 15 ms of wall time
	for _, a := range s.Arrivals() {
		if !isWrite(a.Method) {
			continue
		}
		n++
		if !last.IsZero() {
			if gap := a.At.Sub(last); gap < p.WriteInterval-tolerance {
				t.Errorf("write %d arrived %v after the previous one, want at least %v", n, gap, p.WriteInterval)
			}
		}
		last = a.At
	}
	if n != writes {
		t.Errorf("%d writes arrived, want %d", n, writes)
	}
}

// No 60 s window at the server sees more points than the budget, with
// requests that take a while.
func TestPointsBudget(t *testing.T) {
	clk := testClock(t, 1000)
	s := newPaceServer(t, clk, nil)
	s.handlerDelay = 2 * time.Millisecond // 2 s on the test clock
	s.handlerDelayAlternating = true
	const budget = 30
	p := DefaultPacing()
	p.WriteInterval, p.PointsPerMinute = 0, budget
	c := pacedClient(t, s, p)
	const n = 30 // 15 writes and 15 reads: 90 points, three budgets
	noErrors(t, runAll(n, func(i int) error {
		if i%2 == 0 {
			return c.DeleteSecret(t.Context(), repActions, fmt.Sprint("S", i))
		}
		_, err := c.GetSecret(t.Context(), repActions, "R")
		return err
	}))
	arr := s.Arrivals()
	if len(arr) != n {
		t.Fatalf("%d requests arrived, want %d", len(arr), n)
	}
	cost := func(a arrival) int {
		if isWrite(a.Method) {
			return writePoints
		}
		return readPoints
	}
	for i, a := range arr {
		sum := 0
		for _, b := range arr {
			if !b.At.Before(a.At) && b.At.Sub(a.At) <= pointsWindow {
				sum += cost(b)
			}
		}
		if sum > budget {
			t.Fatalf("the 60 s window from arrival %d holds %d points, budget %d", i, sum, budget)
		}
	}
	if st := c.PacerStats(); st.Points != 90 || st.Requests != n {
		t.Errorf("stats %+v: want 90 points, %d requests", st, n)
	}
}

// A write held back by the points budget is not starved by a stream of
// cheaper reads from another caller.
func TestPointsReservedForWaitingWrite(t *testing.T) {
	clk := testClock(t, 1000)
	s := newPaceServer(t, clk, nil)
	p := DefaultPacing()
	p.WriteInterval, p.PointsPerMinute = 0, 10
	c := pacedClient(t, s, p)
	ctx := t.Context()
	// Spend 9 of 10 points.
	for range 9 {
		if _, err := c.GetSecret(ctx, repActions, "R"); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.DeleteSecret(WithCaller(ctx, "writer"), repActions, "W"); err != nil {
			t.Error(err)
		}
	})
	waitQueued(t, c, 1)
	errs := runAll(10, func(int) error {
		_, err := c.GetSecret(WithCaller(ctx, "reader"), repActions, "R")
		return err
	})
	wg.Wait()
	noErrors(t, errs)
	// The write is admitted as soon as it fits, before any of the reads,
	// which are held back while it waits; at most the 5 points it leaves
	// go to reads in its window, so at least 5 reads come after it. (The
	// server's arrival order need not be the admission order; without the
	// reservation the reads would take each point as it frees and the
	// write would go last.)
	arr := s.Arrivals()
	after := -1
	for _, a := range arr[9:] {
		switch {
		case a.Method == http.MethodDelete:
			after = 0
		case after >= 0:
			after++
		}
	}
	if after < 5 {
		t.Errorf("%d reads arrived after the write, want at least 5: the reads starved it", after)
	}
}

// GitHub's primary quota: a 2xx with x-ratelimit-remaining 0 holds every
// request until x-ratelimit-reset; a caller whose deadline comes first is
// refused at once, unsent.
func TestPrimaryLimitWaitsForReset(t *testing.T) {
	clk := testClock(t, 1000)
	var reset atomic.Int64
	s := newPaceServer(t, clk, func(n int, a arrival, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			reset.Store(clk.Now().Add(300 * time.Second).Unix())
			w.Header().Set("X-Ratelimit-Remaining", "0")
			w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(reset.Load()))
		} else {
			w.Header().Set("X-Ratelimit-Remaining", "4999")
			w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(clk.Now().Add(time.Hour).Unix()))
		}
		defaultAnswer(w, r)
	})
	c := pacedClient(t, s, DefaultPacing())
	ctx := t.Context()
	if _, err := c.GetSecret(ctx, repActions, "A"); err != nil {
		t.Fatal(err)
	}

	// 100 s of the test clock is not enough to reach the reset.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := c.GetSecret(short, repActions, "B")
	var te *ThrottledError
	if !errors.As(err, &te) || te.RetryAfter <= 0 || te.RetryAfter > 301*time.Second {
		t.Fatalf("err = %v, want a *ThrottledError with RetryAfter up to 301s", err)
	}
	if !strings.Contains(te.Reason, "primary") {
		t.Errorf("reason %q does not name the primary limit", te.Reason)
	}
	if n := s.Count(); n != 1 {
		t.Errorf("server saw %d requests, want 1: the refused one was sent", n)
	}

	if _, err := c.GetSecret(ctx, repActions, "C"); err != nil {
		t.Fatal(err)
	}
	arr := s.Arrivals()
	if got, want := arr[1].At, time.Unix(reset.Load(), 0); got.Before(want) {
		t.Errorf("request after the quota ran out arrived at %v, before the reset at %v", got, want)
	}
	if st := c.PacerStats(); st.Throttled != 1 {
		t.Errorf("stats %+v: want 1 throttled", st)
	}
}

// A queued request whose deadline the spacing of the writes ahead of it
// would outlast is refused at once, never sent.
func TestDeadlineFailFast(t *testing.T) {
	clk := testClock(t, 1000)
	s := newPaceServer(t, clk, nil)
	p := DefaultPacing()
	p.WriteInterval = time.Hour // 3.6 s of wall time
	c := pacedClient(t, s, p)
	ctx := t.Context()
	if err := c.DeleteSecret(ctx, repActions, "A"); err != nil {
		t.Fatal(err)
	}
	// Ten minutes of the test clock (600 ms of wall time) is far from the
	// next write slot, an hour after the first.
	dctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
	defer cancel()
	_, err := c.PutSecret(dctx, repActions, "B", testPut)
	returnedBeforeDeadline := dctx.Err() == nil
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *ThrottledError", err)
	}
	if !returnedBeforeDeadline {
		t.Error("the call waited for its deadline instead of failing at once")
	}
	if te.RetryAfter <= 0 || te.RetryAfter > time.Hour {
		t.Errorf("RetryAfter %v, want in (0, 1h]", te.RetryAfter)
	}
	if te.Method != "PUT" || te.Route != "/repos/{owner}/{repo}/{app}/secrets/{secret_name}" {
		t.Errorf("method %q route %q", te.Method, te.Route)
	}
	if msg := te.Error(); !strings.HasPrefix(msg, "github: PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}: not sent: ") ||
		!strings.HasSuffix(msg, "after the caller's deadline") || strings.Contains(msg, "acme") {
		t.Errorf("message %q", msg)
	}
	if n := s.Count(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
	// Reads are not spaced: one with the same deadline goes at once.
	if _, err := c.GetSecret(dctx, repActions, "B"); err != nil {
		t.Errorf("read: %v", err)
	}
	if st := c.PacerStats(); st.Throttled != 1 {
		t.Errorf("stats %+v: want 1 throttled", st)
	}
}

// The fail-fast estimate counts the writes ahead in round-robin order:
// with writes 100 s apart and a 350 s deadline, about three queued writes
// make it and the rest are refused at once.
func TestDeadlineCountsWritesAhead(t *testing.T) {
	s, gate := newGatedServer(t)
	p := DefaultPacing()
	p.WriteInterval = 100 * time.Second
	c := pacedClient(t, s, p)
	ctx := t.Context()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.DeleteSecret(ctx, repActions, "first"); err != nil {
			t.Error(err)
		}
	})
	for s.Count() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The first write is in flight; queue ten, each with a 350 s
	// deadline, one after another so that their places are known.
	dctx, cancel := context.WithTimeout(ctx, 350*time.Millisecond)
	defer cancel()
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { errs[i] = c.DeleteSecret(dctx, repActions, fmt.Sprint("S", i)) })
		waitSettled(t, c, i+1)
	}
	throttledAtOnce := c.PacerStats().Throttled
	close(gate)
	wg.Wait()
	if throttledAtOnce < 6 {
		t.Errorf("%d of 10 writes refused at once, want at least 6 (at most 3 fit in 350 s at 100 s apart)", throttledAtOnce)
	}
	for i, err := range errs {
		var te *ThrottledError
		if err != nil && !errors.As(err, &te) {
			t.Errorf("write %d: %v, want success or a *ThrottledError", i, err)
		}
	}
}

// waitSettled waits (bounded) until n requests have been queued or
// refused.
func waitSettled(t *testing.T, c *Client, n int) {
	t.Helper()
	for range 5000 {
		c.pacer.mu.Lock()
		got := c.pacer.queued + c.pacer.stats.Throttled
		c.pacer.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d requests never got queued or refused", n)
}

// Two callers share the budget in turn: caller B's single write does not
// wait behind caller A's fifty.
func TestFairnessBetweenCallers(t *testing.T) {
	s, gate := newGatedServer(t)
	c := pacedClient(t, s, DefaultPacing())
	ctxA := WithCaller(t.Context(), "A")
	ctxB := WithCaller(t.Context(), "B")
	var wg sync.WaitGroup
	errs := make([]error, 51)
	for i := range 50 {
		wg.Go(func() { _, errs[i] = c.PutSecret(ctxA, repActions, fmt.Sprint("A", i), testPut) })
	}
	waitQueued(t, c, 49) // one in flight
	wg.Go(func() { _, errs[50] = c.PutSecret(ctxB, repActions, "B", testPut) })
	waitQueued(t, c, 50)
	close(gate)
	wg.Wait()
	noErrors(t, errs)
	for i, a := range s.Arrivals() {
		if strings.HasSuffix(a.Path, "/secrets/B") {
			if i > 1 {
				t.Errorf("B's write was write %d, want among the first 2", i+1)
			}
			return
		}
	}
	t.Error("B's write never arrived")
}

// A caller's read goes while another caller's write waits for its slot;
// cancelling a queued request returns the context's error, unsent.
func TestReadPassesWaitingWrite(t *testing.T) {
	clk := testClock(t, 1000)
	s := newPaceServer(t, clk, nil)
	p := DefaultPacing()
	p.WriteInterval = time.Hour
	c := pacedClient(t, s, p)
	ctxA := WithCaller(t.Context(), "A")
	if err := c.DeleteSecret(ctxA, repActions, "W1"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctxA)
	done := make(chan error, 1)
	go func() { done <- c.DeleteSecret(wctx, repActions, "W2") }()
	waitQueued(t, c, 1)
	if _, err := c.GetSecret(WithCaller(t.Context(), "B"), repActions, "R"); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled while queued: %v, want context.Canceled", err)
	}
	if got := s.Count(); got != 2 {
		t.Errorf("server saw %d requests, want 2 (W1 and the read)", got)
	}
	c.pacer.mu.Lock()
	q := c.pacer.queued
	c.pacer.mu.Unlock()
	if q != 0 {
		t.Errorf("%d requests still queued", q)
	}
}

// PutSecretFunc makes the body when the pacer admits the write, not when
// it is queued, and once per attempt.
func TestPutSecretFuncLateBody(t *testing.T) {
	clk := testClock(t, 1000)
	var failFirst atomic.Bool
	gate := make(chan struct{})
	s := newPaceServer(t, clk, func(n int, a arrival, w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(a.Path, "/secrets/X") {
			<-gate
		}
		if failFirst.Load() && strings.Contains(a.Body, `"k-1"`) {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	c := pacedClient(t, s, DefaultPacing())
	ctx := t.Context()

	t.Run("made after admission", func(t *testing.T) {
		// A write in flight holds the next one in the queue.
		first := make(chan error, 1)
		go func() { first <- c.DeleteSecret(ctx, repActions, "X") }()
		for s.Count() == 0 {
			time.Sleep(time.Millisecond)
		}
		var key atomic.Value
		key.Store("old")
		var calls atomic.Int32
		done := make(chan error, 1)
		go func() {
			_, err := c.PutSecretFunc(ctx, repActions, "S", func() (PutSecretBody, error) {
				calls.Add(1)
				return PutSecretBody{EncryptedValue: "dmFs", KeyID: KeyID(key.Load().(string))}, nil
			})
			done <- err
		}()
		waitQueued(t, c, 1)
		if calls.Load() != 0 {
			t.Error("body made while the write was queued")
		}
		key.Store("new") // the key rotates while the write waits
		close(gate)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		arr := s.Arrivals()
		if last := arr[len(arr)-1]; !strings.Contains(last.Body, `"key_id":"new"`) {
			t.Errorf("body %s: sealed with the key known at queueing, not at admission", last.Body)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("body made %d times for one attempt", n)
		}
	})

	t.Run("once per attempt", func(t *testing.T) {
		failFirst.Store(true)
		defer failFirst.Store(false)
		before := s.Count()
		var calls atomic.Int32
		created, err := c.PutSecretFunc(ctx, repActions, "S", func() (PutSecretBody, error) {
			n := calls.Add(1)
			return PutSecretBody{EncryptedValue: "dmFs", KeyID: KeyID(fmt.Sprint("k-", n))}, nil
		})
		if err != nil || !created {
			t.Fatalf("created %v, err %v", created, err)
		}
		arr := s.Arrivals()[before:]
		if calls.Load() != 2 || len(arr) != 2 || !strings.Contains(arr[1].Body, `"k-2"`) {
			t.Errorf("%d bodies for %d attempts; last body %s", calls.Load(), len(arr), arr[len(arr)-1].Body)
		}
	})

	t.Run("error aborts unsent", func(t *testing.T) {
		before := s.Count()
		boom := errors.New("sealing failed")
		_, err := c.PutSecretFunc(ctx, repActions, "S", func() (PutSecretBody, error) {
			return PutSecretBody{}, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the body's error", err)
		}
		if n := s.Count(); n != before {
			t.Errorf("%d requests sent for a body that failed", n-before)
		}
		// The unsent write gave its slot back: the next one need not
		// wait the interval after it.
		c.pacer.mu.Lock()
		last := c.pacer.lastWrite
		c.pacer.mu.Unlock()
		if arr := s.Arrivals(); last.After(arr[len(arr)-1].At) {
			t.Errorf("the unsent write still counts in the spacing")
		}
	})

	t.Run("nil body", func(t *testing.T) {
		if _, err := c.PutSecretFunc(ctx, repActions, "S", nil); err == nil {
			t.Error("no error for a nil body function")
		}
	})
}

func TestRevalidatePublicKey(t *testing.T) {
	const (
		oldTag = `W/"old"`
		newTag = `W/"new"`
	)
	clk := testClock(t, 1000)
	s := newPaceServer(t, clk, func(n int, a arrival, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == oldTag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", newTag)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key_id":"k2","key":"bmV3"}`)
	})
	for _, tc := range []struct {
		name         string
		etag         string
		wantHeader   string
		want         PublicKey
		wantNotModif bool
	}{
		{"unchanged", oldTag, oldTag, PublicKey{ETag: oldTag}, true},
		{"rotated", `W/"older"`, `W/"older"`, PublicKey{KeyID: "k2", Key: "bmV3", ETag: newTag}, false},
		{"no etag", "", "", PublicKey{KeyID: "k2", Key: "bmV3", ETag: newTag}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pacedClient(t, s, DefaultPacing())
			before := s.Count()
			pk, notModified, err := c.RevalidatePublicKey(t.Context(), orgActions, tc.etag)
			if err != nil {
				t.Fatal(err)
			}
			if pk != tc.want || notModified != tc.wantNotModif {
				t.Errorf("got %#v, %v; want %#v, %v", pk, notModified, tc.want, tc.wantNotModif)
			}
			a := s.Arrivals()[before]
			if got := a.Header.Get("If-None-Match"); got != tc.wantHeader {
				t.Errorf("If-None-Match %q, want %q", got, tc.wantHeader)
			}
			if a.Path != "/orgs/acme/actions/secrets/public-key" {
				t.Errorf("path %s", a.Path)
			}
		})
	}
	t.Run("304 is an error elsewhere", func(t *testing.T) {
		c := pacedClient(t, s, DefaultPacing())
		_, err := c.GetPublicKey(t.Context(), orgActions)
		if err != nil {
			t.Fatalf("unconditional GET: %v", err)
		}
		f := newFake(t, fixed(reply{Status: http.StatusNotModified}))
		c2 := newClient(t, Config{BaseURL: f.URL})
		var e *Error
		if _, err := c2.GetPublicKey(t.Context(), orgActions); !errors.As(err, &e) || e.StatusCode != 304 {
			t.Errorf("304 to an unconditional GET: %v, want a 304 *Error", err)
		}
	})
}

// The fail-fast estimate of a write counts the writes ahead of it in
// round-robin order, not in arrival order: a newcomer's single write goes
// in the next slot and is kept, while another write of the caller with a
// long queue, with the same deadline, is refused at once.
func TestDeadlineEstimateRoundRobin(t *testing.T) {
	s, gate := newGatedServer(t)
	p := DefaultPacing()
	p.WriteInterval = 100 * time.Second // 100 ms of wall time
	c := pacedClient(t, s, p)
	ctxA, cancelA := context.WithCancel(WithCaller(t.Context(), "A"))
	defer cancelA()
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.DeleteSecret(ctxA, repActions, "A0") })
	for s.Count() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := range 5 {
		wg.Go(func() { _ = c.DeleteSecret(ctxA, repActions, fmt.Sprint("A", i+1)) })
	}
	waitQueued(t, c, 5)

	// 250 s: room for the slots 100 s and 200 s from now, not more.
	dctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
	defer cancel()
	bDone := make(chan error, 1)
	go func() { bDone <- c.DeleteSecret(WithCaller(dctx, "B"), repActions, "B") }()
	waitSettled(t, c, 6)
	if st := c.PacerStats(); st.Throttled != 0 {
		t.Fatalf("B's write, first in the next turn, was refused")
	}
	err := c.DeleteSecret(WithCaller(dctx, "A"), repActions, "A6")
	var te *ThrottledError
	if !errors.As(err, &te) || dctx.Err() != nil {
		t.Fatalf("A's seventh write: %v, want a *ThrottledError at once", err)
	}
	// Six writes go before it (five of A's, B's), then its own slot.
	if te.RetryAfter < 600*time.Second || !strings.Contains(te.Reason, "6 go before it") {
		t.Errorf("RetryAfter %v, reason %q: want at least 600s with 6 writes ahead", te.RetryAfter, te.Reason)
	}
	close(gate)
	if err := <-bDone; err != nil {
		t.Errorf("B's write: %v", err)
	}
	cancelA()
	wg.Wait()
	arr := s.Arrivals()
	if len(arr) < 2 || !strings.HasSuffix(arr[1].Path, "/secrets/B") {
		t.Errorf("B's write was not the next after the one in flight")
	}
}
