package upstream

// The Client's side of pacing: Pacing reaches upstream/pace, WithCaller
// is the fairness key, the pacer's refusals become *ThrottledError,
// GitHub's answers reach the pacer, and PutSecretFunc's body is made
// after admission. How the pacer itself orders, spaces and refuses
// requests is tested in upstream/pace.
//
// Every test runs in a testing/synctest bubble with an in-memory server
// (memServer), so that times are exact: a write interval of an hour
// passes at once and arrives exactly an hour later.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// arrival is one request as a memServer saw it.
type arrival struct {
	Method string
	Path   string
	At     time.Time // when the server took it
	Header http.Header
	Body   string
}

// memServer is an in-memory GitHub for a synctest bubble: an
// http.RoundTripper that records when each request arrived and how many
// were in flight at once, holds each request delay (fake time), and
// answers with handle (nil: 204 for writes, {} for reads). n is the
// arrival's index, from 0.
type memServer struct {
	handle func(n int, a arrival, w *memWriter, r *http.Request)
	delay  time.Duration

	mu       sync.Mutex
	arrivals []arrival
	inFlight int
	peak     int
}

// memWriter is the ResponseWriter a memServer's handler answers with;
// Drop makes the request fail as a dropped connection, without an answer.
type memWriter struct {
	*httptest.ResponseRecorder
	dropped bool
}

func (w *memWriter) Drop() { w.dropped = true }

func newMemServer(handle func(n int, a arrival, w *memWriter, r *http.Request)) *memServer {
	return &memServer{handle: handle}
}

func (s *memServer) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	a := arrival{Method: r.Method, Path: r.URL.EscapedPath(), At: time.Now(), Header: r.Header.Clone(), Body: string(body)}
	s.mu.Lock()
	n := len(s.arrivals)
	s.arrivals = append(s.arrivals, a)
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}()
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	w := &memWriter{ResponseRecorder: httptest.NewRecorder()}
	if s.handle != nil {
		s.handle(n, a, w, r)
	} else {
		defaultAnswer(w, r)
	}
	if w.dropped {
		return nil, io.EOF
	}
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

func defaultAnswer(w http.ResponseWriter, r *http.Request) {
	if pace.IsWrite(r.Method) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{}`)
}

func (s *memServer) Arrivals() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}

func (s *memServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

func (s *memServer) Peak() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// memClient returns a Client of s with pacing p and the test token.
func memClient(t *testing.T, s *memServer, p Pacing) *Client {
	t.Helper()
	return memClientWith(t, s, Config{Pacing: &p})
}

// memClientWith is memClient with more of the Config; BaseURL defaults
// to https://github.example.
func memClientWith(t *testing.T, s *memServer, cfg Config) *Client {
	t.Helper()
	cfg.BaseURL = cmp.Or(cfg.BaseURL, "https://github.example")
	cfg.HTTPClient = &http.Client{Transport: s}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitQueued waits until every goroutine of the bubble is blocked and
// checks that n requests then wait for c's pacer.
func waitQueued(t *testing.T, c *Client, n int) {
	t.Helper()
	synctest.Wait()
	if q := c.PacerStats().Queued; q != n {
		t.Fatalf("%d requests queued, want %d", q, n)
	}
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
		BackoffBase: time.Second, BackoffMax: 60 * time.Second, SecondaryPause: 60 * time.Second,
		WritesPerMinute: 80, WritesPerHour: 500, CPUPerMinute: 80 * time.Second}
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
	if len(c.creds.all()) != 1 || c.log == nil {
		t.Errorf("defaults: credentials %v, logger %v", c.Credentials(), c.log)
	}
	wantCfg := pace.Config{MaxInFlight: 10, WriteInterval: time.Second, PointsPerMinute: 900, SecondaryPause: time.Minute,
		WritesPerMinute: 80, WritesPerHour: 500, CPUPerMinute: 80 * time.Second}
	if got := want.config(); got != wantCfg || got != pace.DefaultConfig() {
		t.Errorf("DefaultPacing().config() = %+v, want %+v, pace's default", got, wantCfg)
	}
}

// Each of Pacing's pacing fields reaches the pacer: the requests arrive
// at the server exactly when the pacing lets them.
func TestPacingReachesThePacer(t *testing.T) {
	const (
		get = http.MethodGet
		del = http.MethodDelete
	)
	for _, tc := range []struct {
		name   string
		pacing func(*Pacing)
		delay  time.Duration // how long the server takes
		calls  []string      // methods, called at once
		// want is when each request arrives, from the start, in order.
		want     []time.Duration
		wantPeak int
	}{{
		name:     "MaxInFlight",
		pacing:   func(p *Pacing) { p.MaxInFlight, p.WriteInterval, p.PointsPerMinute = 3, 0, 0 },
		delay:    time.Second,
		calls:    []string{get, get, get, get, get, get, get, del},
		want:     []time.Duration{0, 0, 0, time.Second, time.Second, time.Second, 2 * time.Second, 2 * time.Second},
		wantPeak: 3,
	}, {
		name:     "WriteInterval spaces and serializes writes, not reads",
		pacing:   func(p *Pacing) { p.WriteInterval, p.PointsPerMinute = 2*time.Second, 0 },
		delay:    3 * time.Second, // longer than the interval: the next write waits for it
		calls:    []string{del, del, del, get, get},
		want:     []time.Duration{0, 0, 0, 3 * time.Second, 6 * time.Second},
		wantPeak: 3,
	}, {
		name:     "PointsPerMinute",
		pacing:   func(p *Pacing) { p.WriteInterval, p.PointsPerMinute = 0, 10 },
		delay:    time.Second, // points count until a minute after the answer
		calls:    []string{del, del, del},
		want:     []time.Duration{0, 0, time.Minute + time.Second},
		wantPeak: 2,
	}, {
		// Before any answer a request is expected to take the whole
		// budget (3 s); then 2 s, and each counts its 2 s until a minute
		// after its answer: one at a time, each a minute after the
		// answer before it.
		name:     "CPUPerMinute",
		pacing:   func(p *Pacing) { p.WriteInterval, p.PointsPerMinute, p.CPUPerMinute = 0, 0, 3*time.Second },
		delay:    2 * time.Second,
		calls:    []string{get, get, get, get},
		want:     []time.Duration{0, 62 * time.Second, 124 * time.Second, 186 * time.Second},
		wantPeak: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newMemServer(nil)
				s.delay = tc.delay
				p := DefaultPacing()
				tc.pacing(&p)
				c := memClient(t, s, p)
				start := time.Now()
				noErrors(t, runAll(len(tc.calls), func(i int) error {
					if tc.calls[i] == del {
						return c.DeleteSecret(t.Context(), repActions, fmt.Sprint("S", i))
					}
					_, err := c.GetSecret(t.Context(), repActions, fmt.Sprint("S", i))
					return err
				}))
				var got []time.Duration
				for _, a := range s.Arrivals() {
					got = append(got, a.At.Sub(start))
				}
				slices.Sort(got)
				if !slices.Equal(got, tc.want) {
					t.Errorf("arrivals at %v, want %v", got, tc.want)
				}
				if s.Peak() != tc.wantPeak {
					t.Errorf("%d in flight at once at the server, want %d", s.Peak(), tc.wantPeak)
				}
				st := c.PacerStats()
				wantPoints := 0
				for _, m := range tc.calls {
					wantPoints += pace.Points(m)
				}
				if st.Requests != len(tc.calls) || st.Points != wantPoints || st.PeakInFlight != tc.wantPeak ||
					st.InFlight != 0 || st.Queued != 0 || st.Retries != 0 || st.Throttled != 0 {
					t.Errorf("stats %+v: want %d requests, %d points, peak %d", st, len(tc.calls), wantPoints, tc.wantPeak)
				}
			})
		})
	}
}

// GitHub's primary quota reaches the pacer from an answer's headers: a
// 2xx with x-ratelimit-remaining 0 holds every request until
// x-ratelimit-reset and pace.ResetMargin; a caller whose deadline comes
// first is refused at once, unsent.
func TestPrimaryLimitWaitsForReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		reset := t0.Add(300 * time.Second)
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			remaining := "4999"
			if n == 0 {
				remaining = "0"
			}
			w.Header().Set("X-Ratelimit-Remaining", remaining)
			w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(reset.Unix()))
			defaultAnswer(w, r)
		})
		c := memClient(t, s, DefaultPacing())
		ctx := t.Context()
		if _, err := c.GetSecret(ctx, repActions, "A"); err != nil {
			t.Fatal(err)
		}

		short, cancel := context.WithTimeout(ctx, 100*time.Second)
		defer cancel()
		_, err := c.GetSecret(short, repActions, "B")
		te, ok := errors.AsType[*ThrottledError](err)
		if !ok || te.RetryAfter != 300*time.Second+pace.ResetMargin || te.Method != "GET" || te.Route != "/repos/{owner}/{repo}/{app}/secrets/{secret_name}" {
			t.Fatalf("err = %v, want a *ThrottledError for GET with RetryAfter 300s and the margin", err)
		}
		if te.Reason != pace.ReasonPrimary.String() {
			t.Errorf("reason %q, want %q", te.Reason, pace.ReasonPrimary.String())
		}
		if time.Since(t0) != 0 || s.Count() != 1 {
			t.Errorf("the refused request waited %v, and %d requests were sent, want 1", time.Since(t0), s.Count())
		}

		if _, err := c.GetSecret(ctx, repActions, "C"); err != nil {
			t.Fatal(err)
		}
		if got, want := s.Arrivals()[1].At, reset.Add(pace.ResetMargin); !got.Equal(want) {
			t.Errorf("the request after the quota ran out arrived %v after the start, want ResetMargin after the reset, %v", got.Sub(t0), want.Sub(t0))
		}
		if st := c.PacerStats(); st.Throttled != 1 || st.Requests != 2 {
			t.Errorf("stats %+v: want 1 throttled, 2 requests", st)
		}
	})
}

// An x-ratelimit-reset further ahead than GitHub's hour-long primary
// window is not believed: it neither holds the credential until then
// (a refusal pauses it for the secondary pause instead) nor pins a
// window that hides GitHub's next "remaining 0" with its real reset.
func TestResetFarAheadIgnored(t *testing.T) {
	const year = 365 * 24 * time.Hour
	for _, tc := range []struct {
		name string
		// first and then are the answers' x-ratelimit-remaining and reset
		// (after the start); status is the first answer's.
		status          int
		first, then     string
		firstAt, thenAt time.Duration
		wantThird       time.Duration // when the third request arrives
	}{
		{name: "403 used up until a year ahead pauses for the secondary pause", status: 403, first: "0", firstAt: year, then: "4999", thenAt: time.Hour, wantThird: time.Minute},
		{name: "200 used up until a year ahead holds nothing", status: 200, first: "0", firstAt: year, then: "4999", thenAt: time.Hour},
		{name: "a window a year long does not hide the real one", status: 200, first: "4000", firstAt: year, then: "0", thenAt: 10 * time.Minute, wantThird: 10*time.Minute + pace.ResetMargin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
					remaining, at := tc.then, tc.thenAt
					if n == 0 {
						remaining, at = tc.first, tc.firstAt
					}
					w.Header().Set("X-Ratelimit-Remaining", remaining)
					w.Header().Set("X-Ratelimit-Reset", fmt.Sprint(t0.Add(at).Unix()))
					if n == 0 && tc.status != http.StatusOK {
						w.WriteHeader(tc.status)
						return
					}
					defaultAnswer(w, r)
				})
				c := memClient(t, s, DefaultPacing())
				for _, name := range []string{"A", "B"} {
					if _, err := c.GetSecret(t.Context(), repActions, name); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := c.GetSecret(t.Context(), repActions, "C"); err != nil {
					t.Fatal(err)
				}
				arr := s.Arrivals()
				if got := arr[len(arr)-1].At.Sub(t0); got != tc.wantThird {
					t.Errorf("the last request arrived %v after the start, want %v", got, tc.wantThird)
				}
			})
		})
	}
}

// A request the write spacing would hold past its deadline is refused at
// once, never sent, with a *ThrottledError that says why; a read with the
// same deadline goes.
func TestDeadlineFailFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(nil)
		p := DefaultPacing()
		p.WriteInterval = time.Hour
		c := memClient(t, s, p)
		ctx := t.Context()
		t0 := time.Now()
		if err := c.DeleteSecret(ctx, repActions, "A"); err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		_, err := c.PutSecret(dctx, repActions, "B", testPut)
		te, ok := errors.AsType[*ThrottledError](err)
		if !ok {
			t.Fatalf("err = %v, want a *ThrottledError", err)
		}
		if time.Since(t0) != 0 {
			t.Errorf("the call waited %v instead of failing at once", time.Since(t0))
		}
		want := ThrottledError{Method: "PUT", Route: "/repos/{owner}/{repo}/{app}/secrets/{secret_name}",
			RetryAfter: time.Hour, Reason: "writes go one at a time, 1h0m0s apart, and 0 go before it"}
		if *te != want {
			t.Errorf("got  %+v\nwant %+v", *te, want)
		}
		if msg := te.Error(); msg != "github: PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}: not sent: "+
			"writes go one at a time, 1h0m0s apart, and 0 go before it; the budget allows it in 1h0m0s, after the caller's deadline" {
			t.Errorf("message %q", msg)
		}
		if n := s.Count(); n != 1 {
			t.Errorf("server saw %d requests, want 1", n)
		}
		if _, err := c.GetSecret(dctx, repActions, "B"); err != nil {
			t.Errorf("read: %v", err)
		}
		if st := c.PacerStats(); st.Throttled != 1 {
			t.Errorf("stats %+v: want 1 throttled", st)
		}
	})
}

// WithCaller is the pacer's fairness key: caller B's single write does
// not wait behind caller A's fifty, it goes next.
func TestFairnessBetweenCallers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			if n == 0 {
				<-gate
			}
			defaultAnswer(w, r)
		})
		c := memClient(t, s, DefaultPacing())
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
		arr := s.Arrivals()
		i := slices.IndexFunc(arr, func(a arrival) bool { return strings.HasSuffix(a.Path, "/secrets/B") })
		if i != 1 {
			t.Errorf("B's write was write %d, want 2", i+1)
		}
		if got, want := arr[len(arr)-1].At.Sub(arr[0].At), 50*time.Second; got != want {
			t.Errorf("the 51st write arrived %v after the first, want %v", got, want)
		}
	})
}

// A caller's read goes while another caller's write waits for its slot;
// cancelling a queued request returns the context's error, unsent.
func TestReadPassesWaitingWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(nil)
		p := DefaultPacing()
		p.WriteInterval = time.Hour
		c := memClient(t, s, p)
		ctxA := WithCaller(t.Context(), "A")
		t0 := time.Now()
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
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "github: DELETE /repos/{owner}/{repo}/{app}/secrets/{secret_name}: not sent: ") {
			t.Errorf("cancelled while queued: %v, want a context.Canceled, not sent", err)
		}
		if got := s.Count(); got != 2 || time.Since(t0) != 0 {
			t.Errorf("server saw %d requests after %v, want 2 (W1 and the read) at once", got, time.Since(t0))
		}
		if st := c.PacerStats(); st.Queued != 0 || st.Throttled != 0 {
			t.Errorf("stats %+v: want none queued or throttled", st)
		}
	})
}

// PutSecretFunc makes the body when the pacer admits the write, not when
// it is queued, and once per attempt; a body that fails gives the write's
// place back, unsent.
func TestPutSecretFuncLateBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failFirst atomic.Bool
		gate := make(chan struct{})
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			if strings.HasSuffix(a.Path, "/secrets/X") {
				<-gate
			}
			if failFirst.Load() && strings.Contains(a.Body, `"k-1"`) {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.WriteHeader(http.StatusCreated)
		})
		c := memClient(t, s, DefaultPacing())
		ctx := t.Context()

		// Made after admission: a write in flight holds the next one in
		// the queue while the key rotates.
		first := make(chan error, 1)
		go func() { first <- c.DeleteSecret(ctx, repActions, "X") }()
		synctest.Wait()
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
		key.Store("new")
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

		// Once per attempt.
		failFirst.Store(true)
		before := s.Count()
		calls.Store(0)
		w, err := c.PutSecretFunc(ctx, repActions, "S", func() (PutSecretBody, error) {
			n := calls.Add(1)
			return PutSecretBody{EncryptedValue: "dmFs", KeyID: KeyID(fmt.Sprint("k-", n))}, nil
		})
		if err != nil || !w.Created {
			t.Fatalf("created %v, err %v", w.Created, err)
		}
		arr = s.Arrivals()[before:]
		if calls.Load() != 2 || len(arr) != 2 || !strings.Contains(arr[1].Body, `"k-2"`) {
			t.Errorf("%d bodies for %d attempts; last body %s", calls.Load(), len(arr), arr[len(arr)-1].Body)
		}
		failFirst.Store(false)

		// An error aborts unsent, and the write's place in the spacing
		// goes to the next write: it need not wait the interval after the
		// unsent one.
		time.Sleep(time.Minute) // the last write's interval is over
		before = s.Count()
		boom := errors.New("sealing failed")
		t1 := time.Now()
		_, err = c.PutSecretFunc(ctx, repActions, "S", func() (PutSecretBody, error) {
			return PutSecretBody{EncryptedValue: "c2VjcmV0", KeyID: "k"}, boom
		})
		if !errors.Is(err, boom) || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Fatalf("err = %v, want the body's error, without the value", err)
		}
		if n := s.Count(); n != before {
			t.Errorf("%d requests sent for a body that failed", n-before)
		}
		if err := c.DeleteSecret(ctx, repActions, "Y"); err != nil {
			t.Fatal(err)
		}
		if a := s.Arrivals()[before]; !a.At.Equal(t1) {
			t.Errorf("the write after the unsent one arrived %v later, want at once", a.At.Sub(t1))
		}
		if st := c.PacerStats(); st.Requests != s.Count() || st.InFlight != 0 {
			t.Errorf("stats %+v: want %d requests (the unsent one not counted)", st, s.Count())
		}

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
	handle := func(n int, a arrival, w *memWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == oldTag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", newTag)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"key_id":"k2","key":"bmV3"}`)
	}
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
			synctest.Test(t, func(t *testing.T) {
				s := newMemServer(handle)
				c := memClient(t, s, DefaultPacing())
				pk, notModified, err := c.RevalidatePublicKey(t.Context(), orgActions, tc.etag)
				if err != nil {
					t.Fatal(err)
				}
				if pk != tc.want || notModified != tc.wantNotModif {
					t.Errorf("got %#v, %v; want %#v, %v", pk, notModified, tc.want, tc.wantNotModif)
				}
				a := s.Arrivals()[0]
				if got := a.Header.Get("If-None-Match"); got != tc.wantHeader {
					t.Errorf("If-None-Match %q, want %q", got, tc.wantHeader)
				}
				if a.Path != "/orgs/acme/actions/secrets/public-key" {
					t.Errorf("path %s", a.Path)
				}
			})
		})
	}
	t.Run("304 is an error elsewhere", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
			c := memClient(t, s, DefaultPacing())
			_, err := c.GetPublicKey(t.Context(), orgActions)
			if e, ok := errors.AsType[*Error](err); !ok || e.StatusCode != http.StatusNotModified {
				t.Errorf("304 to an unconditional GET: %v, want a 304 *Error", err)
			}
		})
	})
}
