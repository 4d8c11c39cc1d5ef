-- Loads a session (KEYS[1]) and slides its idle deadline, with Redis time, in one step.
-- Returns {} when the session does not exist or has expired (it is deleted), else
-- {expires ms, fields}: fields packs every field and value of the hash as
-- <length>:<bytes> pairs, one string for the client to read instead of one per element.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {} end
local abs, idle
local parts = {}
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == '_a' then abs = tonumber(v) elseif f == '_i' then idle = tonumber(v) end
  parts[#parts + 1] = #f .. ':' .. f .. #v .. ':' .. v
end
if not abs or not idle or now >= abs then
  redis.call('DEL', KEYS[1])
  return {}
end
local exp = math.min(abs, now + idle)
redis.call('PEXPIREAT', KEYS[1], exp)
return {exp, table.concat(parts)}
