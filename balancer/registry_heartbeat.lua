-- Heartbeat: registers a backend, or renews its registration, in one round trip.
-- KEYS[1] members, KEYS[2] info, KEYS[3] epoch (see registry_lib.lua).
-- ARGV[1] the events channel, ARGV[2] the backend's ID, ARGV[3] its weight, ARGV[4] the
-- Registration's token, ARGV[5] the TTL in ms, ARGV[6] the store's random ID, which, after the
-- time, makes the epoch if there is none (a new one for each life of the registry, even when
-- the same store sets it again).
-- Returns 1 when the backend joined (it was absent or had expired), 2 when its weight changed,
-- 0 otherwise; "j" is announced in the first two cases.
local now = now_ms()
local id, weight, ttl = ARGV[2], ARGV[3], tonumber(ARGV[5])
trim(KEYS[1], KEYS[2], ARGV[1], now, id)
local score = redis.call('ZSCORE', KEYS[1], id)
local old = redis.call('HGET', KEYS[2], id)
local result = 0
if not score or tonumber(score) <= now then
  result = 1
elseif not old or string.match(old, '^(%d+) ') ~= weight then
  result = 2
end
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('HSET', KEYS[2], id, weight .. ' ' .. ARGV[4])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
if not redis.call('SET', KEYS[3], now .. ' ' .. ARGV[6], 'NX', 'PX', 86400000) then
  redis.call('PEXPIRE', KEYS[3], 86400000)
end
if result ~= 0 then
  redis.call('PUBLISH', ARGV[1], 'j ' .. weight .. ' ' .. id)
end
return result
