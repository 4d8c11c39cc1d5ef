-- Applies a request's changes to a session (KEYS[1]), renaming it to KEYS[2] when renewed (same
-- hash tag, same slot), with Redis time. Only the fields that changed are written.
-- ARGV: create (0/1), destroy (0/1), lifetime ms, idle ms, setuser (0/1), user, nset,
--   then nset field/value pairs, then the fields to delete.
-- Returns {1, created ms, deadline ms, expires ms, user} or {0} when the session is gone.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, new = KEYS[1], KEYS[2]
if ARGV[2] == '1' then
  redis.call('DEL', key)
  return {1, 0, 0, 0, ''}
end
if ARGV[1] == '1' then
  redis.call('DEL', key)
  redis.call('HSET', key, '_c', now, '_a', now + tonumber(ARGV[3]))
else
  local abs = tonumber(redis.call('HGET', key, '_a'))
  if not abs then return {0} end
  if now >= abs then
    -- Past its absolute deadline: deleted, never written again (no immortal session).
    redis.call('DEL', key)
    return {0}
  end
end
local idle = tonumber(ARGV[4])
redis.call('HSET', key, '_i', idle)
if ARGV[5] == '1' then
  if ARGV[6] == '' then redis.call('HDEL', key, '_u') else redis.call('HSET', key, '_u', ARGV[6]) end
end
local nset = tonumber(ARGV[7])
for i = 8, 7 + 2 * nset, 2 do
  redis.call('HSET', key, ARGV[i], ARGV[i + 1])
end
for i = 8 + 2 * nset, #ARGV do
  redis.call('HDEL', key, ARGV[i])
end
if new ~= key then redis.call('RENAME', key, new) end
local m = redis.call('HMGET', new, '_c', '_a', '_u')
local abs = tonumber(m[2])
local exp = math.min(abs, now + idle)
if exp <= now then
  redis.call('DEL', new)
  return {0}
end
redis.call('PEXPIREAT', new, exp)
return {1, tonumber(m[1]), abs, exp, m[3] or ''}
