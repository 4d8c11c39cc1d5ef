-- Applies a request's changes to a session (KEYS[1]), renaming it to KEYS[2] when renewed, and
-- keeps its user's index (KEYS[3]) in step: all three share one hash tag, so one slot, and the
-- change is atomic. Only the fields that changed are written; times are Redis TIME.
-- ARGV: create (0/1), destroy (0/1), lifetime ms, idle ms, user ('' when anonymous), nset,
--   then nset field/value pairs, then the fields to delete.
-- Returns {1, deadline ms, expires ms} or {0} when the session is gone.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, new, index = KEYS[1], KEYS[2], KEYS[3]
local user = ARGV[5]
if ARGV[2] == '1' then
  redis.call('DEL', key)
  if user ~= '' then redis.call('ZREM', index, key) end
  return {1, 0, 0}
end
local abs
if ARGV[1] == '1' then
  abs = now + tonumber(ARGV[3])
  redis.call('DEL', key)
  redis.call('HSET', key, '_c', now, '_a', abs)
  if user ~= '' then redis.call('HSET', key, '_u', user) end
else
  abs = tonumber(redis.call('HGET', key, '_a'))
  if not abs then return {0} end
  if now >= abs then
    -- Past its absolute deadline: deleted, never written again (no immortal session).
    redis.call('DEL', key)
    if user ~= '' then redis.call('ZREM', index, key) end
    return {0}
  end
end
local idle = tonumber(ARGV[4])
local set = {'_i', idle}
local nset = tonumber(ARGV[6])
for i = 7, 6 + 2 * nset, 2 do
  set[#set + 1] = ARGV[i]
  set[#set + 1] = ARGV[i + 1]
  if #set >= 1000 then
    redis.call('HSET', key, unpack(set))
    set = {}
  end
end
if #set > 0 then redis.call('HSET', key, unpack(set)) end
if #ARGV >= 7 + 2 * nset then
  local del = {}
  for i = 7 + 2 * nset, #ARGV do
    del[#del + 1] = ARGV[i]
    if #del >= 1000 then
      redis.call('HDEL', key, unpack(del))
      del = {}
    end
  end
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
end
if new ~= key then
  redis.call('RENAME', key, new)
  if user ~= '' then redis.call('ZREM', index, key) end
end
local exp = math.min(abs, now + idle)
if exp <= now then
  redis.call('DEL', new)
  if user ~= '' then redis.call('ZREM', index, new) end
  return {0}
end
redis.call('PEXPIREAT', new, exp)
if user ~= '' then
  -- Listed until its absolute deadline; the index lives as long as its last session.
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, abs, new)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, tonumber(last[2]))
end
return {1, abs, exp}
