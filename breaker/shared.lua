-- The shared state of one breaker, in one hash (KEYS[1]). The arithmetic is the same as
-- sharedMemory in memory.go; times are milliseconds of Redis TIME.
--
-- ARGV: op ("s" sync outcomes, "a" acquire a probe lease, "r" report a probe), channel, name,
--   failures, rate, mincalls, window, open, maxopen, probes, successes, probetimeout, jitter,
--   then for "s": gen, succ, fail, tail, late, latefail, hold (ms to stay open, from Retry-After)
--          for "r": gen, slot, deadline, outcome (0 success, 1 failure, 2 ignore)
-- Returns {gen, state (0 closed, 1 open, 2 half-open), wait ms, slot, deadline, counted}.
local k = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op = ARGV[1]
local maxf, rate, minc = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local win, openms, maxopen = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local probes, succs, ptimeout, jitter = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])

local h = redis.call('HMGET', k, 'g', 's', 'u', 'cf', 'r', 'ps')
local g, s, u = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
local cf, r, ps = tonumber(h[4]) or 0, tonumber(h[5]) or 0, tonumber(h[6]) or 0
local changed = false
local width = math.max(1, math.floor(win / 10))

local function clearprobes()
  for i = 1, probes do redis.call('HDEL', k, 'p' .. i) end
  ps = 0
end

local function trip(reopen)
  if reopen then r = r + 1 else r = 0 end
  local d = openms
  if maxopen > d and r > 0 then
    local ceil = d * 2 ^ math.min(r, 30)
    if ceil > maxopen then ceil = maxopen end
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
  changed = true
end

local wait, slot, deadline, counted = 0, 0, 0, 0

if op == 's' then
  local gen, succ, fail, tail = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  local late, latefail = tonumber(ARGV[18]), tonumber(ARGV[19])
  redis.call('HINCRBY', k, 'n', succ + fail + late)
  redis.call('HINCRBY', k, 'nf', fail + latefail)
  if s == 0 and (gen == g or gen < 0) and succ + fail > 0 then
    counted = 1
    if succ > 0 then cf = tail else cf = cf + tail end
    local tripped = cf >= maxf
    if rate > 0 then
      local b = math.floor(now / width)
      local i = b % 10
      if tonumber(redis.call('HGET', k, 'wt' .. i)) == b then
        redis.call('HINCRBY', k, 'wc' .. i, succ + fail)
        redis.call('HINCRBY', k, 'wf' .. i, fail)
      else
        redis.call('HSET', k, 'wt' .. i, b, 'wc' .. i, succ + fail, 'wf' .. i, fail)
      end
      local calls, failed = 0, 0
      for j = 0, 9 do
        local w = redis.call('HMGET', k, 'wt' .. j, 'wc' .. j, 'wf' .. j)
        local wb = tonumber(w[1])
        if wb and wb > b - 10 then
          calls = calls + tonumber(w[2])
          failed = failed + tonumber(w[3])
        end
      end
      if calls >= minc and failed >= rate * calls then tripped = true end
    end
    if tripped then trip(false) end
  end
  local hold = tonumber(ARGV[20])
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
        redis.call('HSET', k, 'p' .. i, deadline)
        break
      end
      if earliest == 0 or d < earliest then earliest = d end
    end
    if slot == 0 then wait = earliest - now end
  end
elseif op == 'r' then
  local gen, pslot, pdeadline, outcome = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17])
  if outcome ~= 2 then
    redis.call('HINCRBY', k, 'n', 1)
    if outcome == 1 then redis.call('HINCRBY', k, 'nf', 1) end
  end
  if s == 2 and gen == g then
    if tonumber(redis.call('HGET', k, 'p' .. pslot)) == pdeadline then
      redis.call('HDEL', k, 'p' .. pslot)
    end
    if outcome == 1 then
      counted = 1
      trip(true)
    elseif outcome == 0 then
      counted = 1
      ps = ps + 1
      if ps >= succs then close() end
    end
  end
end

if s == 1 then wait = math.max(0, u - now) end
redis.call('HSET', k, 'g', g, 's', s, 'u', u, 'cf', cf, 'r', r, 'ps', ps)
local ttl = math.max(win, ptimeout, openms)
-- Open: live past the open period; half-open: past the lease just given or still running.
if s == 1 then ttl = ttl + math.max(0, u - now) elseif s == 2 then ttl = ttl + ptimeout end
redis.call('PEXPIRE', k, ttl)
if changed then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {g, s, wait, slot, deadline, counted}
