package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/secretbroker/secretbroker/upstream/netfail"
	"github.com/secretbroker/secretbroker/upstream/pace"
)

// answer plays one step of a scripted server: "drop" closes the
// connection without an answer, "429" and "403-secondary" are secondary
// rate limits without hints, "403-retry-after" one with retry-after: 1,
// "502 echo" a 502 whose message echoes the request, and a number is
// that status.
func answer(step string, a arrival, w *memWriter, r *http.Request) {
	switch step {
	case "drop":
		w.Drop()
		return
	case "429", "403-secondary":
		code, _ := strconv.Atoi(step[:3])
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
		return
	case "403-retry-after":
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"You have exceeded a secondary rate limit."}`)
		return
	case "502 echo":
		msg, _ := json.Marshal(map[string]string{"message": "you sent " + a.Header.Get("Authorization") + " " + a.Path + " " + a.Body})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write(msg)
		return
	}
	code, err := strconv.Atoi(step)
	if err != nil {
		panic("bad step " + step)
	}
	w.WriteHeader(code)
	if code == http.StatusOK {
		_, _ = io.WriteString(w, `{}`)
	}
}

// scripted returns a handler that answers the n-th request with
// steps[n], and the last step from then on.
func scripted(steps ...string) func(int, arrival, *memWriter, *http.Request) {
	return func(n int, a arrival, w *memWriter, r *http.Request) {
		answer(steps[min(n, len(steps)-1)], a, w, r)
	}
}

// retryPacing retries with backoffs of at most 4 s.
func retryPacing() Pacing {
	p := DefaultPacing()
	p.BackoffMax = 4 * time.Second
	return p
}

// putS, delS and getS are the calls the retry tests make, each of secret
// S of repActions.
func putS(ctx context.Context, c *Client) error {
	_, err := c.PutSecret(ctx, repActions, "S", testPut)
	return err
}

func delS(ctx context.Context, c *Client) error { return c.DeleteSecret(ctx, repActions, "S") }

func getS(ctx context.Context, c *Client) error {
	_, err := c.GetSecret(ctx, repActions, "S")
	return err
}

func TestRetries(t *testing.T) {
	put, del, get := putS, delS, getS
	for _, tc := range []struct {
		name        string
		call        func(context.Context, *Client) error
		steps       []string
		maxAttempts int // default 5
		attempts    int
		wantStatus  int // 0: success
		wantErr     func(error) bool
	}{
		{name: "5xx storm then success", call: put, steps: []string{"502", "502", "502", "201"}, attempts: 4},
		{name: "each retryable 5xx", call: put, steps: []string{"500", "503", "504", "204"}, attempts: 4},
		{name: "5xx storm gives up", call: put, steps: []string{"502"}, attempts: 5, wantStatus: 502},
		{name: "one attempt only", call: put, steps: []string{"503"}, maxAttempts: 1, attempts: 1, wantStatus: 503},
		{name: "404 not retried", call: get, steps: []string{"404"}, attempts: 1, wantStatus: 404},
		{name: "422 not retried", call: put, steps: []string{"422"}, attempts: 1, wantStatus: 422},
		{name: "401 not retried", call: get, steps: []string{"401"}, attempts: 1, wantStatus: 401},
		{name: "403 forbidden not retried", call: put, steps: []string{"403"}, attempts: 1, wantStatus: 403},
		{name: "501 not retried", call: put, steps: []string{"501"}, attempts: 1, wantStatus: 501},
		{name: "secondary limit then success", call: put, steps: []string{"429", "204"}, attempts: 2},
		{name: "403 secondary limit told by its message", call: put, steps: []string{"403-secondary", "204"}, attempts: 2},
		{name: "dropped connection", call: put, steps: []string{"drop", "drop", "201"}, attempts: 3},
		{name: "dropped connections give up", call: put, steps: []string{"drop"}, maxAttempts: 3, attempts: 3,
			wantErr: func(err error) bool { return netfail.Transient(err) && !errors.As(err, new(*Error)) }},
		{name: "DELETE 404 after a drop", call: del, steps: []string{"drop", "404"}, attempts: 2},
		{name: "DELETE 404 after a 502", call: del, steps: []string{"502", "404"}, attempts: 2},
		{name: "DELETE 404 alone", call: del, steps: []string{"404"}, attempts: 1, wantStatus: 404},
		{name: "DELETE 404 after a rate limit", call: del, steps: []string{"403-retry-after", "404"}, attempts: 2, wantStatus: 404},
		{name: "PUT 404 after a drop", call: put, steps: []string{"drop", "404"}, attempts: 2, wantStatus: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newMemServer(scripted(tc.steps...))
				p := retryPacing()
				if tc.maxAttempts > 0 {
					p.MaxAttempts = tc.maxAttempts
				}
				c := memClient(t, s, p)
				err := tc.call(t.Context(), c)
				switch {
				case tc.wantErr != nil:
					if !tc.wantErr(err) {
						t.Errorf("err = %v", err)
					}
				case tc.wantStatus == 0:
					if err != nil {
						t.Errorf("err = %v, want success", err)
					}
				default:
					var e *Error
					if !errors.As(err, &e) || e.StatusCode != tc.wantStatus {
						t.Errorf("err = %v, want a %d *Error", err, tc.wantStatus)
					}
				}
				if n := s.Count(); n != tc.attempts {
					t.Errorf("%d attempts, want %d", n, tc.attempts)
				}
				st := c.PacerStats()
				if st.Requests != tc.attempts || st.Retries != tc.attempts-1 || st.InFlight != 0 || st.Queued != 0 {
					t.Errorf("stats %+v: want %d requests, %d retries", st, tc.attempts, tc.attempts-1)
				}
				for i, a := range s.Arrivals() {
					if a.Method == http.MethodPut && a.Body != `{"encrypted_value":"c2VhbGVk","key_id":"k1"}` {
						t.Errorf("attempt %d sent body %q", i+1, a.Body)
					}
				}
			})
		})
	}
}

// A retry after a failure waits its own backoff, not the credential: a
// request of another caller goes while it waits.
func TestBackoffHoldsOnlyTheFailingRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			if n == 0 {
				answer("503", a, w, r)
				return
			}
			defaultAnswer(w, r)
		})
		log := newRecorder()
		p := DefaultPacing()
		p.BackoffBase, p.BackoffMax = time.Hour, time.Hour // the retry waits up to an hour
		c := memClientWith(t, s, Config{Pacing: &p, Logger: slog.New(log)})
		t0 := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := c.GetSecret(WithCaller(t.Context(), "A"), repActions, "A")
			done <- err
		}()
		<-log.first // the retry waits its backoff
		if _, err := c.GetSecret(WithCaller(t.Context(), "B"), repActions, "B"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		arr := s.Arrivals()
		if len(arr) != 3 || !arr[1].At.Equal(t0) || !strings.HasSuffix(arr[1].Path, "/B") {
			t.Fatalf("arrivals %+v: want B's request second, at once", arr)
		}
		wait, err := time.ParseDuration(attrs(log.Records()[0])["wait"])
		if err != nil {
			t.Fatal(err)
		}
		if got := arr[2].At.Sub(t0); got != wait {
			t.Errorf("the retry arrived after %v, want after its backoff, %v", got, wait)
		}
	})
}

// recorder is a slog handler that keeps the records and signals the
// first one.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
	first   chan struct{}
	once    sync.Once
}

func newRecorder() *recorder { return &recorder{first: make(chan struct{})} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	h.once.Do(func() { close(h.first) })
	return nil
}

func (h *recorder) Records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.records...)
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	return m
}

// A rate-limit answer pauses the whole credential as GitHub's guidance
// says (retry-after; else until the reset when remaining is 0; else
// SecondaryPause): the retry and every other request go exactly when the
// pause ends.
func TestRateLimitPausesCredential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		header func(t0 time.Time) map[string]string
		pause  time.Duration // from the first answer
		reason string        // of the pause line
	}{{
		name:   "403 with retry-after",
		status: http.StatusForbidden,
		header: func(time.Time) map[string]string {
			return map[string]string{"Retry-After": "30", "X-Ratelimit-Remaining": "4000"}
		},
		pause:  30 * time.Second,
		reason: "secondary_pause",
	}, {
		name:   "429 without retry-after",
		status: http.StatusTooManyRequests,
		header: func(time.Time) map[string]string { return nil },
		pause:  45 * time.Second,
		reason: "secondary_pause",
	}, {
		name:   "403 secondary without retry-after, quota left",
		status: http.StatusForbidden,
		header: func(t0 time.Time) map[string]string {
			return map[string]string{"X-Ratelimit-Remaining": "10", "X-Ratelimit-Reset": fmt.Sprint(t0.Add(time.Hour).Unix())}
		},
		pause:  45 * time.Second,
		reason: "secondary_pause",
	}, {
		name:   "403 primary limit until reset",
		status: http.StatusForbidden,
		header: func(t0 time.Time) map[string]string {
			return map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": fmt.Sprint(t0.Add(20 * time.Second).Unix())}
		},
		pause:  20*time.Second + pace.ResetMargin, // surely past the reset by GitHub's clock
		reason: "primary",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				sent := tc.header(t0)
				s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
					if n > 0 {
						defaultAnswer(w, r)
						return
					}
					for k, v := range sent {
						w.Header().Set(k, v)
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(tc.status)
					_, _ = io.WriteString(w, `{"message":"You have exceeded a secondary rate limit."}`)
				})
				log := newRecorder()
				p := retryPacing()
				p.SecondaryPause = 45 * time.Second
				c := memClientWith(t, s, Config{Pacing: &p, Logger: slog.New(log)})
				done := make(chan error, 1)
				go func() {
					_, err := c.PutSecret(WithCaller(t.Context(), "A"), repActions, "S", testPut)
					done <- err
				}()
				<-log.first // the retry is scheduled: the pause has begun
				if _, err := c.GetSecret(WithCaller(t.Context(), "B"), repActions, "R"); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				arr := s.Arrivals()
				if len(arr) != 3 {
					t.Fatalf("%d requests, want 3", len(arr))
				}
				for _, a := range arr[1:] {
					if got := a.At.Sub(t0); got != tc.pause {
						t.Errorf("%s arrived %v after the rate limit, want %v", a.Method, got, tc.pause)
					}
				}
				var retried, paused []slog.Record
				for _, r := range log.Records() {
					switch r.Message {
					case "github request retried":
						retried = append(retried, r)
					case "github rate limit paused the credential":
						paused = append(paused, r)
					}
				}
				if len(retried) != 1 || len(paused) != 1 {
					t.Fatalf("%d retry lines and %d pause lines, want 1 and 1", len(retried), len(paused))
				}
				if wait := attrs(retried[0])["wait"]; wait != tc.pause.String() {
					t.Errorf("the retry's logged wait is %s, want the pause, %v", wait, tc.pause)
				}
				if a := attrs(paused[0]); a["pause"] != tc.pause.String() || a["reason"] != tc.reason || paused[0].Level != slog.LevelInfo {
					t.Errorf("pause line %v at %v, want pause %v reason %s at INFO", a, paused[0].Level, tc.pause, tc.reason)
				}
				if st := c.PacerStats(); st.RateLimited != 1 || st.Retries != 1 || st.Requests != 3 {
					t.Errorf("stats %+v: want 1 rate limited, 1 retry, 3 requests", st)
				}
			})
		})
	}
}

// A pause that begins while requests wait refuses those it makes miss
// their deadline, and a retry whose wait outlasts the deadline is not
// made; neither is sent.
func TestPauseRefusesWhatItDelaysPastTheDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			<-gate
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		p := retryPacing()
		p.MaxInFlight = 1
		c := memClient(t, s, p)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		t0 := time.Now()
		first := make(chan error, 1)
		go func() {
			_, err := c.GetSecret(WithCaller(ctx, "A"), repActions, "A")
			first <- err
		}()
		synctest.Wait()
		second := make(chan error, 1)
		go func() {
			_, err := c.GetSecret(WithCaller(ctx, "B"), repActions, "B")
			second <- err
		}()
		waitQueued(t, c, 1)
		close(gate)
		for name, ch := range map[string]chan error{"queued request": second, "retry": first} {
			err := <-ch
			te, ok := errors.AsType[*ThrottledError](err)
			if !ok || te.RetryAfter != time.Hour {
				t.Errorf("%s: err = %v, want a *ThrottledError with RetryAfter 1h", name, err)
			}
		}
		if time.Since(t0) != 0 {
			t.Errorf("the calls waited %v instead of failing at once", time.Since(t0))
		}
		if n := s.Count(); n != 1 {
			t.Errorf("%d requests sent, want 1", n)
		}
		if st := c.PacerStats(); st.Throttled != 2 || st.RateLimited != 1 || st.Retries != 0 {
			t.Errorf("stats %+v: want 2 throttled, 1 rate limited, no retry", st)
		}
	})
}

// Retries exhausted on a rate limit return GitHub's answer with a
// RetryAfter: GitHub's, or the pause the client imposed when GitHub gave
// none (the secondary pause, doubled for each such refusal in a row: the
// third is 4 × 10 s).
func TestRateLimitExhausted(t *testing.T) {
	for _, tc := range []struct {
		step string
		want time.Duration
	}{
		{"403-retry-after", time.Second},
		{"429", 40 * time.Second},
		{"403-secondary", 40 * time.Second},
	} {
		t.Run(tc.step, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newMemServer(scripted(tc.step))
				p := retryPacing()
				p.MaxAttempts, p.SecondaryPause = 3, 10*time.Second
				c := memClient(t, s, p)
				_, err := c.GetSecret(t.Context(), repActions, "S")
				e, ok := errors.AsType[*Error](err)
				if !ok || !e.RateLimited {
					t.Fatalf("err = %v, want a rate-limited *Error", err)
				}
				if e.RetryAfter != tc.want {
					t.Errorf("RetryAfter %v, want %v", e.RetryAfter, tc.want)
				}
				if n := s.Count(); n != 3 {
					t.Errorf("%d attempts, want 3", n)
				}
				if st := c.PacerStats(); st.RateLimited != 3 || st.Retries != 2 {
					t.Errorf("stats %+v: want 3 rate limited, 2 retries", st)
				}
			})
		})
	}
}

// Each retry logs one Info line (with its reason) and adds a span event, with the method,
// route template, status and attempt: never the token, the path or a
// value.
func TestRetryLogAndSpan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sealed = "U0VBTEVEc2VhbGVkU0VBTEVE"
		s := newMemServer(scripted("502 echo", "drop", "201"))
		log := newRecorder()
		p := retryPacing()
		c := memClientWith(t, s, Config{Pacing: &p, Logger: slog.New(log)})
		sr := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
		ctx, span := tp.Tracer("test").Start(t.Context(), "put")
		if _, err := c.PutSecret(ctx, Scope{App: Actions, Owner: "planted-owner", Repo: "planted-repo"}, "PLANTED_NAME",
			PutSecretBody{EncryptedValue: sealed, KeyID: "k"}); err != nil {
			t.Fatal(err)
		}
		span.End()

		recs := log.Records()
		if len(recs) != 2 {
			t.Fatalf("%d log records, want 2 (one per retry)", len(recs))
		}
		for i, r := range recs {
			a := attrs(r)
			want := map[string]string{"method": "PUT", "route": "/repos/{owner}/{repo}/{app}/secrets/{secret_name}", "attempt": fmt.Sprint(i + 1)}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("record %d: %s = %q, want %q", i, k, a[k], v)
				}
			}
			if r.Level != slog.LevelInfo || a["wait"] == "" || a["status"] == "" || a["reason"] == "" {
				t.Errorf("record %d: level %v, attrs %v", i, r.Level, a)
			}
			line := r.Message + fmt.Sprint(a)
			for _, secret := range []string{testToken, sealed, "planted", "PLANTED"} {
				if strings.Contains(line, secret) {
					t.Errorf("record %d shows %q: %s", i, secret, line)
				}
			}
		}
		if a := attrs(recs[0]); a["status"] != "502" || a["reason"] != "server_error" {
			t.Errorf("first retry status %s reason %s, want 502 server_error", a["status"], a["reason"])
		}
		if a := attrs(recs[1]); a["status"] != "0" || a["reason"] != "transport" {
			t.Errorf("retry after a drop: status %s reason %s, want 0 transport", a["status"], a["reason"])
		}

		var put sdktrace.ReadOnlySpan
		for _, sp := range sr.Ended() {
			if sp.Name() == "put" {
				put = sp
			}
		}
		if put == nil {
			t.Fatal("the caller's span did not end")
		}
		var events int
		for _, ev := range put.Events() {
			if ev.Name != "github.retry" {
				continue
			}
			events++
			for _, kv := range ev.Attributes {
				if v := kv.Value.String(); strings.Contains(v, "planted") || strings.Contains(v, sealed) {
					t.Errorf("span event shows a value: %s=%s", kv.Key, v)
				}
			}
		}
		if events != 2 {
			t.Errorf("%d retry events on the span, want 2", events)
		}
	})
}

// An encrypted value echoed by GitHub in any attempt never reaches the
// error, whichever body that attempt sent.
func TestBodyValuesNeverInErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(scripted("502 echo"))
		p := retryPacing()
		p.MaxAttempts = 3
		c := memClient(t, s, p)
		n := 0
		_, err := c.PutSecretFunc(t.Context(), repActions, "S", func() (PutSecretBody, error) {
			n++
			return PutSecretBody{EncryptedValue: fmt.Sprintf("U0VBTEVE-%d-c2VhbGVk", n), KeyID: "k"}, nil
		})
		e, ok := errors.AsType[*Error](err)
		if !ok || e.StatusCode != 502 {
			t.Fatalf("err = %v, want a 502 *Error", err)
		}
		if n != 3 {
			t.Errorf("%d bodies for 3 attempts", n)
		}
		for i := 1; i <= n; i++ {
			v := fmt.Sprintf("U0VBTEVE-%d-c2VhbGVk", i)
			if msg := fmt.Sprintf("%v %+v %#v", err, err, *e); strings.Contains(msg, v) || strings.Contains(msg, testToken) {
				t.Errorf("error shows a secret: %s", msg)
			}
		}
		if !strings.Contains(e.Message, "[redacted]") {
			t.Errorf("message %q: the echo was not redacted", e.Message)
		}
	})
}

func TestBackoff(t *testing.T) {
	p := DefaultPacing()
	p.BackoffBase, p.BackoffMax = time.Second, 10*time.Second
	c, err := New(Config{Pacing: &p})
	if err != nil {
		t.Fatal(err)
	}
	for attempt, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		for range 100 {
			if d := c.backoff(attempt); d < 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want in [0, %v]", attempt, d, ceiling)
			}
		}
	}
	p.BackoffBase, p.BackoffMax = 0, 0
	c, _ = New(Config{Pacing: &p})
	if d := c.backoff(3); d != 0 {
		t.Errorf("zero backoff: %v", d)
	}
}

func TestThrottledErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{12*time.Second + 300*time.Millisecond, "in 12s,"},
		{1500 * time.Microsecond, "in 2ms,"},
		{time.Nanosecond, "in 1ms,"},
	} {
		e := &ThrottledError{Method: "PUT", Route: "/repos/{owner}/{repo}/{app}/secrets/{secret_name}", RetryAfter: tc.after, Reason: "writes go one at a time"}
		want := "github: PUT /repos/{owner}/{repo}/{app}/secrets/{secret_name}: not sent: writes go one at a time; the budget allows it " + tc.want + " after the caller's deadline"
		if got := e.Error(); got != want {
			t.Errorf("Error() = %q\nwant      %q", got, want)
		}
	}
}

// refusedDial fails every request as a refused connection would.
var refusedDial = roundTripFunc(func(*http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
})

// A failing GitHub whose retry's backoff would outlast a 2 s deadline
// fails at once with a *BackoffError that carries the failure; only a
// wait that GitHub's limits impose is a *ThrottledError.
func TestBackoffPastTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(n int, a arrival, w *memWriter, r *http.Request) // nil: connections are refused
		check   func(t *testing.T, err error)
	}{{
		name: "connection refused",
		check: func(t *testing.T, err error) {
			be, ok := errors.AsType[*BackoffError](err)
			if !ok || !netfail.Transient(be.Err) || !errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, new(*Error)) {
				t.Fatalf("err = %v, want a *BackoffError wrapping a refused connection", err)
			}
		},
	}, {
		name:    "503 storm",
		handler: scripted("503"),
		check: func(t *testing.T, err error) {
			_, ok := errors.AsType[*BackoffError](err)
			if e, isErr := errors.AsType[*Error](err); !ok || !isErr || e.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("err = %v, want a *BackoffError wrapping a 503 *Error", err)
			}
		},
	}, {
		name: "secondary limit, retry-after 60",
		handler: func(n int, a arrival, w *memWriter, r *http.Request) {
			w.Header().Set("Retry-After", "60")
			answer("403-secondary", a, w, r)
		},
		check: func(t *testing.T, err error) {
			te, ok := errors.AsType[*ThrottledError](err)
			if !ok || te.RetryAfter != time.Minute || !strings.Contains(te.Reason, "attempt 1 failed (403 Forbidden)") {
				t.Fatalf("err = %v, want a *ThrottledError with RetryAfter 60s after attempt 1", err)
			}
			if _, ok := errors.AsType[*BackoffError](err); ok {
				t.Fatalf("err = %v: a rate limit is not a failure", err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := DefaultPacing()
				p.MaxAttempts = MaxAttemptsLimit // the deadline ends the retries, not their number
				cfg := Config{BaseURL: "https://github.example", Token: testToken, Pacing: &p, HTTPClient: &http.Client{Transport: refusedDial}}
				if tc.handler != nil {
					cfg.HTTPClient = &http.Client{Transport: newMemServer(tc.handler)}
				}
				c, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				start := time.Now()
				_, err = c.GetPublicKey(ctx, orgActions)
				tc.check(t, err)
				if ctx.Err() != nil || time.Since(start) >= 2*time.Second {
					t.Errorf("the call waited %v, for its deadline, instead of failing at once", time.Since(start))
				}
				if msg := err.Error(); strings.Contains(msg, testToken) {
					t.Errorf("error shows the token: %s", msg)
				}
				st := c.PacerStats()
				if st.InFlight != 0 || st.Requests < 1 || st.Retries != st.Requests-1 {
					t.Errorf("stats %+v", st)
				}
				if _, throttled := errors.AsType[*ThrottledError](err); (st.Throttled == 1) != throttled {
					t.Errorf("stats %+v count %d throttled for %v", st, st.Throttled, err)
				}
			})
		})
	}
}

// TestBodyPanicGivesBackPermit: a body func that panics (the gRPC
// server's recovery keeps the process alive) must not keep its permit:
// its place, points and the credential's write slot go to the next
// request (found by a review: every later write on the credential
// waited for good).
func TestBodyPanicGivesBackPermit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(nil)
		c := memClient(t, s, DefaultPacing())
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the body func's panic did not reach the caller")
				}
			}()
			_, _ = c.PutSecretFunc(t.Context(), repActions, "A", func() (PutSecretBody, error) { panic("boom") })
		}()
		if st := c.PacerStats(); st.InFlight != 0 {
			t.Errorf("after the panic %d requests are still in flight", st.InFlight)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		if _, err := c.PutSecret(ctx, repActions, "B", testPut); err != nil {
			t.Errorf("a later write, with an hour to go: %v", err)
		}
	})
}

// TestSecondaryPauseEscalates: refusals in a row that say nothing of how
// long to wait are waited out twice as long each time, as GitHub asks
// ("wait for an exponentially increasing amount of time between
// retries"), so that a penalty each refused request restarts (90 s here)
// is outlasted rather than retried into at fixed gaps (found by a
// review: every retry came 60 s after the last, another refusal each).
func TestSecondaryPauseEscalates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var penaltyUntil time.Time
		refusals := 0
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			now := time.Now()
			if n == 0 || now.Before(penaltyUntil) {
				refusals++
				penaltyUntil = now.Add(90 * time.Second)
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
				return
			}
			defaultAnswer(w, r)
		})
		c := memClient(t, s, DefaultPacing())
		if _, err := c.GetSecret(t.Context(), repActions, "A"); err != nil {
			t.Fatalf("GetSecret: %v", err)
		}
		arr := s.Arrivals()
		var gaps []time.Duration
		for i := 1; i < len(arr); i++ {
			gaps = append(gaps, arr[i].At.Sub(arr[i-1].At))
		}
		if refusals != 2 || len(gaps) != 2 || gaps[1] != 2*gaps[0] {
			t.Errorf("%d refusals, gaps between attempts %v: want 2 refusals and the second gap twice the first", refusals, gaps)
		}
	})
}

// TestPrimaryQuotaIsABudget: what x-ratelimit-remaining says is left of
// the primary quota is a budget for the requests started after it: with 2
// left, ten requests at once must not all go (found by a review: the
// pacer held only at remaining 0, and 8 of 10 came back 403).
func TestPrimaryQuotaIsABudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reset := time.Now().Add(time.Hour)
		var mu sync.Mutex // the server answers requests at once
		left, refused := 3, 0
		s := newMemServer(func(n int, a arrival, w *memWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(reset.Unix(), 10))
			if left == 0 {
				refused++
				w.Header().Set("X-Ratelimit-Remaining", "0")
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `{"message":"API rate limit exceeded for user ID 1."}`)
				return
			}
			left--
			w.Header().Set("X-Ratelimit-Remaining", strconv.Itoa(left))
			defaultAnswer(w, r)
		})
		s.delay = 100 * time.Millisecond
		c := memClient(t, s, DefaultPacing())
		if _, err := c.GetSecret(t.Context(), repActions, "A"); err != nil { // 2 left
			t.Fatal(err)
		}
		errs := runAll(10, func(i int) error {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			_, err := c.GetSecret(ctx, repActions, "B")
			return err
		})
		mu.Lock()
		defer mu.Unlock()
		if refused > 0 {
			t.Errorf("GitHub said 2 requests were left; the pacer sent %d more that GitHub refused", refused)
		}
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			}
		}
		if ok != 2 {
			t.Errorf("%d of the 10 calls answered, want the 2 the quota had left", ok)
		}
	})
}

// TestAdmitCheck: a request whose admit check refuses it (WithAdmitCheck)
// is not sent; the check's error is returned as it is, and the permit's
// place and write slot go to the next request.
func TestAdmitCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(nil)
		c := memClient(t, s, DefaultPacing())
		withdrawn := errors.New("access withdrawn")
		ctx := WithAdmitCheck(t.Context(), func(context.Context) error { return withdrawn })
		if _, err := c.PutSecret(ctx, repActions, "A", testPut); err != withdrawn {
			t.Errorf("PutSecret with a refusing check = %v, want the check's error as it is", err)
		}
		if n := s.Count(); n != 0 {
			t.Errorf("%d requests sent, want none", n)
		}
		t0 := time.Now()
		if _, err := c.PutSecret(t.Context(), repActions, "B", testPut); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(t0); waited != 0 {
			t.Errorf("the next write waited %v: the refused request kept its write slot", waited)
		}
	})
}

// TestAdmitCheckSparesUnknownRetry: the retry of a write an earlier
// attempt of which may have taken effect (a dropped connection) is not
// refused by the admit check: it was allowed then, and a refusal now
// would tell the caller it was not done (found by a review).
func TestAdmitCheckSparesUnknownRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(scripted("drop", "404"))
		c := memClient(t, s, retryPacing())
		calls := 0
		ctx := WithAdmitCheck(t.Context(), func(context.Context) error {
			if calls++; calls > 1 {
				return errors.New("access withdrawn")
			}
			return nil
		})
		if err := c.DeleteSecret(ctx, repActions, "S"); err != nil {
			t.Errorf("DELETE after a dropped attempt = %v, want done (the retry's 404 is the first attempt's delete)", err)
		}
		if n := s.Count(); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
		if calls != 1 {
			t.Errorf("the admit check ran %d times, want once (the first attempt)", calls)
		}
	})
}

// TestOutcomeUnknownWhenCutShort: a write whose caller's context ends
// while it waits to retry an attempt whose outcome is unknown (no answer,
// or a 5xx) is an *OutcomeUnknownError: GitHub may have applied it. A
// write cut short before any attempt was sent, one whose attempt GitHub
// refused outright, and a read are not.
func TestOutcomeUnknownWhenCutShort(t *testing.T) {
	put, get := putS, getS
	for _, tc := range []struct {
		name    string
		call    func(context.Context, *Client) error
		steps   []string
		unknown bool
	}{
		{"PUT after a dropped answer", put, []string{"drop", "201"}, true},
		{"PUT after a 502", put, []string{"502", "201"}, true},
		{"PUT after a secondary rate limit", put, []string{"403-retry-after", "201"}, false},
		{"GET after a dropped answer", get, []string{"drop", "200"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newMemServer(scripted(tc.steps...))
				p := retryPacing()
				p.BackoffBase, p.BackoffMax = time.Hour, time.Hour // the retry waits
				c := memClient(t, s, p)
				ctx, cancel := context.WithCancel(t.Context())
				errc := make(chan error, 1)
				go func() { errc <- tc.call(ctx, c) }()
				synctest.Wait() // the first attempt answered; the retry waits
				cancel()
				err := <-errc
				var oe *OutcomeUnknownError
				if got := errors.As(err, &oe); got != tc.unknown || !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v; outcome unknown %v, want %v (and context.Canceled)", err, got, tc.unknown)
				}
				if s.Count() != 1 {
					t.Errorf("%d attempts, want 1", s.Count())
				}
			})
		})
	}
	// Cut short before anything was sent.
	synctest.Test(t, func(t *testing.T) {
		s := newMemServer(scripted("201"))
		c := memClient(t, s, retryPacing())
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var oe *OutcomeUnknownError
		if err := put(ctx, c); err == nil || errors.As(err, &oe) || s.Count() != 0 {
			t.Errorf("a PUT cut short before it was sent: %v after %d attempts", err, s.Count())
		}
	})
}

// refusedFirstDial is a net/http Transport to srv whose first dial is
// refused (after calling onRefuse, if set): that attempt never leaves
// this machine.
func refusedFirstDial(srv *httptest.Server, onRefuse func()) *http.Transport {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	var dials atomic.Int32
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			if onRefuse != nil {
				onRefuse()
			}
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		return d.DialContext(ctx, network, addr)
	}
	return tr
}

// TestWriteNeverSentIsNoUnknownOutcome: an attempt whose connection was
// refused never reached GitHub. A PUT whose caller leaves as its only
// attempt is refused is not an *OutcomeUnknownError, and a DELETE whose
// retry gets 404 after one is NOT_FOUND, not "the first attempt deleted
// it".
func TestWriteNeverSentIsNoUnknownOutcome(t *testing.T) {
	var puts, deletes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			puts.Add(1)
			w.WriteHeader(http.StatusCreated)
		case http.MethodDelete:
			deletes.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"message":"Not Found"}`)
		}
	}))
	defer srv.Close()
	p := retryPacing()
	p.BackoffBase, p.BackoffMax = time.Millisecond, time.Millisecond
	client := func(onRefuse func()) *Client {
		c, err := New(Config{BaseURL: srv.URL, Token: testToken, HTTPClient: &http.Client{Transport: refusedFirstDial(srv, onRefuse)}, Pacing: &p})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	ctx, cancel := context.WithCancel(t.Context())
	_, err := client(cancel).PutSecret(ctx, repActions, "S", testPut)
	if oe := (*OutcomeUnknownError)(nil); errors.As(err, &oe) || !errors.Is(err, context.Canceled) || puts.Load() != 0 {
		t.Errorf("a PUT whose only attempt was refused at dial, cut short: %v (%d PUTs reached the server)", err, puts.Load())
	}

	err = client(nil).DeleteSecret(t.Context(), repActions, "NEVER_EXISTED")
	if e := (*Error)(nil); !errors.As(err, &e) || e.StatusCode != http.StatusNotFound || deletes.Load() != 1 {
		t.Errorf("a DELETE refused at dial, then 404: %v after %d DELETEs, want a 404 *Error", err, deletes.Load())
	}
}
