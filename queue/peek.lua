-- peek: how long an idle worker of one queue may block before a job may be due.
-- KEYS: due, sched, run, paused.
-- Returns ms until the first scheduled job or expired lease is due: 0 when a job is due now
-- (or one is due and not promoted yet), -1 when nothing is waiting or running, or the queue
-- is paused (its resume wakes the waiters).
local now = now_ms()
if redis.call('EXISTS', KEYS[4]) == 1 then return -1 end
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
local best = -1
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[1] then
    local ms = tonumber(first[2]) - now
    if ms < 0 then ms = 0 end
    if best < 0 or ms < best then best = ms end
  end
end
return best
