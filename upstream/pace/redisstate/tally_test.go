package redisstate_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
	"github.com/secretbroker/secretbroker/upstream/pace/redisstate"
	"github.com/secretbroker/secretbroker/upstream/pace/redistest"
	"github.com/secretbroker/secretbroker/upstream/pace/statetest"
)

// sameVerdict reports whether a and b are the same verdict.
func sameVerdict(a, b pace.Verdict) bool {
	return a.OK == b.OK && a.At.Equal(b.At) && a.Why == b.Why && a.Held == b.Held && a.Probe == b.Probe
}

// keyOf is the Redis key of one of cred's structures ("p", "c", "k", ...).
func keyOf(cred, k string) string { return redisstate.DefaultPrefix + "{" + cred + "}:" + k }

// TestTallyDecidesAsTheWholeLogs runs one random workload of two replicas
// against stores in lockstep: Redis deciding from the tally (credential
// "tally") and Redis made to read its logs whole at every call, as the
// previous version did (the tally's legacy mode, credential "whole"), and
// a MemoryState given the same times. Every verdict must be the same. The workload keeps the points and the response-time budgets
// tight, so that requests wait for either, and some requests are never
// answered (a replica killed), some unsent. With skew, one replica's clock
// is ahead (7 ms, 10 s): a completion it stamps counts what it took for
// the other replica too, as in the MemoryState, not as a request in
// flight until the other's clock passes its stamp. With earlier, the previous version's
// scripts also write the Redis logs meanwhile, as in a rolling upgrade
// (the same writes to both credentials): the tally must notice and still
// decide the same.
func TestTallyDecidesAsTheWholeLogs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		skew    time.Duration // replica 1's clock ahead of replica 0's
		earlier bool
	}{
		{"clocks agree", 0, false},
		{"clocks 7 ms apart", 7 * time.Millisecond, false},
		{"clocks 10 s apart", 10 * time.Second, false},
		{"clocks 7 ms apart, earlier version writing", 7 * time.Millisecond, true},
		{"clocks agree, earlier version writing", 0, true},
	} {
		earlier := tc.earlier
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			raw := newClient(t, srv)
			lim := pace.StateLimits{PointsPerMinute: 40, CPUPerMinute: 20 * time.Second, MaxInFlight: 8}
			replicas := func(cred string) []*redisstate.State {
				var out []*redisstate.State
				for range 2 {
					s := newState(t, newClient(t, srv), cred, lim, 2)
					s.Sync(ctx, statetest.T0.Add(-time.Hour))
					out = append(out, s)
				}
				return out
			}
			tally, whole := replicas("tally"), replicas("whole")
			mem := pace.NewMemoryState(lim)
			// wholeLogs makes the next call of "whole" read the logs whole.
			wholeLogs := func() {
				if err := raw.HSet(ctx, keyOf("whole", "k"), "legacy", int64(1)<<60).Err(); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(1, 2))
			skew := []time.Duration{0, tc.skew}
			now := statetest.T0
			type flying struct {
				g pace.Grant
				r int
			}
			var inFlight []flying
			waits := map[pace.Reason]int{}
			seq := 0
			for step := range 3000 {
				r := rng.IntN(2)
				at := now.Add(skew[r])
				switch op := rng.IntN(10); {
				case op < 5: // a request
					seq++
					g := pace.Grant{ID: "g" + strconv.Itoa(seq), Cost: pace.ReadPoints,
						CPU: time.Duration(10+rng.IntN(1000)) * time.Millisecond}
					if rng.IntN(4) == 0 {
						g.Cost, g.Write = pace.WritePoints, true
					}
					vt := tally[r].Start(ctx, at, g)
					wholeLogs()
					vw := whole[r].Start(ctx, at, g)
					vm := mem.Start(ctx, at, g)
					if !sameVerdict(vt, vw) || !sameVerdict(vt, vm) {
						t.Fatalf("step %d: Start(%s at +%v) from the tally %+v, from the whole logs %+v, MemoryState %+v",
							step, g.ID, at.Sub(statetest.T0), vt, vw, vm)
					}
					if vt.OK {
						inFlight = append(inFlight, flying{g, r})
					} else {
						waits[vt.Why]++
					}
				case op < 8 && len(inFlight) > 0: // an answer, or none ever
					i := rng.IntN(len(inFlight))
					f := inFlight[i]
					inFlight = append(inFlight[:i], inFlight[i+1:]...)
					if rng.IntN(20) == 0 {
						continue // its replica died
					}
					f.g.Took = time.Duration(1+rng.IntN(1500)) * time.Millisecond
					at = now.Add(skew[f.r])
					tally[f.r].Done(ctx, at, f.g, ok204)
					wholeLogs()
					whole[f.r].Done(ctx, at, f.g, ok204)
					mem.Done(ctx, at, f.g, ok204)
				case op < 9 && len(inFlight) > 0: // never sent
					i := rng.IntN(len(inFlight))
					f := inFlight[i]
					inFlight = append(inFlight[:i], inFlight[i+1:]...)
					tally[f.r].Unsent(ctx, at, f.g)
					wholeLogs()
					whole[f.r].Unsent(ctx, at, f.g)
					mem.Unsent(ctx, at, f.g)
				default:
					now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				}
				if earlier && rng.IntN(12) == 0 {
					// The previous version's replica sends a request
					// (its Start: prune, then in flight) and has it
					// answered: the same to both credentials, counted
					// by the MemoryState too.
					seq++
					id := "old" + strconv.Itoa(seq)
					end := now.Add(-time.Duration(rng.IntN(5)) * time.Millisecond)
					start := end.Add(-time.Duration(rng.IntN(2000)) * time.Millisecond)
					reserve, took := 1+rng.IntN(500), 1+rng.IntN(500)
					done := rng.IntN(20) != 0 // else in flight for good
					for _, cred := range []string{"tally", "whole"} {
						p, c := keyOf(cred, "p"), keyOf(cred, "c")
						pipe := raw.TxPipeline()
						pipe.ZRemRangeByScore(ctx, p, "-inf", strconv.FormatInt(start.Add(-pace.Window).UnixMilli(), 10))
						pipe.ZRemRangeByScore(ctx, c, "-inf", strconv.FormatInt(start.Add(-pace.Window).UnixMilli(), 10))
						pipe.ZAdd(ctx, p, redis.Z{Score: float64(start.Add(pace.InFlightLease).UnixMilli()), Member: "1:" + id})
						pipe.ZAdd(ctx, c, redis.Z{Score: float64(start.Add(pace.InFlightLease).UnixMilli()), Member: strconv.Itoa(reserve) + ":" + id})
						if done {
							pipe.ZAdd(ctx, p, redis.Z{Score: float64(end.UnixMilli()), Member: "1:" + id})
							pipe.ZRem(ctx, c, strconv.Itoa(reserve)+":"+id)
							pipe.ZAdd(ctx, c, redis.Z{Score: float64(end.UnixMilli()), Member: strconv.Itoa(took) + ":" + id})
						}
						if _, err := pipe.Exec(ctx); err != nil {
							t.Fatal(err)
						}
					}
					g := pace.Grant{ID: id, Cost: pace.ReadPoints, CPU: time.Duration(reserve) * time.Millisecond}
					mem.Record(start, g)
					if done {
						g.Took = time.Duration(took) * time.Millisecond
						mem.Done(ctx, end, g, ok204)
					}
				}
			}
			// The tally decided (an earlier version's writes aside), and
			// holds the logs' sums as of its last call.
			tally[0].Sync(ctx, now)
			k, err := raw.HGetAll(ctx, keyOf("tally", "k")).Result()
			if err != nil {
				t.Fatal(err)
			}
			if legacy, _ := strconv.ParseInt(k["legacy"], 10, 64); (legacy > 0) != earlier {
				t.Errorf("the tally's legacy is %d: earlier version noticed %v, want %v", legacy, legacy > 0, earlier)
			}
			for _, log := range []string{"p", "c"} {
				zs, err := raw.ZRange(ctx, keyOf("tally", log), 0, -1).Result()
				if err != nil {
					t.Fatal(err)
				}
				sum := 0
				for _, m := range zs {
					v, _ := strconv.Atoi(m[:strings.IndexByte(m, ':')])
					sum += v
				}
				if k[log] != strconv.Itoa(sum) || k[log+"n"] != strconv.Itoa(len(zs)) {
					t.Errorf("the tally of %s says %s in %s members, the log holds %d in %d", log, k[log], k[log+"n"], sum, len(zs))
				}
			}
			t.Logf("waits: %v", waits)
			if waits[pace.ReasonBudget] == 0 || waits[pace.ReasonCPU] == 0 {
				t.Errorf("the workload never waited for the points or the response time: %v", waits)
			}
			for _, s := range append(tally, whole...) {
				if up, _ := s.Up(); !up {
					t.Errorf("a replica fell back to its local budget: %s", s.Status())
				}
			}
		})
	}
}

// A replica of this version meeting the logs the previous version wrote
// (a rolling upgrade: members without "~", no tally) counts them: the
// points and the response time they hold are spent, and it decides from
// the logs whole until they have left.
func TestTallyMeetsThePreviousVersionsLogs(t *testing.T) {
	srv := redistest.Start(t)
	ctx, t0 := context.Background(), statetest.T0
	raw := newClient(t, srv)
	lim := pace.StateLimits{PointsPerMinute: 10, CPUPerMinute: 10 * time.Second}
	s := newState(t, newClient(t, srv), "upgrade", lim, 1)
	s.Sync(ctx, t0.Add(-time.Hour))
	if err := raw.Del(ctx, keyOf("upgrade", "k")).Err(); err != nil {
		t.Fatal(err)
	}
	// The previous version's replica had 9 reads answered in the second
	// before t0, 1 s each, and has one in flight, expected to take 1 s.
	for i := range 9 {
		end := float64(t0.Add(-time.Second + time.Duration(i)*100*time.Millisecond).UnixMilli())
		raw.ZAdd(ctx, keyOf("upgrade", "p"), redis.Z{Score: end, Member: "1:old" + strconv.Itoa(i)})
		raw.ZAdd(ctx, keyOf("upgrade", "c"), redis.Z{Score: end, Member: "1000:old" + strconv.Itoa(i)})
	}
	inFlight := float64(t0.Add(-time.Second + pace.InFlightLease).UnixMilli())
	raw.ZAdd(ctx, keyOf("upgrade", "p"), redis.Z{Score: inFlight, Member: "1:old9"})
	raw.ZAdd(ctx, keyOf("upgrade", "c"), redis.Z{Score: inFlight, Member: "1000:old9"})
	// 10 points spent: the first leaves at t0 - 1 s + Window.
	v := s.Start(ctx, t0, pace.Grant{ID: "r1", Cost: pace.ReadPoints, CPU: time.Millisecond})
	if want := t0.Add(pace.Window - time.Second); v.OK || !v.At.Equal(want) || v.Why != pace.ReasonBudget {
		t.Fatalf("Start = %+v, want a wait for the points until %v", v, want)
	}
	// At the first one's leaving the points fit; the response time does
	// not: the one in flight counts its time so far, 40 s at most (8 s
	// + 40 s + 2 s asked, of 10 s), and nothing completed that leaves
	// frees enough: ask again soon.
	at := t0.Add(pace.Window - time.Second)
	v = s.Start(ctx, at, pace.Grant{ID: "r2", Cost: pace.ReadPoints, CPU: 2 * time.Second})
	if want := at.Add(pace.SlotPoll); v.OK || !v.At.Equal(want) || v.Why != pace.ReasonCPU {
		t.Fatalf("Start = %+v, want a wait for the response time until %v", v, want)
	}
	k, err := raw.HGetAll(ctx, keyOf("upgrade", "k")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if legacy, _ := strconv.ParseInt(k["legacy"], 10, 64); legacy <= at.UnixMilli() {
		t.Errorf("the tally's legacy is %d, want after %d: the previous version's members are in the logs", legacy, at.UnixMilli())
	}
}
