// Package redisstate keeps the pacing state of one GitHub credential in
// Redis, so that every replica of the broker paces within one budget: the
// points window, the response-time window (GitHub's CPU time), the write
// slot (a lease) and its spacing, the content budgets, the primary-limit
// state, the secondary pauses and the probe after one (a lease; see
// pace.State). Each decision is one Lua script, an atomic check-and-spend
// that takes the time from the caller.
//
// When Redis cannot be reached the State falls back to a conservative
// local budget, its share of the shared one (pace.StateLimits.Share by
// the expected replicas), counted over its local record of its own
// requests plus what every replica had used at its last contact (a grant,
// a heartbeat or a seeding: each answer tells it); it keeps serving,
// reports Up false, and logs one line per outage. Without such a snapshot
// from the last few heartbeats (none yet, or no heartbeat ran) it takes
// every budget as used by the others, in flight when Redis went away: no
// local spending of a budget until InFlightLease and its window have
// passed (see down). When Redis is back it adds the requests it granted
// meanwhile, and stays on its local budget for SeedGrace more, so that
// every other replica has added its own (each does at its next
// heartbeat) before this one decides from Redis again. Re-seeding renews the write slot's lease of this replica's
// write in flight, or takes the slot back when Redis lost it, so a failed
// heartbeat or a Redis restarted empty does not hand the slot to another
// replica mid-write. Likewise, out of a pause GitHub gave no length for,
// re-seeding gives the probe's role back to this replica's probe still
// out (a Redis that has no probe whose lease runs takes it), and a probe's
// answer Redis missed lifts the pause it has; every answer (the heartbeat
// too) tells each replica the pause, so that none decides locally as if
// there were none; and no replica probes on its local budget within a new
// epoch's grace (it waits for the grace's end): its record does not know
// of another replica's probe. A Redis that comes back
// empty gets a new epoch: each replica re-seeds it from its local record
// on its next contact, and none spends from it before SeedGrace has
// passed since it was created (until then, local budgets, counting what
// every replica had used at its last contact, as while Redis is
// unreachable: also when no call failed, Redis restarted between two
// calls, evicted or flushed the keys).
//
// What it cannot see: the requests of a replica that died before a Redis
// that lost its data was re-seeded (nobody holds its record), and those of
// a replica that cannot reach Redis when the others re-seed it, until it
// can (it is then on its local share, and adds them): the replicas that
// reach Redis keep the whole shared budget meanwhile, so a partition that
// cuts off some replicas only lets them all spend up to one more share per
// replica cut off.
//
// The replicas' clocks must agree (NTP): each decides on its own time,
// and stamps its requests with it. A completion counts what it took
// against the response-time budget whatever the clocks (its member in the
// log is marked done), as in a MemoryState given the same times. A clock
// d apart still moves, for the others, the end of each window of the
// requests it stamps by d (a clock behind lets them leave the window d
// early: what it completed in the last d may be spent again), and the time
// so far of its requests in flight by d; and a completion stamped more
// than InFlightLease - InFlightCounted (80 s) ahead counts against the
// bound on requests in flight (MaxInFlight, the primary quota left) until
// the others' clocks come within that of it.
//
// A GCRA limiter (github.com/go-redis/redis_rate) does not fit: GitHub's
// windows count a request from its dispatch until a window after its
// answer, the write slot is a lease, and the content budgets are sliding
// logs; each is a sorted set here.
package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// Defaults of Options.
const (
	DefaultOpTimeout = 250 * time.Millisecond
	DefaultHeartbeat = time.Second
	DefaultSeedGrace = 5 * time.Second
	DefaultPrefix    = "secretbroker:pace:"
)

// Options configure a State.
type Options struct {
	// Client is the Redis client, shared by the credentials' States.
	Client redis.UniversalClient
	// Credential names the credential; the keys are
	// Prefix + "{" + Credential + "}:" + one letter. Every replica must
	// use the same name for the same credential, and never the token.
	Credential string
	// Prefix of the keys; default DefaultPrefix.
	Prefix string
	// Limits are the shared limits.
	Limits pace.StateLimits
	// ExpectedReplicas divides the limits into the local budget used
	// while Redis is unreachable; at least 1.
	ExpectedReplicas int
	// OpTimeout bounds one Redis call; default DefaultOpTimeout.
	OpTimeout time.Duration
	// Heartbeat is how often the background loop (Run) checks Redis,
	// re-seeds it when it came back, and renews the write slot's lease;
	// default DefaultHeartbeat, or a third of Limits.Lease() when that is
	// shorter. New refuses a Heartbeat above a third of the lease: a
	// replica whose write is slow would lose the slot before renewing it.
	Heartbeat time.Duration
	// SeedGrace is how long after a Redis came back empty no replica
	// spends from it (every replica re-seeds it meanwhile); default
	// DefaultSeedGrace, above two heartbeats.
	SeedGrace time.Duration
	// Clock is what the background loop reads; default time.Now. The
	// pacer passes its own time to Start, Done and Unsent.
	Clock func() time.Time
	// Logger gets one line when Redis becomes unreachable and one when it
	// is back; nil discards them.
	Logger *slog.Logger
}

// State is a pace.State kept in Redis, with a local fallback. It is safe
// for concurrent use.
type State struct {
	opts   Options
	keys   []string
	lim    pace.StateLimits
	mirror *pace.MemoryState // the local record, and the fallback budget
	id     string            // this replica's epoch proposals

	mu         sync.Mutex
	up         bool      // Redis answered the last call
	epoch      string    // the epoch seeded, "" none
	graceUntil time.Time // no shared spending before (a fresh epoch)
	snap       snapshot  // every replica's use at the last contact that told it
	holding    string    // the write grant whose lease this replica renews
	others     int       // synthetic entries added
	othersIDs  []string  // the synthetic entries in the record
	localSeq   uint64    // grants decided locally
	seededSeq  uint64    // localSeq as of the last seeding
	downSince  time.Time
	lastErr    string
}

// snapshot is every replica's use as of a contact with Redis (a grant, a
// heartbeat, a seeding), and this replica's own then, to fall back on.
type snapshot struct {
	at       time.Time
	all, own pace.Usage
}

// New returns a State; it contacts Redis on first use.
func New(opts Options) (*State, error) {
	if opts.Client == nil {
		return nil, errors.New("redisstate: no Redis client")
	}
	if opts.Credential == "" {
		return nil, errors.New("redisstate: no credential name")
	}
	if err := opts.Limits.Validate(); err != nil {
		return nil, err
	}
	if opts.ExpectedReplicas < 1 {
		opts.ExpectedReplicas = 1
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	lease := opts.Limits.Lease()
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = min(DefaultHeartbeat, lease/3)
	}
	if opts.Heartbeat > lease/3 {
		return nil, fmt.Errorf("redisstate: Heartbeat %v is above a third of the write slot's lease %v", opts.Heartbeat, lease)
	}
	if opts.SeedGrace <= 0 {
		opts.SeedGrace = DefaultSeedGrace
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	base := opts.Prefix + "{" + opts.Credential + "}:"
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &State{
		opts:   opts,
		keys:   []string{base + "p", base + "w", base + "s", base + "h", base + "e", base + "c", base + "k"},
		lim:    opts.Limits,
		mirror: pace.NewMemoryState(opts.Limits.Share(opts.ExpectedReplicas)),
		id:     hex.EncodeToString(b[:]),
		up:     true, // until a call fails
	}, nil
}

// Up reports whether the State paces from Redis (false: from its local
// budget, Redis unreachable), and since when it is down.
func (s *State) Up() (up bool, downSince time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up, s.downSince
}

// Status is one line for /readyz: "" when shared, else why not.
func (s *State) Status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		return ""
	}
	return fmt.Sprintf("pacing state for %s: Redis unreachable since %s, pacing within the local budget (1/%d)",
		s.opts.Credential, s.downSince.UTC().Format(time.RFC3339), s.opts.ExpectedReplicas)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }

// cpuMS is a response time in whole milliseconds, rounded up, as the
// response-time log keeps it (its members are "ms:id").
func cpuMS(d time.Duration) int64 {
	return int64((max(d, 0) + time.Millisecond - 1) / time.Millisecond)
}

// cpuArg is what the scripts take for a grant's expected response time:
// "" with the CPU-time budget off.
func (s *State) cpuArg(d time.Duration) string {
	if s.lim.CPUPerMinute <= 0 {
		return ""
	}
	return strconv.FormatInt(cpuMS(d), 10)
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// mode returns the epoch seeded ("" none), whether Redis answered the
// last call, and whether decisions go to Redis now (not within a fresh
// epoch's grace).
func (s *State) mode(now time.Time) (epoch string, up, shared bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch, s.up, s.up && s.epoch != "" && !now.Before(s.graceUntil)
}

// Start implements pace.State.
func (s *State) Start(ctx context.Context, now time.Time, g pace.Grant) pace.Verdict {
	for range 2 {
		epoch, up, shared := s.mode(now)
		if up && epoch == "" {
			if err := s.seed(ctx, now); err != nil {
				s.down(now, err)
				return s.local(now, g)
			}
			epoch, _, shared = s.mode(now)
		}
		if !shared || !s.catchUp(ctx, now) {
			return s.local(now, g)
		}
		res, err := s.run(ctx, startScript, ms(now), g.ID, g.Cost, b01(g.Write), s.lim.PointsPerMinute,
			s.lim.WriteInterval.Milliseconds(), s.lim.Lease().Milliseconds(), s.lim.WritesPerMinute, s.lim.WritesPerHour,
			pace.InFlightLease.Milliseconds(), epoch, pace.SlotPoll.Milliseconds(), s.lim.MaxInFlight,
			s.lim.CPUPerMinute.Milliseconds(), cpuMS(g.CPU), pace.ProbeLease.Milliseconds())
		if err != nil {
			s.down(now, err)
			return s.local(now, g)
		}
		vals, _ := res.([]any)
		if len(vals) == 0 {
			s.down(now, fmt.Errorf("unexpected answer %v", res))
			return s.local(now, g)
		}
		switch vals[0] {
		case "ok":
			// The record takes in the holds, and the probe's role when
			// this grant has it: a fallback on the record, or a
			// re-seeding of a Redis that lost its data, keeps it.
			probe := len(vals) > 9 && vals[9] == int64(1)
			var h pace.Holds
			if len(vals) > 10 {
				h = holdsOf(vals[10:])
			}
			if probe {
				s.mirror.RecordProbe(now, g, h)
			} else {
				s.mirror.MergeHolds(h)
				s.mirror.Record(now, g)
			}
			s.setSnap(now, vals[1:])
			if g.Write && s.lim.WriteInterval > 0 {
				s.mu.Lock()
				s.holding = g.ID
				s.mu.Unlock()
			}
			return pace.Verdict{OK: true, At: now, Probe: probe}
		case "wait":
			n := ints(vals[1:])
			var h pace.Holds
			if n[2] > 0 {
				h.PauseUntil, h.PauseReason, h.Probe = fromMS(int64(n[2])), pace.Reason(n[3]), n[6] == 1
			}
			if n[4] > 0 {
				h.PrimaryReset, h.PrimaryRemaining = fromMS(int64(n[4])), n[5]
			}
			s.mirror.MergeHolds(h)
			v := pace.Verdict{At: fromMS(int64(n[0])), Why: pace.Reason(n[1]), Probe: n[7] == 1}
			v.Held = held(v, h)
			return v
		default: // "empty", "epoch": re-seed and ask again
			s.lost(now)
		}
	}
	return s.local(now, g)
}

// held reports whether the wait v ends a hold of the whole credential
// in h (pace.Verdict.Held): the pause, or the primary quota used up until
// its reset.
func held(v pace.Verdict, h pace.Holds) bool {
	switch {
	case !h.PauseUntil.IsZero() && v.At.Equal(h.PauseUntil) && v.Why == h.PauseReason:
		return true
	case !h.PrimaryReset.IsZero() && h.PrimaryRemaining <= 0 && v.At.Equal(h.PrimaryReset) && v.Why == pace.ReasonPrimary:
		return true
	}
	return false
}

// lost is told at now that Redis has lost the epoch this replica paces
// in (it answered "empty" or "epoch": it lost its data, with or without
// a call failing, in a restart between two calls, an eviction or a
// FLUSHALL): the replica re-seeds it and stays on its local budget for
// the new epoch's grace. Meanwhile its local record counts what every
// replica had used at its last contact, as when Redis is unreachable
// (down): a Redis that lost its data is no fresh budget.
func (s *State) lost(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch == "" {
		return
	}
	s.epoch = ""
	if s.addOthersLocked(now) {
		s.opts.Logger.Warn("pacing state: Redis lost the shared budget's state; re-seeding it, pacing within the local budget meanwhile",
			slog.String("credential", s.opts.Credential), slog.Int("expected_replicas", s.opts.ExpectedReplicas))
	}
}

// holdsOf converts the holds a script answers (holds_reply: pause,
// reason, reset, remaining, probe).
func holdsOf(vals []any) pace.Holds {
	n := ints(vals)
	var h pace.Holds
	if n[0] > 0 {
		h.PauseUntil, h.PauseReason, h.Probe = fromMS(int64(n[0])), pace.Reason(n[1]), n[4] == 1
	}
	if n[2] > 0 {
		h.PrimaryReset, h.PrimaryRemaining = fromMS(int64(n[2])), n[3]
	}
	return h
}

// ints converts a script's integer replies.
func ints(vals []any) []int {
	out := make([]int, 8)
	for i, v := range vals {
		if i >= len(out) {
			break
		}
		if n, ok := v.(int64); ok {
			out[i] = int(n)
		}
	}
	return out
}

// setSnap keeps every replica's use at now, a script's answer (as
// startScript's after "ok"), with this replica's own use then: what down
// falls back on. An older answer does not replace a newer one.
func (s *State) setSnap(now time.Time, vals []any) {
	n := ints(vals)
	all := pace.Usage{Points: n[0], WritesMinute: n[1], WritesHour: n[2],
		PointsInFlight: n[3], WritesMinuteLive: n[4], WritesHourLive: n[5],
		CPU: time.Duration(n[6]) * time.Millisecond, CPUInFlight: time.Duration(n[7]) * time.Millisecond}
	own := s.ownUsage(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.snap.at) {
		return
	}
	s.snap = snapshot{at: now, all: all, own: own}
}

// ownUsage is what this replica's own requests count at now: the local
// record without the entries that stand for the others' use.
func (s *State) ownUsage(now time.Time) pace.Usage { return s.mirror.OwnUsage(now) }

// local decides from the local budget. Within a new epoch's grace it
// makes no probe: a request the record would make the probe waits for the
// grace's end, when Redis decides, with the probe a replica still has out
// re-seeded meanwhile (seed). A replica's record does not know of the
// other replicas' probes, and a second probe would go while the first may
// still reach GitHub.
func (s *State) local(now time.Time, g pace.Grant) pace.Verdict {
	v := s.mirror.Start(context.Background(), now, g)
	if v.OK && v.Probe {
		if end := s.graceEnd(now); !end.IsZero() {
			s.mirror.Unsent(context.Background(), now, g)
			return pace.Verdict{At: end, Why: pace.ReasonPause, Probe: true}
		}
	}
	if v.OK {
		s.mu.Lock()
		s.localSeq++
		s.mu.Unlock()
	}
	return v
}

// graceEnd returns the end of the epoch's grace when Redis answers and
// now is within it; zero otherwise.
func (s *State) graceEnd(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up || !now.Before(s.graceUntil) {
		return time.Time{}
	}
	return s.graceUntil
}

// catchUp readies a replica to decide from Redis: it adds what it granted
// locally since it last seeded (ZADD LT: nothing twice) and drops from its
// record what stood for the others' use. It reports whether Redis may
// decide.
func (s *State) catchUp(ctx context.Context, now time.Time) bool {
	s.mu.Lock()
	dirty := s.localSeq != s.seededSeq
	others := s.othersIDs
	s.othersIDs = nil
	s.mu.Unlock()
	s.mirror.Remove(others...)
	if !dirty {
		return true
	}
	if err := s.seed(ctx, now); err != nil {
		s.down(now, err)
		return false
	}
	return true
}

// Done implements pace.State.
func (s *State) Done(ctx context.Context, now time.Time, g pace.Grant, rl pace.RateLimit) {
	s.mirror.Done(ctx, now, g, rl)
	h := pace.FromAnswer(now, rl, g.PauseOr(s.lim.SecondaryPause))
	s.mu.Lock()
	if s.holding == g.ID {
		s.holding = ""
	}
	s.mu.Unlock()
	epoch, up, _ := s.mode(now)
	if !up || epoch == "" {
		return // the record has it: re-seeding adds it
	}
	var pause, reset int64
	if !h.PauseUntil.IsZero() {
		pause = ms(h.PauseUntil)
	}
	if !h.PrimaryReset.IsZero() {
		reset = ms(h.PrimaryReset)
	}
	res, err := s.run(ctx, doneScript, ms(now), g.ID, g.Cost, b01(g.Write), epoch, pause, int(h.PauseReason), reset, h.PrimaryRemaining,
		s.cpuArg(g.CPU), cpuMS(g.Took), b01(h.Probe), b01(!rl.Refused && rl.Status != 0), s.lim.SecondaryPause.Milliseconds())
	switch {
	case err != nil:
		s.down(now, err)
	case res != "ok":
		s.lost(now)
		if err := s.seed(ctx, now); err != nil { // the record has it: re-seeding adds it
			s.down(now, err)
		}
	}
}

// Unsent implements pace.State.
func (s *State) Unsent(ctx context.Context, now time.Time, g pace.Grant) {
	s.mirror.Unsent(ctx, now, g)
	s.mu.Lock()
	if s.holding == g.ID {
		s.holding = ""
	}
	s.mu.Unlock()
	epoch, up, _ := s.mode(now)
	if !up || epoch == "" {
		return
	}
	if _, err := s.run(ctx, unsentScript, g.ID, g.Cost, b01(g.Write), epoch, cpuMS(g.CPU), ms(now)); err != nil {
		s.down(now, err)
	}
}

// Sync checks Redis at now: when it was unreachable and answers again, or
// lost its data, it re-seeds it from the local record; it renews the
// write slot's lease this replica holds (re-seeding renews it too, so one
// failed heartbeat does not lose it); and it keeps what every replica has
// used, to fall back on. Run calls it every Heartbeat.
func (s *State) Sync(ctx context.Context, now time.Time) {
	s.mu.Lock()
	holding, epoch, up := s.holding, s.epoch, s.up
	s.mu.Unlock()
	if up && epoch != "" {
		res, err := s.run(ctx, syncScript, ms(now), holding, s.lim.Lease().Milliseconds(), epoch)
		if err != nil {
			s.down(now, err)
			return
		}
		if vals, ok := res.([]any); ok && len(vals) > 0 && vals[0] == "ok" {
			s.setSnap(now, vals[1:])
			if len(vals) > 9 {
				s.mirror.MergeHolds(holdsOf(vals[9:]))
			}
			return
		}
		s.lost(now)
	}
	if err := s.seed(ctx, now); err != nil {
		s.down(now, err)
	}
}

// Run calls Sync every Heartbeat until ctx ends.
func (s *State) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sync(ctx, s.opts.Clock())
		}
	}
}

// seed joins Redis' epoch, adding the local record: every entry that still
// counts, the holds, the last write and the write slot's lease of this
// replica's write in flight (renewed, or taken again when free). A new
// epoch (Redis lost its data) is not spent from before SeedGrace has
// passed since it was created. The answer refreshes the snapshot.
func (s *State) seed(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	seq, holding := s.localSeq, s.holding
	s.mu.Unlock()
	entries := s.mirror.Entries(now)
	h := s.mirror.Holds()
	prober, proberUntil := s.mirror.Prober(now)
	var until int64
	if prober != "" {
		until = ms(proberUntil)
	}
	args := []any{ms(now), s.id, 0, 0, 0, 0, 0, holding, s.lim.Lease().Milliseconds(), b01(s.lim.CPUPerMinute > 0), b01(h.Probe), h.Refusals,
		prober, until}
	if last := s.mirror.LastWrite(); !last.IsZero() {
		args[2] = ms(last)
	}
	if !h.PauseUntil.IsZero() {
		args[3], args[4] = ms(h.PauseUntil), int(h.PauseReason)
	}
	if !h.PrimaryReset.IsZero() {
		args[5], args[6] = ms(h.PrimaryReset), h.PrimaryRemaining
	}
	for _, e := range entries {
		if strings.HasPrefix(e.ID, othersPrefix) {
			continue // what others used: theirs to seed
		}
		args = append(args, e.Points, e.ID, ms(e.End), b01(e.Writes > 0), cpuMS(e.CPU), cpuMS(e.Reserve), b01(!e.InFlight))
	}
	res, err := s.run(ctx, seedScript, args...)
	if err != nil {
		return err
	}
	vals, _ := res.([]any)
	if len(vals) == 0 {
		return fmt.Errorf("redisstate: unexpected answer %v", res)
	}
	ep, _ := vals[0].(string)
	s.setSnap(now, vals[1:])
	if len(vals) > 9 {
		s.mirror.MergeHolds(holdsOf(vals[9:]))
	}
	created := now
	if i := strings.LastIndexByte(ep, ':'); i >= 0 {
		if v, err := strconv.ParseInt(ep[i+1:], 10, 64); err == nil {
			created = fromMS(v)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seededSeq = seq
	if ep != s.epoch {
		s.epoch = ep
		s.graceUntil = created.Add(s.opts.SeedGrace)
	}
	if !s.up {
		s.up = true
		// The other replicas may have granted on their local budgets
		// too, and add that at their next contact: until each had one,
		// Redis lacks it, and this replica stays on its local budget
		// (which counts what they had used at its last contact).
		if g := now.Add(s.opts.SeedGrace); g.After(s.graceUntil) {
			s.graceUntil = g
		}
		s.opts.Logger.Info("pacing state: Redis is reachable again; pacing within the shared budget",
			slog.String("credential", s.opts.Credential), slog.Duration("down_for", now.Sub(s.downSince)))
	}
	return nil
}

// othersPrefix names the record's entries that stand for other replicas'
// use at the last contact.
const othersPrefix = "others:"

// freshFor is how old a snapshot may be when Redis becomes unreachable
// and still tell what the other replicas had used: a few heartbeats, each
// of which refreshes it.
func (s *State) freshFor() time.Duration { return 3*s.opts.Heartbeat + s.opts.OpTimeout }

// down switches to the local budget after err, once per outage: the local
// record gets entries that stand for what the other replicas had used.
//
// With a fresh snapshot (taken within freshFor, as the heartbeat keeps
// it), that is their use then: entries that end then (completed) or
// InFlightLease later (in flight). Without one (none yet: a replica just
// started; or an old one: no heartbeat ran), their use is unknown and
// taken to be the whole of every budget, in flight now: this replica
// spends none of a budget locally until InFlightLease and that budget's
// window have passed since the outage began (the points and the writes
// of the minute 3 minutes, the writes of the hour 62 minutes), or Redis
// is back. The holds and the write spacing are the record's own.
func (s *State) down(now time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return
	}
	s.up, s.downSince, s.lastErr = false, now, err.Error()
	s.addOthersLocked(now)
	s.opts.Logger.Warn("pacing state: Redis unreachable; pacing within the local budget until it is back",
		slog.String("credential", s.opts.Credential), slog.Int("expected_replicas", s.opts.ExpectedReplicas),
		slog.String("error", err.Error()))
}

// addOthersLocked adds to the local record, unless it has them, the
// entries that stand for what the other replicas had used (see down),
// and reports whether it added them. s.mu is held.
func (s *State) addOthersLocked(now time.Time) bool {
	if len(s.othersIDs) > 0 {
		return false
	}
	s.others++
	tag := othersPrefix + strconv.Itoa(s.others)
	var entries []pace.Entry
	if s.snap.at.IsZero() || now.Sub(s.snap.at) > s.freshFor() {
		entries = []pace.Entry{{ID: tag + ":u", InFlight: true, End: now.Add(pace.InFlightLease), Others: true,
			Points: s.lim.PointsPerMinute, Writes: max(s.lim.WritesPerMinute, s.lim.WritesPerHour), CPU: s.lim.CPUPerMinute}}
	} else {
		entries = snapEntries(tag, s.snap)
	}
	s.mirror.Add(entries...)
	for _, e := range entries {
		s.othersIDs = append(s.othersIDs, e.ID)
	}
	return true
}

// snapEntries are the entries that stand for the others' use in sn: every
// replica's use less this replica's own.
func snapEntries(tag string, sn snapshot) []pace.Entry {
	all, own := sn.all, sn.own
	// The others' requests in flight count what they counted then (their
	// time so far, or what they were expected to take): what they take
	// beyond it is within the margin below GitHub's limit.
	inFlight := pace.Entry{ID: tag + ":f", InFlight: true, End: sn.at.Add(pace.InFlightLease), Others: true,
		Points: max(all.PointsInFlight-own.PointsInFlight, 0), Writes: max(all.WritesMinuteLive-own.WritesMinuteLive, 0),
		CPU: max(all.CPUInFlight-own.CPUInFlight, 0)}
	doneMinute := pace.Entry{ID: tag + ":m", End: sn.at, Others: true,
		Points: max((all.Points-all.PointsInFlight)-(own.Points-own.PointsInFlight), 0),
		Writes: max((all.WritesMinute-all.WritesMinuteLive)-(own.WritesMinute-own.WritesMinuteLive), 0),
		CPU:    max((all.CPU-all.CPUInFlight)-(own.CPU-own.CPUInFlight), 0)}
	// Writes of the hour before the minute: they ended a minute before
	// the snapshot at the latest.
	hourOnly := func(u pace.Usage) int {
		return (u.WritesHour - u.WritesHourLive) - (u.WritesMinute - u.WritesMinuteLive)
	}
	doneHour := pace.Entry{ID: tag + ":h", End: sn.at.Add(-pace.Window), Others: true, Writes: max(hourOnly(all)-hourOnly(own), 0)}
	return []pace.Entry{inFlight, doneMinute, doneHour}
}

// run runs a script with the credential's keys within OpTimeout.
func (s *State) run(ctx context.Context, sc *redis.Script, args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.OpTimeout)
	defer cancel()
	res, err := sc.Run(ctx, s.opts.Client, s.keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstate: %w", err)
	}
	return res, nil
}
