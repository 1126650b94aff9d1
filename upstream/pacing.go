package upstream

import (
	"context"
	"fmt"
	"time"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Pacing is how a Client spreads its requests over time so that it stays
// within GitHub's rate limits for one credential, and how it retries. The
// zero value of a field is not its default (except MaxInFlight); start
// from DefaultPacing and change what differs.
type Pacing struct {
	// MaxInFlight is the most requests in flight at once, 1 to 100 (GitHub
	// allows 100 concurrent requests). 0 selects 10.
	MaxInFlight int
	// WriteInterval, when positive, serializes mutating requests (PUT,
	// POST, PATCH, DELETE): at most one is in flight, and each starts at
	// least WriteInterval after the previous mutating request started, as
	// GitHub asks. 0 neither spaces nor serializes them (GitHub Enterprise
	// Server with rate limits turned off).
	WriteInterval time.Duration
	// PointsPerMinute is the budget of GitHub's secondary rate limit: GET,
	// HEAD and OPTIONS cost 1 point, other methods 5. No sliding 60 s
	// window at the server ever sees more, whatever the network delay: a
	// request's points count from when it is dispatched until 60 s after
	// it completed. 0 turns the budget off; otherwise at least 5.
	PointsPerMinute int
	// MaxAttempts is how many times one request is tried in all, the first
	// try included: 1 to MaxAttemptsLimit. Rate-limit answers, 500, 502,
	// 503, 504 and dropped connections are retried; other answers are not.
	MaxAttempts int
	// BackoffBase is the first retry's backoff ceiling; it doubles with
	// every further attempt up to BackoffMax. The wait is drawn uniformly
	// below the ceiling (full jitter) and is never shorter than a pause
	// GitHub imposed on the credential.
	BackoffBase time.Duration
	// BackoffMax caps the backoff ceiling; at least BackoffBase.
	BackoffMax time.Duration
	// SecondaryPause is how long the credential pauses after a rate-limit
	// answer that carries neither retry-after nor x-ratelimit-remaining: 0
	// (GitHub asks for at least a minute).
	SecondaryPause time.Duration
	// WritesPerMinute and WritesPerHour are GitHub's content-creation
	// limits ("no more than 80 content-generating requests per minute and
	// no more than 500 per hour"), applied to every mutating request: no
	// sliding minute or hour at GitHub sees more. 0 turns each off.
	WritesPerMinute int
	WritesPerHour   int
	// MaxQueue, when positive, is the most requests that wait for the
	// pacer at once per credential; one more is refused at once with a
	// *ThrottledError. 0 (DefaultPacing) is no bound.
	MaxQueue int
	// MaxQueueWait, when positive, is the longest a request waits for the
	// pacer: one it estimates would wait longer is refused at once with a
	// *ThrottledError, whether or not its context has a deadline, and one
	// still waiting after it is refused then. 0 (DefaultPacing) is no
	// bound. Neither bound applies to a context made by WithoutQueueLimit.
	MaxQueueWait time.Duration
	// CPUPerMinute is the budget of response time in any sliding 60 s
	// window, for GitHub's secondary limit of 90 s of CPU time per 60 s,
	// which GitHub says response time roughly estimates: a request in
	// flight counts its time so far (at least the longest of the recent
	// response times, 10 s before any), a completed one its response time
	// until 60 s after it completed, and a request is sent only while
	// what counts, its own expected time included, fits. 0 turns it off.
	CPUPerMinute time.Duration
}

// DefaultPacing returns GitHub's guidance for one credential: 10 requests
// in flight, writes one at a time and 1 s apart, 900 points a minute, 80
// writes a minute and 500 an hour, 80 s of response time a minute
// (GitHub's 90 s of CPU time, with a margin), 5 attempts with a backoff
// from 1 s to 60 s, and a 60 s pause after a secondary rate limit without
// retry-after.
func DefaultPacing() Pacing {
	return Pacing{
		MaxInFlight:     10,
		WriteInterval:   time.Second,
		PointsPerMinute: 900,
		MaxAttempts:     5,
		BackoffBase:     time.Second,
		BackoffMax:      time.Minute,
		SecondaryPause:  time.Minute,
		WritesPerMinute: pace.DefaultWritesPerMinute,
		WritesPerHour:   pace.DefaultWritesPerHour,
		CPUPerMinute:    pace.DefaultCPUPerMinute,
	}
}

// Bounds of Pacing's fields, checked by Validate.
const (
	// MaxInFlightLimit is the most MaxInFlight may be: GitHub allows 100
	// concurrent requests.
	MaxInFlightLimit = pace.MaxConcurrent
	// MinPointsPerMinute is the least PointsPerMinute other than 0 (off):
	// the cost of one write.
	MinPointsPerMinute = pace.WritePoints
	// MaxAttemptsLimit is the most MaxAttempts may be. It bounds how long
	// one request keeps retrying: with the default backoff, the 19 waits
	// between 20 tries are drawn below ceilings that add up to 14 minutes.
	MaxAttemptsLimit = 20
)

// PacingError is why a Pacing is not usable: the first field, in the
// order of Pacing's fields, that breaks its rule. Field and Rule let a
// caller that sets the fields from elsewhere (flags, a file) name its own
// setting: "--upstream-max-in-flight " + Rule.
type PacingError struct {
	// Field is the Pacing field's name, for example "MaxInFlight".
	Field string
	// Value is the field's value, an int or a time.Duration.
	Value any
	// Rule is what the field must be, phrased to follow the field's name:
	// "must be between 1 and 100, GitHub's limit on concurrent requests".
	Rule string
}

// Error is "upstream: pacing: FIELD RULE; got VALUE".
func (e *PacingError) Error() string {
	return fmt.Sprintf("upstream: pacing: %s %s; got %v", e.Field, e.Rule, e.Value)
}

// Validate reports whether p is usable as it is: nil, or a *PacingError.
// It fills in no default, so a MaxInFlight of 0, which New replaces with
// DefaultPacing's, is out of range here. This is the one statement of
// Pacing's rules; New applies it after filling MaxInFlight in.
func (p Pacing) Validate() error {
	bad := func(field string, value any, rule string) error {
		return &PacingError{Field: field, Value: value, Rule: rule}
	}
	switch {
	case p.MaxInFlight < 1 || p.MaxInFlight > MaxInFlightLimit:
		return bad("MaxInFlight", p.MaxInFlight,
			fmt.Sprintf("must be between 1 and %d, GitHub's limit on concurrent requests", MaxInFlightLimit))
	case p.WriteInterval < 0:
		return bad("WriteInterval", p.WriteInterval, "must not be negative")
	case p.PointsPerMinute < 0 || (p.PointsPerMinute > 0 && p.PointsPerMinute < MinPointsPerMinute):
		return bad("PointsPerMinute", p.PointsPerMinute,
			fmt.Sprintf("must be 0 (off) or at least %d, the cost of one write", MinPointsPerMinute))
	case p.MaxAttempts < 1 || p.MaxAttempts > MaxAttemptsLimit:
		return bad("MaxAttempts", p.MaxAttempts, fmt.Sprintf("must be between 1 and %d", MaxAttemptsLimit))
	case p.BackoffBase < 0:
		return bad("BackoffBase", p.BackoffBase, "must not be negative")
	case p.BackoffMax < p.BackoffBase:
		return bad("BackoffMax", p.BackoffMax, fmt.Sprintf("must be at least BackoffBase (%v)", p.BackoffBase))
	case p.SecondaryPause < 0:
		return bad("SecondaryPause", p.SecondaryPause, "must not be negative")
	case p.WritesPerMinute < 0:
		return bad("WritesPerMinute", p.WritesPerMinute, "must be 0 (off) or positive")
	case p.WritesPerHour < 0:
		return bad("WritesPerHour", p.WritesPerHour, "must be 0 (off) or positive")
	case p.MaxQueue < 0:
		return bad("MaxQueue", p.MaxQueue, "must be 0 (no bound) or positive")
	case p.MaxQueueWait < 0:
		return bad("MaxQueueWait", p.MaxQueueWait, "must be 0 (no bound) or positive")
	case p.CPUPerMinute < 0:
		return bad("CPUPerMinute", p.CPUPerMinute, "must be 0 (off) or positive")
	}
	return nil
}

// normalized returns p with defaults filled in, or why p is not usable.
func (p Pacing) normalized() (Pacing, error) {
	if p.MaxInFlight == 0 {
		p.MaxInFlight = DefaultPacing().MaxInFlight
	}
	return p, p.Validate()
}

// config is the part of p that paces, for upstream/pace; MaxAttempts and
// the backoff stay with the Client's retry loop.
func (p Pacing) config() pace.Config {
	return pace.Config{
		MaxInFlight:     p.MaxInFlight,
		WriteInterval:   p.WriteInterval,
		PointsPerMinute: p.PointsPerMinute,
		SecondaryPause:  p.SecondaryPause,
		WritesPerMinute: p.WritesPerMinute,
		WritesPerHour:   p.WritesPerHour,
		MaxQueue:        p.MaxQueue,
		MaxQueueWait:    p.MaxQueueWait,
		CPUPerMinute:    p.CPUPerMinute,
	}
}

// PacerStats counts what a Client's pacer did since New.
type PacerStats struct {
	// Requests is how many requests were sent to GitHub, retries included.
	Requests int
	// Retries is how many of those were retries.
	Retries int
	// Points is what the sent requests cost against the points budget.
	Points int
	// Queued is how many requests wait for the pacer now.
	Queued int
	// InFlight is how many requests are in flight now.
	InFlight int
	// PeakInFlight is the most requests that were in flight at once.
	PeakInFlight int
	// Throttled is how many *ThrottledError the client returned.
	Throttled int
	// RateLimited is how many rate-limit answers GitHub sent.
	RateLimited int
}

// PacerStats returns a snapshot of the pacers' counters, added up over
// the credentials (PeakInFlight is the largest of theirs); PacerStatsOf
// tells one credential's.
func (c *Client) PacerStats() PacerStats {
	out := PacerStats{Retries: int(c.retries.Load()), Throttled: int(c.throttled.Load())}
	for _, st := range c.creds.all() {
		s := st.pacer.Stats()
		out.Requests += s.Requests
		out.Points += s.Points
		out.Queued += s.Queued
		out.InFlight += s.InFlight
		out.PeakInFlight = max(out.PeakInFlight, s.PeakInFlight)
		out.RateLimited += s.RateLimited
	}
	return out
}

// callerKey is the context key of WithCaller.
type callerKey struct{}

// WithCaller returns a context whose requests the pacer queues as
// caller's (pace.Request.Caller): the key of the calling service, for
// fairness between callers ("" is one anonymous caller). The pacer keeps a
// FIFO read lane and write lane per caller and serves the callers in
// turn, so that one caller's long batch does not hold up another caller's
// single request.
func WithCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// WithoutQueueLimit returns a context whose requests the pacer never
// refuses for its queue bounds (Pacing.MaxQueue and MaxQueueWait): they
// wait their turn however long, bounded only by ctx's own deadline. The
// service's long-running operations (background syncs and batches, which
// wait for GitHub's content budget for minutes or hours on purpose) run
// with it; a caller's RPC never should.
func WithoutQueueLimit(ctx context.Context) context.Context {
	return pace.WithPatience(ctx)
}

// An Idler is told when a request stops working to wait for the pacer and
// when the wait ends (pace.Idler).
type Idler = pace.Idler

// WithIdler returns a context whose requests tell idler when they wait for
// the pacer: the front door's bound on calls at work leaves waiting calls
// out.
func WithIdler(ctx context.Context, idler Idler) context.Context {
	return pace.WithIdler(ctx, idler)
}

// admitCheckKey is the context key of an admit check (WithAdmitCheck).
type admitCheckKey struct{}

// WithAdmitCheck returns a context whose writes (every request but a GET)
// call check once the pacer admits them, before anything is sent (on each
// attempt): an error from it ends the request unsent, its place, points
// and write slot given back, and is returned as it is. A long-running operation's item uses it
// to ask again, after what may be a long wait for GitHub's budget,
// whether its caller may still do what it is about to do.
func WithAdmitCheck(ctx context.Context, check func(context.Context) error) context.Context {
	return context.WithValue(ctx, admitCheckKey{}, check)
}

// admitCheck runs ctx's admit check, if it has one.
func admitCheck(ctx context.Context) error {
	if check, ok := ctx.Value(admitCheckKey{}).(func(context.Context) error); ok && check != nil {
		return check(ctx)
	}
	return nil
}

func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// CallerOf returns the caller WithCaller gave ctx ("" for none): the
// pacer's fairness key, which for an unauthenticated call the front door
// makes its client's address.
func CallerOf(ctx context.Context) string { return callerOf(ctx) }
