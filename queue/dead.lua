-- dead: lists the most recent dead jobs of one queue.
-- KEYS: dead. ARGV: job key prefix (P{q}:j:), limit, retention ms.
-- The job hashes are named by the ids in :dead: their keys are built from ARGV[1], which
-- carries the queue's hash tag, so they share the slot of KEYS[1].
-- Returns 10 fields per job: id, payload, priority (a decimal string), attempts, maxAttempts, deliveries,
-- enqueuedAt ms, runAt ms, lastError, diedAt ms.
local dead, jp, limit, retention = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
trim_dead(dead, now, retention)
local ids = redis.call('ZREVRANGEBYSCORE', dead, '+inf', now - retention, 'LIMIT', 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', jp .. id, 'p', 'q', 'a', 'm', 'd', 'e', 'r', 'l', 'x')
  if f[1] then
    local m = #out
    out[m + 1], out[m + 2], out[m + 3] = id, f[1], f[2] or '0'
    out[m + 4], out[m + 5], out[m + 6] = tonumber(f[3]) or 0, tonumber(f[4]) or 0, tonumber(f[5]) or 0
    out[m + 7], out[m + 8], out[m + 9] = tonumber(f[6]) or 0, tonumber(f[7]) or 0, f[8] or ''
    out[m + 10] = tonumber(f[9]) or 0
  end
end
return out
