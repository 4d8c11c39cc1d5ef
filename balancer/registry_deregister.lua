-- Deregister: removes a backend registered by one Registration, and announces it.
-- KEYS[1] members, KEYS[2] info (see registry_lib.lua). ARGV[1] the events channel, ARGV[2]
-- the backend's ID, ARGV[3] the Registration's token.
-- Returns 1 when it removed the backend; 0 when it was gone (expired) or another Registration
-- of the same ID holds it now (that one stays).
local id, token = ARGV[2], ARGV[3]
local old = redis.call('HGET', KEYS[2], id)
if old and string.match(old, '^%d+ (.*)$') ~= token then
  return 0
end
redis.call('HDEL', KEYS[2], id)
if redis.call('ZREM', KEYS[1], id) == 0 then
  return 0
end
redis.call('PUBLISH', ARGV[1], 'l ' .. id)
return 1
