package pace

import (
	"context"
	"fmt"
	"time"
)

// GitHub's content-creation limits: "no more than 80 content-generating
// requests per minute and no more than 500 per hour". GitHub does not say
// whether secret writes count; a public report (secrets-sync-action#11)
// suggests they do, so the pacer counts every mutating request (IsWrite).
const (
	// DefaultWritesPerMinute is github.com's content-creation limit a minute.
	DefaultWritesPerMinute = 80
	// DefaultWritesPerHour is github.com's content-creation limit an hour.
	DefaultWritesPerHour = 500
	// WritesHour is the span of the hourly content budget.
	WritesHour = time.Hour
)

// InFlightLease is how long a request started and not yet reported counts
// as in flight in a State: its points and writes count until InFlightLease
// after its start, or until the window after its completion once reported.
// It bounds what a replica that died mid-request keeps holding; requests
// last at most the upstream client's 30 s timeout.
const InFlightLease = 2 * time.Minute

// InFlightCounted is how long after its start a request not yet reported
// counts against the primary quota left (the bound on requests in flight
// on every replica): the upstream client's 30 s timeout and a margin. A
// request of a replica that died mid-request stops holding that bound
// then, well before its InFlightLease ends; and a completion stamped by a
// replica whose clock runs ahead is not taken for a request in flight
// unless its clock is InFlightLease - InFlightCounted ahead.
const InFlightCounted = 40 * time.Second

// ProbeLease is how long a State keeps the probe's role (Verdict.Probe)
// for the grant it gave it, when neither its answer nor its Unsent comes:
// the upstream client's 30 s timeout and a margin, as InFlightCounted. A
// live replica's probe is answered, or times out and is reported, within
// it, so no second probe goes while the first may still reach GitHub; a
// replica that died mid-probe holds the other replicas' requests at most
// this long after its probe started.
const ProbeLease = InFlightCounted

// StateLimits are the limits a State enforces for one credential, shared
// by every replica that uses it.
type StateLimits struct {
	// PointsPerMinute is the points budget of GitHub's secondary limit
	// (Points per request, over a sliding Window); 0 turns it off.
	PointsPerMinute int
	// WriteInterval, when positive, serializes the mutating requests of
	// every replica (one write slot) and starts each at least
	// WriteInterval after the previous one started.
	WriteInterval time.Duration
	// WriteLease is how long the write slot stays taken without being
	// renewed: a replica that dies holding it blocks the others at most
	// this long. 0 selects 3 × WriteInterval (at least 1 s).
	WriteLease time.Duration
	// WritesPerMinute and WritesPerHour are GitHub's content-creation
	// limits, counted over mutating requests in sliding windows of a
	// minute and an hour; 0 turns each off.
	WritesPerMinute int
	WritesPerHour   int
	// SecondaryPause is how long a refusal without Retry-After pauses the
	// credential.
	SecondaryPause time.Duration
	// MaxInFlight, when positive, is the most requests in flight at once
	// on every replica together: GitHub's limit on concurrent requests
	// (MaxConcurrent) is the credential's, not a replica's. It counts the
	// requests granted and not yet done that started within
	// InFlightCounted, as the bound on the primary quota left does; a
	// request past it waits (ReasonQueue). 0 turns it off.
	MaxInFlight int
	// Replicas, above 1, is how many replicas share the primary quota
	// while they do not share this State (a replica's local budget, Share):
	// this one keeps at most remaining/Replicas requests in flight.
	Replicas int
	// CPUPerMinute is the budget of response time in any sliding Window
	// (Config.CPUPerMinute): a request in flight counts the longer of its
	// time so far (at most InFlightCounted: a dead replica's requests stop
	// growing then) and what it was expected to take (Grant.CPU), and a
	// completed one what it took (Grant.Took) until Window after its
	// completion. 0 turns it off.
	CPUPerMinute time.Duration
}

// Lease returns WriteLease, or its default.
func (l StateLimits) Lease() time.Duration {
	if l.WriteLease > 0 {
		return l.WriteLease
	}
	return max(3*l.WriteInterval, time.Second)
}

// Validate reports whether l is usable.
func (l StateLimits) Validate() error {
	switch {
	case l.PointsPerMinute < 0 || (l.PointsPerMinute > 0 && l.PointsPerMinute < WritePoints):
		return fmt.Errorf("pace: PointsPerMinute %d is neither 0 (off) nor at least %d", l.PointsPerMinute, WritePoints)
	case l.WriteInterval < 0:
		return fmt.Errorf("pace: WriteInterval %v is negative", l.WriteInterval)
	case l.WriteLease < 0:
		return fmt.Errorf("pace: WriteLease %v is negative", l.WriteLease)
	case l.WritesPerMinute < 0:
		return fmt.Errorf("pace: WritesPerMinute %d is negative", l.WritesPerMinute)
	case l.WritesPerHour < 0:
		return fmt.Errorf("pace: WritesPerHour %d is negative", l.WritesPerHour)
	case l.SecondaryPause < 0:
		return fmt.Errorf("pace: SecondaryPause %v is negative", l.SecondaryPause)
	case l.MaxInFlight < 0:
		return fmt.Errorf("pace: MaxInFlight %d is negative", l.MaxInFlight)
	case l.CPUPerMinute < 0:
		return fmt.Errorf("pace: CPUPerMinute %v is negative", l.CPUPerMinute)
	}
	return nil
}

// Share returns l as one of n replicas' conservative share of it: the
// budgets divided by n (rounded down, at least one request's worth; the
// CPU-time budget at least a second) and
// the write spacing multiplied by n, the requests in flight divided by n,
// so that n replicas each within its
// share stay within l together.
func (l StateLimits) Share(n int) StateLimits {
	if n <= 1 {
		return l
	}
	div := func(v, least int) int {
		if v <= 0 {
			return v
		}
		return max(v/n, least)
	}
	l.PointsPerMinute = div(l.PointsPerMinute, WritePoints)
	l.WritesPerMinute = div(l.WritesPerMinute, 1)
	l.WritesPerHour = div(l.WritesPerHour, 1)
	l.MaxInFlight = div(l.MaxInFlight, 1)
	if l.CPUPerMinute > 0 {
		l.CPUPerMinute = max(l.CPUPerMinute/time.Duration(n), time.Second)
	}
	l.WriteInterval *= time.Duration(n)
	l.WriteLease *= time.Duration(n)
	l.Replicas = n
	return l
}

// A Grant is one request's claim on a State: its id (unique among every
// replica's grants), its points and whether it is a write, and for the
// CPU-time budget (StateLimits.CPUPerMinute) what it is expected to take
// and, once done, what it took.
type Grant struct {
	ID    string
	Cost  int
	Write bool
	// CPU is the response time the request is expected to take at most
	// (the pacer's reserve): while in flight it counts at least that.
	CPU time.Duration
	// Took is, for Done, the response time it took: it counts that from
	// its completion on.
	Took time.Duration
	// Pause is, for Done of a refusal that says nothing of how long to
	// wait, the pause the pacer takes for it (SecondaryPause, doubled for
	// refusals in a row: Budget), which the State takes for every replica;
	// 0: the State's SecondaryPause.
	Pause time.Duration
}

// PauseOr returns g.Pause, or secondary when g has none: the pause a
// refusal of g that says nothing of how long to wait takes (State.Done).
func (g Grant) PauseOr(secondary time.Duration) time.Duration {
	if g.Pause > 0 {
		return g.Pause
	}
	return secondary
}

// A Verdict is a State's answer to Start: OK, or the earliest time to ask
// again and what holds the request back until then.
type Verdict struct {
	OK  bool
	At  time.Time
	Why Reason
	// Held is whether At ends a hold of the whole credential, which every
	// request waits for: a pause after a refusal (ReasonPause, or
	// ReasonPrimary for a refusal with the quota used up) or the primary
	// quota used up until its reset (ReasonPrimary). The pacer holds its
	// own queue until then too. It is false for a wait that depends on
	// the request or on the requests in flight (the budgets, the write
	// slot, the bounds on requests in flight).
	Held bool
	// Probe is whether the credential is out of a pause GitHub gave no
	// length for and no probe's answer has yet shown the limit lifted:
	// one request at a time goes, across the replicas that share the
	// State. With OK, the request is that probe: its answer decides for
	// every replica (Done: an answer that is no refusal lifts the limit, a
	// refusal pauses again; no answer, or Unsent, hands the role on). Not
	// OK, another grant is the probe out, and At is its answer's earliest
	// moment to ask again (SlotPoll), at the latest the end of its
	// ProbeLease. A grant without Probe tells that no probe is needed: a
	// pacer that held its requests for a probe of its own lets them go.
	Probe bool
}

// State is the part of one credential's pacing that the replicas of a
// broker share: the points window, the write slot (a lease) and its
// spacing, the content budgets, the primary-limit state (with the bound
// that keeps the requests in flight on every replica within the quota
// left), the secondary pauses and, out of a pause GitHub gave no length
// for, the one probe (Verdict.Probe, a lease of ProbeLease). MemoryState keeps it in memory (one replica);
// package redisstate keeps it in Redis. The pacer asks Start for each
// admitted request and reports the outcome with Done or Unsent.
//
// Times are passed in: a State reads no clock for its decisions. A State
// never fails a call: an implementation that cannot reach its store
// decides from a conservative local budget and says so elsewhere.
type State interface {
	// Start grants g at now if the limits allow it: its points, its
	// place in the write spacing and the write slot (a write) and its
	// content budgets. Otherwise nothing is spent, and At is the earliest
	// time worth asking again.
	Start(ctx context.Context, now time.Time, g Grant) Verdict
	// Done records the completion at now of a granted g, frees the write
	// slot, and takes in what GitHub's answer said of the limits (a pause
	// after a refusal, for g.Pause when it said nothing of how long; the
	// primary quota). For the probe (Verdict.Probe), an answer that is no
	// refusal lifts the limit, and any answer hands the role on.
	Done(ctx context.Context, now time.Time, g Grant, rl RateLimit)
	// Unsent gives back everything a granted g took (the probe's role
	// too): it was never sent.
	Unsent(ctx context.Context, now time.Time, g Grant)
}
