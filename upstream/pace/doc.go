// Package pace owns the admission of one GitHub credential's requests:
// when each may start so that the credential stays within GitHub's rate
// limits, in what order callers are served, and which requests are
// refused at once because they could not start before their deadline.
// It sends nothing and knows nothing of bodies or tokens; the upstream
// client asks it for a Permit before each attempt and reports the answer.
//
// The pieces, each usable and tested alone:
//
//   - FairQueue holds the waiting requests: one FIFO per caller and kind
//     (a read lane and a write lane), callers served round robin. A read
//     may pass its own caller's waiting writes; a write never passes an
//     earlier write. Reads and writes are kept apart so that, while the
//     write slot is busy, the next read of any caller is found at once.
//     Push, Pop and Remove are O(log n); Ahead counts the items a new
//     one would wait behind in O(log n).
//   - Budget is what GitHub's limits allow: the sliding-window points log
//     of the secondary limit (a request's points count from dispatch
//     until a Window after it completed), the primary quota
//     (x-ratelimit-remaining 0 holds everything until x-ratelimit-reset
//     and ResetMargin, for the clocks' difference),
//     pauses after rate-limit refusals, and the backoff the retry loop
//     asks for after failures.
//   - The CPU-time budget (Config.CPUPerMinute, cputime.go) bounds the
//     response time of the requests in any sliding Window, GitHub's own
//     estimate of its limit on CPU time: a request in flight counts its
//     time so far, at least what it is expected to take (the longest
//     recent latency), a completed one its latency until a Window after
//     it completed, and a request goes only if its expected time fits.
//   - ParseRateLimit is the one reader of GitHub's rate-limit headers;
//     RateLimit.WithMessage adds the refusals GitHub tells only in its
//     message.
//   - WriteSlot serializes and spaces writes (one at a time, starts
//     WriteInterval apart).
//   - State is what the replicas of a broker share per credential: the
//     points window, the CPU-time window, the write slot (a lease) and
//     its spacing, GitHub's content-creation budgets
//     (Config.WritesPerMinute, WritesPerHour),
//     the primary-limit state, the secondary pauses (and, out of one
//     GitHub gave no length for, the one probe of every replica:
//     Verdict.Probe) and GitHub's limit of
//     MaxConcurrent requests in flight, every replica's together. A
//     request the pacer admits by its own state must also be granted by
//     the State before Acquire returns (shared.go), waiting idle (Idler)
//     meanwhile; a hold of the whole credential the State tells of (a
//     pause, the primary quota used up) holds the pacer's own queue too;
//     refusals for the content budgets carry ReasonContent, for the
//     CPU-time budget ReasonCPU, for the shared places in flight
//     ReasonQueue. MemoryState keeps it in memory (the
//     default when a content budget is on); package redisstate keeps it
//     in Redis; package statetest is the contract both keep.
//   - Pacer composes them under one mutex, with at most MaxInFlight
//     requests admitted at once. Acquire queues a request and returns a
//     Permit when it may start; Permit.Done (or Report) reports the
//     answer, Permit.Unsent a request never sent. Every event (a request
//     queued, done, unsent or cancelled, a timer) costs O(log n): the
//     pacer looks only at the head of each lane, and one timer wakes it
//     for the earliest moment a head may go by the clock.
//
// Deadlines. A request's refusal for its deadline is decided when it is
// queued, from its estimated start (the holds, the points and CPU-time
// budgets' next free moment and, for a write, the write slot's next start plus
// WriteInterval for each write queued ahead of it in round-robin order)
// plus a latency allowance, the 90th percentile of the last 64 latencies
// reported (0 before any). Nothing re-estimates the queued requests
// afterwards, with one exception that costs O(log n) per request it
// refuses: when a hold begins or grows (a pause, the primary quota, a
// backoff), the queued requests whose deadline falls inside it are
// refused at once, from a heap ordered by deadline. A request whose
// deadline passes while it waits its turn is refused as well. Refusals
// are *ThrottledError; its Reason tells waits caused by GitHub's limits
// (queue, spacing, budget, CPU time, primary, pause) from waits caused by failures
// (ReasonBackoff, see Pacer.Backoff), which a caller reports as
// unavailable rather than exhausted.
//
// Late sealing. The service seals a secret with the scope's public key
// at the moment its write is admitted, so that a refused write costs no
// sealing and a key rotated while the write waited is the one used.
// This keeps working with Permit: Acquire returns only once the request
// is admitted, and the caller builds the body (calls back into the
// service) after Acquire returns and before it sends; if building fails,
// Unsent gives the place, the points and the write spacing back.
//
// Observation. Config.Observer, when set, is told of every admission
// with its wait and the reason that held the request's lane (reads or
// writes) back longest, and of every hold that begins or grows; it is
// called under the pacer's lock and must only record. Each lane keeps a
// running total of the time it was held back per reason; a request
// snapshots its lane's totals when queued and compares at admission, so
// this costs O(1) per event. Stats.PointsUsed is the points that count
// against the budget now. The package imports no metrics library: the
// upstream client turns these into its series.
//
// Time. The pacer reads time directly (time.Now, time.AfterFunc) and
// takes deadlines from the context; Budget and WriteSlot take the time
// as an argument. Tests run in testing/synctest bubbles, where waits are
// exact and instant.
package pace
