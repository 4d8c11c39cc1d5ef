-- Members: the live members of a service, after removing (and announcing) expired ones.
-- KEYS[1] members, KEYS[2] info, KEYS[3] epoch (see registry_lib.lua). ARGV[1] the events
-- channel.
-- Returns {epoch or "", id1, weight1, id2, weight2, ...}, by expiry (the store sorts them by
-- ID: Lua's string order follows the server's locale).
local now = now_ms()
trim(KEYS[1], KEYS[2], ARGV[1], now, nil)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {redis.call('GET', KEYS[3]) or ''}
for i = 1, #ids, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ids) do
    chunk[#chunk + 1] = ids[j]
  end
  local info = redis.call('HMGET', KEYS[2], unpack(chunk))
  for j, id in ipairs(chunk) do
    out[#out + 1] = id
    out[#out + 1] = (info[j] and string.match(info[j], '^(%d+) ')) or '1'
  end
end
return out
