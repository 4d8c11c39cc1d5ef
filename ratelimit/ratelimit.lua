-- Every decision of a RedisStore: the arithmetic of gcra.go and slidinglog.go, in microseconds
-- of the server's clock (TIME), so that instance clocks never matter.
--
-- KEYS[1..m] are the state keys of the m requests of one call; on a single node they may be any
-- keys, on a Cluster they share one hash tag. With holds (ARGV[2] == '1') KEYS[m+i] is the hold set
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
--   commit   the second phase, once every slot granted: if every hold of this call still
--            stands, drop them and charge each request; if one lapsed (the request was held up
--            between its phases, and others may have taken the units meanwhile), drop them and
--            charge nothing, returning no values.
--   refund   give back what a commit charged, when the commit of another slot found its holds
--            lapsed: a decision on the negated units.
--   release  the second phase otherwise: drop the holds.
--
-- A request spanning slots thus costs two round trips (reserve on every slot in one pipeline,
-- then commit or release on every slot in one pipeline); a busy one releases its holds and tries
-- again after a short random wait, within its timeout, and so does one whose commit found holds
-- lapsed, after a refund of the slots that charged. Other requests never see units that a
-- request does not keep: they see them held (busy), not charged, so a denial always means the
-- key lacked the units, and holds lapse on their own if an instance dies between the phases.
--
-- Returns four numbers per request: status (0 denied, 1 granted, 2 busy), remaining, retry after
-- (us) and reset after (us). A request whose charge was written reports its key after the charge;
-- any other reports its key as it was, uncharged (a peek, a denial, or a grant in a call that
-- another request denied or that only reserved).
local call, max, floor, ceil = redis.call, math.max, math.floor, math.ceil
-- int formats an integer-valued number for Redis: exactly, and faster than Redis's own
-- conversion of numbers (%.17g).
local function int(x) return string.format('%d', x) end
local op, holding, id, life = ARGV[1], ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local m = #KEYS
if holding then m = m / 2 end
local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local sign = 1
if op == 'refund' then op, sign = 'decide', -1 end

-- member names request i's hold in its key's hold set: "<id>:<i>:<n>"
local function member(i) return id .. ':' .. i .. ':' .. ARGV[4 * i + 4] end

-- One GCRA request to decide, the most common call: the same arithmetic as the loop below,
-- without its bookkeeping.
if op == 'decide' and m == 1 and ARGV[5] == 'g' and tonumber(ARGV[8]) > 0 and not holding then
  local iv, tol, n = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local tat = max(tonumber(call('GET', KEYS[1])) or 0, now)
  local left = floor((now - tat + tol) / iv)
  if left < n then return {0, max(0, left), tat + n * iv - tol - now, tat - now} end
  tat = tat + n * iv
  call('SET', KEYS[1], int(tat), 'PX', int(ceil((tat - now) / 1000)))
  return {1, left - n, 0, tat - now}
end

-- Both drop the holds of the call; a commit then charges, below, only if they all still stood.
if op == 'release' or op == 'commit' then
  local lapsed = false
  for i = 1, m do
    lapsed = lapsed or (tonumber(call('ZSCORE', KEYS[m + i], member(i))) or 0) <= now
    call('ZREM', KEYS[m + i], member(i))
  end
  if op == 'release' or lapsed then return {} end
end

-- states[key] is the key's state as this call leaves it: for GCRA its theoretical arrival time
-- (a number, at least now); for a strict key {period, ts, drop, pushed, popped}, where ts are
-- its grants within the window, drop how many older ones Redis holds, pushed and popped the
-- grants this call adds or gives back. dirty holds the keys to write.
local states, dirty, held = {}, {}, {}

local function loadLog(key, period)
  local st = {period = period, ts = {}, drop = 0, pushed = 0, popped = 0}
  for _, v in ipairs(call('LRANGE', key, 0, -1)) do
    v = tonumber(v)
    if v > now - period then st.ts[#st.ts + 1] = v else st.drop = st.drop + 1 end
  end
  return st
end

-- time until k units are available from the state st of a key (limit a, b), knowing they are
-- not available now
local function wait(st, a, b, k)
  if type(st) == 'number' then return st + k * a - b - now end
  return st.ts[#st.ts + k - b] + a - now
end

-- units of request i's key held by other requests
local function holds(i)
  local key = KEYS[i]
  if held[key] == nil then
    local h = 0
    for _, mbr in ipairs(call('ZRANGEBYSCORE', KEYS[m + i], int(now + 1), '+inf')) do
      h = h + tonumber(string.match(mbr, ':(%d+)$'))
    end
    held[key] = h
  end
  return held[key]
end

-- out holds each request's status, remaining, retry after and reset after as the key was before
-- the request; after, its remaining and reset after once charged.
local out, after = {}, {}
local denied, busy = false, false
for i = 1, m do
  local key, base = KEYS[i], 4 * i
  local a, b, n = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), sign * tonumber(ARGV[base + 4])
  local gcra, st = ARGV[base + 1] == 'g', states[key]
  local left, reset
  if gcra then
    st = max(st or tonumber(call('GET', key)) or 0, now)
    left, reset = floor((now - st + b) / a), st - now
  else
    st = st or loadLog(key, a)
    local c = #st.ts
    left, reset = b - c, 0
    if c > 0 then reset = st.ts[c] + a - now end
  end
  local status, retry, charge = 1, 0, n
  if op == 'commit' then
    -- the units were held: charged whatever the state says
  elseif n == 0 then
    if left < 1 then status, retry = 0, wait(st, a, b, 1) end
  elseif n > 0 and left < n then
    status, retry, charge, denied = 0, wait(st, a, b, n), 0, true
  elseif n > 0 and holding and left - holds(i) < n then
    status, busy = 2, true
  end
  if charge ~= 0 then
    dirty[key] = true
    if gcra then
      st = max(st + charge * a, now)
      after[2 * i - 1], after[2 * i] = floor((now - st + b) / a), st - now
    else
      if charge > 0 then
        local v = max(now, st.ts[#st.ts] or now)
        for _ = 1, charge do st.ts[#st.ts + 1] = v end
        st.pushed = st.pushed + charge
      else
        for _ = 1, math.min(-charge, #st.ts) do
          st.ts[#st.ts] = nil
          st.popped = st.popped + 1
        end
      end
      after[2 * i - 1], after[2 * i] = b - #st.ts, 0
      if #st.ts > 0 then after[2 * i] = st.ts[#st.ts] + a - now end
    end
  end
  states[key] = st
  out[base - 3], out[base - 2], out[base - 1], out[base] = status, max(0, left), retry, reset
end

local write = op == 'commit' or (op == 'decide' and not denied and not busy)
if write then
  for key in pairs(dirty) do
    local st = states[key]
    if type(st) == 'number' then
      if st > now then
        call('SET', key, int(st), 'PX', int(ceil((st - now) / 1000)))
      else
        call('DEL', key)
      end
    else
      if st.drop > 0 then call('LTRIM', key, st.drop, -1) end
      if st.popped > 0 then call('LTRIM', key, 0, -st.popped - 1) end
      if st.pushed > 0 then
        local pushed = {}
        for j = #st.ts - st.pushed + 1, #st.ts do pushed[#pushed + 1] = int(st.ts[j]) end
        call('RPUSH', key, unpack(pushed))
      end
      if #st.ts == 0 then
        call('DEL', key)
      else
        call('PEXPIRE', key, int(ceil((st.ts[#st.ts] + st.period - now) / 1000)))
      end
    end
  end
  for i = 1, m do
    if after[2 * i] then
      out[4 * i - 3], out[4 * i - 2], out[4 * i - 1], out[4 * i] = 1, max(0, after[2 * i - 1]), 0, after[2 * i]
    end
  end
elseif op == 'reserve' and not denied and not busy then
  for i = 1, m do
    local h = KEYS[m + i]
    call('ZREMRANGEBYSCORE', h, '-inf', int(now))
    call('ZADD', h, int(now + life), member(i))
    local last = call('ZRANGE', h, -1, -1, 'WITHSCORES')
    call('PEXPIREAT', h, int(ceil(tonumber(last[2]) / 1000)))
  end
end
return out
