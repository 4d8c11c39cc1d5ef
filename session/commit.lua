-- Applies a request's changes to a session (KEYS[1]), renaming it to KEYS[2] when renewed, and
-- keeps its user's index (KEYS[3]) in step: all three share one hash tag, so one slot, and the
-- change is atomic. Only the fields that changed are written.
-- A session's hash: "." + key holds a value; "_c", "_a", "_i" and "_u" the creation time and
-- the absolute deadline (ms of Redis TIME), the idle timeout (ms) and the user.
-- ARGV: create (0/1), destroy (0/1), lifetime ms, idle ms, user ('' when anonymous), nset,
--   then nset field/value pairs, then the fields to delete.
-- Returns {1, deadline ms, expires ms} or {0} when the session is gone.
--
-- The key's TTL is min(now + idle, absolute deadline): PEXPIRE, then PEXPIREAT ... LT. It never
-- passes the absolute deadline, so a session past it is already gone (Redis's expiry, on
-- Redis's clock, is the check), and a save after it deletes the session (PEXPIREAT in the
-- past) instead of writing it again: no immortal session. Only a creation reads TIME.
local key, new, index = KEYS[1], KEYS[2], KEYS[3]
local user = ARGV[5]
if ARGV[2] == '1' then
  redis.call('DEL', key)
  if user ~= '' then redis.call('ZREM', index, key) end
  return {1, 0, 0}
end
local abs
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  abs = now + tonumber(ARGV[3])
  redis.call('DEL', key)
  redis.call('HSET', key, '_c', now, '_a', abs)
  if user ~= '' then redis.call('HSET', key, '_u', user) end
else
  abs = tonumber(redis.call('HGET', key, '_a'))
  if not abs then return {0} end -- destroyed, renewed or expired
end
local idle = ARGV[4]
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
redis.call('PEXPIRE', new, idle)
redis.call('PEXPIREAT', new, abs, 'LT')
local exp = redis.call('PEXPIRETIME', new)
if exp < 0 then
  -- Past its absolute deadline: PEXPIREAT deleted it.
  if user ~= '' then redis.call('ZREM', index, new) end
  return {0}
end
if user ~= '' then
  -- Listed until its absolute deadline; the index lives as long as its last session.
  local t = redis.call('TIME')
  redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('ZADD', index, abs, new)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', index, tonumber(last[2]))
end
return {1, abs, exp}
