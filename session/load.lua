-- Loads a session (KEYS[1]) and slides its idle deadline, with Redis time, in one step.
-- Returns {} when the session does not exist or has expired (it is deleted), else
-- {expires ms, field, value, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {} end
local abs, idle
for i = 1, #h, 2 do
  if h[i] == '_a' then abs = tonumber(h[i + 1]) elseif h[i] == '_i' then idle = tonumber(h[i + 1]) end
end
if not abs or not idle or now >= abs then
  redis.call('DEL', KEYS[1])
  return {}
end
local exp = math.min(abs, now + idle)
redis.call('PEXPIREAT', KEYS[1], exp)
table.insert(h, 1, exp)
return h
