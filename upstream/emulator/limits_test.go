package emulator_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secretbroker/secretbroker/upstream/clock"
	"github.com/secretbroker/secretbroker/upstream/emulator"
)

const (
	secondaryPrefix = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID "
	secondaryDocs   = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
	primaryPrefix   = "API rate limit exceeded for user ID 1."
	primaryDocs     = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
	listOrg         = "/" + orgActs + "/secrets"
)

// newLimitEnv is an emulator with limits on a clock running scale times
// faster than the wall clock.
func newLimitEnv(t *testing.T, scale float64, opts emulator.Options) (*env, clock.Clock) {
	t.Helper()
	clk, err := clock.Scaled(scale)
	if err != nil {
		t.Fatal(err)
	}
	opts.Clock = clk
	return newEnv(t, opts), clk
}

// wait lets d pass on clk.
func wait(clk clock.Clock, d time.Duration) {
	<-clk.NewTimer(d).C
}

// waitFor polls cond every millisecond for at most 5 s of wall time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 5000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
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

// The points window slides: requests leave it one minute after they
// arrived, not at fixed minute boundaries.
func TestPointsWindowSlides(t *testing.T) {
	e, clk := newLimitEnv(t, 100, emulator.Options{Limits: emulator.Limits{PointsPerMinute: 5, SecondaryPenalty: -1}})

	for range 3 {
		e.want(e.do("GET", listOrg, nil), 200)
	}
	endA := clk.Now()
	wait(clk, 20*time.Second)
	startB := clk.Now()
	for range 2 {
		e.want(e.do("GET", listOrg, nil), 200)
	}
	// Full: a GET is refused, and so is a PUT; neither adds points.
	ra := e.wantSecondary(e.do("GET", listOrg, nil), 403)
	// Without a penalty, Retry-After says when batch A leaves the window.
	if wantMax := int(endA.Add(time.Minute).Sub(startB).Seconds()) + 1; ra < 1 || ra > wantMax {
		t.Errorf("Retry-After %d, want 1..%d", ra, wantMax)
	}
	e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403)
	if st := e.emu.Stats(); st.Points != 5 || st.SecondaryViolations != 2 {
		t.Errorf("stats %+v, want 5 points and 2 violations", st)
	}

	// 50 s later batch A has left the window, batch B has not.
	wait(clk, 50*time.Second)
	startC := clk.Now()
	for range 3 {
		e.want(e.do("GET", listOrg, nil), 200)
	}
	e.wantSecondary(e.do("GET", listOrg, nil), 403)
	endC := clk.Now()
	if startC.Sub(endA) <= time.Minute || endC.Sub(startB) >= time.Minute {
		t.Fatalf("the test ran too slowly for its clock: batch A ended %v before batch C, batch B started %v before it ended",
			startC.Sub(endA), endC.Sub(startB))
	}
	if st := e.emu.Stats(); st.Points != 8 || st.SecondaryViolations != 3 {
		t.Errorf("stats %+v, want 8 points and 3 violations", st)
	}
}

// A write costs 5 points; a budget that a write can never fit refuses it
// with a minute's Retry-After.
func TestPointsCost(t *testing.T) {
	tests := []struct {
		method string
		budget int
		ok     int // how many fit in an empty window
	}{
		{"GET", 10, 10},
		{"HEAD", 10, 10},
		{"OPTIONS", 10, 10},
		{"PUT", 10, 2},
		{"DELETE", 10, 2},
		{"POST", 10, 2},
		{"PATCH", 10, 2},
		{"PUT", 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+strconv.Itoa(tt.budget), func(t *testing.T) {
			e, _ := newLimitEnv(t, 1, emulator.Options{Limits: emulator.Limits{PointsPerMinute: tt.budget, SecondaryPenalty: -1}})
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
			if ra < 1 || ra > 60 {
				t.Errorf("Retry-After %d", ra)
			}
			if tt.ok == 0 && ra != 60 {
				t.Errorf("Retry-After %d for a request that never fits, want 60", ra)
			}
		})
	}
}

// After a violation every request is refused for the penalty, with
// Retry-After counting down, or without it when told so.
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := tt.limits
			lim.PointsPerMinute = 9
			lim.SecondaryPenalty = 20 * time.Second
			e, clk := newLimitEnv(t, 100, emulator.Options{Limits: lim})
			for range 5 {
				e.want(e.do("GET", listOrg, nil), 200)
			}
			start := clk.Now()
			var got []int
			// A PUT would take 10 points: a violation. The GETs after it
			// would fit the window but meet the penalty.
			got = append(got, e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), tt.wantStatus))
			for range 3 {
				got = append(got, e.wantSecondary(e.do("GET", listOrg, nil), tt.wantStatus))
			}
			if clk.Now().Sub(start) >= 20*time.Second {
				t.Fatal("the test ran too slowly for its clock")
			}
			for i, ra := range got {
				if (ra > 0) != tt.wantRetry[i] {
					t.Errorf("answer %d: Retry-After %d, want present=%v", i, ra, tt.wantRetry[i])
				}
				if ra > 20 {
					t.Errorf("answer %d: Retry-After %d is more than the penalty", i, ra)
				}
			}
			if got[0] > 0 && got[0] != 20 {
				t.Errorf("first Retry-After %d, want the whole penalty, 20", got[0])
			}
			wait(clk, 21*time.Second)
			e.want(e.do("GET", listOrg, nil), 200)
			if st := e.emu.Stats(); st.SecondaryViolations != 4 || st.Points != 6 || st.PrimaryViolations != 0 {
				t.Errorf("stats %+v, want 4 violations and 6 points", st)
			}
		})
	}
}

func TestPenaltyExtends(t *testing.T) {
	for _, extends := range []bool{false, true} {
		t.Run("extends="+strconv.FormatBool(extends), func(t *testing.T) {
			e, clk := newLimitEnv(t, 50, emulator.Options{Limits: emulator.Limits{
				PointsPerMinute: 1, SecondaryPenalty: 20 * time.Second, PenaltyExtends: extends,
			}})
			start := clk.Now()
			e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403) // 5 points never fit
			wait(clk, 10*time.Second)
			if ra := e.wantSecondary(e.do("GET", listOrg, nil), 403); extends && ra != 20 {
				t.Errorf("Retry-After %d during an extended penalty, want 20", ra)
			}
			wait(clk, 15*time.Second)
			r := e.do("GET", listOrg, nil)
			if clk.Now().Sub(start) >= 30*time.Second {
				t.Fatal("the test ran too slowly for its clock")
			}
			if extends {
				e.wantSecondary(r, 403)
			} else {
				e.want(r, 200)
			}
		})
	}
}

// Requests held in flight by a latency fault make the next one exceed
// MaxConcurrent.
func TestMaxConcurrent(t *testing.T) {
	e, _ := newLimitEnv(t, 100, emulator.Options{Limits: emulator.Limits{MaxConcurrent: 2, SecondaryPenalty: -1}})
	// Held for an emulated hour: they end when their clients give up.
	e.emu.InjectFault(emulator.Fault{Route: emulator.RouteListOrgSecrets, Latency: time.Hour, Times: 2})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+listOrg, nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := e.srv.Client().Do(req)
			if err == nil {
				resp.Body.Close()
				err = errors.New("a held request was answered")
			}
			errs <- err
		})
	}
	waitFor(t, "two requests in flight", func() bool { return e.emu.Stats().InFlight == 2 })
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
	waitFor(t, "nothing in flight", func() bool { return e.emu.Stats().InFlight == 0 })
	e.want(e.do("GET", "/"+repoActs+"/secrets", nil), 200)
	st := e.emu.Stats()
	if st.PeakInFlight != 3 || st.SecondaryViolations != 1 || st.Requests != 4 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	// The abandoned requests were never handled.
	if e.emu.Count(emulator.RouteListOrgSecrets) != 2 {
		t.Errorf("Count = %d", e.emu.Count(emulator.RouteListOrgSecrets))
	}
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

func TestPrimaryQuota(t *testing.T) {
	// An hour lasts 360 ms.
	e, clk := newLimitEnv(t, 10000, emulator.Options{Limits: emulator.Limits{PrimaryPerHour: 3}})
	check := func(r result, wantRemaining int) int64 {
		t.Helper()
		limit, remaining, used, reset := ratelimit(t, r)
		if limit != 3 || remaining != wantRemaining || used != 3-wantRemaining {
			t.Errorf("limit %d remaining %d used %d, want 3 %d %d", limit, remaining, used, wantRemaining, 3-wantRemaining)
		}
		return reset
	}
	before := clk.Now()
	r := e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil), 200)
	after := clk.Now()
	reset := check(r, 2)
	if lo, hi := before.Add(time.Hour).Unix(), after.Add(time.Hour).Unix()+1; reset < lo || reset > hi {
		t.Errorf("reset %d, want between %d and %d", reset, lo, hi)
	}
	// A 304 does not count.
	etag := r.header.Get("ETag")
	if got := check(e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", etag), 304), 2); got != reset {
		t.Errorf("reset moved from %d to %d", reset, got)
	}
	check(e.want(e.do("GET", listOrg, nil), 200), 1)
	check(e.want(e.do("GET", "/nope", nil), 404), 0) // everything counts
	r = e.want(e.do("GET", listOrg, nil), 403)
	if check(r, 0) != reset {
		t.Error("reset moved")
	}
	var b limitBody
	r.json(t, &b)
	if !strings.HasPrefix(b.Message, primaryPrefix) || b.DocumentationURL != primaryDocs {
		t.Errorf("primary answer body %s", r.body)
	}
	if r.header.Get("Retry-After") != "" {
		t.Error("primary answer with Retry-After")
	}
	// A conditional request is refused too once the quota is used up.
	check(e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", etag), 403), 0)
	if clk.Now().After(time.Unix(reset, 0)) {
		t.Fatal("the test ran too slowly for its clock")
	}
	st := e.emu.Stats()
	if st.PrimaryViolations != 2 || st.NotModified != 1 || st.SecondaryViolations != 0 || st.Requests != 6 {
		t.Errorf("stats %+v", st)
	}

	// A new window starts with the first request after the reset.
	wait(clk, time.Unix(reset, 0).Sub(clk.Now())+time.Second)
	if got := check(e.want(e.do("GET", listOrg, nil), 200), 2); got < reset+3600 {
		t.Errorf("new window resets at %d, want at least %d", got, reset+3600)
	}

	// ResetLimits gives the quota back.
	e.do("GET", listOrg, nil)
	e.emu.ResetLimits()
	check(e.want(e.do("GET", listOrg, nil), 200), 2)
}

// Limits run before faults: a refused request does not take a fault, and
// the quota's headers go on fault answers too, unless the fault sets them.
func TestLimitsBeforeFaults(t *testing.T) {
	e, _ := newLimitEnv(t, 1, emulator.Options{Token: "tok", Limits: emulator.Limits{PointsPerMinute: 1, SecondaryPenalty: -1, PrimaryPerHour: 10}})
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
}

// send is do for requests that may fail in transport.
func (e *env) send(c *http.Client, method, path, body string) (result, error) {
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
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

func TestDrop(t *testing.T) {
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
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
			e := newEnv(t, emulator.Options{})
			c := noKeepAlive
			if tt.keepAlive {
				c = e.srv.Client()
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
			waitFor(t, "nothing in flight", func() bool { return e.emu.Stats().InFlight == 0 })
		})
	}
}

func TestLatency(t *testing.T) {
	const latency = 20 * time.Second // 200 ms of wall time
	tests := []struct {
		name       string
		fault      emulator.Fault
		wantStatus int // 0: dropped
		wantStored bool
	}{
		{"normal handling", emulator.Fault{Latency: latency}, 201, true},
		{"canned answer", emulator.Fault{Latency: latency, Status: 503}, 503, false},
		{"drop", emulator.Fault{Latency: latency, Drop: true}, 0, false},
		{"drop after", emulator.Fault{Latency: latency, DropAfter: true}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := newLimitEnv(t, 100, emulator.Options{})
			body := e.putBody("v")
			f := tt.fault
			f.Route = emulator.RoutePutRepoSecret
			e.emu.InjectFault(f)
			start := clk.Now()
			r, err := e.send(e.srv.Client(), "PUT", "/"+repoActs+"/secrets/X", body)
			if took := clk.Now().Sub(start); took < latency {
				t.Errorf("answered after %v of emulator time, want at least %v", took, latency)
			}
			switch {
			case tt.wantStatus == 0 && err == nil:
				t.Errorf("answer %d to a dropped request", r.status)
			case tt.wantStatus != 0 && (err != nil || r.status != tt.wantStatus):
				t.Errorf("got %v %d %s, want %d", err, r.status, r.body, tt.wantStatus)
			}
			if _, err := e.emu.Open(repoActs, "X"); (err == nil) != tt.wantStored {
				t.Errorf("stored: %v, want %v", err, tt.wantStored)
			}
		})
	}
}

// fixedClock is a clock.Clock whose time stands still.
type fixedClock struct{ now time.Time }

func (c fixedClock) Now() time.Time                       { return c.now }
func (c fixedClock) NewTimer(d time.Duration) *time.Timer { return time.NewTimer(d) }

// Without Options.Now, timestamps come from Options.Clock.
func TestClockStampsSecrets(t *testing.T) {
	when := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	emu := emulator.New(emulator.Options{Clock: fixedClock{when}})
	emu.SeedDemo()
	srv := httptest.NewServer(emu)
	defer srv.Close()
	e := &env{t: t, emu: emu, srv: srv}
	e.want(e.put(repoActs, "X", "v", nil), 201)
	var s secretJSON
	e.want(e.do("GET", "/"+repoActs+"/secrets/X", nil), 200).json(t, &s)
	if s.CreatedAt != "2031-05-06T07:08:09Z" || s.UpdatedAt != s.CreatedAt {
		t.Errorf("created_at %s updated_at %s", s.CreatedAt, s.UpdatedAt)
	}
}

func TestStatsAndResets(t *testing.T) {
	e, _ := newLimitEnv(t, 1, emulator.Options{Limits: emulator.Limits{PointsPerMinute: 12, PrimaryPerHour: 100}})
	noKeepAlive := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	e.key(orgActs)                                                                                // 1 point
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", `"nope"`), 200)   // 2
	e.want(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 422)                                     // 7
	e.want(e.do("GET", "/"+orgActs+"/secrets/public-key", nil, "If-None-Match", `W/"x", *`), 304) // 8
	e.emu.InjectFault(emulator.Fault{Route: emulator.RouteGetOrgSecret, Drop: true})
	if _, err := e.send(noKeepAlive, "GET", "/"+orgActs+"/secrets/X", ""); err == nil { // 9
		t.Error("no error from a dropped request")
	}
	e.wantSecondary(e.do("PUT", "/"+repoActs+"/secrets/X", "{}"), 403) // 14 > 12
	e.wantSecondary(e.do("GET", listOrg, nil), 403)                    // penalty
	waitFor(t, "nothing in flight", func() bool { return e.emu.Stats().InFlight == 0 })
	st := e.emu.Stats()
	// A request may arrive on a new connection before the previous one
	// has quite left.
	if st.PeakInFlight < 1 || st.PeakInFlight > 2 {
		t.Errorf("PeakInFlight %d", st.PeakInFlight)
	}
	want := emulator.Stats{Requests: 7, Points: 9, SecondaryViolations: 2, NotModified: 1, PeakInFlight: st.PeakInFlight, Dropped: 1}
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
}
