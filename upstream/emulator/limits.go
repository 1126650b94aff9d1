package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// GitHub's rate limit answers.
const (
	pointsWindow      = time.Minute
	primaryWindow     = time.Hour
	defaultPenalty    = time.Minute
	rateLimitDocsURL  = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
	secondaryDocsURL  = rateLimitDocsURL + "#about-secondary-rate-limits"
	requestIDHeader   = "X-GitHub-Request-Id"
	readPoints        = 1 // GET, HEAD, OPTIONS and anything not listed below
	writePoints       = 5 // POST, PATCH, PUT, DELETE
	rateLimitResource = "core"
	// defaultRateLimitShown is the core quota GET /rate_limit shows when
	// Limits.PrimaryPerHour is 0: github.com's for a user token.
	defaultRateLimitShown = 5000
)

// Limits are the rate limits the server enforces, after GitHub's "Rate
// limits for the REST API". The zero value enforces none. All windows and
// durations are on package time (time.Now, timers), which is fake inside a
// testing/synctest bubble. The server has one quota for everybody:
// it does not tell tokens apart, and it applies the limits before
// authentication, so requests with a bad token use the quota too.
//
// A request is first checked against the secondary limits (a running
// penalty, MaxConcurrent, PointsPerMinute, CPUPerMinute, the content
// limits, in that order) and then against the primary quota. A request refused by any of them uses neither points
// nor primary quota, and does not take an injected fault.
type Limits struct {
	// PointsPerMinute is the secondary limit on points in any sliding 60 s
	// window, counted at the request's arrival: GET, HEAD and OPTIONS (and
	// any other method not listed here) cost 1 point, POST, PATCH, PUT and
	// DELETE cost 5. A request whose points would take the window over the
	// limit gets the secondary answer. github.com allows 900; 0 means no
	// limit.
	PointsPerMinute int
	// MaxConcurrent is the secondary limit on requests in flight: a request
	// arriving while MaxConcurrent requests are in flight (from their
	// arrival until their answer is written, injected latency included,
	// refused requests included) gets the secondary answer. github.com
	// allows 100; 0 means no limit.
	MaxConcurrent int
	// PrimaryPerHour is the primary quota: requests per fixed window of one
	// hour that starts with the first request (and, once a window is over,
	// with the next request). Answers with status 304 Not Modified give
	// their use back, and refused requests do not use it. When the quota
	// is used up, requests get 403 with x-ratelimit-remaining 0 and the
	// "API rate limit exceeded" body until the window ends.
	//
	// When PrimaryPerHour is positive, every answer carries
	// X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Used,
	// X-RateLimit-Reset (the window's end in Unix seconds) and
	// X-RateLimit-Resource: core, unless an injected fault's Header sets
	// them itself. github.com allows 5000 for a user token; 0 means no
	// quota and none of these headers.
	PrimaryPerHour int
	// SecondaryStatus is the status of secondary answers: 0 means 403;
	// GitHub also uses 429.
	SecondaryStatus int
	// SecondaryPenalty is how long after a secondary violation every
	// request is refused with the secondary answer too; each such refusal
	// counts as a violation. The answers' Retry-After is the time left
	// of the penalty in seconds, rounded up. 0 means 60 s; a negative
	// value means no penalty: only the violating request is refused, and
	// Retry-After says when the points window will have room for it (1 s
	// for a MaxConcurrent refusal).
	SecondaryPenalty time.Duration
	// PenaltyExtends makes every request refused during a penalty start
	// the penalty over, so that a client which keeps sending without
	// waiting stays limited. Without it the penalty ends SecondaryPenalty
	// after the violation that started it, whatever arrives meanwhile.
	PenaltyExtends bool
	// OmitRetryAfter sends every secondary answer without Retry-After, as
	// GitHub sometimes does; clients should then wait at least a minute.
	OmitRetryAfter bool
	// WritesPerMinute and WritesPerHour are GitHub's content-creation
	// limits ("no more than 80 content-generating requests per minute and
	// no more than 500 per hour"): POST, PATCH, PUT and DELETE requests
	// accepted in any sliding minute and hour, counted at arrival. A
	// request that would exceed one gets the secondary answer and counts
	// as a secondary violation and a content violation. 0 means no limit.
	WritesPerMinute int
	WritesPerHour   int
	// OmitRetryAfterEvery, when OmitRetryAfter is false, sends every nth
	// secondary answer without Retry-After: 0 means never, 1 always, 3 the
	// third, sixth, ... since New or ResetLimits.
	OmitRetryAfterEvery int
	// CPUPerMinute is the secondary limit on CPU time ("no more than 90
	// seconds of CPU time per 60 seconds of real time"), which GitHub says
	// the total response time roughly estimates, and which the server
	// takes it to be: a request accepted counts its time so far while in
	// flight (from its arrival until its answer is written, injected
	// latency included) and its whole response time until 60 s after its
	// answer. A request arriving while the requests of the last 60 s count
	// CPUPerMinute or more gets the secondary answer and counts as a CPU
	// violation. github.com allows 90 s; 0 means no limit.
	CPUPerMinute time.Duration
}

// Stats are the server's counters since New or ResetCounts.
type Stats struct {
	// Requests is every request received, as TotalRequests.
	Requests int
	// Points are the points of the requests the rate limits accepted
	// (counted whether or not PointsPerMinute is set).
	Points int
	// SecondaryViolations is how many secondary answers were sent,
	// refusals during a penalty included.
	SecondaryViolations int
	// ContentViolations is how many requests were refused because a
	// content-creation limit (WritesPerMinute, WritesPerHour) was spent;
	// each is a secondary violation too.
	ContentViolations int
	// CPUViolations is how many requests were refused because
	// CPUPerMinute was spent; each is a secondary violation too.
	CPUViolations int
	// PeakCPU is the most response time the requests of a 60 s window
	// counted (as CPUPerMinute counts them) when a request arrived,
	// counted whether or not CPUPerMinute is set.
	PeakCPU time.Duration
	// PrimaryViolations is how many requests were refused because the
	// primary quota was used up.
	PrimaryViolations int
	// NotModified is how many 304 answers were sent.
	NotModified int
	// InFlight is how many requests are being served right now.
	InFlight int
	// PeakInFlight is the most requests in flight at once.
	PeakInFlight int
	// Dropped is how many connections injected Drop and DropAfter faults
	// closed.
	Dropped int
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = s.total
	return st
}

// ResetLimits forgets the rate limits' state: the points window, the
// requests in it, any running penalty and the primary quota's window, as
// if no request had arrived yet. Counters and in-flight requests are not
// touched.
func (s *Server) ResetLimits() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim = limitState{}
	s.limBy = nil
	s.resets++
}

// limitState is where the rate limits stand. It lives under s.mu.
type limitState struct {
	points       []pointsAt // accepted requests of the last minute, oldest first
	pointsSum    int
	penaltyUntil time.Time // zero when no penalty ran yet
	primaryStart time.Time // zero before the first window
	primaryEnd   time.Time // a whole second
	primaryUsed  int
	secondarySeq int // secondary answers sent, for OmitRetryAfterEvery
	content      contentLog
	cpu          cpuLog
}

type pointsAt struct {
	at     time.Time
	points int
}

// admission is what the limits decided about one request.
type admission struct {
	id      string    // the request id
	refusal *response // nil when the request may go on
	primary bool      // the request used primary quota
	window  time.Time // the start of the primary window it used
	st      *limitState
	arrived time.Time // when an accepted request arrived; zero when refused
	resets  int       // Server.resets then
}

// cost is the points a request costs under the secondary limit.
func cost(method string) int {
	switch method {
	case http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		return writePoints
	}
	return readPoints
}

// enter counts a request in flight. Callers hold s.mu.
func (s *Server) enter() {
	s.stats.InFlight++
	s.stats.PeakInFlight = max(s.stats.PeakInFlight, s.stats.InFlight)
}

// leave counts a request out of flight.
func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.InFlight--
}

// admit applies the limits to a request arriving at now (entered already).
// When the request is accepted it uses its points and primary quota, in
// the state of the limits keyed key (see limitKey). Callers hold s.mu.
func (s *Server) admit(now time.Time, method, key string) admission {
	s.reqSeq++
	st := s.limitsFor(key)
	a := admission{id: requestID(s.reqSeq, now), st: st}
	l := &s.opts.Limits
	if l.PrimaryPerHour > 0 && !now.Before(st.primaryEnd) {
		// The first request, or the first after a window ended.
		st.primaryStart = now
		st.primaryEnd = ceilSecond(now.Add(primaryWindow))
		st.primaryUsed = 0
	}
	if l.PointsPerMinute > 0 {
		s.slidePoints(st, now)
	}
	points := cost(method)
	cpuUsed := st.cpu.used(now)
	s.stats.PeakCPU = max(s.stats.PeakCPU, cpuUsed)

	penalty := l.SecondaryPenalty
	if penalty == 0 {
		penalty = defaultPenalty
	}
	if now.Before(st.penaltyUntil) {
		if l.PenaltyExtends {
			st.penaltyUntil = now.Add(penalty)
		}
		a.refusal = s.secondary(st, a.id, st.penaltyUntil.Sub(now))
		return a
	}
	wait := time.Duration(-1)
	switch {
	case l.MaxConcurrent > 0 && s.stats.InFlight > l.MaxConcurrent:
		wait = time.Second
	case l.PointsPerMinute > 0 && st.pointsSum+points > l.PointsPerMinute:
		wait = s.pointsWait(st, now, points)
	case l.CPUPerMinute > 0 && cpuUsed >= l.CPUPerMinute:
		s.stats.CPUViolations++
		wait = st.cpu.wait(now, l.CPUPerMinute)
	default:
		wait = s.contentWait(st, now, method)
	}
	if wait >= 0 {
		if penalty > 0 {
			st.penaltyUntil = now.Add(penalty)
			wait = penalty
		}
		a.refusal = s.secondary(st, a.id, wait)
		return a
	}
	if l.PrimaryPerHour > 0 && st.primaryUsed >= l.PrimaryPerHour {
		s.stats.PrimaryViolations++
		msg := fmt.Sprintf("API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID %s and timestamp %s.",
			a.id, now.UTC().Format("2006-01-02 15:04:05 MST"))
		a.refusal = limitResponse(http.StatusForbidden, msg, rateLimitDocsURL)
		return a
	}

	s.stats.Points += points
	st.cpu.start(now)
	a.arrived, a.resets = now, s.resets
	s.contentAdd(st, now, method)
	if l.PointsPerMinute > 0 {
		st.points = append(st.points, pointsAt{at: now, points: points})
		st.pointsSum += points
	}
	if l.PrimaryPerHour > 0 {
		st.primaryUsed++
		a.primary, a.window = true, st.primaryStart
	}
	return a
}

// slidePoints drops the requests that left the points window, which ends
// at now. Callers hold s.mu.
func (s *Server) slidePoints(st *limitState, now time.Time) {
	cut := now.Add(-pointsWindow)
	n := 0
	for n < len(st.points) && !st.points[n].at.After(cut) {
		st.pointsSum -= st.points[n].points
		n++
	}
	if n > 0 {
		st.points = append(st.points[:0], st.points[n:]...)
	}
}

// pointsWait is how long until the points window, which ends at now, has
// room for points more. Callers hold s.mu.
func (s *Server) pointsWait(st *limitState, now time.Time, points int) time.Duration {
	need := st.pointsSum + points - s.opts.Limits.PointsPerMinute
	for _, p := range st.points {
		need -= p.points
		if need <= 0 {
			return p.at.Add(pointsWindow).Sub(now)
		}
	}
	return pointsWindow // it never fits
}

// secondary builds the secondary answer and counts the violation. wait is
// what Retry-After says, rounded up to whole seconds, at least 1. Callers
// hold s.mu.
func (s *Server) secondary(st *limitState, id string, wait time.Duration) *response {
	l := &s.opts.Limits
	s.stats.SecondaryViolations++
	st.secondarySeq++
	status := l.SecondaryStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	resp := limitResponse(status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID "+id+".",
		secondaryDocsURL)
	omit := l.OmitRetryAfter || (l.OmitRetryAfterEvery > 0 && st.secondarySeq%l.OmitRetryAfterEvery == 0)
	if !omit {
		secs := max(int64((wait+time.Second-1)/time.Second), 1)
		resp.header.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	return resp
}

// limitBody is the body of GitHub's rate limit answers.
type limitBody struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
}

func limitResponse(status int, msg, docs string) *response {
	b, err := json.Marshal(limitBody{Message: msg, DocumentationURL: docs})
	if err != nil {
		return errorResponse(http.StatusInternalServerError, "encoding the response: "+err.Error())
	}
	return &response{status: status, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, body: b}
}

// finish does the accounting of an answer about to be written and adds
// the request id and the primary quota's headers. Callers hold s.mu.
func (s *Server) finish(resp *response, a admission) {
	st := a.st
	if resp.status == http.StatusNotModified {
		s.stats.NotModified++
		if a.primary && st.primaryStart.Equal(a.window) && st.primaryUsed > 0 {
			st.primaryUsed--
		}
	}
	if resp.header == nil {
		resp.header = http.Header{}
	}
	setDefault(resp.header, requestIDHeader, a.id)
	if limit := s.opts.Limits.PrimaryPerHour; limit > 0 {
		remaining := max(limit-st.primaryUsed, 0)
		setDefault(resp.header, "X-Ratelimit-Limit", strconv.Itoa(limit))
		setDefault(resp.header, "X-Ratelimit-Remaining", strconv.Itoa(remaining))
		setDefault(resp.header, "X-Ratelimit-Used", strconv.Itoa(limit-remaining))
		setDefault(resp.header, "X-Ratelimit-Reset", strconv.FormatInt(st.primaryEnd.Unix(), 10))
		setDefault(resp.header, "X-Ratelimit-Resource", rateLimitResource)
	}
}

// setDefault sets the header key unless h has it already.
func setDefault(h http.Header, key, value string) {
	if h.Get(key) == "" {
		h.Set(key, value)
	}
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// requestID makes a request id in the shape of GitHub's X-GitHub-Request-Id.
func requestID(seq uint64, now time.Time) string {
	return fmt.Sprintf("E4E4:%04X:%06X:%06X:%08X", seq>>48&0xFFFF, seq>>24&0xFFFFFF, seq&0xFFFFFF, uint32(now.Unix()))
}

// cpuLog is the response time of the accepted requests, GitHub's estimate
// of their CPU time (Limits.CPUPerMinute): those in flight, by their
// count and the sum of their arrivals (after base, the first arrival
// since none was in flight), and those answered within the last minute,
// oldest first.
type cpuLog struct {
	flying   int
	base     time.Time
	arrivals time.Duration
	done     []cpuDone
	doneSum  time.Duration
}

type cpuDone struct {
	at  time.Time // when the answer was written
	dur time.Duration
}

// start counts a request arriving at now in flight.
func (l *cpuLog) start(now time.Time) {
	if l.flying == 0 {
		l.base, l.arrivals = now, 0
	}
	l.flying++
	l.arrivals += now.Sub(l.base)
}

// finish takes a request that arrived at arrived out of flight, answered
// at now.
func (l *cpuLog) finish(arrived, now time.Time) {
	l.flying--
	l.arrivals -= arrived.Sub(l.base)
	d := max(now.Sub(arrived), 0)
	l.done = append(l.done, cpuDone{at: now, dur: d})
	l.doneSum += d
}

// used returns what the requests count at now: the in-flight ones their
// time so far, those answered within the last minute their response time.
func (l *cpuLog) used(now time.Time) time.Duration {
	cut := now.Add(-pointsWindow)
	n := 0
	for n < len(l.done) && !l.done[n].at.After(cut) {
		l.doneSum -= l.done[n].dur
		n++
	}
	if n > 0 {
		l.done = append(l.done[:0], l.done[n:]...)
	}
	return l.doneSum + time.Duration(l.flying)*now.Sub(l.base) - l.arrivals
}

// wait is how long until what the answered requests count falls below
// limit (as if the requests in flight were answered now), at least 1 s.
func (l *cpuLog) wait(now time.Time, limit time.Duration) time.Duration {
	over := l.used(now) - limit
	for _, d := range l.done {
		if over -= d.dur; over < 0 {
			return max(d.at.Add(pointsWindow).Sub(now), time.Second)
		}
	}
	return time.Second
}

// cpuFinish takes an accepted request out of flight once its answer is
// written or its connection dropped.
// A request that arrived before ResetLimits is forgotten.
func (s *Server) cpuFinish(a admission) {
	if a.arrived.IsZero() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.resets == s.resets {
		a.st.cpu.finish(a.arrived, time.Now())
	}
}
