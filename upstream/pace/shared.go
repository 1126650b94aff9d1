package pace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// shared is a Pacer's side of its State: a request the pacer admitted by
// its own state must also be granted by the State (which the other
// replicas share) before it is sent. The pacer's own state keeps its
// queue fair and its estimates; the State keeps the replicas together.
type shared struct {
	state  State
	lim    StateLimits
	prefix string // this pacer's grant ids: unique among replicas
	seq    atomic.Uint64
}

type grantState struct {
	id      string      // "" before acquireShared
	granted atomic.Bool // Start said OK, and neither Done nor Unsent was told
}

// grantOf returns t's Grant (the rest of it is t's own: its points,
// whether it is a write, what it is expected to take).
func grantOf(t *Permit) Grant {
	return Grant{ID: t.grant.id, Cost: t.cost, Write: t.write, CPU: t.cpuReserve}
}

// newShared returns the shared side for cfg; nil when cfg has no State
// and no content budget (the pacer's own state is all there is).
func newShared(cfg Config) *shared {
	lim := StateLimits{
		PointsPerMinute: cfg.PointsPerMinute,
		WriteInterval:   cfg.WriteInterval,
		WritesPerMinute: cfg.WritesPerMinute,
		WritesPerHour:   cfg.WritesPerHour,
		SecondaryPause:  cfg.SecondaryPause,
		MaxInFlight:     MaxConcurrent,
		CPUPerMinute:    cfg.CPUPerMinute,
	}
	st := cfg.State
	if st == nil {
		if cfg.WritesPerMinute == 0 && cfg.WritesPerHour == 0 {
			return nil
		}
		st = NewMemoryState(lim)
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return &shared{state: st, lim: lim, prefix: hex.EncodeToString(b[:]) + "-"}
}

// acquireShared waits until the State grants the admitted t, refusing it
// (and giving its place back) when the grant would come after ctx's
// deadline or ctx ends first. It returns what the State held t back for
// last, 0 when it granted t at once. While it waits, t is idle (idle). A
// hold of the whole credential the State tells of (Verdict.Held) holds the
// pacer's own queue too: the requests after t wait for it there, not in
// places in flight. Out of a pause GitHub gave no length for
// (Budget.Probing), t waits for the probe's answer like the queued
// requests, or becomes the probe when none is out (probeGate); the State
// then has the last word, one probe across the replicas (sharedProbe).
func (p *Pacer) acquireShared(ctx context.Context, t *Permit, idle *idling) (Reason, error) {
	sh := p.shared
	if sh == nil {
		return 0, nil
	}
	var why Reason
	t.grant.id = sh.prefix + strconv.FormatUint(sh.seq.Add(1), 36)
	g := grantOf(t)
	deadline, hasDeadline := ctx.Deadline()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		for {
			done := p.probeGate(t)
			if done == nil {
				break
			}
			why = ReasonPause
			idle.wait()
			select {
			case <-done:
			case <-ctx.Done():
				t.Unsent()
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return 0, p.refuseShared(t, minRetryAfter, ReasonPause)
				}
				return 0, fmt.Errorf("pace: %s %s: not sent: waiting for the pacer: %w", t.req.Method, t.req.Route, ctx.Err())
			}
		}
		now := time.Now()
		v := sh.state.Start(ctx, now, g)
		if v.OK {
			t.grant.granted.Store(true)
		}
		p.sharedProbe(t, v)
		if v.OK {
			return why, nil
		}
		why = v.Why
		if v.Held {
			p.takeHold(now, t, v.At, v.Why)
		}
		wait := max(v.At.Sub(now), time.Millisecond)
		if hasDeadline {
			p.mu.Lock()
			late := now.Add(wait).Add(p.lat.allowance()).After(deadline)
			p.mu.Unlock()
			if late {
				t.Unsent()
				return 0, p.refuseShared(t, wait, v.Why)
			}
		}
		idle.wait()
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			t.Unsent()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, p.refuseShared(t, max(time.Until(v.At), minRetryAfter), v.Why)
			}
			return 0, fmt.Errorf("pace: %s %s: not sent: waiting for the pacer: %w", t.req.Method, t.req.Route, ctx.Err())
		}
	}
}

// probeGate returns what t, admitted and about to ask the State, must
// wait for: nil when it may ask now, else a channel closed at the probe's
// answer. Out of a pause GitHub gave no length for, t becomes the probe
// when none is out, and otherwise waits: the pump admitted it before the
// pacer learned of the pause, and the State, which ended the pause, would
// let it go with the others into a limit that may still hold.
func (p *Pacer) probeGate(t *Permit) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unheldLocked(t)
	switch {
	case p.probe == t || !p.budget.Probing(time.Now()):
		return nil
	case p.probe == nil:
		p.setProbeLocked(t)
		return nil
	}
	return p.probeDone
}

// sharedProbe takes in what the State's verdict v on t says of the probe
// (Verdict.Probe), so that the replicas sharing the State send one probe
// between them. A probe of the State's, t's own (granted) or another
// grant's (t waits), makes this pacer probe too: t becomes its probe, and
// the requests this pacer admits after it wait for t's answer (probeGate)
// rather than ask the State each. A grant without a probe says that none
// is needed (another replica's probe was answered, or GitHub said how
// long the pause lasts): this pacer's own probing ends, and the requests
// that waited for its probe go.
func (p *Pacer) sharedProbe(t *Permit, v Verdict) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case v.Probe:
		p.budget.AwaitProbe()
		if p.probe == t || (!v.OK && p.probe != nil) {
			return
		}
		if p.probe != nil {
			// t, not this pacer's probe, got the State's role: the
			// requests that wait for the other go to wait for t.
			p.clearProbeLocked()
		}
		p.setProbeLocked(t)
	case v.OK && p.budget.probe:
		p.budget.Lifted()
		if p.probe != nil {
			p.clearProbeLocked() // t too goes as any request
		}
		p.pumpLocked(time.Now())
	}
}

// unheldLocked takes t out of the count of requests the State holds.
func (p *Pacer) unheldLocked(t *Permit) {
	if t.heldShared {
		t.heldShared = false
		p.heldShared--
	}
}

// takeHold holds the pacer's own queue until until for why, a hold of the
// whole credential the State told of at now and holds t for: the queued
// requests wait for it (or are refused now when it makes them miss their
// deadline), as for a pause this pacer heard itself.
func (p *Pacer) takeHold(now time.Time, t *Permit, until time.Time, why Reason) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !t.heldShared {
		t.heldShared = true
		p.heldShared++
	}
	before, beforeWhy := p.budget.Hold(now)
	p.budget.Take(until, why)
	if u, w := p.budget.Hold(now); u.After(now) && u.After(before) {
		p.holdLocked(now, u, w)
		p.heldLocked(now, before, beforeWhy, u, w)
	}
	p.pumpLocked(now)
}

// refuseShared returns (and counts) the refusal of t by the State.
func (p *Pacer) refuseShared(t *Permit, retry time.Duration, why Reason) *ThrottledError {
	lim := p.shared.lim
	detail := why.String()
	switch why {
	case ReasonContent:
		detail = fmt.Sprintf("GitHub's content-creation limit of %d writes a minute and %d an hour is spent", lim.WritesPerMinute, lim.WritesPerHour)
	case ReasonBudget:
		detail = fmt.Sprintf("the budget of %d points a minute, shared by the replicas, is spent", lim.PointsPerMinute)
	case ReasonSpacing:
		detail = fmt.Sprintf("writes go one at a time, %v apart, across the replicas", lim.WriteInterval)
	case ReasonPrimary:
		detail = "GitHub's primary rate limit is used up, or the requests in flight on the replicas may use up what is left of it"
	case ReasonQueue:
		detail = fmt.Sprintf("GitHub's limit of %d requests in flight at once, shared by the replicas, is reached", lim.MaxInFlight)
	case ReasonCPU:
		detail = fmt.Sprintf("the budget of %v of response time a minute (GitHub's limit on CPU time), shared by the replicas, is spent", lim.CPUPerMinute)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Throttled++
	return p.boundedLocked(t, &ThrottledError{Method: t.req.Method, Route: t.req.Route, RetryAfter: max(retry, time.Millisecond), Reason: why, Detail: detail})
}

// reportShared tells the State that t's request completed with rl after
// latency (see tookOf). A
// refusal that says nothing of how long to wait reaches the State with
// the pause this pacer takes for it (escalated after refusals in a row,
// Budget) as Grant.Pause: the State would pause every replica for
// SecondaryPause alone, and the requests this pacer admitted and the
// State holds, the other replicas' too, would go before this pacer's
// own pause ends, into a secondary limit that still holds.
func (p *Pacer) reportShared(t *Permit, rl RateLimit, latency time.Duration) {
	if p.shared != nil && t.grant.granted.CompareAndSwap(true, false) {
		now := time.Now()
		g := grantOf(t)
		start := t.admittedAt
		if p.cpu.on() {
			start = p.cpuStartOf(t) // the State's grant
		}
		g.Took = tookOf(start, now, latency)
		if rl.Refused && !rl.Hinted(now) {
			p.mu.Lock()
			g.Pause = p.budget.unhintedPause(now)
			p.mu.Unlock()
		}
		p.shared.state.Done(context.Background(), now, g, rl)
	}
}

// unsentShared tells the State that t's request was never sent.
func (p *Pacer) unsentShared(t *Permit) {
	if p.shared != nil && t.grant.granted.CompareAndSwap(true, false) {
		p.shared.state.Unsent(context.Background(), time.Now(), grantOf(t))
	}
}
