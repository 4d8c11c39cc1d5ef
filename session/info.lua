-- Reads what a listing shows of a session (KEYS[1]) from the primary: {} when it is gone, else
-- {created ms, deadline ms, expires ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local m = redis.call('HMGET', KEYS[1], '_c', '_a')
if not m[2] then return {} end
local abs = tonumber(m[2])
if now >= abs then
  redis.call('DEL', KEYS[1])
  return {}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {tonumber(m[1]), abs, now + ttl}
