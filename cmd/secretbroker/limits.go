package main

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedCallers is how many callers' limiter states are kept before
// idle ones are dropped: a caller with no call in progress and a full
// token bucket has nothing worth remembering.
const maxTrackedCallers = 4096

// callLimits are the inbound limits: each caller's rate (a token bucket,
// golang.org/x/time/rate), each caller's calls in progress, and all
// callers' calls in progress. A call over a limit is refused at once, not
// queued, so that a flood from one caller costs others nothing.
type callLimits struct {
	rps       rate.Limit // 0: no rate limit
	burst     int
	perCaller int // 0: no per-caller cap
	total     int // 0: no total cap

	mu      sync.Mutex
	active  int
	callers map[string]*callerState
	// sweepAt is the number of tracked callers at which the next sweep
	// runs: maxTrackedCallers, or twice what the last sweep kept, so that
	// when every tracked caller is still worth keeping a new caller does
	// not scan them all again (a sweep costs O(1) per new caller,
	// amortized). sweeps counts the sweeps run.
	sweepAt, sweeps int
}

type callerState struct {
	lim    *rate.Limiter // nil without a rate limit
	active int
}

func newCallLimits(rps float64, burst, perCaller, total int) *callLimits {
	return &callLimits{
		rps: rate.Limit(rps), burst: burst, perCaller: perCaller, total: total,
		callers: make(map[string]*callerState),
	}
}

// refusal says why a call was refused and when to try again.
type refusal struct {
	reason     string
	kind       string // refusedRate, ...: the metric's reason label
	retryAfter time.Duration
}

// admit counts a call of caller in, or says why it may not start. release
// must be called when an admitted call ends.
func (l *callLimits) admit(caller string) (release func(), refused *refusal) {
	return l.admitCall(caller, true)
}

// admitUnrated is admit without the caller's rate: for a call whose
// token the gateway took already (allowRate), before it read the call's
// request.
func (l *callLimits) admitUnrated(caller string) (release func(), refused *refusal) {
	return l.admitCall(caller, false)
}

// allowRate takes a token from caller's rate, or says why the call may
// not start; it counts no call in progress.
func (l *callLimits) allowRate(caller string) *refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.takeTokenLocked(l.stateLocked(caller))
}

// stateLocked returns caller's state, made when it has none.
func (l *callLimits) stateLocked(caller string) *callerState {
	st := l.callers[caller]
	if st == nil {
		l.sweepLocked()
		st = &callerState{}
		if l.rps > 0 {
			st.lim = rate.NewLimiter(l.rps, l.burst)
		}
		l.callers[caller] = st
	}
	return st
}

// takeTokenLocked takes a token from st's rate, if it has one.
func (l *callLimits) takeTokenLocked(st *callerState) *refusal {
	if st.lim == nil {
		return nil
	}
	now := time.Now()
	r := st.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		if d <= 0 {
			d = time.Second
		}
		return &refusal{reason: "the caller is over its rate limit", kind: refusedRate, retryAfter: d}
	}
	return nil
}

func (l *callLimits) admitCall(caller string, rated bool) (release func(), refused *refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.active >= l.total {
		return nil, &refusal{reason: "the broker is at its limit of calls in progress", kind: refusedCalls, retryAfter: time.Second}
	}
	st := l.stateLocked(caller)
	if l.perCaller > 0 && st.active >= l.perCaller {
		return nil, &refusal{reason: "the caller is at its limit of calls in progress", kind: refusedCallerCalls, retryAfter: time.Second}
	}
	if rated {
		if refused := l.takeTokenLocked(st); refused != nil {
			return nil, refused
		}
	}
	st.active++
	l.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			st.active--
			l.active--
			l.mu.Unlock()
		})
	}, nil
}

// sweepLocked drops idle callers when too many are tracked.
func (l *callLimits) sweepLocked() {
	if len(l.callers) < max(l.sweepAt, maxTrackedCallers) {
		return
	}
	now := time.Now()
	for k, st := range l.callers {
		if st.active == 0 && (st.lim == nil || st.lim.TokensAt(now) >= float64(l.burst)) {
			delete(l.callers, k)
		}
	}
	l.sweeps++
	l.sweepAt = max(maxTrackedCallers, 2*len(l.callers))
}
