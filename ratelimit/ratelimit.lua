-- Every decision of a RedisStore: the arithmetic of gcra.go and slidinglog.go, in microseconds
-- of the server's clock (TIME), so that instance clocks never matter.
--
-- KEYS[1..m] are the state keys of the m requests of one call; on a single node they may be any
-- keys, on a Cluster they share one slot. With holds (ARGV[2] == '1') KEYS[m+i] is the hold set
-- of KEYS[i]. ARGV[1] is the operation, ARGV[3] the id of the request's holds, ARGV[4] how long a
-- hold lives (us), then four per request: kind ('g' GCRA, 's' strict), a, b, n, where a GCRA
-- request has a = interval and b = burst tolerance (us), a strict one a = period (us) and
-- b = rate, and n is the units asked (> 0), 0 for a peek, < 0 to give units back.
--
-- State:
--   GCRA key    a string, the theoretical arrival time (us); it expires when the key is back
--               to a full burst, so idle keys cost nothing.
--   strict key  a list of grant times (us), oldest first, one per unit: at most rate of them in
--               any period. Times never decrease (a grant is recorded at max(now, newest)), so
--               the ones that left the window are a prefix, trimmed when the key is written. It
--               expires a period after its newest grant.
--   hold set    a sorted set next to a state key, same hash tag: member "<id>:<i>:<n>" (request
--               id's i-th request holds n units), score = when the hold lapses (us).
--
-- Outcome of each request: granted (its key has the units, counting the units other requests
-- hold), denied (the key lacks the units in its committed state alone: a real denial), or busy
-- (the committed state has the units, but not once the holds of other requests are counted:
-- the request must try again once they are committed or released).
--
-- Operations, each all or nothing over the call's requests:
--   decide   grant and charge every request, or change nothing: the whole decision when every
--            key of a request is in this call, one round trip.
--   reserve  the first phase when the keys of a request span slots: if every request of this
--            call is granted, place a hold for each; write nothing else.
--   commit   the second phase, once every slot granted: charge each request and drop its hold.
--            A hold that lapsed (its instance stalled for several timeouts) is charged all the
--            same: that may refuse others early, never grant one too many.
--   release  the second phase otherwise: drop the holds.
--
-- A request spanning slots thus costs two round trips (reserve on every slot in one pipeline,
-- then commit or release on every slot in one pipeline); a busy one releases its holds and tries
-- again after a short random wait, within its timeout. Other requests never see units that a
-- request does not keep: they see them held (busy), not charged, so a denial always means the
-- key lacked the units, and holds lapse on their own if an instance dies between the phases.
--
-- Returns four numbers per request: status (0 denied, 1 granted, 2 busy), remaining, retry after
-- (us) and reset after (us). A request whose charge was written reports its key after the charge;
-- any other reports its key as it was, uncharged (a peek, a denial, or a grant in a call that
-- another request denied or that only reserved).
local op, holding, id, life = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local m = #KEYS
if holding then m = m / 2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function member(i) return id .. ':' .. i .. ':' .. ARGV[4 * i + 4] end

if op == 'release' then
  for i = 1, m do redis.call('ZREM', KEYS[m + i], member(i)) end
  return {}
end

-- The state of each key as this call leaves it: {tat} for GCRA, {period, ts, drop, pushed,
-- popped} for a strict key (ts: its grants within the window, drop: how many older ones Redis
-- holds, pushed and popped: the grants this call adds or gives back).
local states, held = {}, {}

local function load(i)
  local key = KEYS[i]
  local st = states[key]
  if st then return st end
  if ARGV[4 * i + 1] == 'g' then
    st = {tat = math.max(tonumber(redis.call('GET', key)) or 0, now)}
  else
    st = {period = tonumber(ARGV[4 * i + 2]), ts = {}, drop = 0, pushed = 0, popped = 0}
    for _, v in ipairs(redis.call('LRANGE', key, 0, -1)) do
      v = tonumber(v)
      if v > now - st.period then st.ts[#st.ts + 1] = v else st.drop = st.drop + 1 end
    end
  end
  states[key] = st
  return st
end

-- units left and time to the full limit of request i's key
local function peek(i, st)
  local a, b = tonumber(ARGV[4 * i + 2]), tonumber(ARGV[4 * i + 3])
  if st.tat then return math.floor((now - st.tat + b) / a), st.tat - now end
  local c = #st.ts
  if c == 0 then return b, 0 end
  return b - c, st.ts[c] + a - now
end

-- time until n units of request i's key are available, knowing they are not now
local function wait(i, st, n)
  local a, b = tonumber(ARGV[4 * i + 2]), tonumber(ARGV[4 * i + 3])
  if st.tat then return st.tat + n * a - b - now end
  return st.ts[#st.ts + n - b] + a - now
end

local function charge(i, st, n)
  local a = tonumber(ARGV[4 * i + 2])
  st.dirty = true
  if st.tat then
    st.tat = math.max(st.tat + n * a, now)
  elseif n > 0 then
    local v = math.max(now, st.ts[#st.ts] or now)
    for _ = 1, n do st.ts[#st.ts + 1] = v end
    st.pushed = st.pushed + n
  else
    for _ = 1, math.min(-n, #st.ts) do
      st.ts[#st.ts] = nil
      st.popped = st.popped + 1
    end
  end
end

-- units of request i's key held by other requests
local function holds(i)
  local key = KEYS[i]
  if not holding then return 0 end
  if held[key] == nil then
    local h = 0
    for _, mbr in ipairs(redis.call('ZRANGEBYSCORE', KEYS[m + i], now + 1, '+inf')) do
      h = h + tonumber(string.match(mbr, ':(%d+)$'))
    end
    held[key] = h
  end
  return held[key]
end

local status, rem0, reset0, retry, rem1, reset1 = {}, {}, {}, {}, {}, {}
local denied, busy = false, false
for i = 1, m do
  local st, n = load(i), tonumber(ARGV[4 * i + 4])
  local left, reset = peek(i, st)
  rem0[i], reset0[i], retry[i], status[i] = math.max(0, left), reset, 0, 1
  if op == 'commit' then
    redis.call('ZREM', KEYS[m + i], member(i))
    charge(i, st, n)
  elseif n == 0 then
    if left < 1 then status[i], retry[i] = 0, wait(i, st, 1) end
  elseif n < 0 then
    charge(i, st, n)
  elseif left < n then
    status[i], retry[i], denied = 0, wait(i, st, n), true
  else
    if left - holds(i) < n then status[i], busy = 2, true end
    charge(i, st, n)
  end
  rem1[i], reset1[i] = peek(i, st)
end

local write = op == 'commit' or (op == 'decide' and not denied and not busy)
if write then
  for key, st in pairs(states) do
    if st.dirty and st.tat then
      if st.tat > now then
        -- Integer-valued numbers reach Redis exactly.
        redis.call('SET', key, st.tat, 'PX', math.ceil((st.tat - now) / 1000))
      else
        redis.call('DEL', key)
      end
    elseif st.dirty then
      if st.drop > 0 then redis.call('LTRIM', key, st.drop, -1) end
      if st.popped > 0 then redis.call('LTRIM', key, 0, -st.popped - 1) end
      if st.pushed > 0 then redis.call('RPUSH', key, unpack(st.ts, #st.ts - st.pushed + 1)) end
      if #st.ts == 0 then
        redis.call('DEL', key)
      else
        redis.call('PEXPIRE', key, math.ceil((st.ts[#st.ts] + st.period - now) / 1000))
      end
    end
  end
elseif op == 'reserve' and not denied and not busy then
  for i = 1, m do
    local h = KEYS[m + i]
    redis.call('ZREMRANGEBYSCORE', h, '-inf', now)
    redis.call('ZADD', h, now + life, member(i))
    local last = redis.call('ZRANGE', h, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', h, math.ceil(tonumber(last[2]) / 1000))
  end
end

local out = {}
for i = 1, m do
  local n = tonumber(ARGV[4 * i + 4])
  if write and n ~= 0 then
    out[4 * i - 3], out[4 * i - 2], out[4 * i - 1], out[4 * i] = 1, math.max(0, rem1[i]), 0, reset1[i]
  else
    out[4 * i - 3], out[4 * i - 2], out[4 * i - 1], out[4 * i] = status[i], rem0[i], retry[i], reset0[i]
  end
end
return out
