-- Lists the sessions of a user (KEYS[1], the index) and, with ARGV[1] == '1', deletes them
-- (only those whose handles follow in ARGV[2..], when there are any), atomically. KEYS[2..] are the sessions the caller read from the index; they share the index's
-- hash tag. If the index holds a session the caller did not name (a login or renewal since),
-- nothing is done and {-1} asks the caller to read the index again.
-- Returns {handle, created ms, deadline ms, expires ms, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = KEYS[1]
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local named = {}
for i = 2, #KEYS do named[KEYS[i]] = true end
for _, m in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if not named[m] then return {-1} end
end
local only = nil
if #ARGV > 1 then
  only = {}
  for i = 2, #ARGV do only[ARGV[i]] = true end
end
local out = {}
for i = 2, #KEYS do
  local k = KEYS[i]
  local m = redis.call('HMGET', k, '_c', '_a')
  local handle = string.match(k, '}:(.*)$')
  if not m[2] or now >= tonumber(m[2]) then
    redis.call('ZREM', index, k) -- destroyed, or ended unused
  elseif only and not only[handle] then
    -- not selected
  else
    local ttl = redis.call('PTTL', k)
    if ttl < 0 then ttl = 0 end
    out[#out + 1] = k
    out[#out + 1] = tonumber(m[1])
    out[#out + 1] = tonumber(m[2])
    out[#out + 1] = now + ttl
    if ARGV[1] == '1' then
      redis.call('DEL', k)
      redis.call('ZREM', index, k)
    end
  end
end
return out
