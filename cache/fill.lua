-- The lease holder's write: stored only if the lease is still this holder's, so that a Set or
-- Delete made during the load (which revoke the lease) wins. An empty value gives the lease back
-- without storing anything (the load failed). Either way the waiters are woken.
-- KEYS: data, lease. ARGV: token, envelope, px, channel, message.
-- Reply: 1 stored (or released), 0 the lease was lost.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
