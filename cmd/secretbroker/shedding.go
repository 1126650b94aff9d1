package main

import (
	"context"
	"flag"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// Shedding is the part of Config for overload: the bounds on the upstream
// pacer's queue and the front door's adaptive bound on calls in progress.
type Shedding struct {
	// UpstreamMaxQueue is the most requests that wait for the pacer at
	// once, per GitHub credential; one more is refused at once with
	// RESOURCE_EXHAUSTED and a RetryInfo. Flag --upstream-max-queue.
	// Default 1000 (about 40 KB each while they wait: 40 MB); 0 turns
	// the bound off.
	UpstreamMaxQueue int
	// MaxQueueWait is the longest a call's GitHub request waits for the
	// pacer: one that would wait longer, by the pacer's estimate, is
	// refused at once with RESOURCE_EXHAUSTED and a RetryInfo, whether or
	// not the call has a deadline. Flag --max-queue-wait. Default 5m: a
	// synchronous batch of a few hundred writes (1 s apart, 80 a minute)
	// still fits, and a call that would wait longer is better told when to
	// come back (or to go async) than held. The long-running operations
	// (async batches and syncs) are exempt: they wait for GitHub's budgets
	// on purpose. 0 turns the bound off.
	MaxQueueWait time.Duration
	// ShedSchedLatency is the target of the front door's adaptive bound
	// on calls in progress: while the Go scheduler's 90th percentile
	// latency (how long runnable goroutines wait for a CPU) stays above
	// it, the bound shrinks and calls over it are refused at once with
	// RESOURCE_EXHAUSTED; below it, the bound grows back toward
	// --max-concurrent-calls. Flag --shed-sched-latency. Default 0, off:
	// on a shared 2-core machine it refused calls below saturation (see
	// docs/BENCHMARKS.md, issue 12), so it is opt-in (5ms is a starting
	// point) until it is tuned on dedicated cores. The fixed bounds
	// (--max-concurrent-calls, --caller-max-concurrent) always apply.
	ShedSchedLatency time.Duration
	// MaxWorkingCalls is the most calls at work at once: calls in
	// progress that are not waiting for the GitHub pacer (working.go); one
	// more waits for a place (MaxWaitingCalls). Flag --max-working-calls.
	// Default 16 per CPU (GOMAXPROCS): enough to keep the CPUs busy while
	// some calls wait for GitHub's answers, and for a client's burst of a
	// few dozen calls to go through without a wait. While the queue
	// overflows (overload), 1 per CPU is (working.go), so that an admitted
	// call waits for a CPU milliseconds, not seconds (docs/BENCHMARKS.md,
	// issue 12). Calls waiting for GitHub's budget
	// do not count; --max-concurrent-calls bounds all calls in progress.
	// 0 turns the bound off.
	MaxWorkingCalls int
	// MaxWaitingCalls is the most calls waiting for a place among the
	// calls at work (working.go): each waits at most 50 ms, and when one
	// more arrives the oldest is refused with RESOURCE_EXHAUSTED and a
	// RetryInfo (and for 50 ms the newest is served first, with one call
	// per CPU at work and as many waiting). Flag --max-waiting-calls. Default 16 per CPU: a client's
	// burst of a few dozen calls waits its turn instead of being refused.
	// 0: a call over MaxWorkingCalls is refused at once.
	MaxWaitingCalls int
}

// Defaults of the Shedding flags.
const (
	defaultUpstreamMaxQueue = 1000
	defaultMaxQueueWait     = 5 * time.Minute
	defaultShedSchedLatency = 0
	// defaultWorkingPerCPU is MaxWorkingCalls's default per GOMAXPROCS.
	defaultWorkingPerCPU = 16
	defaultWaitingPerCPU = 16
)

// register adds the flags to fs.
func (s *Shedding) register(fs *flag.FlagSet) {
	fs.IntVar(&s.UpstreamMaxQueue, "upstream-max-queue", defaultUpstreamMaxQueue,
		"most requests waiting for the GitHub pacer at once, per credential; more are refused with RESOURCE_EXHAUSTED; 0 turns the bound off")
	fs.DurationVar(&s.MaxQueueWait, "max-queue-wait", defaultMaxQueueWait,
		"longest a call's GitHub request waits for the pacer, with or without a deadline (background operations exempt); longer waits are refused at once with RESOURCE_EXHAUSTED; 0 turns the bound off")
	fs.IntVar(&s.MaxWorkingCalls, "max-working-calls", defaultWorkingPerCPU*runtime.GOMAXPROCS(0),
		"most calls at work at once (in progress and not waiting for the GitHub pacer); more wait for a place (--max-waiting-calls); 1 per CPU while that queue overflows; default 16 per CPU; 0 turns the bound off")
	fs.IntVar(&s.MaxWaitingCalls, "max-waiting-calls", defaultWaitingPerCPU*runtime.GOMAXPROCS(0),
		"most calls waiting (50 ms at most) for a place among the calls at work; when one more arrives the oldest is refused with RESOURCE_EXHAUSTED; default 16 per CPU; 0 refuses a call over --max-working-calls at once")
	fs.DurationVar(&s.ShedSchedLatency, "shed-sched-latency", defaultShedSchedLatency,
		"target Go scheduler latency (90th percentile over 10 ms), e.g. 5ms: above it the bound on calls in progress shrinks and calls over it are refused with RESOURCE_EXHAUSTED; 0 (the default) leaves adaptive shedding off")
}

// Bounds of the adaptive limit (cpuShed).
const (
	// shedSampleEvery is how often the scheduler latency is read, by the
	// first call admitted after the period ends (no goroutine of its own).
	shedSampleEvery = 10 * time.Millisecond
	// shedMinPerCPU is the least bound per GOMAXPROCS: enough calls to
	// keep every CPU busy while others wait for GitHub's answer.
	shedMinPerCPU = 4
	// shedDecrease is the factor a sample over the target shrinks the
	// bound by; a sample at or under it, while the calls in progress fill
	// the bound, grows it by 1/shedGrowth of itself (at least one call).
	shedDecrease = 0.5
	shedGrowth   = 16
)

// cpuShed is an adaptive bound on the calls in progress: it halves
// (shedDecrease) for every sample whose scheduling latency is above the
// target and grows by a sixteenth (shedGrowth, at least one call) for
// every sample below it taken while the calls in progress fill the bound,
// between min and max: sampled every 10 ms, it falls from 512 to a floor
// of 8 within about 60 ms of a flood and doubles in about 110 ms once the
// CPUs keep up. A call over the bound is refused at once. The signal is the CPU's own
// queue, the Go scheduler's latency, not the calls' latency: a call that
// waits for GitHub (the pacer, a slow answer) costs no CPU and must not
// shrink the bound, while calls that outnumber the CPUs show up at once
// as runnable goroutines waiting. The sample is taken in admit, by the
// call that finds the period over, so an idle broker does no work.
type cpuShed struct {
	target   time.Duration
	min, max int
	now      func() time.Time
	sched    func() time.Duration // the scheduling latency since the last call

	mu     sync.Mutex
	limit  float64
	active int
	next   time.Time // when the next sample is due
}

// newCPUShed returns the bound for target between lo and hi (hi 0:
// 1<<20), starting at hi, sampling the Go runtime's scheduler latency.
func newCPUShed(target time.Duration, lo, hi int) *cpuShed {
	if hi <= 0 {
		hi = 1 << 20
	}
	s := &schedSampler{}
	return &cpuShed{target: target, min: min(lo, hi), max: hi, limit: float64(hi), now: time.Now, sched: s.quantile}
}

// admit counts a call in, or refuses it when the calls in progress fill
// the bound. release must be called when an admitted call ends.
func (c *cpuShed) admit() (release func(), refused *refusal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); !now.Before(c.next) {
		c.next = now.Add(shedSampleEvery)
		c.observeLocked(c.sched())
	}
	if c.active >= int(c.limit) {
		return nil, &refusal{reason: "the broker is overloaded: its CPUs are behind", kind: refusedShed, retryAfter: time.Second}
	}
	c.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.active--
			c.mu.Unlock()
		})
	}, nil
}

// observeLocked moves the bound for one sample of the scheduler latency.
func (c *cpuShed) observeLocked(lat time.Duration) {
	switch {
	case lat > c.target:
		c.limit = math.Max(float64(c.min), c.limit*shedDecrease)
	case c.active+1 >= int(c.limit):
		c.limit = math.Min(float64(c.max), c.limit+math.Max(1, c.limit/shedGrowth))
	}
}

// bound returns the bound now, for tests and logs.
func (c *cpuShed) bound() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.limit)
}

// schedMetric is the Go runtime's histogram of the time goroutines spent
// runnable before they ran.
const schedMetric = "/sched/latencies:seconds"

// schedQuantile is the quantile of the scheduler latency compared with
// the target: the 90th percentile, which a CPU that falls behind raises
// at once while a short burst of wake-ups barely moves it.
const schedQuantile = 0.9

// schedSampler reads the scheduler latency histogram and returns the
// schedQuantile of the latencies since its previous call (0 when there were
// none). Not safe for concurrent use: cpuShed calls it under its mutex.
type schedSampler struct {
	sample [1]metrics.Sample
	prev   []uint64
	delta  []uint64
}

func (s *schedSampler) quantile() time.Duration {
	s.sample[0].Name = schedMetric
	metrics.Read(s.sample[:])
	if s.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0
	}
	h := s.sample[0].Value.Float64Histogram()
	first := s.prev == nil
	if len(s.prev) != len(h.Counts) {
		s.prev = make([]uint64, len(h.Counts))
	}
	if len(s.delta) != len(h.Counts) {
		s.delta = make([]uint64, len(h.Counts))
	}
	for i, n := range h.Counts {
		s.delta[i] = n - s.prev[i]
		s.prev[i] = n
	}
	if first {
		return 0
	}
	return histQuantile(s.delta, h.Buckets, schedQuantile)
}

// histQuantile returns the upper bound of the bucket that holds the q
// quantile (0 < q <= 1) of counts (buckets[i] to buckets[i+1] holds
// counts[i]); the lower bound for the last, unbounded bucket; 0 without
// counts.
func histQuantile(counts []uint64, buckets []float64, q float64) time.Duration {
	var total uint64
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := max(uint64(math.Ceil(q*float64(total))), 1) // the ceil(q total)-th smallest
	var seen uint64
	for i, n := range counts {
		seen += n
		if seen >= want {
			hi := buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}

// newShed returns the front door's adaptive bound of cfg, or nil when
// --shed-sched-latency is 0: between shedMinPerCPU calls per GOMAXPROCS
// and --max-concurrent-calls.
func newShed(cfg Config) *cpuShed {
	if cfg.ShedSchedLatency <= 0 {
		return nil
	}
	return newCPUShed(cfg.ShedSchedLatency, shedMinPerCPU*runtime.GOMAXPROCS(0), cfg.MaxConcurrentCalls)
}

// shedAdmit counts a call admitted by the inbound limits (release gives
// its place back) against the adaptive bound: the release of both, or
// RESOURCE_EXHAUSTED with a RetryInfo when the bound refuses it.
func (f *frontDoor) shedAdmit(ctx context.Context, listener, method, caller string, release func()) (func(), error) {
	if f.shed == nil {
		return release, nil
	}
	shedRelease, refused := f.shed.admit()
	if refused != nil {
		release()
		f.refusals.add(ctx, listener, refusedShed)
		f.log.DebugContext(ctx, "call refused: the broker is overloaded", slog.String("method", method),
			slog.String("caller", caller), slog.String("reason", refused.reason))
		return nil, exhausted(refused.reason, refused.retryAfter)
	}
	return func() { shedRelease(); release() }, nil
}
