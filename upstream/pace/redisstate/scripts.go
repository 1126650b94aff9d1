package redisstate

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/secretbroker/secretbroker/upstream/pace"
)

// The keys of one credential, in this order in every script (KEYS[1..7]):
// the points log, the writes log, the write slot, the holds, the epoch,
// the response-time log and the tally. All share the credential's hash
// tag, so they live on one Redis Cluster slot.
//
//   - p, a sorted set: a request's points, member "cost:~id" ("cost:id"
//     when an earlier version wrote it), score the end (ms) of the
//     request: its completion, or while in flight its start plus
//     InFlightLease. It counts until Window after the end.
//   - w, a sorted set: the writes, member id, scored as p; they count
//     until a minute (WritesPerMinute) and an hour (WritesPerHour) after.
//   - s, a hash: holder (the write slot's grant id, "" when free), until
//     (its lease's end), last (the last write's start), prev (last before
//     the holder's write).
//   - h, a hash: pause, reason (a pause and why), reset, remaining (the
//     primary window); probe ("1": the pause needs a probe, pace.Holds),
//     told (the pause that probe was written for: a pause written by an
//     earlier version, which wrote no probe, is taken to need one when it
//     is a secondary pause), prober and prober_until (the grant that is
//     the probe, pace.Verdict.Probe, and its lease's end; the replica
//     that holds it re-seeds them into a Redis that lost them), refusals
//     (the refusals in a row without a hint, pace.Holds).
//   - e, a string: the epoch, "id:created" (ms). A Redis that lost its
//     data has none: every script but seed then answers "empty" and the
//     replica re-seeds it from its local record before spending.
//   - c, a sorted set, with the CPU-time budget on: a request's response
//     time (ms), member "ms:~id" ("ms:id" from an earlier version), scored
//     as p. In flight, ms is what it is expected to take (pace.Grant.CPU),
//     and it counts the longer of that and its time so far (at most
//     pace.InFlightCounted) while its end is ahead; once done, Done
//     replaces the member by "ms::~id", ms what it took (pace.Grant.Took),
//     which counts that whatever the clocks: a completion stamped by a
//     replica whose clock runs ahead is no request in flight for the
//     others until their clocks pass its stamp (a completion an earlier
//     version wrote, "ms:~id", still is).
//   - k, a hash, the tally of p and c, so that a decision reads neither
//     log whole: p and c (the sum of the points and of the response times
//     their members hold), pn and cn (their sizes, as this version's last
//     script left them), seen (the latest now a decision read the logs'
//     recent members at), legacy (until when decisions read the logs
//     whole; see luaTally).
//
// Times are milliseconds passed in by the caller (ARGV[1]): the scripts
// read no clock, so that every replica decides on its own clock and
// tests drive time.
// Lua shared by the scripts. merge_holds takes answers whose resets are
// pace.SameReset apart or closer as one primary window, as pace.Budget and
// pace.MemoryState do.
var luaCommon = fmt.Sprintf(`
local function epoch_ok(want)
  local ep = redis.call('GET', KEYS[5])
  if not ep then return 'empty' end
  if ep ~= want then return 'epoch' end
  return nil
end
local function touch()
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], 3 * 3600 * 1000) end
end
-- whether a member of c is a completion ("took::~id"): it counts what it
-- took, whatever the clock that stamped it
local function completed(m) return string.match(m, '^%%d+::~') ~= nil end
-- whether a member of c, of end e, is in flight at now: its end (its
-- start plus InFlightLease) ahead, and no completion
local function flying_at(m, e, now) return e > now and not completed(m) end
-- the response time a member of c counts at now (pace.Entry.Charge): in
-- flight the longer of its time so far, at most counted, and what it is
-- expected to take; else what it took
local function charge(member, e, now)
  local c = tonumber(string.match(member, '^(%%d+):'))
  if flying_at(member, e, now) then c = math.max(math.min(now - (e - %d), %d), c) end
  return c
end
-- whether the pause (ms, its reason, the hash's probe and told) needs a
-- probe once over: as told for it, or, for a pause an earlier version
-- wrote without telling, when it is a secondary pause
local function needs_probe(pause, reason, probe, told)
  if pause <= 0 then return false end
  if tonumber(told or '0') == pause then return probe == '1' end
  return reason == %d
end
-- the holds as the scripts answer them (pace.Holds): pause, reason,
-- reset, remaining, probe (1: the pause needs a probe)
local function holds_reply()
  local h = redis.call('HMGET', KEYS[4], 'pause', 'reason', 'reset', 'remaining', 'probe', 'told')
  local pause, reason = tonumber(h[1] or '0'), tonumber(h[2] or '0')
  local np = 0
  if needs_probe(pause, reason, h[5], h[6]) then np = 1 end
  return {pause, reason, tonumber(h[3] or '0'), tonumber(h[4] or '0'), np}
end
local function merge_holds(pause, reason, reset, remaining, probe)
  if pause > 0 then
    local cur = tonumber(redis.call('HGET', KEYS[4], 'pause') or '0')
    if pause > cur then redis.call('HSET', KEYS[4], 'pause', pause, 'reason', reason, 'probe', probe, 'told', pause) end
  end
  if reset > 0 then
    local cur = tonumber(redis.call('HGET', KEYS[4], 'reset') or '0')
    if cur == 0 or reset > cur + %d then
      redis.call('HSET', KEYS[4], 'reset', reset, 'remaining', remaining)
    elseif reset >= cur - %d then
      -- the same window: the least remaining, the latest reset
      local rem = tonumber(redis.call('HGET', KEYS[4], 'remaining') or remaining)
      if remaining < rem then redis.call('HSET', KEYS[4], 'remaining', remaining) end
      if reset > cur then redis.call('HSET', KEYS[4], 'reset', reset) end
    end
  end
end
`, pace.InFlightLease.Milliseconds(), pace.InFlightCounted.Milliseconds(), int(pace.ReasonPause),
	pace.SameReset.Milliseconds(), pace.SameReset.Milliseconds())

// luaTally keeps the points log (p) and the response-time log (c) with a
// running sum of each beside it (the tally, k), so that a decision costs
// the same whatever the logs' length: it reads only the members that
// leave the window (each once), those in flight and those completed since
// the last decision, and, when a request must wait, the oldest members
// until enough have left. It decides as reading the logs whole did:
// account returns the same sums.
//
// Every script of this version adds to or takes from the tally what it
// adds to or removes from the logs, and leaves the logs' sizes in it. An
// earlier version's scripts (a rolling upgrade) write the logs without
// keeping the tally: its members carry no "~", and a script that finds
// one among those it reads, or the logs' sizes other than the tally says,
// reads the logs whole, as that version did, and rebuilds the tally, for
// InFlightLease and a Window after (legacy): the life of a member in the
// logs. So does one that finds no tally (a Redis that lost its data, or
// the keys of an earlier version only).
var luaTally = fmt.Sprintf(`
local function member(value, id) return value .. ':~' .. id end
-- a completion's member of c: what it took, marked (completed)
local function done_member(value, id) return value .. '::~' .. id end
local function val(m) return tonumber(string.match(m, '^(%%d+):')) end
local function ours(m) return string.find(m, ':~', 1, true) ~= nil end
-- the tally at now; legacy when the logs' sizes are not what this
-- version's last script left
local function tally_open(now)
  local t = redis.call('HMGET', KEYS[7], 'p', 'pn', 'c', 'cn', 'seen', 'legacy')
  local T = {p = tonumber(t[1] or ''), c = tonumber(t[3] or ''), seen = tonumber(t[5] or '0'),
    legacy = tonumber(t[6] or '0')}
  if T.p and T.c and (redis.call('ZCARD', KEYS[1]) ~= tonumber(t[2]) or redis.call('ZCARD', KEYS[6]) ~= tonumber(t[4])) then
    T.legacy = now + %d
  end
  return T
end
-- adds d to log k's sum ('p' or 'c'), when the tally is kept
local function tally_add(T, k, d)
  if T[k] then T[k] = T[k] + d end
end
local function tally_close(T)
  if not (T.p and T.c) then return end
  redis.call('HSET', KEYS[7], 'p', T.p, 'pn', redis.call('ZCARD', KEYS[1]), 'c', T.c,
    'cn', redis.call('ZCARD', KEYS[6]), 'seen', T.seen, 'legacy', T.legacy)
end
-- every replica's use at now: the points in the window and in flight (an
-- end ahead), the response time (charge) in the window and in flight.
-- It drops the members that left the window first.
local function account(T, now)
  local minute = %d
  local foreign = false
  local function prune(key, k)
    local gone = redis.call('ZRANGEBYSCORE', key, '-inf', now - minute)
    if #gone == 0 then return end
    for _, m in ipairs(gone) do
      tally_add(T, k, -val(m))
      if not ours(m) then foreign = true end
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - minute)
  end
  prune(KEYS[1], 'p')
  prune(KEYS[6], 'c')
  -- the members in flight, and those completed since the last decision
  local from = math.min(T.seen, now)
  local rp = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. from, '+inf', 'WITHSCORES')
  local rc = redis.call('ZRANGEBYSCORE', KEYS[6], '(' .. from, '+inf', 'WITHSCORES')
  for i = 1, #rp, 2 do if not ours(rp[i]) then foreign = true end end
  for i = 1, #rc, 2 do if not ours(rc[i]) then foreign = true end end
  if foreign then T.legacy = now + %d end
  T.seen = math.max(T.seen, now)
  local a = {used = 0, usedFlight = 0, cpu = 0, cpuFlight = 0}
  if T.p and T.c and T.legacy <= now then
    a.used = T.p
    for i = 1, #rp, 2 do
      if tonumber(rp[i+1]) > now then a.usedFlight = a.usedFlight + val(rp[i]) end
    end
    -- the completed members count what they hold, those in flight
    -- their charge
    a.cpu = T.c
    for i = 1, #rc, 2 do
      local e = tonumber(rc[i+1])
      if flying_at(rc[i], e, now) then
        local c = charge(rc[i], e, now)
        a.cpu = a.cpu - val(rc[i]) + c
        a.cpuFlight = a.cpuFlight + c
      end
    end
    return a
  end
  -- the logs whole, as an earlier version read them; the tally anew
  local pts = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #pts, 2 do
    local c = val(pts[i])
    a.used = a.used + c
    if tonumber(pts[i+1]) > now then a.usedFlight = a.usedFlight + c end
  end
  local cs = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
  local held = 0
  for i = 1, #cs, 2 do
    local e = tonumber(cs[i+1])
    local c = charge(cs[i], e, now)
    a.cpu = a.cpu + c
    held = held + val(cs[i])
    if flying_at(cs[i], e, now) then a.cpuFlight = a.cpuFlight + c end
  end
  T.p, T.c = a.used, held
  return a
end
-- when over more points fit: the members leave the window oldest end
-- first (those in flight too, a Window after their lease); now plus a
-- Window when all of them are not enough
local function free_points(now, over)
  local minute, i = %d, 0
  while true do
    local chunk = redis.call('ZRANGE', KEYS[1], i, i + 15, 'WITHSCORES')
    if #chunk == 0 then return now + minute end
    for j = 1, #chunk, 2 do
      over = over - val(chunk[j])
      if over <= 0 then return tonumber(chunk[j+1]) + minute end
    end
    i = i + 16
  end
end
-- when over more response time fits: the members of a fixed charge
-- (completed, or in flight past their lease) leave the window oldest end
-- first; a wait for those in flight asks again at poll
local function free_cpu(now, over, poll)
  local minute, i = %d, 0
  while true do
    local chunk = redis.call('ZRANGE', KEYS[6], i, i + 63, 'WITHSCORES')
    if #chunk == 0 then return poll end
    for j = 1, #chunk, 2 do
      local e = tonumber(chunk[j+1])
      if not flying_at(chunk[j], e, now) then
        over = over - val(chunk[j])
        if over <= 0 then return e + minute end
      end
    end
    i = i + 64
  end
end
-- every replica's use at now, as startScript returns it after a grant:
-- points and writes in the minute, writes in the hour, and of each what
-- is in flight (an entry whose end is still ahead), then the response
-- time in the minute and of it what is in flight; a is account's
local function usage(a, now)
  local minute, hour = %d, %d
  local wmin = redis.call('ZCOUNT', KEYS[2], '(' .. (now - minute), '+inf')
  local whour = redis.call('ZCOUNT', KEYS[2], '(' .. (now - hour), '+inf')
  local wflight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
  return {a.used, wmin, whour, a.usedFlight, wflight, wflight, a.cpu, a.cpuFlight}
end
`, (pace.InFlightLease + pace.Window).Milliseconds(), pace.Window.Milliseconds(), (pace.InFlightLease + pace.Window).Milliseconds(),
	pace.Window.Milliseconds(), pace.Window.Milliseconds(), pace.Window.Milliseconds(), pace.WritesHour.Milliseconds())

// startScript decides and, when allowed, grants one request.
// ARGV: now, id, cost, write (0/1), pointsPerMinute, interval, lease,
// writesPerMinute, writesPerHour, inFlightLease, epoch, poll (ms),
// maxInFlight (0: off), cpuPerMinute (ms, 0: off), cpu (ms, what the
// request is expected to take), probeLease (ms).
// Returns {"ok", points, writesMinute, writesHour, pointsInFlight,
// writesMinuteInFlight, writesHourInFlight, cpu, cpuInFlight, probe,
// holds...} (every replica's use after the grant, and of it what is in
// flight; probe 1 when the grant is the probe; the holds after it, as
// holds_reply), {"wait", at, why, pause, reason, reset,
// remaining, probe (1: the pause needs a probe), probing (1: the wait is
// for another grant's probe)}, or {"empty"} / {"epoch"}.
var startScript = redis.NewScript(luaCommon + luaTally + fmt.Sprintf(`
local now = tonumber(ARGV[1])
local id, cost, write = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local ppm, interval, lease = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local wpm, wph, inflight = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local poll, maxfl = tonumber(ARGV[12]), tonumber(ARGV[13])
local cpm, cpu = tonumber(ARGV[14]), tonumber(ARGV[15])
local probeLease = tonumber(ARGV[16])
local minute, hour = %d, %d
local bad = epoch_ok(ARGV[11])
if bad then return {bad} end

local T = tally_open(now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - hour)
local a = account(T, now)

local at, why = now, 0
local function later(t, r) if t > at then at, why = t, r end end

local h = redis.call('HMGET', KEYS[4], 'pause', 'reason', 'reset', 'remaining', 'probe', 'told', 'prober', 'prober_until')
local pause, reason = tonumber(h[1] or '0'), tonumber(h[2] or '0')
local reset, remaining = tonumber(h[3] or '0'), tonumber(h[4] or '1')
if pause > now then later(pause, reason) end
if reset > now and remaining <= 0 then later(reset, %d) end
-- out of a pause that needs a probe, one grant at a time, across the
-- replicas: another's probe makes this one wait, at the latest until its
-- lease ends
local needProbe = needs_probe(pause, reason, h[5], h[6])
local probing = needProbe and pause <= now
local prober, proberUntil = h[7] or '', tonumber(h[8] or '0')
local waitProbe = 0
if probing and prober ~= '' and prober ~= id and proberUntil > now then
  later(math.min(proberUntil, now + poll), %d)
  waitProbe = 1
end
-- the requests in flight on every replica may not use up what is left of
-- the primary quota: their answers, not yet in, will say what is left
-- (those started within InFlightCounted: a dead replica's stop counting)
local flying = redis.call('ZCOUNT', KEYS[1], '(' .. (now + inflight - %d), '+inf')
if reset > now and remaining > 0 and flying >= remaining then
  later(math.min(reset, now + poll), %d)
end
-- GitHub's limit on requests in flight, every replica's together, counted
-- alike
if maxfl > 0 and flying >= maxfl then later(now + poll, %d) end

-- the points log: every entry counts (pruned by account)
local used, usedFlight = a.used, a.usedFlight
if ppm > 0 and used + cost > ppm then later(free_points(now, used + cost - ppm), %d) end

-- the response-time log
local cpuUsed, cpuFlight = 0, 0
if cpm > 0 then
  cpuUsed, cpuFlight = a.cpu, a.cpuFlight
  local over = cpuUsed + math.min(cpu, cpm) - cpm
  if over > 0 then later(free_cpu(now, over, now + poll), %d) end
end

local wmin = redis.call('ZCOUNT', KEYS[2], '(' .. (now - minute), '+inf')
local whour = redis.call('ZCARD', KEYS[2])
local wminFlight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
if write then
  local s = redis.call('HMGET', KEYS[3], 'holder', 'until', 'last')
  if interval > 0 then
    if s[3] and s[3] ~= '' then later(tonumber(s[3]) + interval, %d) end
    if s[1] and s[1] ~= '' and s[1] ~= id and tonumber(s[2]) > now then
      later(math.min(tonumber(s[2]), now + poll), %d)
    end
  end
  if wpm > 0 and wmin + 1 > wpm then
    local r = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - minute), '+inf', 'WITHSCORES', 'LIMIT', wmin - wpm, 1)
    later(tonumber(r[2]) + minute, %d)
  end
  if wph > 0 and whour + 1 > wph then
    local r = redis.call('ZRANGE', KEYS[2], whour - wph, whour - wph, 'WITHSCORES')
    later(tonumber(r[2]) + hour, %d)
  end
end
if at > now then
  tally_close(T)
  local np = 0
  if needProbe then np = 1 end
  return {'wait', at, why, pause, reason, reset, remaining, np, waitProbe}
end

tally_add(T, 'p', cost * redis.call('ZADD', KEYS[1], now + inflight, member(cost, id)))
used, usedFlight = used + cost, usedFlight + cost
if cpm > 0 then
  tally_add(T, 'c', cpu * redis.call('ZADD', KEYS[6], now + inflight, member(cpu, id)))
  cpuUsed, cpuFlight = cpuUsed + cpu, cpuFlight + cpu
end
if write then
  redis.call('ZADD', KEYS[2], now + inflight, id)
  wmin, whour, wminFlight = wmin + 1, whour + 1, wminFlight + 1
  if interval > 0 then
    local last = redis.call('HGET', KEYS[3], 'last') or ''
    redis.call('HSET', KEYS[3], 'holder', id, 'until', now + lease, 'prev', last, 'last', now)
  end
end
local isProbe = 0
if probing then
  -- no other probe's lease runs (else it waited): this grant is the probe
  redis.call('HSET', KEYS[4], 'prober', id, 'prober_until', now + probeLease)
  isProbe = 1
end
tally_close(T)
touch()
local hr = holds_reply()
return {'ok', used, wmin, whour, usedFlight, wminFlight, wminFlight, cpuUsed, cpuFlight, isProbe,
  hr[1], hr[2], hr[3], hr[4], hr[5]}
`, pace.Window.Milliseconds(), pace.WritesHour.Milliseconds(),
	int(pace.ReasonPrimary), int(pace.ReasonPause), pace.InFlightCounted.Milliseconds(), int(pace.ReasonPrimary), int(pace.ReasonQueue), int(pace.ReasonBudget), int(pace.ReasonCPU), int(pace.ReasonSpacing), int(pace.ReasonSpacing),
	int(pace.ReasonContent), int(pace.ReasonContent)))

// doneScript records a completion. ARGV: now, id, cost, write, epoch,
// pause, reason, reset, remaining, cpu (ms expected, "" with the CPU-time
// budget off), took (ms), probe (1: a refusal that said nothing of how
// long to wait, whose pause needs a probe), answered (1: an answer that is
// no refusal, which lifts the limit when it answers the probe), secondary
// (ms, the State's SecondaryPause). A refusal of probe 1, the first of its
// incident (no pause running), counts one more in h's refusals, and pauses
// at least for their escalation (pace.EscalatedPause); an answered 1 once
// the pause is over ends the run. Returns "ok", "empty" or "epoch".
var doneScript = redis.NewScript(luaCommon + luaTally + fmt.Sprintf(`
local now = tonumber(ARGV[1])
local id, cost, write = ARGV[2], ARGV[3], ARGV[4] == '1'
local bad = epoch_ok(ARGV[5])
if bad then return bad end
local T = tally_open(now)
tally_add(T, 'p', tonumber(cost) * redis.call('ZADD', KEYS[1], now, member(cost, id)))
if ARGV[10] ~= '' then
  -- the member in flight gives way to the completion's, which counts
  -- what it took whatever the other replicas' clocks say of now
  tally_add(T, 'c', -tonumber(ARGV[10]) * redis.call('ZREM', KEYS[6], member(ARGV[10], id)))
  tally_add(T, 'c', tonumber(ARGV[11]) * redis.call('ZADD', KEYS[6], now, done_member(ARGV[11], id)))
end
if write then
  redis.call('ZADD', KEYS[2], now, id)
  if redis.call('HGET', KEYS[3], 'holder') == id then redis.call('HSET', KEYS[3], 'holder', '') end
end
if redis.call('HGET', KEYS[4], 'prober') == id then
  -- the probe's answer: no refusal lifts the limit; a refusal pauses
  -- again (merge_holds); either way the role is free
  redis.call('HSET', KEYS[4], 'prober', '')
  if ARGV[13] == '1' then
    redis.call('HSET', KEYS[4], 'probe', '0', 'told', redis.call('HGET', KEYS[4], 'pause') or '0')
  end
end
local pause = tonumber(ARGV[6])
local cur = tonumber(redis.call('HGET', KEYS[4], 'pause') or '0')
if ARGV[12] == '1' then
  local n = tonumber(redis.call('HGET', KEYS[4], 'refusals') or '0')
  if cur <= now then
    n = n + 1
    redis.call('HSET', KEYS[4], 'refusals', n)
  end
  pause = math.max(pause, now + tonumber(ARGV[14]) * 2 ^ math.min(math.max(n - 1, 0), %d))
elseif ARGV[13] == '1' and cur <= now then
  redis.call('HSET', KEYS[4], 'refusals', 0)
end
merge_holds(pause, tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[12])
tally_close(T)
touch()
return 'ok'
`, pace.MaxSecondaryDoublings))

// unsentScript gives a grant back. ARGV: id, cost, write, epoch, cpu (ms
// expected), now.
var unsentScript = redis.NewScript(luaCommon + luaTally + `
local id, cost, write = ARGV[1], ARGV[2], ARGV[3] == '1'
local bad = epoch_ok(ARGV[4])
if bad then return bad end
local T = tally_open(tonumber(ARGV[6]))
tally_add(T, 'p', -tonumber(cost) * redis.call('ZREM', KEYS[1], member(cost, id)))
tally_add(T, 'c', -tonumber(ARGV[5]) * redis.call('ZREM', KEYS[6], member(ARGV[5], id)))
if write then
  redis.call('ZREM', KEYS[2], id)
  if redis.call('HGET', KEYS[3], 'holder') == id then
    local prev = redis.call('HGET', KEYS[3], 'prev') or ''
    redis.call('HSET', KEYS[3], 'holder', '', 'last', prev)
  end
end
if redis.call('HGET', KEYS[4], 'prober') == id then redis.call('HSET', KEYS[4], 'prober', '') end
tally_close(T)
return 'ok'
`)

// syncScript checks the epoch, extends the write slot's lease of its
// holder and returns every replica's use, the heartbeat's snapshot to fall
// back on, and the holds. ARGV: now, id ("" for none), lease, epoch.
// Returns {"ok", points, writesMinute, writesHour, pointsInFlight,
// writesMinuteInFlight, writesHourInFlight, cpu, cpuInFlight, holds...}
// (as startScript after a grant, without probe), or "empty" / "epoch".
var syncScript = redis.NewScript(luaCommon + luaTally + `
local now = tonumber(ARGV[1])
local bad = epoch_ok(ARGV[4])
if bad then return bad end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], 'holder') == ARGV[2] then
  redis.call('HSET', KEYS[3], 'until', now + tonumber(ARGV[3]))
end
local T = tally_open(now)
local u = usage(account(T, now), now)
tally_close(T)
local hr = holds_reply()
return {'ok', u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], hr[1], hr[2], hr[3], hr[4], hr[5]}
`)

// seedScript joins the current epoch, creating one when Redis has none
// (it lost its data), and adds the caller's local record: entries it may
// not have, and the earlier end of one it has (ZADD LT: a completion Redis
// never got replaces the request's end while in flight), the holds, the last
// write's start, and the write slot of the caller's write in flight: its
// lease is extended when the caller holds it, and taken again when nobody
// holds it (Redis lost it, or the lease ran out while the caller could not
// renew it: its write is still in flight). ARGV: now, new epoch id, last
// write (ms, 0: none), pause, reason, reset, remaining, holding (the
// caller's write grant in flight, "" none), lease, cpu (1: the CPU-time
// budget is on), probe (1: the pause needs a probe; 0 for the pause
// Redis has, the same end, lifts it: a probe's answer the caller had and
// Redis did not), refusals (in a row, pace.Holds: Redis keeps the more),
// prober and prober_until (the caller's grant that is the probe, still
// out, and its lease's end; "" none: Redis takes it when it has no probe
// whose lease runs, so that no second probe goes while it may still reach
// GitHub), then per entry: cost, id, end, write, cpu (ms: expected
// in flight, taken once done), expected (ms), done (1: completed). A
// completed entry replaces the member Redis may hold for it in flight. Returns {epoch
// ("id:created"), then every replica's use and the holds as syncScript}.
var seedScript = redis.NewScript(luaCommon + luaTally + `
local now = tonumber(ARGV[1])
local ep = redis.call('GET', KEYS[5])
if not ep then
  ep = ARGV[2] .. ':' .. now
  redis.call('SET', KEYS[5], ep)
end
local last = tonumber(ARGV[3])
if last > 0 then
  local cur = tonumber(redis.call('HGET', KEYS[3], 'last') or '0') or 0
  if last > cur then redis.call('HSET', KEYS[3], 'last', last) end
end
local pause = tonumber(ARGV[4])
if pause > 0 and ARGV[11] ~= '1' and tonumber(redis.call('HGET', KEYS[4], 'pause') or '0') == pause then
  redis.call('HSET', KEYS[4], 'probe', '0', 'told', pause)
end
merge_holds(pause, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[11])
if tonumber(ARGV[12]) > tonumber(redis.call('HGET', KEYS[4], 'refusals') or '0') then
  redis.call('HSET', KEYS[4], 'refusals', ARGV[12])
end
local prober, proberUntil = ARGV[13], tonumber(ARGV[14])
if prober ~= '' and proberUntil > now then
  local p = redis.call('HMGET', KEYS[4], 'prober', 'prober_until')
  if not p[1] or p[1] == '' or p[1] == prober or tonumber(p[2] or '0') <= now then
    redis.call('HSET', KEYS[4], 'prober', prober, 'prober_until', proberUntil)
  end
end
local holding, lease = ARGV[8], tonumber(ARGV[9])
if holding ~= '' then
  local s = redis.call('HMGET', KEYS[3], 'holder', 'until', 'last')
  if s[1] == holding then
    redis.call('HSET', KEYS[3], 'until', now + lease)
  elseif not s[1] or s[1] == '' or tonumber(s[2] or '0') <= now then
    -- prev: an Unsent of this write keeps the last write's start.
    redis.call('HSET', KEYS[3], 'holder', holding, 'until', now + lease, 'prev', s[3] or '')
  end
end
local cpuOn = ARGV[10] == '1'
local T = tally_open(now)
for i = 15, #ARGV, 7 do
  local cost, id, e, w = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2]), ARGV[i+3] == '1'
  -- LT: a request Redis holds as in flight whose completion it never got
  -- (its Done was lost) takes the completion, an earlier end
  if tonumber(cost) > 0 then
    tally_add(T, 'p', tonumber(cost) * redis.call('ZADD', KEYS[1], 'LT', e, member(cost, id)))
  end
  if w then redis.call('ZADD', KEYS[2], 'LT', e, id) end
  if cpuOn then
    local c, r = ARGV[i+4], ARGV[i+5]
    if ARGV[i+6] == '1' then
      tally_add(T, 'c', -tonumber(r) * redis.call('ZREM', KEYS[6], member(r, id)))
      tally_add(T, 'c', tonumber(c) * redis.call('ZADD', KEYS[6], 'LT', e, done_member(c, id)))
    else
      tally_add(T, 'c', tonumber(c) * redis.call('ZADD', KEYS[6], 'LT', e, member(c, id)))
    end
  end
end
local u = usage(account(T, now), now)
tally_close(T)
touch()
local hr = holds_reply()
return {ep, u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], hr[1], hr[2], hr[3], hr[4], hr[5]}
`)
