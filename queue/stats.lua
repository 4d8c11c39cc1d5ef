-- stats: counts the jobs of one queue.
-- KEYS: due, sched, run, dead, paused. ARGV: retention ms.
-- Returns {due, scheduled, running, dead, lag ms, paused (1 or 0)}. Due counts scheduled jobs whose time came
-- (a claim promotes them). Lag needs the earliest runAt among due jobs, which :due orders only
-- within one priority: the script reads the first job of each priority present, of the first
-- 64 priorities (each O(log N)), and of :sched.
local due, sched, run, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local retention = tonumber(ARGV[1])
local now = now_ms()
trim_dead(dead, now, retention)
local ripe = redis.call('ZCOUNT', sched, '-inf', now)
local oldest = nil
local first = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
if first[1] and tonumber(first[2]) <= now then oldest = tonumber(first[2]) end
local min = '-inf'
for _ = 1, 64 do
  local f = redis.call('ZRANGEBYSCORE', due, min, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if not f[1] then break end
  local runat = tonumber(string.sub(f[1], 1, 11), 16)
  if not oldest or runat < oldest then oldest = runat end
  min = '(' .. f[2]
end
local lag = 0
if oldest and oldest < now then lag = now - oldest end
return {redis.call('ZCARD', due) + ripe, redis.call('ZCARD', sched) - ripe,
  redis.call('ZCARD', run), redis.call('ZCARD', dead), lag, redis.call('EXISTS', KEYS[5])}
