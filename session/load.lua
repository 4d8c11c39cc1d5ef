-- Loads a session (KEYS[1]) and slides its idle deadline, in one step.
-- The key's TTL never passes the session's absolute deadline (commit.lua sets it so), so a
-- session past that deadline is already gone: Redis's own expiry, on its own clock, is the
-- absolute check. Sliding sets the TTL to the idle timeout, then back to the absolute deadline
-- if that comes first (PEXPIREAT ... LT): min(now + idle, absolute), without TIME.
-- Returns {} when the session does not exist (a hash without its deadlines is deleted), else
-- {expires ms, fields, lengths...}: fields is every field and value of the hash concatenated,
-- and the lengths that follow split it (field, value, field, value...), so that the client
-- reads one string and small integers instead of one string per element, and the script
-- builds no string of its own.
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {} end
local abs, idle
local out = {0, table.concat(h)}
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == '_a' then abs = v elseif f == '_i' then idle = v end
  out[#out + 1] = #f
  out[#out + 1] = #v
end
if not abs or not idle then
  redis.call('DEL', KEYS[1])
  return {}
end
redis.call('PEXPIRE', KEYS[1], idle)
redis.call('PEXPIREAT', KEYS[1], abs, 'LT')
out[1] = redis.call('PEXPIRETIME', KEYS[1])
return out
