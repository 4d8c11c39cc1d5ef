-- Applies a request's changes to a session (KEYS[1]), renaming it to KEYS[2] when renewed (same
-- hash tag, same slot), with Redis time. Only the fields that changed are written.
-- ARGV: create (0/1), destroy (0/1), lifetime ms, idle ms, setuser (0/1), user, nset,
--   then nset field/value pairs, then the fields to delete.
-- Returns {1, deadline ms, expires ms} or {0} when the session is gone.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, new = KEYS[1], KEYS[2]
if ARGV[2] == '1' then
  redis.call('DEL', key)
  return {1, 0, 0}
end
local abs
if ARGV[1] == '1' then
  abs = now + tonumber(ARGV[3])
  redis.call('DEL', key)
  redis.call('HSET', key, '_c', now, '_a', abs)
else
  abs = tonumber(redis.call('HGET', key, '_a'))
  if not abs then return {0} end
  if now >= abs then
    -- Past its absolute deadline: deleted, never written again (no immortal session).
    redis.call('DEL', key)
    return {0}
  end
end
local idle = tonumber(ARGV[4])
local set = {'_i', idle}
if ARGV[5] == '1' then
  if ARGV[6] == '' then redis.call('HDEL', key, '_u') else set[#set + 1] = '_u'; set[#set + 1] = ARGV[6] end
end
local nset = tonumber(ARGV[7])
for i = 8, 7 + 2 * nset, 2 do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
  if #set >= 1000 then
    redis.call('HSET', key, unpack(set))
    set = {}
  end
end
if #set > 0 then redis.call('HSET', key, unpack(set)) end
if #ARGV >= 8 + 2 * nset then
  local del = {}
  for i = 8 + 2 * nset, #ARGV do
    del[#del + 1] = ARGV[i]
    if #del >= 1000 then
      redis.call('HDEL', key, unpack(del))
      del = {}
    end
  end
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
end
if new ~= key then redis.call('RENAME', key, new) end
local exp = math.min(abs, now + idle)
if exp <= now then
  redis.call('DEL', new)
  return {0}
end
redis.call('PEXPIREAT', new, exp)
return {1, abs, exp}
