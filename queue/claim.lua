-- claim: settles a batch of a worker's runs of one queue, then leases up to n due jobs of it to
-- the worker: a busy worker's settlements ride with its next claim, one round trip for both.
-- KEYS: due, sched, run, dead, wake, paused, then the hash of each settled job.
-- ARGV: job key prefix (P{q}:j:), n, lease ms, maxInterrupted (0: no limit), retention ms, then
--   6 per settlement, as in settle.lua.
-- Job hashes are found from the ids in the sets, so they cannot be declared in KEYS: the
-- script builds their keys from ARGV[1], which carries the queue's hash tag {q}, so every
-- key it touches is in the slot of KEYS[1] (Cluster routes by KEYS; the ids are unknowable
-- before the script pops them). A paused queue gets its settlements and its upkeep (steps 1
-- and 2) but no job is popped.
-- Work per call is bounded: the settlements, at most 1000 expired leases taken back and 1000
-- scheduled jobs promoted, then n jobs popped, each in O(log N).
-- Returns {deadline ms, the number of settlements, 1 or 0 for each (applied or refused), then
--   9 fields per job: id, payload, priority (a decimal string), attempts, maxAttempts,
--   deliveries, enqueuedAt ms, runAt ms, token}.
local due, sched, run, dead, wk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local jp, n, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxint, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
local paused = redis.call('EXISTS', KEYS[6]) == 1
if paused then n = 0 end
local now = now_ms()

-- 0. The settlements.
local settled = {}
for k = 1, #KEYS - 6 do
  settled[k] = settle_op(due, sched, run, dead, wk, KEYS[6 + k], ARGV, 5 + 6 * (k - 1), now, retention)
end

-- 1. Leases that expired: the run was interrupted (a crash or a lost lease, not a failure).
local expired = redis.call('ZRANGEBYSCORE', run, '-inf', now, 'LIMIT', 0, 1000)
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', run, 0, #expired - 1)
  for _, id in ipairs(expired) do
    local jk = jp .. id
    local i = redis.call('HINCRBY', jk, 'i', 1)
    if maxint > 0 and i >= maxint then
      kill(dead, jk, id, 'lease expired ' .. i .. ' times: the worker crashed or stalled', now, retention)
    else
      -- A new token: the worker that lost the lease can no longer settle the job.
      redis.call('HINCRBY', jk, 't', 1)
      make_due(due, jk, id, tonumber(redis.call('HGET', jk, 'r')) or now)
    end
  end
end

-- 2. Scheduled jobs whose time came.
local ready = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, 1000, 'WITHSCORES')
if #ready > 0 then
  redis.call('ZREMRANGEBYRANK', sched, 0, #ready / 2 - 1)
  for k = 1, #ready, 2 do
    local id = ready[k]
    make_due(due, jp .. id, id, tonumber(ready[k + 1]))
  end
end

trim_dead(dead, now, retention)

-- 3. The due jobs, best first.
local deadline = now + lease
local out = {deadline, #settled}
for k = 1, #settled do out[2 + k] = settled[k] end
if n > 0 then
  local popped = redis.call('ZPOPMIN', due, n)
  for k = 1, #popped, 2 do
    local id = string.sub(popped[k], MEMBER_ID)
    local jk = jp .. id
    local f = redis.call('HMGET', jk, 'p', 'q', 'a', 'm', 'd', 'e', 'r', 't')
    if f[1] then -- always, unless the hash was removed by hand
      local d = (tonumber(f[5]) or 0) + 1
      local t = (tonumber(f[8]) or 0) + 1
      redis.call('HSET', jk, 'd', d, 't', t)
      redis.call('ZADD', run, deadline, id)
      local m = #out
      out[m + 1], out[m + 2], out[m + 3], out[m + 4] = id, f[1], f[2] or '0', tonumber(f[3]) or 0
      out[m + 5], out[m + 6], out[m + 7] = tonumber(f[4]) or 0, d, tonumber(f[6]) or 0
      out[m + 8], out[m + 9] = tonumber(f[7]) or 0, t
    end
  end
end
if paused or redis.call('ZCARD', due) == 0 then
  redis.call('DEL', wk) -- no job to wake anyone for
end
return out
