-- The lease holder, still loading, keeps its lease: an instance that died loading loses it
-- within one lease period, and the others load instead of waiting out LoadTimeout.
-- KEYS: lease. ARGV: token, lease ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
