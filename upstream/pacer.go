package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/secretbroker/secretbroker/upstream/clock"
)

// GitHub's published limits for the REST API.
const (
	// maxConcurrent is the most requests GitHub allows in flight at once.
	maxConcurrent = 100
	// pointsWindow is the span of GitHub's secondary points budget.
	pointsWindow = time.Minute
	// readPoints is what GET, HEAD and OPTIONS cost against the budget.
	readPoints = 1
	// writePoints is what POST, PATCH, PUT and DELETE cost.
	writePoints = 5
)

// minRetryAfter is the least ThrottledError.RetryAfter: a request refused
// when it could go by the clock but waited behind others for a slot.
const minRetryAfter = time.Second

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
}

// DefaultPacing returns GitHub's guidance for one credential: 10 requests
// in flight, writes one at a time and 1 s apart, 900 points a minute, 5
// attempts with a backoff from 1 s to 60 s, and a 60 s pause after a
// secondary rate limit without retry-after.
func DefaultPacing() Pacing {
	return Pacing{
		MaxInFlight:     10,
		WriteInterval:   time.Second,
		PointsPerMinute: 900,
		MaxAttempts:     5,
		BackoffBase:     time.Second,
		BackoffMax:      time.Minute,
		SecondaryPause:  time.Minute,
	}
}

// Bounds of Pacing's fields, checked by Validate.
const (
	// MaxInFlightLimit is the most MaxInFlight may be: GitHub allows 100
	// concurrent requests.
	MaxInFlightLimit = maxConcurrent
	// MinPointsPerMinute is the least PointsPerMinute other than 0 (off):
	// the cost of one write.
	MinPointsPerMinute = writePoints
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

// PacerStats counts what a Client's pacer did since New.
type PacerStats struct {
	// Requests is how many requests were sent to GitHub, retries included.
	Requests int
	// Retries is how many of those were retries.
	Retries int
	// Points is what the sent requests cost against the points budget.
	Points int
	// InFlight is how many requests are in flight now.
	InFlight int
	// PeakInFlight is the most requests that were in flight at once.
	PeakInFlight int
	// Throttled is how many *ThrottledError the client returned.
	Throttled int
	// RateLimited is how many rate-limit answers GitHub sent.
	RateLimited int
}

// PacerStats returns a snapshot of the pacer's counters.
func (c *Client) PacerStats() PacerStats {
	c.pacer.mu.Lock()
	defer c.pacer.mu.Unlock()
	return c.pacer.stats
}

// callerKey is the context key of WithCaller.
type callerKey struct{}

// WithCaller returns a context whose requests the pacer queues as
// caller's: the key of the calling service, for fairness between callers
// ("" is one anonymous caller). The pacer keeps one FIFO queue per caller
// and serves the queues in turn, so that one caller's long batch does not
// hold up another caller's single request.
func WithCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// isWrite reports whether method is a mutating method, which GitHub
// charges 5 points and asks to send one at a time.
func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// pacer admits one credential's requests. It keeps one queue per caller,
// served in turn whenever a request may go: when capacity frees (a request
// completes), when time passes (a timer armed for the earliest moment a
// waiting request may go) or when a request is queued. A caller's queue is
// FIFO within each kind (reads, writes); a read may pass its caller's
// writes that wait for their slot, as it may pass other callers', but a
// write never passes an earlier write. Only the pacer's state is guarded
// by mu; no lock is held across a network call or a wait.
type pacer struct {
	cfg Pacing
	clk clock.Clock

	mu             sync.Mutex
	inFlight       int
	writesInFlight int
	inFlightPoints int       // points of requests in flight
	lastWrite      time.Time // when the last mutating request was dispatched
	window         pointsLog // points of completed requests
	pauseUntil     time.Time // a pause GitHub imposed on the credential
	pauseReason    string
	primary        primaryLimit
	queues         map[string]*callerQueue // only callers with waiting requests
	queued         int
	seq            uint64 // admission counter, in steps of 2
	lastCaller     string // the caller admitted last
	queuesMade     uint64
	ticketsMade    uint64
	wakeAt         time.Time
	wakeStop       chan struct{} // closes the armed timer's goroutine
	stats          PacerStats
}

func newPacer(cfg Pacing, clk clock.Clock) *pacer {
	return &pacer{cfg: cfg, clk: clk, queues: map[string]*callerQueue{}}
}

// A callerQueue is one caller's waiting requests: reads and writes, each
// oldest first.
type callerQueue struct {
	name   string
	reads  []*ticket
	writes []*ticket
	served uint64 // seq of the caller's last admission
	made   uint64 // breaks ties of served: the older queue first
}

// lane returns the tickets of t's kind.
func (q *callerQueue) lane(t *ticket) *[]*ticket {
	if t.write {
		return &q.writes
	}
	return &q.reads
}

// heads returns the oldest read and the oldest write, the older first.
func (q *callerQueue) heads() []*ticket {
	switch {
	case len(q.reads) == 0:
		return q.writes[:1]
	case len(q.writes) == 0:
		return q.reads[:1]
	case q.writes[0].made < q.reads[0].made:
		return []*ticket{q.writes[0], q.reads[0]}
	default:
		return []*ticket{q.reads[0], q.writes[0]}
	}
}

type ticketState int

const (
	queued ticketState = iota
	admitted
	refused
)

// A ticket is one attempt of one request, from the queue to completion.
type ticket struct {
	caller        string
	method, route string
	write         bool
	cost          int
	deadline      time.Time // on the pacer's clock; zero when none
	made          uint64    // queueing order

	ready chan struct{} // closed when admitted or refused

	// Guarded by pacer.mu.
	state         ticketState
	err           *ThrottledError // when refused
	admittedAt    time.Time
	prevLastWrite time.Time // restored when an admitted write is not sent
}

// acquire queues one attempt of a request and waits until the pacer admits
// it. It returns a *ThrottledError when the pacer can tell the request
// cannot go before ctx's deadline, and an error wrapping ctx.Err() when
// ctx is cancelled first. An admitted ticket must be handed to finish or
// unsend.
func (p *pacer) acquire(ctx context.Context, method, route string) (*ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("github: %s %s: not sent: %w", method, route, err)
	}
	t := &ticket{
		caller: callerOf(ctx),
		method: method,
		route:  route,
		write:  isWrite(method),
		cost:   readPoints,
		ready:  make(chan struct{}),
	}
	if t.write {
		t.cost = writePoints
	}
	if d, ok := clock.Deadline(p.clk, ctx); ok {
		t.deadline = d
	}

	p.mu.Lock()
	p.enqueueLocked(t)
	p.pumpLocked(p.clk.Now())
	p.mu.Unlock()

	select {
	case <-t.ready:
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		now := p.clk.Now()
		switch t.state {
		case refused:
			return nil, t.err
		case admitted:
			p.unsendLocked(t, now)
		case queued:
			q := p.queues[t.caller]
			at, why := p.estimateLocked(t, q, slices.Index(q.writes, t), p.baseLocked(t.cost, now))
			p.removeLocked(q, t)
			p.pumpLocked(now)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// Never sent: the budget did not let it through in time.
				return nil, p.throttledLocked(t, at, now, cmp.Or(why.String(), "the requests ahead of it took the time left"))
			}
		}
		return nil, fmt.Errorf("github: %s %s: not sent: waiting for the pacer: %w", method, route, ctx.Err())
	}
	if t.state == refused {
		return nil, t.err
	}
	return t, nil
}

// finish records the completion of an admitted ticket: h is the answer's
// header (nil when there was none) and limited reports a rate-limit
// answer, which pauses the credential. It returns how long the
// credential's pause still lasts.
func (p *pacer) finish(t *ticket, h http.Header, limited bool) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clk.Now()
	p.releaseLocked(t)
	if p.cfg.PointsPerMinute > 0 {
		p.window.add(now, t.cost)
	}
	p.stats.Requests++
	p.stats.Points += t.cost
	if h != nil {
		p.primary.update(h, now)
	}
	if limited {
		p.stats.RateLimited++
		d, reason := pauseFor(h, now, p.cfg.SecondaryPause)
		if until := now.Add(d); until.After(p.pauseUntil) {
			p.pauseUntil, p.pauseReason = until, reason
		}
	}
	p.pumpLocked(now)
	return max(p.pauseUntil.Sub(now), 0)
}

// unsend returns an admitted ticket that was never sent: its slot, its
// points and its place in the write spacing go to the next request.
func (p *pacer) unsend(t *ticket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unsendLocked(t, p.clk.Now())
}

func (p *pacer) unsendLocked(t *ticket, now time.Time) {
	p.releaseLocked(t)
	if t.write && p.lastWrite.Equal(t.admittedAt) {
		p.lastWrite = t.prevLastWrite
	}
	p.pumpLocked(now)
}

func (p *pacer) releaseLocked(t *ticket) {
	p.inFlight--
	p.inFlightPoints -= t.cost
	if t.write {
		p.writesInFlight--
	}
	p.stats.InFlight = p.inFlight
}

// retried counts a retry.
func (p *pacer) retried() {
	p.mu.Lock()
	p.stats.Retries++
	p.mu.Unlock()
}

// throttled counts a ThrottledError the client returns without queueing.
func (p *pacer) throttled() {
	p.mu.Lock()
	p.stats.Throttled++
	p.mu.Unlock()
}

// pauseLeft returns how long the credential's pause still lasts.
func (p *pacer) pauseLeft() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.pauseUntil.Sub(p.clk.Now()), 0)
}

func (p *pacer) enqueueLocked(t *ticket) {
	q := p.queues[t.caller]
	if q == nil {
		// A caller with nothing queued joins the round behind the callers
		// waiting for their turn and ahead of the one served last, unless
		// it is the one served last.
		p.queuesMade++
		q = &callerQueue{name: t.caller, made: p.queuesMade}
		switch {
		case p.seq == 0:
		case t.caller == p.lastCaller:
			q.served = p.seq
		default:
			q.served = p.seq - 1
		}
		p.queues[t.caller] = q
	}
	p.ticketsMade++
	t.made = p.ticketsMade
	l := q.lane(t)
	*l = append(*l, t)
	p.queued++
}

// removeLocked takes a queued ticket out of its queue.
func (p *pacer) removeLocked(q *callerQueue, t *ticket) {
	l := q.lane(t)
	i := slices.Index(*l, t)
	if i < 0 {
		return
	}
	*l = slices.Delete(*l, i, i+1)
	p.queued--
	if len(q.reads) == 0 && len(q.writes) == 0 {
		delete(p.queues, q.name)
	}
}

// pumpLocked admits every request that may go now, in turn, refuses the
// queued requests that can no longer go before their deadline, and arms a
// timer for the earliest moment another may go.
func (p *pacer) pumpLocked(now time.Time) {
	p.window.prune(now)
	var wake time.Time
	for {
		for {
			q, t, w := p.pickLocked(now)
			if t == nil {
				wake = w
				break
			}
			p.admitLocked(q, t, now)
		}
		if !p.expireLocked(now) {
			break
		}
		// A refused ticket may have held back others.
	}
	p.armLocked(now, wake)
}

// pickLocked returns the request that goes next and its queue: of the
// heads that may go now, one of the caller served least recently (round
// robin over the callers with waiting requests, skipping those whose
// heads must wait), its older head first. A head kept back by the points
// budget reserves its points, so that a stream of cheap reads cannot
// starve it. When no head may go, it returns the earliest time one may by
// the clock (zero when they all wait for requests in flight to complete).
func (p *pacer) pickLocked(now time.Time) (*callerQueue, *ticket, time.Time) {
	if p.queued == 0 || p.inFlight >= p.cfg.MaxInFlight {
		return nil, nil, time.Time{}
	}
	order := make([]*callerQueue, 0, len(p.queues))
	for _, q := range p.queues {
		order = append(order, q)
	}
	slices.SortFunc(order, func(a, b *callerQueue) int {
		return cmp.Or(cmp.Compare(a.served, b.served), cmp.Compare(a.made, b.made))
	})
	var wake time.Time
	reserved := 0
	for _, q := range order {
		for _, t := range q.heads() {
			at, waits, short := p.evalLocked(t, now, reserved)
			if !waits && !at.After(now) {
				return q, t, time.Time{}
			}
			if short {
				reserved += t.cost
			}
			if !waits && (wake.IsZero() || at.Before(wake)) {
				wake = at
			}
		}
	}
	return nil, nil, wake
}

// evalLocked returns the earliest time t may go by the clock, with
// reserved points set aside for requests ahead of it; waits reports that
// it must also wait for a request in flight to complete, short that the
// points budget holds it back.
func (p *pacer) evalLocked(t *ticket, now time.Time, reserved int) (at time.Time, waits, short bool) {
	at = now
	if p.pauseUntil.After(at) {
		at = p.pauseUntil
	}
	if r, ok := p.primary.blockedUntil(now); ok && r.After(at) {
		at = r
	}
	if iv := p.cfg.WriteInterval; t.write && iv > 0 {
		if p.writesInFlight > 0 {
			waits = true
		}
		if next := p.lastWrite.Add(iv); !p.lastWrite.IsZero() && next.After(at) {
			at = next
		}
	}
	if p.cfg.PointsPerMinute > 0 {
		free, inFlight := p.pointsFreeLocked(now, t.cost+reserved)
		switch {
		case inFlight:
			waits, short = true, true
		case free.After(now):
			short = true
			if free.After(at) {
				at = free
			}
		}
	}
	return at, waits, short
}

// pointsFreeLocked returns when cost more points fit in the budget as far
// as completed requests go; inFlight reports that they fit only after
// requests in flight complete (and their points leave the window).
func (p *pacer) pointsFreeLocked(now time.Time, cost int) (free time.Time, inFlight bool) {
	need := p.inFlightPoints + p.window.sum + cost - p.cfg.PointsPerMinute
	if need <= 0 {
		return now, false
	}
	for _, e := range p.window.live() {
		if need -= e.points; need <= 0 {
			return e.at.Add(pointsWindow + 1), false
		}
	}
	return time.Time{}, true
}

func (p *pacer) admitLocked(q *callerQueue, t *ticket, now time.Time) {
	p.removeLocked(q, t)
	p.seq += 2
	q.served = p.seq // q may be gone from the map; see enqueueLocked
	p.lastCaller = q.name
	p.inFlight++
	p.inFlightPoints += t.cost
	if t.write {
		p.writesInFlight++
		t.prevLastWrite = p.lastWrite
		p.lastWrite = now
	}
	p.stats.InFlight = p.inFlight
	p.stats.PeakInFlight = max(p.stats.PeakInFlight, p.inFlight)
	t.admittedAt = now
	t.state = admitted
	close(t.ready)
}

// expireLocked refuses the queued requests whose earliest possible start
// is after their deadline, and reports whether it refused any.
func (p *pacer) expireLocked(now time.Time) bool {
	var gone []*ticket
	bases := map[int]estimate{}
	for _, q := range p.queues {
		for _, l := range [][]*ticket{q.reads, q.writes} {
			k := 0 // writes ahead in q
			for _, t := range l {
				if !t.deadline.IsZero() {
					base, ok := bases[t.cost]
					if !ok {
						base = p.baseLocked(t.cost, now)
						bases[t.cost] = base
					}
					if at, why := p.estimateLocked(t, q, k, base); at.After(t.deadline) {
						t.err = p.throttledLocked(t, at, now, why.String())
						gone = append(gone, t)
						continue
					}
				}
				if t.write {
					k++
				}
			}
		}
	}
	for _, t := range gone {
		p.removeLocked(p.queues[t.caller], t)
		t.state = refused
		close(t.ready)
	}
	return len(gone) > 0
}

// throttledLocked returns (and counts) the error for a request that
// cannot go before its deadline; at is its earliest possible start.
func (p *pacer) throttledLocked(t *ticket, at, now time.Time, reason string) *ThrottledError {
	p.stats.Throttled++
	retryAfter := at.Sub(now)
	if retryAfter <= 0 {
		retryAfter = minRetryAfter
	}
	return &ThrottledError{
		Method:     t.method,
		Route:      t.route,
		RetryAfter: retryAfter,
		Reason:     reason,
	}
}

// An estimate is the earliest time a request may start and what holds it
// back until then ("" when nothing does).
type estimate struct {
	at     time.Time
	reason string
}

// baseLocked returns when, at the earliest, a request of cost points may
// start as far as a pause, the primary limit and the points budget go.
func (p *pacer) baseLocked(cost int, now time.Time) estimate {
	e := estimate{at: now}
	if p.pauseUntil.After(e.at) {
		e = estimate{p.pauseUntil, p.pauseReason}
	}
	if r, ok := p.primary.blockedUntil(now); ok && r.After(e.at) {
		e = estimate{r, "GitHub's primary rate limit is used up until it resets"}
	}
	if p.cfg.PointsPerMinute > 0 {
		free, inFlight := p.pointsFreeLocked(now, cost)
		if inFlight {
			free = now.Add(pointsWindow) // they complete no earlier than now
		}
		if free.After(e.at) {
			e = estimate{free, fmt.Sprintf("the budget of %d points a minute is spent", p.cfg.PointsPerMinute)}
		}
	}
	return e
}

// estimateLocked returns a lower bound on when queued ticket t can start,
// and what holds it back: base (from baseLocked for t's cost) and, for a
// write, the write spacing times the writes that go before it in
// round-robin order (k is the number of writes ahead of it in its own
// queue q).
func (p *pacer) estimateLocked(t *ticket, q *callerQueue, k int, base estimate) (time.Time, holdup) {
	at, why := base.at, holdup{reason: base.reason}
	iv := p.cfg.WriteInterval
	if iv <= 0 || !t.write {
		return at, why
	}
	// In round robin every other caller sends a write per turn: as many
	// as the k of q's that go first, one more when its turn comes before
	// q's.
	ahead := k
	for _, o := range p.queues {
		if o == q || len(o.writes) == 0 {
			continue
		}
		n := k
		if o.served < q.served || (o.served == q.served && o.made < q.made) {
			n++
		}
		ahead += min(len(o.writes), n)
	}
	start := at
	if next := p.lastWrite.Add(iv); !p.lastWrite.IsZero() && next.After(start) {
		start = next
	}
	if w := start.Add(time.Duration(ahead) * iv); w.After(at) {
		at = w
		why = holdup{spacing: iv, writesAhead: ahead}
	}
	return at, why
}

// A holdup is what keeps a queued request back. It is formatted only when
// the request is refused: estimates run for every queued request whenever
// the pacer's state changes.
type holdup struct {
	reason      string        // a pause, the primary limit or the points budget
	spacing     time.Duration // when positive, the write spacing holds it back
	writesAhead int           // the writes that go before it
}

func (h holdup) String() string {
	if h.spacing > 0 {
		return fmt.Sprintf("writes go one at a time, %v apart, and %d go before it", h.spacing, h.writesAhead)
	}
	return h.reason
}

// armLocked makes sure the pacer wakes at wake (zero: no wake needed)
// while requests are queued. One goroutine at most waits on the clock.
func (p *pacer) armLocked(now, wake time.Time) {
	if wake.IsZero() || p.queued == 0 {
		p.disarmLocked()
		return
	}
	if p.wakeStop != nil && !p.wakeAt.After(wake) {
		return // an earlier wake-up is armed; it arms the next
	}
	p.disarmLocked()
	stop := make(chan struct{})
	p.wakeAt, p.wakeStop = wake, stop
	tm := p.clk.NewTimer(wake.Sub(now))
	go func() {
		select {
		case <-tm.C:
		case <-stop:
			tm.Stop()
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.wakeStop == stop {
			p.wakeStop, p.wakeAt = nil, time.Time{}
		}
		p.pumpLocked(p.clk.Now())
	}()
}

func (p *pacer) disarmLocked() {
	if p.wakeStop != nil {
		close(p.wakeStop)
		p.wakeStop, p.wakeAt = nil, time.Time{}
	}
}

// pointsLog is a sliding-window log of the points of completed requests,
// in completion order (which is time order: events are added under the
// pacer's lock with the clock's reading, which never goes backwards).
//
// A log, not a token bucket: a bucket of burst b refilled at r points a
// second lets b + 60r points through in some 60 s window, so to never
// exceed the budget it would have to run well below it. The log admits a
// request only if the points of the requests in flight, plus those of the
// requests completed within the last 60 s, plus its own fit the budget:
// any 60 s window at the server then sees at most the budget, whatever
// the network delay, since a request reaches the server between its
// dispatch and its completion.
type pointsLog struct {
	events []pointsEvent
	head   int // events[:head] have left the window
	sum    int // points of events[head:]
}

type pointsEvent struct {
	at     time.Time
	points int
}

func (l *pointsLog) add(at time.Time, points int) {
	l.events = append(l.events, pointsEvent{at, points})
	l.sum += points
}

// prune drops the events more than a window before now.
func (l *pointsLog) prune(now time.Time) {
	for l.head < len(l.events) && now.Sub(l.events[l.head].at) > pointsWindow {
		l.sum -= l.events[l.head].points
		l.head++
	}
	if l.head > 64 && l.head*2 > len(l.events) {
		l.events = append(l.events[:0], l.events[l.head:]...)
		l.head = 0
	}
}

// live returns the events in the window, oldest first.
func (l *pointsLog) live() []pointsEvent { return l.events[l.head:] }

// primaryLimit is GitHub's primary quota as its answers last reported it.
type primaryLimit struct {
	known     bool
	remaining int
	reset     time.Time
}

// update takes in an answer's x-ratelimit-remaining and x-ratelimit-reset.
// Answers may arrive out of order: within one window the lowest remaining
// wins, and a later window replaces an earlier one.
func (l *primaryLimit) update(h http.Header, now time.Time) {
	remaining, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Remaining")))
	if err != nil || remaining < 0 {
		return
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil || secs <= 0 {
		return
	}
	reset := time.Unix(secs, 0)
	switch {
	case !reset.After(now):
		// A window that is over says nothing of the current one.
	case !l.known || reset.After(l.reset):
		l.known, l.remaining, l.reset = true, remaining, reset
	case reset.Equal(l.reset):
		l.remaining = min(l.remaining, remaining)
	}
}

// blockedUntil returns the reset when the quota is used up.
func (l primaryLimit) blockedUntil(now time.Time) (time.Time, bool) {
	if l.known && l.remaining <= 0 && l.reset.After(now) {
		return l.reset, true
	}
	return time.Time{}, false
}

// pauseFor returns how long the credential pauses after a rate-limit
// answer with header h, following GitHub's guidance: retry-after when
// present; else, when x-ratelimit-remaining is 0, until x-ratelimit-reset;
// else secondary.
func pauseFor(h http.Header, now time.Time, secondary time.Duration) (time.Duration, string) {
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		return d, "GitHub's rate limit paused the credential (retry-after)"
	}
	if strings.TrimSpace(h.Get("X-Ratelimit-Remaining")) == "0" {
		secs, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 10, 64)
		if reset := time.Unix(secs, 0); err == nil && reset.After(now) {
			return reset.Sub(now), "GitHub's primary rate limit is used up until it resets"
		}
	}
	return secondary, "GitHub's secondary rate limit paused the credential"
}
