-- redrive: makes dead jobs of one queue due now, as new: attempts, interrupted runs,
-- deliveries and the last error reset.
-- KEYS: due, dead, wake, then the hash of each job named in ARGV (none: the oldest 1000 dead
--   jobs, whose hash keys the script builds from ARGV[2], which carries the queue's hash tag).
-- ARGV: retention ms, job key prefix, then the ids.
-- Returns {dead jobs made due, ids looked at}.
local due, dead, wk = KEYS[1], KEYS[2], KEYS[3]
local retention, jp = tonumber(ARGV[1]), ARGV[2]
local now = now_ms()
trim_dead(dead, now, retention)
local ids, keys = {}, {}
if #KEYS > 3 then
  for k = 4, #KEYS do ids[#ids + 1], keys[#keys + 1] = ARGV[k - 1], KEYS[k] end
else
  ids = redis.call('ZRANGE', dead, 0, 999)
  for k, id in ipairs(ids) do keys[k] = jp .. id end
end
local count = 0
for k, id in ipairs(ids) do
  local jk = keys[k]
  if redis.call('ZREM', dead, id) == 1 and redis.call('EXISTS', jk) == 1 then
    redis.call('PERSIST', jk)
    redis.call('HDEL', jk, 'a', 'i', 'd', 'l', 'x')
    make_due(due, jk, id, now)
    count = count + 1
  end
end
if count > 0 then wake(wk, count) end
return {count, #ids}
