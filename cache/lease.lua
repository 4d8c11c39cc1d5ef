-- A miss that wants to load: the value if it is there, else the lease to load it, else how
-- long the current holder's lease has left.
-- With ARGV[3] = '1' (a refresh of stale data), the value is not read: the caller has it.
-- KEYS: data, lease. ARGV: token, lease ms, refresh.
-- Reply: 'v' .. value | 'l' (the caller holds the lease) | 'w' .. lease ms left.
if ARGV[3] ~= '1' then
  local v = redis.call('GET', KEYS[1])
  if v then
    return 'v' .. v
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 'l'
end
return 'w' .. redis.call('PTTL', KEYS[2])
