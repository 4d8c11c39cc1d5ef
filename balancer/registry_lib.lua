-- The helpers of the registry's scripts (registry_*.lua), which start with this file.
--
-- A service's registry lives under one hash tag, prefix{service}, so every script touches one
-- Cluster slot:
--   prefix{service}:members  ZSET: member = backend ID, score = when it expires, in ms of
--                            Redis TIME (the heartbeat's time plus the registry's TTL)
--   prefix{service}:info     HASH: backend ID -> "<weight> <token>", the token naming the
--                            Registration that wrote it (a deregistration by another
--                            Registration of the same ID, e.g. an instance replaced at the same
--                            address, removes nothing)
--   prefix{service}:epoch    STRING: "<ms> <store id>", set by the first heartbeat of each life
--                            of the registry, which lives a day after the last heartbeat; a
--                            watcher that finds it changed or gone knows Redis lost the registry
--                            (a restart without persistence, a flush) and keeps its last good
--                            set while instances register again
-- The members and info keys expire with their newest member, so a service nobody runs leaves
-- nothing behind. Changes are announced with PUBLISH (not SPUBLISH: a watcher on any node
-- hears them, and miniredis has no sharded pub/sub) on the channel prefix{service}:events:
--   "j <weight> <id>"  a backend joined (it was absent or had expired) or its weight changed
--   "l <id>"           a backend deregistered
--   "x <id>"           a backend expired (its heartbeats stopped), found by a later call
-- Times come from Redis TIME only, never from an instance's clock.

-- now is Redis TIME in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- trim removes at most 100 members expired at now (but never keep, the caller's own ID) and
-- announces each: the work of one call stays bounded however many instances died at once.
local function trim(members, info, channel, now, keep)
  local expired = redis.call('ZRANGEBYSCORE', members, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(expired) do
    if id ~= keep then
      redis.call('ZREM', members, id)
      redis.call('HDEL', info, id)
      redis.call('PUBLISH', channel, 'x ' .. id)
    end
  end
end
