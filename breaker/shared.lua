-- The shared state of one breaker, in one hash (KEYS[1]). The arithmetic is the same as
-- sharedEntry.apply in memory.go; times are milliseconds of Redis TIME.
--
-- ARGV: op ("s" sync outcomes, "a" acquire a probe lease, "r" report a probe, "x" release a
--   lease whose acquisition or report failed), channel, name,
--   failures, rate, mincalls, window, open, maxopen, probes, successes, probetimeout, jitter, gen,
--   then for "s": succ, fail, tail, late, latefail, hold (ms to stay open, from Retry-After), seq
--          (the batch's number for its instance, whose last applied number is KEYS[2]: a batch
--          sent again after a timeout is applied once; 0 for a batch with nothing to apply),
--          windowcalls (when positive, the rate looks at about that many last calls: kc, kf),
--          ended (1: a success among the late outcomes ended the run of consecutive failures)
--          for "r": slot, deadline, outcome (0 success, 1 failure, 2 ignore)
--          for "a" and "x": the lease's id
-- Returns {gen, state (0 closed, 1 open, 2 half-open), wait ms, slot, deadline, counted}.
--
-- Generations start at 16 times the key's creation time in ms (g0; 14 digits, exact in any
-- number format), so a key that expired and was created again has generations above every one
-- of its former life (which would need 16 transitions a millisecond to catch up): instances that
-- saw the old ones take the new ones as newer, and their outcomes (gen < g0) count in the new life.
local k = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local maxf, rate, minc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local win, openms, maxopen = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local probes, succs, ptimeout, jitter = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local gen = tonumber(ARGV[14])

local h = redis.call('HMGET', k, 'g', 's', 'u', 'cf', 'r', 'ps', 'g0')
local g, s, u = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
local cf, r, ps, g0 = tonumber(h[4]) or 0, tonumber(h[5]) or 0, tonumber(h[6]) or 0, tonumber(h[7])
local wrote = false
if not g then
  g = now * 16
  g0 = g
  redis.call('HSET', k, 'g0', g0)
  wrote = true
end
local changed = false
local width = math.max(1, math.floor(win / 10))

local function clearprobes()
  for i = 1, probes do redis.call('HDEL', k, 'p' .. i, 'l' .. i) end
  ps = 0
end

local function trip(reopen)
  if reopen then r = r + 1 else r = 0 end
  local d = openms
  if maxopen > d and r > 0 then
    local ceil = maxopen
    if r < 30 and d * 2 ^ r < ceil then ceil = d * 2 ^ r end
    d = d + math.floor(jitter * (ceil - d + 1))
  end
  g, s, u, cf = g + 1, 1, now + d, 0
  clearprobes()
  changed = true
end

local function close()
  g, s, cf, r = g + 1, 0, 0, 0
  clearprobes()
  for i = 0, 9 do redis.call('HDEL', k, 'wt' .. i, 'wc' .. i, 'wf' .. i) end
  redis.call('HDEL', k, 'kc', 'kf')
  changed = true
end

local wait, slot, deadline, counted = 0, 0, 0, 0

if op == 's' then
  local succ, fail, tail = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  local late, latefail, hold = tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[20])
  local seq, ended = tonumber(ARGV[21]), ARGV[23] == '1'
  if seq > 0 then
    if seq <= (tonumber(redis.call('GET', KEYS[2])) or 0) then
      succ, fail, tail, late, latefail, hold, ended = 0, 0, 0, 0, 0, 0, false -- applied before: read only
      redis.call('PEXPIRE', KEYS[2], 600000) -- remembered while it is being sent again
    else
      redis.call('SET', KEYS[2], seq, 'PX', 600000)
    end
  end
  if succ + fail + late > 0 then
    redis.call('HINCRBY', k, 'n', succ + fail + late)
    redis.call('HINCRBY', k, 'nf', fail + latefail)
    wrote = true
  end
  if s == 0 and (gen == g or gen < g0) and ended and succ + fail == 0 and cf > 0 then
    cf = 0
    wrote = true
  end
  if s == 0 and (gen == g or gen < g0) and succ + fail > 0 then
    counted = 1
    if succ > 0 or ended then cf = tail else cf = cf + tail end
    local tripped = cf >= maxf
    local wcalls = tonumber(ARGV[22])
    if rate > 0 and wcalls > 0 then
      -- The last wcalls calls, estimated: add the batch, scale the totals back to wcalls.
      local kc = (tonumber(redis.call('HGET', k, 'kc')) or 0) + succ + fail
      local kf = (tonumber(redis.call('HGET', k, 'kf')) or 0) + fail
      if kc > wcalls then
        kf = math.floor(kf * wcalls / kc + 0.5)
        kc = wcalls
      end
      redis.call('HSET', k, 'kc', kc, 'kf', kf)
      if kc >= minc and kf >= rate * kc then tripped = true end
    elseif rate > 0 then
      local b = math.floor(now / width)
      local i = b % 10
      if tonumber(redis.call('HGET', k, 'wt' .. i)) == b then
        redis.call('HINCRBY', k, 'wc' .. i, succ + fail)
        redis.call('HINCRBY', k, 'wf' .. i, fail)
      else
        redis.call('HSET', k, 'wt' .. i, b, 'wc' .. i, succ + fail, 'wf' .. i, fail)
      end
      local fields = {}
      for j = 0, 9 do
        fields[#fields + 1] = 'wt' .. j
        fields[#fields + 1] = 'wc' .. j
        fields[#fields + 1] = 'wf' .. j
      end
      local w = redis.call('HMGET', k, unpack(fields))
      local calls, failed = 0, 0
      for j = 0, 9 do
        local wb = tonumber(w[3 * j + 1])
        if wb and wb > b - 10 then
          calls = calls + tonumber(w[3 * j + 2])
          failed = failed + tonumber(w[3 * j + 3])
        end
      end
      if calls >= minc and failed >= rate * calls then tripped = true end
    end
    if tripped then trip(false) end
    wrote = true
  end
  if hold > 0 and (s ~= 1 or u < now + hold) then
    -- The dependency asked for a pause (Retry-After): open for that long, whatever the state.
    g, s, u, cf = g + 1, 1, now + hold, 0
    clearprobes()
    changed = true
  end
elseif op == 'a' then
  if s == 1 and now >= u then
    g, s = g + 1, 2
    clearprobes()
    changed = true
  end
  if s == 2 then
    local earliest = 0
    for i = 1, probes do
      local d = tonumber(redis.call('HGET', k, 'p' .. i)) or 0
      if d <= now then
        slot, deadline = i, now + ptimeout
        redis.call('HSET', k, 'p' .. i, deadline, 'l' .. i, ARGV[15])
        wrote = true
        break
      end
      if earliest == 0 or d < earliest then earliest = d end
    end
    if slot == 0 then wait = earliest - now end
  end
elseif op == 'x' then
  for i = 1, probes do
    if redis.call('HGET', k, 'l' .. i) == ARGV[15] then
      redis.call('HDEL', k, 'p' .. i, 'l' .. i)
      wrote = true
    end
  end
elseif op == 'r' then
  local pslot, pdeadline, outcome = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  if outcome ~= 2 then
    redis.call('HINCRBY', k, 'n', 1)
    if outcome == 1 then redis.call('HINCRBY', k, 'nf', 1) end
    wrote = true
  end
  if s == 2 and gen == g then
    if tonumber(redis.call('HGET', k, 'p' .. pslot)) == pdeadline then
      redis.call('HDEL', k, 'p' .. pslot, 'l' .. pslot)
      wrote = true
    end
    if outcome == 1 then
      counted = 1
      trip(true)
    elseif outcome == 0 then
      counted = 1
      ps = ps + 1
      if ps >= succs then close() end
      wrote = true
    end
  end
end

if s == 1 then wait = math.max(0, u - now) end
if wrote or changed then
  redis.call('HSET', k, 'g', g, 's', s, 'u', u, 'cf', cf, 'r', r, 'ps', ps)
  -- Open: live past the open period; half-open: past the lease just given or still running.
  local ttl = math.max(win, ptimeout, openms)
  if s == 1 then ttl = ttl + math.max(0, u - now) elseif s == 2 then ttl = ttl + ptimeout end
  redis.call('PEXPIRE', k, ttl)
end
if changed then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {g, s, wait, slot, deadline, counted}
