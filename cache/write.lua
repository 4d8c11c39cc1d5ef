-- A Set (envelope given) or a Delete (empty envelope) of one key. It revokes any lease, so that
-- a load that started before it cannot store an older value after it, and announces the key in
-- the same step, so that every instance that hears it reads the new state.
-- KEYS: data, lease. ARGV: envelope, px, channel, message.
redis.call('DEL', KEYS[2])
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
