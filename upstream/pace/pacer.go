package pace

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// MaxConcurrent is the most requests GitHub allows in flight at once.
const MaxConcurrent = 100

// Config is how a Pacer paces one credential's requests. Start from
// DefaultConfig and change what differs.
type Config struct {
	// MaxInFlight is the most requests in flight at once, 1 to 100. 0
	// selects 10.
	MaxInFlight int
	// WriteInterval, when positive, serializes mutating requests and
	// starts each at least WriteInterval after the previous one started.
	// 0 neither serializes nor spaces them.
	WriteInterval time.Duration
	// PointsPerMinute is the points budget of GitHub's secondary limit
	// (ReadPoints for GET, HEAD and OPTIONS, WritePoints for others). 0
	// turns it off; otherwise at least WritePoints.
	PointsPerMinute int
	// SecondaryPause is how long a refusal without Retry-After or an
	// exhausted primary quota pauses the credential.
	SecondaryPause time.Duration
	// Observer, when not nil, is told of each admission and hold, for
	// metrics (see Observer).
	Observer Observer
	// WritesPerMinute and WritesPerHour are GitHub's content-creation
	// limits on mutating requests (see DefaultWritesPerMinute); 0 turns
	// each off.
	WritesPerMinute int
	WritesPerHour   int
	// State, when set, is the state this pacer shares with the other
	// replicas of the credential (see State); nil keeps it in memory
	// (MemoryState) when a content budget is on, and otherwise paces
	// from the pacer's own state alone.
	State State
	// MaxQueue, when positive, is the most requests that wait for
	// admission at once; Acquire refuses one more at once with a
	// *ThrottledError of ReasonQueue (queuebound.go). 0: no bound.
	MaxQueue int
	// MaxQueueWait, when positive, is the longest a request waits for
	// admission: one whose estimated start is further off is refused at
	// once, with or without a deadline of its own, and one still queued
	// after it is refused then (queuebound.go). 0: no bound. Neither
	// bound applies to a context made by WithPatience.
	MaxQueueWait time.Duration
	// CPUPerMinute is the budget of response time in any sliding Window,
	// the pacer's estimate of GitHub's limit on CPU time (cputime.go):
	// requests in flight count their time so far, at least what they are
	// expected to take, and completed ones their latency (Report) until
	// Window after their completion. 0 turns it off.
	CPUPerMinute time.Duration
}

// DefaultConfig returns GitHub's guidance for one credential: 10 requests
// in flight, writes one at a time and 1 s apart, 900 points a minute, 80
// writes a minute and 500 an hour, 80 s of response time a minute
// (GitHub's 90 s of CPU time with a margin), a 60 s pause after a
// secondary limit without Retry-After.
func DefaultConfig() Config {
	return Config{MaxInFlight: 10, WriteInterval: time.Second, PointsPerMinute: 900, SecondaryPause: time.Minute,
		WritesPerMinute: DefaultWritesPerMinute, WritesPerHour: DefaultWritesPerHour, CPUPerMinute: DefaultCPUPerMinute}
}

// latencySamples is how many recent latencies the allowance is drawn from.
const latencySamples = 64

// Request is what the pacer needs to know of a request.
type Request struct {
	// Caller is the key of fairness: the calling service ("" is one
	// anonymous caller).
	Caller string
	// Method is the HTTP method; it selects the cost and the write slot.
	Method string
	// Route is the route template, for errors; never a path with values.
	Route string
}

// Stats counts what a Pacer did since New.
type Stats struct {
	// Queued is how many requests wait for admission now.
	Queued int
	// InFlight is how many admitted requests are not done now.
	InFlight int
	// PeakInFlight is the most that were in flight at once.
	PeakInFlight int
	// Requests is how many admitted requests were reported Done.
	Requests int
	// Points is what those cost against the points budget.
	Points int
	// Throttled is how many *ThrottledError Acquire returned.
	Throttled int
	// RateLimited is how many answers were rate-limit refusals.
	RateLimited int
	// PointsUsed is what counts against the points budget now: the
	// points of the requests in flight and of those completed within the
	// last Window (0 when the budget is off).
	PointsUsed int
	// CPUUsed is what counts against the CPU-time budget now: the
	// requests in flight (each its time so far, at least what it is
	// expected to take) and the response times of those completed
	// within the last Window (0 when the budget is off).
	CPUUsed time.Duration
}

// Pacer admits one credential's requests within GitHub's limits. It is
// safe for concurrent use.
type Pacer struct {
	maxInFlight int

	mu        sync.Mutex
	queue     FairQueue[*Permit]
	budget    *Budget
	cpu       cpuBudget
	slot      *WriteSlot
	inFlight  int
	deadlines deadlineHeap // queued permits with a deadline
	lat       latencyWindow
	timer     *time.Timer // wakes the pacer when a wait by the clock ends
	wakeAt    time.Time   // when timer fires; zero when not armed
	stats     Stats
	obs       Observer  // nil: none
	clock     waitClock // how long each lane was held back, by reason
	shared    *shared   // nil: no State
	// probe is the request admitted alone after a pause GitHub gave no
	// length for (Budget.Probing), until its answer; nil: none in flight.
	probe *Permit
	// probeDone is closed when the probe's answer (or its Unsent) clears
	// probe: requests the State holds wait for it (acquireShared).
	probeDone chan struct{}
	// heldShared counts the admitted requests the State holds for a hold
	// of the whole credential (acquireShared): out of the hold, one of
	// them, not a queued request, is the probe.
	heldShared int

	maxQueue     int           // 0: no bound (queuebound.go)
	maxQueueWait time.Duration // 0: no bound
}

// New returns a Pacer for cfg, or why cfg is out of range.
func New(cfg Config) (*Pacer, error) {
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultConfig().MaxInFlight
	}
	switch {
	case cfg.MaxInFlight < 1 || cfg.MaxInFlight > MaxConcurrent:
		return nil, fmt.Errorf("pace: MaxInFlight %d is not between 1 and %d", cfg.MaxInFlight, MaxConcurrent)
	case cfg.WriteInterval < 0:
		return nil, fmt.Errorf("pace: WriteInterval %v is negative", cfg.WriteInterval)
	case cfg.PointsPerMinute < 0 || (cfg.PointsPerMinute > 0 && cfg.PointsPerMinute < WritePoints):
		return nil, fmt.Errorf("pace: PointsPerMinute %d is neither 0 (off) nor at least %d, the cost of one write", cfg.PointsPerMinute, WritePoints)
	case cfg.SecondaryPause < 0:
		return nil, fmt.Errorf("pace: SecondaryPause %v is negative", cfg.SecondaryPause)
	case cfg.WritesPerMinute < 0 || cfg.WritesPerHour < 0:
		return nil, fmt.Errorf("pace: WritesPerMinute %d or WritesPerHour %d is negative", cfg.WritesPerMinute, cfg.WritesPerHour)
	case cfg.MaxQueue < 0 || cfg.MaxQueueWait < 0:
		return nil, fmt.Errorf("pace: MaxQueue %d or MaxQueueWait %v is negative", cfg.MaxQueue, cfg.MaxQueueWait)
	case cfg.CPUPerMinute < 0:
		return nil, fmt.Errorf("pace: CPUPerMinute %v is negative", cfg.CPUPerMinute)
	}
	return &Pacer{
		maxInFlight:  cfg.MaxInFlight,
		budget:       NewBudget(cfg.PointsPerMinute, cfg.SecondaryPause),
		cpu:          cpuBudget{limit: cfg.CPUPerMinute, epoch: time.Now()},
		slot:         NewWriteSlot(cfg.WriteInterval),
		obs:          cfg.Observer,
		shared:       newShared(cfg),
		maxQueue:     cfg.MaxQueue,
		maxQueueWait: cfg.MaxQueueWait,
	}, nil
}

type permitState int

const (
	queued permitState = iota
	admitted
	refused
	finished
)

// A Permit is one admitted request. Report its outcome with Done (or
// Report), or with Unsent when it was never sent; either frees its place.
type Permit struct {
	p        *Pacer
	req      Request
	write    bool
	cost     int
	deadline time.Time // zero when none
	item     Item[*Permit]
	dindex   int // in p.deadlines while queued with a deadline
	// waitBound is whether deadline is MaxQueueWait's, not the caller's.
	waitBound bool
	// cpuIndex is its index among the CPU-time budget's requests in
	// flight (cputime.go); -1: none.
	cpuIndex int32
	ready    chan struct{}
	queuedAt time.Time                 // when Acquire queued it
	waitFrom [numReasons]time.Duration // its lane's waitClock totals then

	// Guarded by p.mu.
	state permitState
	err   *ThrottledError
	// waited and why are how long the request waited for admission and
	// what held its lane back the longest meanwhile (admittedLocked).
	waited     time.Duration
	why        Reason
	admittedAt time.Time // by the pacer's own state

	// The CPU-time budget's (cputime.go): when it started counting (after
	// the pacer's epoch; notGranted until the State grants it) and what it
	// is expected to take.
	cpuStart   time.Duration
	cpuReserve time.Duration

	grant grantState // its claim on the shared State
	// heldShared is whether it is counted in the pacer's heldShared.
	heldShared bool
}

// Waited returns how long the permit's request waited for admission and
// what held its lane back the longest while it waited: the holds
// (ReasonPrimary, ReasonPause, ReasonBackoff), the points budget
// (ReasonBudget), the CPU-time budget (ReasonCPU), the write slot
// (ReasonSpacing) or the places in flight and its turn among other
// callers (ReasonQueue). The reason is 0 when it
// did not wait. The same figures go to the Config's Observer.
func (t *Permit) Waited() (time.Duration, Reason) {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.waited, t.why
}

// Acquire queues r and waits until the pacer admits it. It returns a
// *ThrottledError at once when the pacer can tell that r would not start
// and complete before ctx's deadline, or later when a hold that begins
// while r waits (a pause, the primary quota, a backoff) makes it miss the
// deadline, or when the deadline passes while it waits its turn. It
// returns an error wrapping ctx.Err() when ctx ends first. The returned
// Permit must be given back with Done, Report or Unsent.
func (p *Pacer) Acquire(ctx context.Context, r Request) (*Permit, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pace: %s %s: not sent: %w", r.Method, r.Route, err)
	}
	t := &Permit{p: p, req: r, write: IsWrite(r.Method), cost: Points(r.Method), dindex: -1, cpuIndex: -1, ready: make(chan struct{})}
	t.item = Item[*Permit]{Value: t, Caller: r.Caller, Write: t.write}
	deadline, hasDeadline := ctx.Deadline()
	patient := Patient(ctx)

	p.mu.Lock()
	now := time.Now()
	if !patient {
		if err := p.queueFullLocked(now, t); err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
	if b, ok := p.waitBoundLocked(now, patient, deadline, hasDeadline); ok {
		deadline, hasDeadline, t.waitBound = b, true, true
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, b)
		defer cancel()
	}
	if hasDeadline {
		ahead := 0
		if t.write {
			ahead = p.queue.Ahead(r.Caller, true)
		}
		at, why := p.estimateLocked(now, t, ahead)
		if at.After(now) && at.Add(p.lat.allowance()).After(deadline) {
			err := p.throttledLocked(t, at.Sub(now), why, ahead)
			p.mu.Unlock()
			return nil, err
		}
		t.deadline = deadline
		heap.Push(&p.deadlines, t)
	}
	p.queuedLocked(t, now)
	p.queue.Push(&t.item)
	p.pumpLocked(now)
	p.mu.Unlock()

	idle := idling{idler: idlerOf(ctx)}
	defer idle.done()
	select {
	case <-t.ready: // admitted at once
	default:
		idle.wait()
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		now := time.Now()
		switch t.state {
		case refused:
			return nil, t.err
		case admitted:
			t.state = finished
			p.releaseLocked(t, now, false)
		case queued:
			p.dequeueLocked(t)
			p.pumpLocked(now)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// Never sent: its turn did not come in time.
				ahead := 0
				if t.write {
					ahead = p.queue.Before(&t.item)
				}
				at, why := p.estimateLocked(now, t, ahead)
				retry := at.Sub(now)
				if retry <= 0 {
					retry, why = minRetryAfter, ReasonQueue
				}
				return nil, p.throttledLocked(t, retry, why, ahead)
			}
		}
		return nil, fmt.Errorf("pace: %s %s: not sent: waiting for the pacer: %w", r.Method, r.Route, ctx.Err())
	}
	if t.state == refused {
		return nil, t.err
	}
	sharedWhy, err := p.acquireShared(ctx, t, &idle)
	if err != nil {
		return nil, err
	}
	p.admitted(t, sharedWhy)
	return t, nil
}

// Done reports the answer to the permit's request: its status and header
// (0 and nil when there was none, e.g. a dropped connection) and how long
// it took. It is Report(ParseRateLimit(header, status, time.Now()),
// latency).
func (t *Permit) Done(status int, header http.Header, latency time.Duration) {
	t.Report(ParseRateLimit(header, status, time.Now()), latency)
}

// Report reports the answer to the permit's request as rl (see
// RateLimit.WithMessage for refusals told by GitHub's message) and how
// long it took: it charges the points, takes in the limits, pauses the
// credential on a refusal, and frees the permit's place. Only the first
// Done, Report or Unsent of a permit counts.
func (t *Permit) Report(rl RateLimit, latency time.Duration) {
	p := t.p
	p.reportShared(t, rl, latency)
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.state != admitted {
		return
	}
	t.state = finished
	now := time.Now()
	before, beforeWhy := p.budget.Hold(now)
	p.budget.Done(now, t.cost, rl)
	if p.cpu.on() {
		p.cpu.done(t, now, tookOf(p.cpuStartOf(t), now, latency))
	}
	p.lat.add(latency)
	p.stats.Requests++
	p.stats.Points += t.cost
	if rl.Refused {
		p.stats.RateLimited++
	}
	if p.probe == t {
		// The probe's answer: no refusal lifts the gate; a refusal
		// paused the credential again (Budget.Done). Without an answer
		// (status 0) the next request probes.
		p.clearProbeLocked()
		if !rl.Refused && rl.Status != 0 {
			p.budget.Lifted()
		}
	}
	if until, why := p.budget.Hold(now); until.After(now) && until.After(before) {
		p.holdLocked(now, until, why)
		p.heldLocked(now, before, beforeWhy, until, why)
	}
	p.releaseLocked(t, now, true)
}

// Unsent gives back a permit whose request was never sent (its body could
// not be made): its place, its points and its place in the write spacing
// go to the next request. Only the first Done, Report or Unsent of a
// permit counts.
func (t *Permit) Unsent() {
	p := t.p
	p.unsentShared(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.state != admitted {
		return
	}
	t.state = finished
	p.releaseLocked(t, time.Now(), false)
}

// Backoff holds the credential until until because requests failed (5xx
// answers, dropped connections): nothing is admitted before then, and
// requests whose deadline that makes them miss are refused with
// ReasonBackoff, which Reason.Failure reports. GitHub's own pauses come
// from the answers given to Report.
func (p *Pacer) Backoff(until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	before, beforeWhy := p.budget.Hold(now)
	p.budget.Backoff(until)
	if u, why := p.budget.Hold(now); u.After(now) && u.After(before) {
		p.holdLocked(now, u, why)
		p.heldLocked(now, before, beforeWhy, u, why)
	}
	p.pumpLocked(now)
}

// Hold returns until when the credential is held (paused by GitHub, its
// primary quota used up, or backing off after failures) and why; a zero
// until when it is not held.
func (p *Pacer) Hold() (until time.Time, why Reason) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if until, why = p.budget.Hold(now); !until.After(now) {
		return time.Time{}, 0
	}
	return until, why
}

// Stats returns a snapshot of the pacer's counters.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Queued = p.queue.Len(false) + p.queue.Len(true)
	s.InFlight = p.inFlight
	now := time.Now()
	s.PointsUsed = p.budget.Used(now)
	if p.cpu.on() {
		s.CPUUsed = p.cpu.used(now)
	}
	return s
}

// estimateLocked returns a lower bound on when t, with ahead writes
// queued before it, may start, and what holds it back until then: the
// holds and the points budget, and for a write the slot's next start
// then ahead write intervals. Capacity (MaxInFlight) is not counted.
func (p *Pacer) estimateLocked(now time.Time, t *Permit, ahead int) (time.Time, Reason) {
	at, why := p.budget.Earliest(now, t.cost)
	if p.cpu.on() {
		if cpuAt := p.cpu.earliest(now, p.cpu.reserve(&p.lat)); cpuAt.After(at) {
			at, why = cpuAt, ReasonCPU
		}
	}
	if t.write {
		if w := p.slot.Estimate(at, ahead); w.After(at) {
			at, why = w, ReasonSpacing
		}
	}
	return at, why
}

// throttledLocked returns (and counts) the refusal of t.
func (p *Pacer) throttledLocked(t *Permit, retryAfter time.Duration, why Reason, ahead int) *ThrottledError {
	p.stats.Throttled++
	detail := why.String()
	switch why {
	case ReasonSpacing:
		detail = fmt.Sprintf("writes go one at a time, %v apart, and %d go before it", p.slot.Interval(), ahead)
	case ReasonBudget:
		detail = fmt.Sprintf("the budget of %d points a minute is spent", p.budget.PerMinute())
	case ReasonCPU:
		detail = fmt.Sprintf("the budget of %v of response time a minute (GitHub's limit on CPU time) is spent", p.cpu.limit)
	}
	return p.boundedLocked(t, &ThrottledError{Method: t.req.Method, Route: t.req.Route, RetryAfter: retryAfter, Reason: why, Detail: detail})
}

// holdLocked refuses the queued requests that a hold until until, which
// just began or grew, makes miss their deadline: those whose deadline
// comes before until plus the latency allowance. Each request is refused
// at most once, so this costs O(log n) per request refused.
func (p *Pacer) holdLocked(now, until time.Time, why Reason) {
	limit := until.Add(p.lat.allowance())
	for len(p.deadlines) > 0 && p.deadlines[0].deadline.Before(limit) {
		t := p.deadlines[0]
		p.dequeueLocked(t)
		t.err = p.throttledLocked(t, until.Sub(now), why, 0)
		t.state = refused
		close(t.ready)
	}
}

// dequeueLocked takes a queued t out of the queue.
func (p *Pacer) dequeueLocked(t *Permit) {
	p.queue.Remove(&t.item)
	if t.dindex >= 0 {
		heap.Remove(&p.deadlines, t.dindex)
	}
}

// releaseLocked frees the place of an admitted t, done (completed) or
// unsent, and admits what may go.
func (p *Pacer) releaseLocked(t *Permit, now time.Time, done bool) {
	p.inFlight--
	p.unheldLocked(t)
	if p.probe == t {
		p.clearProbeLocked() // never sent: the next request probes
	}
	if !done {
		p.budget.Unsent(t.cost)
		p.cpu.stop(t)
	}
	if t.write {
		if done {
			p.slot.Done()
		} else {
			p.slot.Unsent()
		}
	}
	p.pumpLocked(now)
}

// pumpLocked admits every queued request that may go now, in turn, and
// arms the timer for the earliest moment by the clock another may. Each
// admission costs O(log n).
func (p *Pacer) pumpLocked(now time.Time) {
	p.clock.accrue(now)
	var wake time.Time
	var readWhy, writeWhy Reason // what holds each lane back when the loop ends
	for p.inFlight < p.maxInFlight && p.queue.Len(false)+p.queue.Len(true) > 0 {
		readWhy, writeWhy = 0, 0
		if until, why := p.budget.Hold(now); until.After(now) {
			wake = until
			readWhy, writeWhy = why, why
			break
		}
		if reset, full := p.budget.PrimaryFull(now); full {
			// An answer to a request in flight pumps again; else the reset.
			wake = reset
			readWhy, writeWhy = ReasonPrimary, ReasonPrimary
			break
		}
		probing := p.budget.Probing(now)
		if probing && (p.probe != nil || p.heldShared > 0) {
			// Out of a pause GitHub gave no length for: the probe's
			// answer, not the clock, says whether the limit still holds.
			// Its answer pumps again. A request the State held is the
			// probe when there is one (acquireShared).
			readWhy, writeWhy = ReasonPause, ReasonPause
			break
		}
		readOK, writeOK := false, false
		var readAt, writeAt time.Time // when each may go by the clock; zero: unknown
		reserve := 0
		// The CPU-time budget holds both lanes alike.
		cpuOK, cpuAt := true, now
		if p.cpu.on() {
			var fits bool
			cpuAt, fits = p.cpu.freeAt(now, p.cpu.reserve(&p.lat))
			cpuOK = fits && !cpuAt.After(now)
		}
		if p.queue.Len(true) > 0 {
			slotAt, busy := p.slot.Next(now)
			pointsAt, ok := p.budget.FreeAt(now, WritePoints)
			if !ok || pointsAt.After(now) {
				// The next write keeps its points: reads must leave them.
				reserve = WritePoints
			}
			writeOK = !busy && ok && !slotAt.After(now) && !pointsAt.After(now)
			if !writeOK && !busy && ok {
				writeAt = later(slotAt, pointsAt)
			}
			if !writeOK {
				writeWhy = ReasonBudget
				if busy || (ok && slotAt.After(now) && !slotAt.Before(pointsAt)) {
					writeWhy = ReasonSpacing
				}
			}
			writeOK, writeAt, writeWhy = cpuGate(writeOK, writeAt, writeWhy, cpuOK, cpuAt)
		}
		if p.queue.Len(false) > 0 {
			at, ok := p.budget.FreeAt(now, ReadPoints+reserve)
			readOK = ok && !at.After(now)
			if !readOK && ok {
				readAt = at
			}
			if !readOK {
				readWhy = ReasonBudget
			}
			readOK, readAt, readWhy = cpuGate(readOK, readAt, readWhy, cpuOK, cpuAt)
		}
		it := p.queue.Pop(readOK, writeOK)
		if it == nil {
			wake = earliest(readAt, writeAt)
			break
		}
		if probing {
			p.setProbeLocked(it.Value)
		}
		p.admitLocked(it.Value, now)
	}
	p.blockedLocked(readWhy, writeWhy)
	p.armLocked(now, wake)
}

// setProbeLocked makes t the probe (Budget.Probing).
func (p *Pacer) setProbeLocked(t *Permit) {
	p.probe, p.probeDone = t, make(chan struct{})
}

// clearProbeLocked records the probe's answer, or that it was never sent,
// and wakes the requests that wait for it in acquireShared.
func (p *Pacer) clearProbeLocked() {
	close(p.probeDone)
	p.probe, p.probeDone = nil, nil
}

func (p *Pacer) admitLocked(t *Permit, now time.Time) {
	if t.dindex >= 0 {
		heap.Remove(&p.deadlines, t.dindex)
	}
	p.inFlight++
	p.stats.PeakInFlight = max(p.stats.PeakInFlight, p.inFlight)
	p.budget.Start(t.cost)
	if p.cpu.on() {
		start := now.Sub(p.cpu.epoch)
		if p.shared != nil {
			start = notGranted // from the State's grant (admitted)
		}
		p.cpu.start(t, start, p.cpu.reserve(&p.lat))
	}
	if t.write {
		p.slot.Start(now)
	}
	t.state = admitted
	p.admittedLocked(t, now)
	close(t.ready)
}

// armLocked makes sure the pacer wakes at wake (zero: no wake by the clock
// is needed). One timer serves: a wake earlier than the armed one resets
// it; a later one is armed when the timer fires and the pump finds it.
func (p *Pacer) armLocked(now, wake time.Time) {
	if wake.IsZero() || (!p.wakeAt.IsZero() && !wake.Before(p.wakeAt)) {
		return
	}
	p.wakeAt = wake
	if p.timer == nil {
		p.timer = time.AfterFunc(wake.Sub(now), p.wake)
		return
	}
	p.timer.Reset(wake.Sub(now))
}

func (p *Pacer) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wakeAt = time.Time{}
	p.pumpLocked(time.Now())
}

// cpuGate applies the CPU-time budget to a lane that the other limits
// let go now (ok) or at at (zero: at an event) for why: cpuOK is whether
// the budget lets a request go now, else it frees at cpuAt (zero: when
// requests in flight complete). A lane the budget holds longer waits for
// it, for ReasonCPU.
func cpuGate(ok bool, at time.Time, why Reason, cpuOK bool, cpuAt time.Time) (bool, time.Time, Reason) {
	switch {
	case cpuOK:
	case ok:
		return false, cpuAt, ReasonCPU
	case !at.IsZero() && (cpuAt.IsZero() || cpuAt.After(at)):
		// The lane would go at by the clock: it waits for the budget.
		return false, cpuAt, ReasonCPU
	}
	return ok, at, why
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// earliest returns the earlier of two times, a zero time standing for
// none.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// latencyWindow keeps the latencies of the last latencySamples requests
// and their 90th percentile, the allowance a request needs after its
// start to complete before its deadline.
type latencyWindow struct {
	samples [latencySamples]time.Duration
	n, next int
	p90     time.Duration
	stale   bool
	// max is the longest sample, stale when longestStale.
	max          time.Duration
	longestStale bool
}

func (w *latencyWindow) add(d time.Duration) {
	d = max(d, 0)
	if old := w.samples[w.next]; w.n == latencySamples && old >= w.max {
		w.longestStale = true // the longest leaves: find the next
	}
	w.samples[w.next] = d
	w.next = (w.next + 1) % latencySamples
	w.n = min(w.n+1, latencySamples)
	w.stale = true
	if !w.longestStale {
		w.max = max(w.max, d)
	}
}

// longest returns the longest of the recent latencies; 0 before any.
func (w *latencyWindow) longest() time.Duration {
	if w.longestStale {
		w.max = 0
		for _, d := range w.samples[:w.n] {
			w.max = max(w.max, d)
		}
		w.longestStale = false
	}
	return w.max
}

// allowance returns the 90th percentile of the recent latencies; 0
// before any.
func (w *latencyWindow) allowance() time.Duration {
	if w.stale {
		var s [latencySamples]time.Duration
		sorted := s[:w.n]
		copy(sorted, w.samples[:w.n])
		slices.Sort(sorted)
		w.p90 = sorted[(w.n*9+9)/10-1] // the ceil(0.9n)-th smallest
		w.stale = false
	}
	return w.p90
}

// deadlineHeap orders queued permits by deadline.
type deadlineHeap []*Permit

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].dindex = i
	h[j].dindex = j
}
func (h *deadlineHeap) Push(x any) {
	t := x.(*Permit)
	t.dindex = len(*h)
	*h = append(*h, t)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.dindex = -1
	*h = old[:len(old)-1]
	return t
}
