package pace

import "time"

// GitHub's limit on CPU time: "no more than 90 seconds of CPU time per 60
// seconds of real time", which it says can be roughly estimated by the
// total response time of the requests. The pacer bounds that estimate.
const (
	// GitHubCPUPerMinute is GitHub's limit: CPU time in 60 s of real time.
	GitHubCPUPerMinute = 90 * time.Second
	// DefaultCPUPerMinute is the pacer's budget of response time in any
	// sliding Window: GitHub's limit less a margin for what response time
	// does not tell of CPU time, and for requests that run longer than
	// they were expected to (see cpuBudget).
	DefaultCPUPerMinute = 80 * time.Second
	// FirstReserve is how long a request is expected to take, for the
	// CPU-time budget, before any answer of the credential said how long
	// its requests take: with the default budget, 8 requests go at once
	// before the first answer.
	FirstReserve = 10 * time.Second
)

// cpuBudget bounds the response time of a credential's requests in any
// sliding Window, the pacer's estimate of GitHub's CPU time:
//
//   - a request in flight counts the longer of its time so far (from its
//     admission, or with a State from its grant: a request that waits
//     for the other replicas is not at GitHub) and its reserve, what it
//     is expected to take (the longest of the recent latencies,
//     FirstReserve before any);
//   - a completed request counts its response time until Window after
//     its completion (as the points do: whatever the network delay, no
//     window at GitHub sees more);
//   - a request is admitted only if what counts now plus its own
//     reserve fits the budget.
//
// So, between admissions, what counts only goes down as long as requests
// take no longer than their reserve: no Window ever sees more than the
// budget. A request that takes longer counts its time so far, which holds
// back further admissions at once; what it took beyond its reserve is
// what the margin below GitHub's limit is for.
//
// It reads no clock. The in-flight requests are kept in a slice (each
// Permit knows its index), at most MaxInFlight; the completed ones in a
// log in completion order. It is not safe for concurrent use.
type cpuBudget struct {
	limit  time.Duration            // 0: off
	epoch  time.Time                // the Permits' cpuStart count from it
	flying []*Permit                // admitted and not done, in any order
	log    windowLog[time.Duration] // the completed requests' response times
}

// notGranted is a Permit's cpuStart until the State grants it.
const notGranted = time.Duration(-1)

// cpuStartOf returns when t started counting its time so far; zero before
// the State granted it (which happens before Acquire returns t).
func (p *Pacer) cpuStartOf(t *Permit) time.Time {
	if t.cpuStart == notGranted {
		return time.Time{}
	}
	return p.cpu.epoch.Add(t.cpuStart)
}

// on reports whether the budget is on.
func (b *cpuBudget) on() bool { return b.limit > 0 }

// reserve returns what a request admitted now is expected to take, the
// longest of the recent latencies (lat; FirstReserve before any), at
// most the whole budget: a request alone always fits.
func (b *cpuBudget) reserve(lat *latencyWindow) time.Duration {
	r := FirstReserve
	if lat.n > 0 {
		r = lat.longest()
	}
	return min(r, b.limit)
}

// used returns what counts against the budget at now.
func (b *cpuBudget) used(now time.Time) time.Duration {
	b.log.prune(now)
	used := b.log.sum
	since := now.Sub(b.epoch)
	for _, t := range b.flying {
		if t.cpuStart == notGranted { // not granted by the State yet
			used += t.cpuReserve
			continue
		}
		used += max(since-t.cpuStart, t.cpuReserve)
	}
	return used
}

// freeAt returns when a request of reserve r fits: now, or when completed
// requests leave the window. ok is false when it fits only after requests
// in flight complete.
func (b *cpuBudget) freeAt(now time.Time, r time.Duration) (at time.Time, ok bool) {
	over := b.used(now) + r - b.limit
	if over <= 0 {
		return now, true
	}
	return b.log.freeAt(over)
}

// earliest returns a lower bound on when a request of reserve r fits,
// for the estimate of its start (Pacer.estimateLocked): the requests in
// flight may complete at once, counting their time so far rather than
// their reserve, and then leave the window a Window later.
func (b *cpuBudget) earliest(now time.Time, r time.Duration) time.Time {
	b.log.prune(now)
	over := b.log.sum + r - b.limit
	since := now.Sub(b.epoch)
	for _, t := range b.flying {
		if t.cpuStart != notGranted {
			over += max(since-t.cpuStart, 0)
		}
	}
	if over <= 0 {
		return now
	}
	if at, ok := b.log.freeAt(over); ok {
		return at
	}
	return now.Add(Window)
}

// start counts t in flight with reserve r, from start (after the epoch)
// on; a start of notGranted counts r alone until the State grants t
// (granted).
func (b *cpuBudget) start(t *Permit, start, r time.Duration) {
	t.cpuStart, t.cpuReserve, t.cpuIndex = start, r, int32(len(b.flying))
	b.flying = append(b.flying, t)
}

// granted counts t's time so far from now on: the State granted it.
func (b *cpuBudget) granted(t *Permit, now time.Time) {
	if t.cpuIndex >= 0 && t.cpuStart == notGranted {
		t.cpuStart = now.Sub(b.epoch)
	}
}

// stop takes t out of flight.
func (b *cpuBudget) stop(t *Permit) {
	i := int(t.cpuIndex)
	if i < 0 || i >= len(b.flying) || b.flying[i] != t {
		return
	}
	last := len(b.flying) - 1
	b.flying[i] = b.flying[last]
	b.flying[i].cpuIndex = int32(i)
	b.flying[last] = nil
	b.flying = b.flying[:last]
	t.cpuIndex = -1
}

// done records t's completion at now after took (see tookOf).
func (b *cpuBudget) done(t *Permit, now time.Time, took time.Duration) {
	b.stop(t)
	b.log.add(now, took)
}

// tookOf returns the response time a request that started counting at
// start (its admission, or its grant by the State) and was reported at now
// counts: the latency reported, at most the time since start; that time
// when none was reported.
func tookOf(start, now time.Time, latency time.Duration) time.Duration {
	if start.IsZero() { // never granted: no time of its own to bound it
		return max(latency, 0)
	}
	since := max(now.Sub(start), 0)
	if latency <= 0 || latency > since {
		return since
	}
	return latency
}
