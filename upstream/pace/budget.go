package pace

import (
	"net/http"
	"time"
)

// GitHub's points for its secondary rate limit, over a sliding window.
const (
	// ReadPoints is what GET, HEAD and OPTIONS cost.
	ReadPoints = 1
	// WritePoints is what other methods (POST, PATCH, PUT, DELETE) cost.
	WritePoints = 5
	// Window is the span of the points budget.
	Window = time.Minute
)

// IsWrite reports whether method is a mutating method: one that costs
// WritePoints and goes through the WriteSlot.
func IsWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Points returns what a request with method costs against the budget.
func Points(method string) int {
	if IsWrite(method) {
		return WritePoints
	}
	return ReadPoints
}

// Budget is what GitHub's limits allow one credential, as far as its
// answers tell:
//
//   - the points budget of the secondary limit, a sliding-window log: a
//     request's points count from its dispatch (Start) until Window after
//     it completed (Done). A request may start only if the points in
//     flight, plus those completed within the last Window, plus its own,
//     fit PointsPerMinute; then no Window at GitHub ever sees more,
//     whatever the network delay, since a request reaches GitHub between
//     its dispatch and its completion. (A token bucket of burst b and
//     rate r lets b + 60r through in some window; it would have to run
//     below the budget.)
//   - the primary quota: an answer with x-ratelimit-remaining 0 holds
//     every request until x-ratelimit-reset (RateLimit.Resume: plus
//     ResetMargin for the clocks' difference). Answers may arrive out of
//     order: within one window the lowest remaining wins, a later window
//     replaces an earlier one.
//   - pauses: a refusal (RateLimit.Refused) pauses the credential for
//     Retry-After, else until the reset when remaining is 0, else
//     SecondaryPause.
//   - backoff: the caller's retry loop holds the credential after
//     failures (Backoff).
//
// Times are passed in; a Budget reads no clock. It is not safe for
// concurrent use.
type Budget struct {
	perMinute      int // 0: no points budget
	secondaryPause time.Duration

	inFlight int // points of requests started and not done
	requests int // requests started and not done
	log      windowLog[int]

	primaryKnown     bool
	primaryRemaining int
	primaryReset     time.Time

	pauseUntil   time.Time
	pauseReason  Reason
	backoffUntil time.Time
	// takenUntil and takenReason are a hold the shared State told of
	// (Take): another replica's pause, the primary quota used up.
	takenUntil  time.Time
	takenReason Reason
	// probe is whether the pause that holds or held the credential is
	// one GitHub said nothing of how long it lasts (a refusal without
	// Retry-After, or a pause another replica heard: Take), and no probe's
	// answer has said since that the limit is lifted (Lifted). Once such a
	// pause is over the pacer sends one request, the probe, and holds the
	// others until its answer (Probing).
	probe bool
	// refusals counts the refusals in a row that said nothing of how
	// long to wait, one per incident (refusals while paused are the same
	// one): each doubles the next such pause (escalated).
	refusals int
}

// MaxSecondaryDoublings bounds how far refusals in a row double the
// secondary pause: with GitHub's suggested minute, 1, 2, 4, 8 and at most
// 16 minutes.
const MaxSecondaryDoublings = 4

// EscalatedPause is the pause after the refusals-th refusal in a row that
// says nothing of how long to wait (one per incident): secondary, doubled
// for each such incident before it, at most MaxSecondaryDoublings times.
func EscalatedPause(secondary time.Duration, refusals int) time.Duration {
	return secondary << min(max(refusals-1, 0), MaxSecondaryDoublings)
}

// NewBudget returns a Budget of pointsPerMinute (0: no points budget) that
// pauses for secondaryPause after a refusal without a hint, twice as long
// after each more such incident in a row (GitHub: "wait for an
// exponentially increasing amount of time between retries"), until, once
// a pause is over, an answer that is not a refusal.
func NewBudget(pointsPerMinute int, secondaryPause time.Duration) *Budget {
	return &Budget{perMinute: pointsPerMinute, secondaryPause: secondaryPause}
}

// Start charges a dispatched request's cost.
func (b *Budget) Start(cost int) { b.inFlight += cost; b.requests++ }

// Unsent refunds a started request that was never sent.
func (b *Budget) Unsent(cost int) { b.inFlight -= cost; b.requests-- }

// PrimaryFull reports whether the requests in flight may use up what is
// left of GitHub's primary quota as last reported (x-ratelimit-remaining
// above 0, each request in flight counted against it: their answers, not
// yet in, will say what is left), and the quota's reset. Nothing more may
// start until one of them is answered or the window resets. A quota used
// up (remaining 0) is Hold's.
func (b *Budget) PrimaryFull(now time.Time) (reset time.Time, full bool) {
	if !b.primaryKnown || !b.primaryReset.After(now) || b.primaryRemaining <= 0 {
		return time.Time{}, false
	}
	return b.primaryReset, b.requests >= b.primaryRemaining
}

// SameReset is how far apart two answers' resets may be and still be of
// one window of the primary quota. GitHub's windows are an hour apart (the
// next begins with the first request after a reset), but one window's
// reset, read on this clock, moves from answer to answer: read against
// Date (ParseRateLimit, once an answer's Date is more than maxClockSkew
// from this clock when it arrives) it moves with how long the answer was
// on its way after GitHub dated it, up to the request's timeout, and by a
// second for Date's whole seconds. Budget and every State take answers
// this close as one window: the least remaining, the latest reset.
const SameReset = 5 * time.Minute

// Done records a started request's completion at now, and what GitHub's
// answer said of the limits (a zero RateLimit when there was no answer).
func (b *Budget) Done(now time.Time, cost int, rl RateLimit) {
	b.inFlight -= cost
	b.requests--
	if b.perMinute > 0 {
		b.log.add(now, cost)
	}
	// The window's reset, as far as this pacer goes: when it has surely
	// reset by GitHub's clock too.
	if reset := rl.Resume(); rl.Remaining >= 0 && !reset.IsZero() {
		switch {
		case !reset.After(now):
			// A window that is over says nothing of the current one.
		case !b.primaryKnown || reset.After(b.primaryReset.Add(SameReset)):
			b.primaryKnown, b.primaryRemaining, b.primaryReset = true, rl.Remaining, reset
		case !reset.Before(b.primaryReset.Add(-SameReset)):
			// The same window (a clock read against Date may name its
			// reset a second apart): the least left, the latest reset.
			b.primaryRemaining = min(b.primaryRemaining, rl.Remaining)
			b.primaryReset = later(b.primaryReset, reset)
		}
	}
	switch {
	case rl.Refused:
		if !rl.Hinted(now) && !b.pauseUntil.After(now) {
			// A pause GitHub gave no length for, the first of its
			// incident: the answers to requests in flight with it,
			// refused too, are the same incident and do not count again.
			b.refusals++
		}
		d, why := rl.Pause(now, b.escalated())
		if until := now.Add(d); until.After(b.pauseUntil) {
			// The pause that ends last says whether to probe: GitHub
			// said when a hinted one ends.
			b.pauseUntil, b.pauseReason = until, why
			b.probe = !rl.Hinted(now)
		}
	case rl.Status != 0 && !b.pauseUntil.After(now):
		// An answer that is no refusal, once the pause is over: an answer
		// to a request sent before the pause is no sign it has passed.
		b.refusals = 0
	}
}

// escalated is the pause after a refusal that says nothing of how long to
// wait: secondaryPause, doubled for each such incident in a row before
// this one.
func (b *Budget) escalated() time.Duration {
	return EscalatedPause(b.secondaryPause, b.refusals)
}

// unhintedPause returns how long Done at now would pause the credential
// for a refusal that says nothing of how long to wait: the escalated
// pause, the refusal counting as a new incident unless a pause is
// running.
func (b *Budget) unhintedPause(now time.Time) time.Duration {
	n := b.refusals
	if !b.pauseUntil.After(now) {
		n++
	}
	return EscalatedPause(b.secondaryPause, n)
}

// Backoff holds the credential until until after failed requests; an
// earlier until than a backoff in place changes nothing.
func (b *Budget) Backoff(until time.Time) {
	if until.After(b.backoffUntil) {
		b.backoffUntil = until
	}
}

// Take holds the credential until until for why, a hold of the whole
// credential that the shared State told of (Verdict.Held: a pause another
// replica heard, the primary quota used up), so that the pacer's own
// queue waits for it too. An earlier until than a hold taken changes
// nothing. Unlike an answer's pause, it does not count as a refusal of
// this pacer's (the escalation of pauses without a hint).
//
// A pause taken that ends more than takenProbeMargin after this pacer's
// own pause is one another replica heard: the pacer probes after it
// (Probing), as after a pause of its own without a hint, so that one of
// its requests asks the State first; the State's answer to that request
// says whether the pause needs a probe (Verdict.Probe: the request goes
// as the one probe of every replica, or waits for another's), or not (the
// others go at once: AwaitProbe, Lifted).
func (b *Budget) Take(until time.Time, why Reason) {
	if until.After(b.takenUntil) {
		b.takenUntil, b.takenReason = until, why
		if why == ReasonPause && until.After(b.pauseUntil.Add(takenProbeMargin)) {
			b.probe = true
		}
	}
}

// takenProbeMargin is how much later than this pacer's own pause a pause
// taken from the State (Take) must end to be another replica's: the
// State's copy of the pacer's own pause ends at most a clock reading and
// a millisecond's rounding apart from it.
const takenProbeMargin = time.Second

// Probing reports whether, at now, the credential is out of a pause
// GitHub gave no length for and no answer has yet shown the limit lifted:
// one request at a time may go, the probe, whose answer decides (Lifted,
// or a refusal's next pause). It is false while anything holds the
// credential (Hold).
func (b *Budget) Probing(now time.Time) bool {
	if !b.probe {
		return false
	}
	until, _ := b.Hold(now)
	return !until.After(now)
}

// AwaitProbe records that the credential is out of a pause GitHub gave no
// length for, or will be once the holds end, and that no probe's answer
// has shown the limit lifted, as the shared State tells (Verdict.Probe):
// Probing until Lifted.
func (b *Budget) AwaitProbe() { b.probe = true }

// Lifted records that a probe's answer was no rate-limit refusal: the
// limit is lifted, every request may go.
func (b *Budget) Lifted() { b.probe = false }

// Hold returns until when nothing may start, and why; a zero until (or
// one not after now) when nothing holds the credential.
func (b *Budget) Hold(now time.Time) (until time.Time, why Reason) {
	if b.pauseUntil.After(now) {
		until, why = b.pauseUntil, b.pauseReason
	}
	if b.takenUntil.After(now) && b.takenUntil.After(until) {
		until, why = b.takenUntil, b.takenReason
	}
	if b.primaryKnown && b.primaryRemaining <= 0 && b.primaryReset.After(now) && b.primaryReset.After(until) {
		until, why = b.primaryReset, ReasonPrimary
	}
	if b.backoffUntil.After(now) && b.backoffUntil.After(until) {
		until, why = b.backoffUntil, ReasonBackoff
	}
	return until, why
}

// FreeAt returns when, as far as the points budget goes, cost more points
// fit: now or later, when completed requests leave the window. ok is
// false when they fit only after requests in flight complete (or never,
// for a cost above the budget).
func (b *Budget) FreeAt(now time.Time, cost int) (at time.Time, ok bool) {
	if b.perMinute <= 0 {
		return now, true
	}
	b.log.prune(now)
	need := b.inFlight + b.log.sum + cost - b.perMinute
	if need <= 0 {
		return now, true
	}
	return b.log.freeAt(need)
}

// Earliest returns a lower bound on when a request of cost may start, as
// far as holds and the points budget go, and what holds it until then
// (0 when nothing does). Points that wait for requests in flight are
// taken to free a Window from now.
func (b *Budget) Earliest(now time.Time, cost int) (time.Time, Reason) {
	at, why := now, Reason(0)
	if until, r := b.Hold(now); until.After(at) {
		at, why = until, r
	}
	free, ok := b.FreeAt(now, cost)
	if !ok {
		free = now.Add(Window)
	}
	if free.After(at) {
		at, why = free, ReasonBudget
	}
	return at, why
}

// PerMinute returns the points budget; 0 when off.
func (b *Budget) PerMinute() int { return b.perMinute }

// Used returns the points that count against the budget at now: those of
// the requests in flight and of those completed within the last Window; 0
// when the budget is off.
func (b *Budget) Used(now time.Time) int {
	if b.perMinute <= 0 {
		return 0
	}
	b.log.prune(now)
	return b.inFlight + b.log.sum
}
