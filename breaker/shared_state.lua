-- The shared state of one breaker, and the four operations on it. Every instance of a service
-- runs its breaker's operations through this script; memory_state.go is the same state machine
-- for the MemoryStore (FuzzScriptMatchesMemory holds the two equal). Times are milliseconds of
-- Redis TIME, so instance clocks do not matter.
--
-- KEYS[1], prefix{name}: a hash with the fields
--   g    generation, +1 at every transition. The first is 16 times the key's creation time (g0,
--        14 digits, exact in any number format), so a key that expired and was created again
--        has generations above every one of its former life (which would need 16 transitions a
--        millisecond to catch up): instances that saw the old ones take the new ones as newer,
--        and their outcomes (gen < g0) count in the new life.
--   g0   the first generation
--   s    state: 0 closed, 1 open, 2 half-open
--   u    open until
--   cf   consecutive failures. Counted per batch: the failures after a batch's last success
--        extend the shared run, a batch with a success (or whose late outcomes include one)
--        restarts it; with several instances the run is exact up to the interleaving within
--        one flush interval.
--   r    consecutive reopenings from half-open, for the backoff
--   ps   successful probes in this half-open generation
--   p1..pN, l1..lN   the deadline and id of each probe lease (N = probes)
--   x<id>   a tombstone: a release found no lease of that id (its acquisition has not arrived,
--        was refused, or its lease ended), so the acquisition is refused if it comes; the value
--        is when it lapses, a probe timeout later. A release that leaves one drops the lapsed
--        ones: there are never more than the releases that found no lease within a probe
--        timeout, and releases follow failed lease calls only.
--   wt0..9, wc0..9, wf0..9   the FailureRate window: per tenth of the window, its index since
--        the epoch, its calls and failures
--   kc, kf   the window of the last WindowCalls calls, estimated: each batch's calls and
--        failures are added and both scaled back to WindowCalls, as if spread evenly
--   n, nf    outcomes and failures counted since the key was created (the totals): every
--        outcome sent, late ones included
-- The TTL is the longest of window, open duration and probe timeout, plus what is left of the
-- open period when open, or plus a probe timeout when half-open, renewed at each write: a
-- stale state never outlives its time, and a breaker nobody uses starts again closed.
--
-- KEYS[2], prefix{name}:q:<instance>: the number of the last batch applied for one Breaker
-- object (instance), kept 10 minutes. A batch sent again after a timeout (Redis may have run
-- it) is applied once.
--
-- ARGV: op, channel, name, gen (for "s" and "r": the generation the outcomes or the probe belong
--   to; -1 unknown), jitter (for "r": in [0, 1), where a reopening's open duration falls in its
--   range), then the policy: failures, rate, mincalls, window, windowcalls (0: the rate looks
--   at the window), open, maxopen, probes, successes, probetimeout,
--   then for op
--   "s" (sync: add a batch of outcomes, read the state): successes, failures, the failures
--       after the last success, late outcomes, late failures (late: counted in the totals only;
--       outcomes of an earlier generation, or counted while the store failed), hold (ms to
--       stay open, from a Retry-After), seq (the batch's number, 0 for a batch with nothing to
--       apply), ended (1: a success among the late outcomes ended the run of failures)
--   "a" (acquire a probe lease) and "x" (release a lease whose acquisition or report failed):
--       the lease's id
--   "r" (report a probe): slot, deadline (which identify the lease), outcome (0 success,
--       1 failure, 2 ignored)
-- Returns {gen, state, wait (ms until open ends, or until the earliest busy lease ends), slot
-- and deadline of a granted lease, counted (1 when the outcome counted in the policy), first (1
-- when gen is g0: the state was created, perhaps again, and has had no transition since)}.
-- A transition is announced on the channel with the name only: an instance that hears it reads
-- the state itself, so a message can never force a state on a breaker.

local key = KEYS[1]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local op, channel, name = ARGV[1], ARGV[2], ARGV[3]
local gen, jitter = tonumber(ARGV[4]), tonumber(ARGV[5])
local maxfailures, rate, mincalls = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local window, windowcalls = tonumber(ARGV[9]), tonumber(ARGV[10])
local openms, maxopen = tonumber(ARGV[11]), tonumber(ARGV[12])
local probes, successes, probetimeout = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])

local h = redis.call('HMGET', key, 'g', 'g0', 's', 'u', 'cf', 'r', 'ps')
local g, g0 = tonumber(h[1]), tonumber(h[2])
local state, openuntil = tonumber(h[3]) or 0, tonumber(h[4]) or 0
local consecutive, reopenings, probesuccesses = tonumber(h[5]) or 0, tonumber(h[6]) or 0, tonumber(h[7]) or 0
local wrote = false
if not g then
  g = now * 16
  g0 = g
  redis.call('HSET', key, 'g0', g0)
  wrote = true
end
local before = g

local function clearprobes()
  for i = 1, probes do redis.call('HDEL', key, 'p' .. i, 'l' .. i) end
  probesuccesses = 0
end

-- open starts a new generation, open until the given time.
local function open(untiltime)
  g, state, openuntil, consecutive = g + 1, 1, untiltime, 0
  clearprobes()
end

-- trip opens for the open duration, doubled with jitter for a reopening.
local function trip(reopen)
  if reopen then reopenings = reopenings + 1 else reopenings = 0 end
  local d = openms
  if maxopen > d and reopenings > 0 then
    local ceiling = maxopen
    if reopenings < 30 and d * 2 ^ reopenings < ceiling then ceiling = d * 2 ^ reopenings end
    d = d + math.floor(jitter * (ceiling - d + 1))
  end
  open(now + d)
end

-- close starts a new closed generation, which forgets the failures.
local function close()
  g, state, consecutive, reopenings = g + 1, 0, 0, 0
  clearprobes()
  for i = 0, 9 do redis.call('HDEL', key, 'wt' .. i, 'wc' .. i, 'wf' .. i) end
  redis.call('HDEL', key, 'kc', 'kf')
end

-- addtowindow adds a batch to the calls FailureRate looks at and says whether their failure rate
-- trips the breaker.
local function addtowindow(succ, fail)
  local calls, failed = 0, 0
  if windowcalls > 0 then
    calls = (tonumber(redis.call('HGET', key, 'kc')) or 0) + succ + fail
    failed = (tonumber(redis.call('HGET', key, 'kf')) or 0) + fail
    if calls > windowcalls then
      failed = math.floor(failed * windowcalls / calls + 0.5)
      calls = windowcalls
    end
    redis.call('HSET', key, 'kc', calls, 'kf', failed)
  else
    local index = math.floor(now / math.max(1, math.floor(window / 10)))
    local i = index % 10
    if tonumber(redis.call('HGET', key, 'wt' .. i)) == index then
      redis.call('HINCRBY', key, 'wc' .. i, succ + fail)
      redis.call('HINCRBY', key, 'wf' .. i, fail)
    else
      redis.call('HSET', key, 'wt' .. i, index, 'wc' .. i, succ + fail, 'wf' .. i, fail)
    end
    local fields = {}
    for j = 0, 9 do
      fields[#fields + 1] = 'wt' .. j
      fields[#fields + 1] = 'wc' .. j
      fields[#fields + 1] = 'wf' .. j
    end
    local w = redis.call('HMGET', key, unpack(fields))
    for j = 0, 9 do
      local b = tonumber(w[3 * j + 1])
      if b and b > index - 10 then
        calls = calls + tonumber(w[3 * j + 2])
        failed = failed + tonumber(w[3 * j + 3])
      end
    end
  end
  return calls >= mincalls and failed >= rate * calls
end

local wait, slot, deadline, counted = 0, 0, 0, 0

-- sync adds a batch of outcomes: all to the totals, those of the current closed generation (or
-- of a former life of the key) to the policy, which may trip. A Retry-After opens the breaker
-- for that long, whatever the state.
local function sync()
  local succ, fail, tail = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
  local late, latefail, hold = tonumber(ARGV[19]), tonumber(ARGV[20]), tonumber(ARGV[21])
  local seq, ended = tonumber(ARGV[22]), ARGV[23] == '1'
  if seq > 0 then
    if seq <= (tonumber(redis.call('GET', KEYS[2])) or 0) then
      succ, fail, tail, late, latefail, hold, ended = 0, 0, 0, 0, 0, 0, false -- applied before: read only
      redis.call('PEXPIRE', KEYS[2], 600000) -- remembered while it is being sent again
    else
      redis.call('SET', KEYS[2], seq, 'PX', 600000)
    end
  end
  if succ + fail + late > 0 then
    redis.call('HINCRBY', key, 'n', succ + fail + late)
    redis.call('HINCRBY', key, 'nf', fail + latefail)
    wrote = true
  end
  if state == 0 and (gen == g or gen < g0) then
    if succ + fail > 0 then
      counted = 1
      if succ > 0 or ended then consecutive = tail else consecutive = consecutive + tail end
      local tripped = consecutive >= maxfailures
      if rate > 0 and addtowindow(succ, fail) then tripped = true end
      if tripped then trip(false) end
      wrote = true
    elseif ended and consecutive > 0 then
      consecutive = 0
      wrote = true
    end
  end
  if hold > 0 and (state ~= 1 or openuntil < now + hold) then open(now + hold) end
end

-- acquire moves an open state whose time is over to half-open, and grants a free probe lease
-- (or one whose deadline passed), or says when the earliest one ends.
local function acquire()
  if state == 1 and now >= openuntil then
    g, state = g + 1, 2
    clearprobes()
  end
  -- A lease given back before this request arrived (its acquisition timed out, and the release
  -- overtook it on another connection) is never granted.
  local xfield = 'x' .. ARGV[16]
  if redis.call('HEXISTS', key, xfield) == 1 then
    redis.call('HDEL', key, xfield)
    wrote = true
    return
  end
  if state ~= 2 then return end
  local earliest = 0
  for i = 1, probes do
    local d = tonumber(redis.call('HGET', key, 'p' .. i)) or 0
    if d <= now then
      slot, deadline = i, now + probetimeout
      redis.call('HSET', key, 'p' .. i, deadline, 'l' .. i, ARGV[16])
      wrote = true
      return
    end
    if earliest == 0 or d < earliest then earliest = d end
  end
  wait = earliest - now
end

-- release frees the lease of the given id, if it holds one; otherwise the acquisition has not
-- arrived yet (or never will), and a tombstone x<id>, kept one probe timeout, refuses it. The
-- lapsed tombstones go then (the hash holds few other fields).
local function release()
  local found = false
  for i = 1, probes do
    if redis.call('HGET', key, 'l' .. i) == ARGV[16] then
      redis.call('HDEL', key, 'p' .. i, 'l' .. i)
      found = true
    end
  end
  if not found then
    local fields = redis.call('HGETALL', key)
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, 1) == 'x' and tonumber(fields[i + 1]) <= now then
        redis.call('HDEL', key, fields[i])
      end
    end
    redis.call('HSET', key, 'x' .. ARGV[16], now + probetimeout)
  end
  wrote = true
end

-- report counts a probe's outcome in the totals and, in the probe's half-open generation, frees
-- its lease and counts it: a failure reopens, enough successes close.
local function report()
  local pslot, pdeadline, outcome = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
  if outcome ~= 2 then
    redis.call('HINCRBY', key, 'n', 1)
    if outcome == 1 then redis.call('HINCRBY', key, 'nf', 1) end
    wrote = true
  end
  if state ~= 2 or gen ~= g then return end
  if tonumber(redis.call('HGET', key, 'p' .. pslot)) == pdeadline then
    redis.call('HDEL', key, 'p' .. pslot, 'l' .. pslot)
    wrote = true
  end
  if outcome == 1 then
    counted = 1
    trip(true)
  elseif outcome == 0 then
    counted = 1
    probesuccesses = probesuccesses + 1
    if probesuccesses >= successes then close() end
    wrote = true
  end
end

if op == 's' then sync() elseif op == 'a' then acquire() elseif op == 'x' then release() elseif op == 'r' then report() end

local changed = g ~= before
if state == 1 then wait = math.max(0, openuntil - now) end
if wrote or changed then
  redis.call('HSET', key, 'g', g, 's', state, 'u', openuntil, 'cf', consecutive, 'r', reopenings, 'ps', probesuccesses)
  local ttl = math.max(window, probetimeout, openms)
  if state == 1 then ttl = ttl + math.max(0, openuntil - now) elseif state == 2 then ttl = ttl + probetimeout end
  redis.call('PEXPIRE', key, ttl)
end
if changed then redis.call('PUBLISH', channel, name) end
local first = 0
if g == g0 then first = 1 end
return {g, state, wait, slot, deadline, counted, first}
