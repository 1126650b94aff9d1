package emulator_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	secondaryPrefix = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID "
	secondaryDocs   = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	primaryPrefix   = "API rate limit exceeded for user ID 1."
	primaryDocs     = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
	listOrg         = "/" + orgActs + "/secrets"
)

// inBubble runs f in a synctest bubble with an emulator served in memory
// (newMemEnv): its limits run on the bubble's fake time, which starts at
// t0 and moves only when f sleeps (or every goroutine waits).
func inBubble(t *testing.T, opts emulator.Options, f func(t *testing.T, e *env, t0 time.Time)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f(t, newMemEnv(t, opts), time.Now())
	})
}

// sleepUntil lets fake time run to exactly at.
func sleepUntil(t *testing.T, at time.Time) {
	t.Helper()
	d := time.Until(at)
	if d < 0 {
		t.Fatalf("sleepUntil: %v is in the past", at)
	}
	time.Sleep(d)
	if now := time.Now(); !now.Equal(at) {
		t.Fatalf("woke at %v, want %v", now, at)
	}
}

type limitBody struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
}

// wantSecondary checks a secondary answer and returns its Retry-After in
// seconds, or -1 when it has none.
func (e *env) wantSecondary(r result, status int) int {
	e.t.Helper()
	e.want(r, status)
	var b limitBody
	r.json(e.t, &b)
	if !strings.HasPrefix(b.Message, secondaryPrefix) || b.DocumentationURL != secondaryDocs {
		e.t.Errorf("secondary answer body %s", r.body)
	}
	if id := r.header.Get("X-Github-Request-Id"); id == "" || !strings.Contains(b.Message, id) {
		e.t.Errorf("request id %q is not in the message %q", id, b.Message)
	}
	return retryAfter(e.t, r)
}

// retryAfter returns r's Retry-After in seconds, or -1 when it has none.
func retryAfter(t *testing.T, r result) int {
	t.Helper()
	ra := r.header.Get("Retry-After")
	if ra == "" {
		return -1
	}
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 {
		t.Errorf("Retry-After %q", ra)
	}
	return n
}

func TestNoLimitsNoHeaders(t *testing.T) {
	e := newEnv(t, emulator.Options{})
	r := e.want(e.do("GET", listOrg, nil), 200)
	for k := range r.header {
		if strings.HasPrefix(k, "X-Ratelimit") {
			t.Errorf("header %s without a primary quota", k)
		}
	}
	for range 50 {
		e.want(e.do("PUT", "/"+repoActs+"/secrets/X", "{"), 400)
	}
	if st := e.emu.Stats(); st.SecondaryViolations != 0 || st.PrimaryViolations != 0 || st.Points != 1+50*5 || st.Requests != 51 {
		t.Errorf("stats %+v", st)
	}
}

// The points window slides: requests leave it exactly one minute after
// they arrived, not at fixed minute boundaries, and Retry-After says when
// the window will have room.
func TestPointsWindowSlides(t *testing.T) {
	inBubble(t, emulator.Options{Limits: emulator.Limits{PointsPerMinute: 5, SecondaryPenalty: -1}}, func(t *testing.T, e *env, t0 time.Time) {
		// Batch A: 3 points at t0.
		for range 3 {
			e.want(e.do("GET", listOrg, nil), 200)
		}
		// Batch B: 2 points at t0+20s; the window is full.
		sleepUntil(t, t0.Add(20*time.Second))
		for range 2 {
			e.want(e.do("GET", listOrg, nil), 200)
		}
		// A GET fits once batch A leaves, at t0+60s: 40 s from now; a PUT
		// (5 points) once batch B leaves too, at t0+80s: 60 s from now.
		// Neither adds points.
		if ra := e.wantSecondary(e.do("GET", listOrg, nil), 403); ra != 40 {
			t.Errorf("GET at t0+20s: Retry-After %d, want 40", ra)
		}
		if ra := e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403); ra != 60 {
			t.Errorf("PUT at t0+20s: Retry-After %d, want 60", ra)
		}
		if st := e.emu.Stats(); st.Points != 5 || st.SecondaryViolations != 2 {
			t.Errorf("stats %+v, want 5 points and 2 violations", st)
		}

		// A nanosecond before t0+60s batch A is still in the window.
		sleepUntil(t, t0.Add(time.Minute-time.Nanosecond))
		if ra := e.wantSecondary(e.do("GET", listOrg, nil), 403); ra != 1 {
			t.Errorf("GET at t0+60s-1ns: Retry-After %d, want 1", ra)
		}
		// At t0+60s exactly it has left; batch B has not, and batch C
		// fills the window again until t0+80s.
		sleepUntil(t, t0.Add(time.Minute))
		for range 3 {
			e.want(e.do("GET", listOrg, nil), 200)
		}
		if ra := e.wantSecondary(e.do("GET", listOrg, nil), 403); ra != 20 {
			t.Errorf("GET at t0+60s: Retry-After %d, want 20", ra)
		}
		sleepUntil(t, t0.Add(80*time.Second))
		for range 2 {
			e.want(e.do("GET", listOrg, nil), 200)
		}
		if st := e.emu.Stats(); st.Points != 10 || st.SecondaryViolations != 4 {
			t.Errorf("stats %+v, want 10 points and 4 violations", st)
		}
	})
}

// A write costs 5 points. When every request arrived at t0, the window has
// room again at t0+60s: Retry-After is 60, also for a write that a budget
// can never fit.
func TestPointsCost(t *testing.T) {
	tests := []struct {
		method string
		budget int
		ok     int // how many fit in an empty window
		cost   int // points of one
	}{
		{"GET", 10, 10, 1},
		{"HEAD", 10, 10, 1},
		{"OPTIONS", 10, 10, 1},
		{"PUT", 10, 2, 5},
		{"DELETE", 10, 2, 5},
		{"POST", 10, 2, 5},
		{"PATCH", 10, 2, 5},
		{"PUT", 4, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+strconv.Itoa(tt.budget), func(t *testing.T) {
			inBubble(t, emulator.Options{Limits: emulator.Limits{PointsPerMinute: tt.budget, SecondaryPenalty: -1}}, func(t *testing.T, e *env, _ time.Time) {
				for i := range tt.ok {
					if r := e.do(tt.method, listOrg, nil); r.status == 403 {
						t.Fatalf("request %d refused", i)
					}
				}
				r := e.do(tt.method, listOrg, nil)
				var ra int
				if tt.method == "HEAD" { // no body
					ra = retryAfter(t, e.want(r, 403))
				} else {
					ra = e.wantSecondary(r, 403)
				}
				if ra != 60 {
					t.Errorf("Retry-After %d, want 60", ra)
				}
				if st := e.emu.Stats(); st.Points != tt.ok*tt.cost || st.SecondaryViolations != 1 {
					t.Errorf("stats %+v", st)
				}
			})
		})
	}
}

// After a violation every request is refused until the penalty ends,
// exactly SecondaryPenalty later, with Retry-After counting down (rounded
// up), or without it when told so.
func TestSecondaryPenalty(t *testing.T) {
	tests := []struct {
		name       string
		limits     emulator.Limits
		wantStatus int
		wantRetry  []bool // for the four secondary answers
	}{
		{"default", emulator.Limits{}, 403, []bool{true, true, true, true}},
		{"429", emulator.Limits{SecondaryStatus: 429}, 429, []bool{true, true, true, true}},
		{"omit always", emulator.Limits{OmitRetryAfter: true}, 403, []bool{false, false, false, false}},
		{"omit every 1", emulator.Limits{OmitRetryAfterEvery: 1}, 403, []bool{false, false, false, false}},
		{"omit every 2nd", emulator.Limits{OmitRetryAfterEvery: 2}, 403, []bool{true, false, true, false}},
	}
	// The violation at t0 and three requests during the penalty, with the
	// Retry-After each gets when it has one.
	steps := []struct {
		at    time.Duration
		retry int
	}{
		{0, 20},
		{5 * time.Second, 15},
		{10*time.Second + 500*time.Millisecond, 10},
		{20*time.Second - time.Nanosecond, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := tt.limits
			lim.PointsPerMinute = 9
			lim.SecondaryPenalty = 20 * time.Second
			inBubble(t, emulator.Options{Limits: lim}, func(t *testing.T, e *env, t0 time.Time) {
				for range 5 {
					e.want(e.do("GET", listOrg, nil), 200)
				}
				for i, st := range steps {
					sleepUntil(t, t0.Add(st.at))
					// A PUT would take 10 points: a violation. The GETs
					// after it would fit the window but meet the penalty.
					var r result
					if i == 0 {
						r = e.do("PUT", "/"+repoActs+"/secrets/X", "{}")
					} else {
						r = e.do("GET", listOrg, nil)
					}
					want := -1
					if tt.wantRetry[i] {
						want = st.retry
					}
					if ra := e.wantSecondary(r, tt.wantStatus); ra != want {
						t.Errorf("answer %d at t0+%v: Retry-After %d, want %d (-1: none)", i, st.at, ra, want)
					}
				}
				// The penalty ends at t0+20s exactly.
				sleepUntil(t, t0.Add(20*time.Second))
				e.want(e.do("GET", listOrg, nil), 200)
				if st := e.emu.Stats(); st.SecondaryViolations != 4 || st.Points != 6 || st.PrimaryViolations != 0 {
					t.Errorf("stats %+v, want 4 violations and 6 points", st)
				}
			})
		})
	}
}

// A penalty ends SecondaryPenalty after the violation that started it,
// or, with PenaltyExtends, SecondaryPenalty after the last request it
// refused.
func TestPenaltyExtends(t *testing.T) {
	const ok = 0 // accepted
	type step struct {
		at    time.Duration // after the violation at t0
		retry int           // the secondary answer's Retry-After, or ok
	}
	tests := []struct {
		extends bool
		steps   []step
	}{
		{false, []step{
			{10 * time.Second, 10},
			{20*time.Second - time.Nanosecond, 1},
			{20 * time.Second, ok},
		}},
		{true, []step{
			{10 * time.Second, 20},                 // the penalty now ends at t0+30s
			{30*time.Second - time.Nanosecond, 20}, // now at t0+50s-1ns
			{50*time.Second - time.Nanosecond, ok},
		}},
	}
	for _, tt := range tests {
		t.Run("extends="+strconv.FormatBool(tt.extends), func(t *testing.T) {
			inBubble(t, emulator.Options{Limits: emulator.Limits{
				PointsPerMinute: 1, SecondaryPenalty: 20 * time.Second, PenaltyExtends: tt.extends,
			}}, func(t *testing.T, e *env, t0 time.Time) {
				// 5 points never fit: a violation at t0.
				if ra := e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403); ra != 20 {
					t.Errorf("Retry-After %d at the violation, want 20", ra)
				}
				violations := 1
				for _, st := range tt.steps {
					sleepUntil(t, t0.Add(st.at))
					r := e.do("GET", listOrg, nil)
					if st.retry == ok {
						e.want(r, 200)
						continue
					}
					violations++
					if ra := e.wantSecondary(r, 403); ra != st.retry {
						t.Errorf("t0+%v: Retry-After %d, want %d", st.at, ra, st.retry)
					}
				}
				if st := e.emu.Stats(); st.SecondaryViolations != violations || st.Points != 1 {
					t.Errorf("stats %+v, want %d violations and 1 point", st, violations)
				}
			})
		})
	}
}

// Requests held in flight by a latency fault make the next one exceed
// MaxConcurrent; held requests whose clients give up are abandoned.
func TestMaxConcurrent(t *testing.T) {
	inBubble(t, emulator.Options{Limits: emulator.Limits{MaxConcurrent: 2, SecondaryPenalty: -1}}, func(t *testing.T, e *env, t0 time.Time) {
		// Held for an hour: they end when their clients give up.
		e.emu.InjectFault(emulator.Fault{Route: emulator.RouteListOrgSecrets, Latency: time.Hour, Times: 2})
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(ctx, "GET", e.url+listOrg, nil)
				if err != nil {
					errs <- err
					return
				}
				resp, err := e.client.Do(req)
				if err == nil {
					resp.Body.Close()
					err = errors.New("a held request was answered")
				}
				errs <- err
			})
		}
		synctest.Wait() // both are waiting out their latency
		if st := e.emu.Stats(); st.InFlight != 2 {
			t.Fatalf("%d requests in flight, want 2", st.InFlight)
		}
		if ra := e.wantSecondary(e.do("GET", "/"+repoActs+"/secrets", nil), 403); ra != 1 {
			t.Errorf("Retry-After %d, want 1", ra)
		}
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("held request: %v", err)
			}
		}
		if !time.Now().Equal(t0) {
			t.Errorf("the held requests ended at t0+%v, want t0", time.Since(t0))
		}
		e.want(e.do("GET", "/"+repoActs+"/secrets", nil), 200)
		st := e.emu.Stats()
		if st.InFlight != 0 || st.PeakInFlight != 3 || st.SecondaryViolations != 1 || st.Requests != 4 || st.Dropped != 0 {
			t.Errorf("stats %+v", st)
		}
		// The abandoned requests were never handled.
		if e.emu.Count(emulator.RouteListOrgSecrets) != 2 {
			t.Errorf("Count = %d", e.emu.Count(emulator.RouteListOrgSecrets))
		}
	})
}

// ratelimit reads the primary quota's headers.
func ratelimit(t *testing.T, r result) (limit, remaining, used int, reset int64) {
	t.Helper()
	if got := r.header.Get("X-Ratelimit-Resource"); got != "core" {
		t.Errorf("X-Ratelimit-Resource %q", got)
	}
	atoi := func(k string) int64 {
		n, err := strconv.ParseInt(r.header.Get(k), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	return int(atoi("X-Ratelimit-Limit")), int(atoi("X-Ratelimit-Remaining")), int(atoi("X-Ratelimit-Used")), atoi("X-Ratelimit-Reset")
}

// The primary quota's window starts with the first request and ends an
// hour later, rounded up to a whole second (X-RateLimit-Reset); the first
// request at or after the reset starts a new window.
func TestPrimaryQuota(t *testing.T) {
	inBubble(t, emulator.Options{Limits: emulator.Limits{PrimaryPerHour: 3}}, func(t *testing.T, e *env, t0 time.Time) {
		check := func(r result, wantRemaining int, wantReset time.Time) {
			t.Helper()
			limit, remaining, used, reset := ratelimit(t, r)
			if limit != 3 || remaining != wantRemaining || used != 3-wantRemaining {
				t.Errorf("limit %d remaining %d used %d, want 3 %d %d", limit, remaining, used, wantRemaining, 3-wantRemaining)
			}
			if reset != wantReset.Unix() {
				t.Errorf("reset %d, want %d", reset, wantReset.Unix())
			}
		}
		// The window starts at t0+0.5s and ends at t0+3601s.
		sleepUntil(t, t0.Add(500*time.Millisecond))
		reset := t0.Add(3601 * time.Second)
		r := e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil), 200)
		check(r, 2, reset)
		// A 304 does not count.
		etag := r.header.Get("ETag")
		check(e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", etag), 304), 2, reset)
		check(e.want(e.do("GET", listOrg, nil), 200), 1, reset)
		check(e.want(e.do("GET", "/nope", nil), 404), 0, reset) // everything counts
		r = e.want(e.do("GET", listOrg, nil), 403)
		check(r, 0, reset)
		var b limitBody
		r.json(t, &b)
		stamp := " timestamp " + t0.Add(500*time.Millisecond).UTC().Format("2006-01-02 15:04:05 MST") + "."
		if !strings.HasPrefix(b.Message, primaryPrefix) || !strings.HasSuffix(b.Message, stamp) || b.DocumentationURL != primaryDocs {
			t.Errorf("primary answer body %s, want the message to end %q", r.body, stamp)
		}
		if r.header.Get("Retry-After") != "" {
			t.Error("primary answer with Retry-After")
		}
		// A conditional request is refused too once the quota is used up,
		// up to the last nanosecond of the window.
		sleepUntil(t, reset.Add(-time.Nanosecond))
		check(e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", etag), 403), 0, reset)
		st := e.emu.Stats()
		if st.PrimaryViolations != 2 || st.NotModified != 1 || st.SecondaryViolations != 0 || st.Requests != 6 {
			t.Errorf("stats %+v", st)
		}

		// A new window starts with the first request at the reset: it
		// starts on a whole second and so ends exactly an hour later.
		sleepUntil(t, reset)
		check(e.want(e.do("GET", listOrg, nil), 200), 2, reset.Add(time.Hour))

		// ResetLimits gives the quota back; the next request starts a
		// window again.
		sleepUntil(t, reset.Add(10*time.Minute+time.Millisecond))
		check(e.want(e.do("GET", listOrg, nil), 200), 1, reset.Add(time.Hour))
		e.emu.ResetLimits()
		check(e.want(e.do("GET", listOrg, nil), 200), 2, reset.Add(70*time.Minute+time.Second))
	})
}

// Limits run before faults: a refused request does not take a fault, and
// the quota's headers go on fault answers too, unless the fault sets them.
func TestLimitsBeforeFaults(t *testing.T) {
	inBubble(t, emulator.Options{Token: "tok", Limits: emulator.Limits{PointsPerMinute: 1, SecondaryPenalty: -1, PrimaryPerHour: 10}}, func(t *testing.T, e *env, _ time.Time) {
		auth := []string{"Authorization", "Bearer tok"}
		e.emu.InjectFault(emulator.Fault{Status: 503, Times: 2})
		r := e.want(e.do("GET", listOrg, nil, auth...), 503)
		if _, remaining, _, _ := ratelimit(t, r); remaining != 9 {
			t.Errorf("remaining %d after a fault answer", remaining)
		}
		e.wantSecondary(e.do("GET", listOrg, nil, auth...), 403)
		e.emu.ResetLimits()
		e.emu.InjectFault(emulator.Fault{Status: 403, Header: http.Header{"X-Ratelimit-Remaining": {"0"}}})
		e.want(e.do("GET", listOrg, nil), 503) // the second 503, before authentication
		e.emu.ResetLimits()
		r = e.want(e.do("GET", listOrg, nil, auth...), 403)
		if r.header.Get("X-Ratelimit-Remaining") != "0" || r.header.Get("X-Ratelimit-Limit") != "10" {
			t.Errorf("fault headers %v", r.header)
		}
		e.emu.ResetLimits()
		e.want(e.do("GET", listOrg, nil, auth...), 200)
	})
}

// send is do for requests that may fail in transport.
func (e *env) send(c *http.Client, method, path, body string) (result, error) {
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("X-GitHub-Api-Version", vActions)
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// putBody is a valid PUT body for the repository secret scope.
func (e *env) putBody(value string) string {
	k := e.key(repoActs)
	return `{"encrypted_value":"` + seal(e.t, k, []byte(value)) + `","key_id":"` + k.KeyID + `"}`
}

// A dropped connection is a transport error for a real net/http client,
// before or after the request was handled; Go's transport resends a GET
// on a reused connection. The server runs on in-memory pipes in a bubble,
// so that the test can wait for the server side to be done exactly.
func TestDrop(t *testing.T) {
	tests := []struct {
		name       string
		fault      emulator.Fault
		method     string
		keepAlive  bool
		value      string // of the secret X afterwards; "" when gone
		wantDrops  int
		wantStatus int // of a request after the fault is used up
	}{
		{"drop PUT", emulator.Fault{Route: emulator.RoutePutRepoSecret, Drop: true}, "PUT", true, "old", 1, 204},
		{"drop after PUT", emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true}, "PUT", true, "new", 1, 204},
		{"drop PUT ignores status", emulator.Fault{Route: emulator.RoutePutRepoSecret, Drop: true, Status: 503}, "PUT", true, "old", 1, 204},
		{"drop after PUT ignores status", emulator.Fault{Route: emulator.RoutePutRepoSecret, DropAfter: true, Status: 503}, "PUT", true, "new", 1, 204},
		{"drop after DELETE", emulator.Fault{Route: emulator.RouteDeleteRepoSecret, DropAfter: true}, "DELETE", true, "", 1, 404},
		{"drop DELETE", emulator.Fault{Route: emulator.RouteDeleteRepoSecret, Drop: true}, "DELETE", true, "old", 1, 204},
		{"drop GET", emulator.Fault{Route: emulator.RouteGetRepoSecret, Drop: true}, "GET", false, "old", 1, 200},
		// Go's transport resends a GET once when a reused connection
		// closes: two drops make it give up.
		{"drop GET keep-alive", emulator.Fault{Route: emulator.RouteGetRepoSecret, Drop: true, Times: 2}, "GET", true, "old", 2, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e, noKeepAlive := newPipeEnv(t, emulator.Options{})
				c := noKeepAlive
				if tt.keepAlive {
					c = e.client
				}
				e.want(e.put(repoActs, "X", "old", nil), 201)
				body := ""
				if tt.method == "PUT" {
					body = e.putBody("new")
				}
				e.emu.ResetCounts()
				e.emu.InjectFault(tt.fault)
				r, err := e.send(c, tt.method, "/"+repoActs+"/secrets/X", body)
				if err == nil {
					t.Fatalf("an answer to a dropped request: %d %s", r.status, r.body)
				}
				plain, openErr := e.emu.Open(repoActs, "X")
				if string(plain) != tt.value || (openErr == nil) != (tt.value != "") {
					t.Errorf("value %q (%v), want %q", plain, openErr, tt.value)
				}
				st := e.emu.Stats()
				if st.Dropped != tt.wantDrops || st.Requests != tt.wantDrops {
					t.Errorf("stats %+v, want %d dropped", st, tt.wantDrops)
				}
				// The fault is used up, and the connection pool recovers.
				r, err = e.send(c, tt.method, "/"+repoActs+"/secrets/X", body)
				if err != nil || r.status != tt.wantStatus {
					t.Errorf("after the fault: %v %d %s, want %d", err, r.status, r.body, tt.wantStatus)
				}
				synctest.Wait() // the server side is done too
				if st := e.emu.Stats(); st.InFlight != 0 {
					t.Errorf("%d requests in flight", st.InFlight)
				}
			})
		})
	}
}

// A latency fault holds the request exactly Latency before its answer (or
// drop); a client that gives up first abandons it unhandled.
func TestLatency(t *testing.T) {
	const latency = 20 * time.Second
	tests := []struct {
		name       string
		fault      emulator.Fault
		giveUp     time.Duration // the client's timeout; 0: none
		wantStatus int           // 0: no answer
		wantStored bool
		wantDrops  int
	}{
		{"normal handling", emulator.Fault{Latency: latency}, 0, 201, true, 0},
		{"canned answer", emulator.Fault{Latency: latency, Status: 503}, 0, 503, false, 0},
		{"drop", emulator.Fault{Latency: latency, Drop: true}, 0, 0, false, 1},
		{"drop after", emulator.Fault{Latency: latency, DropAfter: true}, 0, 0, true, 1},
		{"client gives up", emulator.Fault{Latency: latency}, 5 * time.Second, 0, false, 0},
		{"answered just in time", emulator.Fault{Latency: latency}, latency + time.Nanosecond, 201, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, emulator.Options{}, func(t *testing.T, e *env, _ time.Time) {
				body := e.putBody("v")
				f := tt.fault
				f.Route = emulator.RoutePutRepoSecret
				e.emu.InjectFault(f)
				c := e.client
				took := latency
				if tt.giveUp > 0 {
					c = &http.Client{Transport: e.client.Transport, Timeout: tt.giveUp}
					took = min(latency, tt.giveUp)
				}
				start := time.Now()
				r, err := e.send(c, "PUT", "/"+repoActs+"/secrets/X", body)
				if got := time.Since(start); got != took {
					t.Errorf("the request ended after %v, want exactly %v", got, took)
				}
				switch {
				case tt.wantStatus == 0 && err == nil:
					t.Errorf("answer %d to a request that should get none", r.status)
				case tt.wantStatus != 0 && (err != nil || r.status != tt.wantStatus):
					t.Errorf("got %v %d %s, want %d", err, r.status, r.body, tt.wantStatus)
				}
				if _, err := e.emu.Open(repoActs, "X"); (err == nil) != tt.wantStored {
					t.Errorf("stored: %v, want %v", err, tt.wantStored)
				}
				if st := e.emu.Stats(); st.InFlight != 0 || st.Dropped != tt.wantDrops {
					t.Errorf("stats %+v, want nothing in flight and %d dropped", st, tt.wantDrops)
				}
			})
		})
	}
}

// Stats count what happened; ResetCounts and ResetLimits reset what they
// say. In a bubble no time passes, so the penalty holds throughout.
func TestStatsAndResets(t *testing.T) {
	inBubble(t, emulator.Options{Limits: emulator.Limits{PointsPerMinute: 12, PrimaryPerHour: 100}}, func(t *testing.T, e *env, _ time.Time) {
		e.key(orgActs)                                                                                // 1 point
		e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", `"nope"`), 200)   // 2
		e.want(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 422)                                     // 7
		e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", `W/"x", *`), 304) // 8
		e.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgSecret, Drop: true})
		if _, err := e.send(e.client, "GET", "/"+orgActs+"/secrets/X", ""); err == nil { // 9
			t.Error("no error from a dropped request")
		}
		e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403) // 14 > 12
		e.wantSecondary(e.do("GET", listOrg, nil), 403)                    // penalty
		st := e.emu.Stats()
		want := emulator.Stats{Requests: 7, Points: 9, SecondaryViolations: 2, NotModified: 1, PeakInFlight: 1, Dropped: 1}
		if st != want {
			t.Errorf("stats %+v\nwant  %+v", st, want)
		}

		// ResetCounts zeroes the counters but keeps the penalty.
		e.emu.ResetCounts()
		if st := e.emu.Stats(); st != (emulator.Stats{}) {
			t.Errorf("after ResetCounts: %+v", st)
		}
		e.wantSecondary(e.do("GET", listOrg, nil), 403)
		// ResetLimits ends the penalty and empties the windows.
		e.emu.ResetLimits()
		for range 2 {
			e.want(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 422)
		}
		r := e.want(e.do("GET", listOrg, nil), 200)
		if _, remaining, _, _ := ratelimit(t, r); remaining != 97 {
			t.Errorf("remaining %d after ResetLimits and 3 requests", remaining)
		}
		if st := e.emu.Stats(); st.Points != 11 || st.SecondaryViolations != 1 || st.Requests != 4 {
			t.Errorf("stats %+v", st)
		}
	})
}

// CPUPerMinute counts the response time of the accepted requests: those
// in flight their time so far, those answered their whole time until a
// minute after their answer. A request arriving when the window counts the
// limit or more gets the secondary answer, Retry-After until enough
// answered requests leave it, and uses nothing.
func TestCPUPerMinute(t *testing.T) {
	inBubble(t, emulator.Options{Limits: emulator.Limits{CPUPerMinute: 10 * time.Second, SecondaryPenalty: -1}}, func(t *testing.T, e *env, t0 time.Time) {
		// Three answered in 2 s each at t0+2s: 6 s.
		e.emu.InjectFault(emulator.Fault{Route: emulator.RouteListOrgSecrets, Latency: 2 * time.Second, Times: 5})
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { e.want(e.do("GET", listOrg, nil), 200) })
		}
		wg.Wait()
		// Two more, in flight: at t0+3s they count 1 s each, 8 s in all.
		for range 2 {
			wg.Go(func() { e.want(e.do("GET", listOrg, nil), 200) })
		}
		sleepUntil(t, t0.Add(3*time.Second))
		e.want(e.do("GET", "/"+repoActs+"/secrets", nil), 200)
		// At t0+4s they are answered: 10 s, the limit.
		wg.Wait()
		if ra := e.wantSecondary(e.do("GET", "/"+repoActs+"/secrets", nil), 403); ra != 58 {
			t.Errorf("Retry-After %d, want 58: the first three leave the window at t0+62s", ra)
		}
		st := e.emu.Stats()
		if st.CPUViolations != 1 || st.SecondaryViolations != 1 || st.PeakCPU != 10*time.Second {
			t.Errorf("stats %+v, want 1 CPU violation, a peak of 10s", st)
		}
		sleepUntil(t, t0.Add(62*time.Second))
		e.want(e.do("GET", "/"+repoActs+"/secrets", nil), 200)
		if st := e.emu.Stats(); st.PeakCPU != 10*time.Second || st.CPUViolations != 1 {
			t.Errorf("stats %+v, want the peak and violations unchanged", st)
		}
	})
}
