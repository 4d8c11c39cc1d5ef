-- enqueue: stores jobs of one queue, skipping those whose id the queue still holds, and those
-- whose UniqueKey another job of the queue holds.
-- KEYS: due, sched, seq, wake, dead, then 2 per job: its hash, and its unique key
--   (P{q}:u:<UniqueKey>; P{q}:u: for a job without one, never written).
-- ARGV: retention ms, then 7 per job: id, payload, priority, runAt ms, delay ms, maxAttempts,
--   uniqueFor ms (0: no UniqueKey).
--   A unique key holds "<expiry ms, Redis time>:<id of its job>" and expires with it: an
--   expiry passed (by the test clock's offset too) frees the key even before Redis drops it.
--   A job with a delay (its runAt is ahead of the instance's clock) is due that long from now
--   on Redis's clock, so that instance clocks never delay jobs; a job due already is due at
--   once, and keeps its runAt for the order of due jobs (exact, where a conversion to Redis
--   time would shift it by each call's latency).
-- Returns one string per job: "" when stored, else the id of the job that made it a duplicate
-- (its own id, or the holder of its unique key).
local due, sched, seqk, wk, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n = (#KEYS - 5) / 2
local retention = tonumber(ARGV[1])
local now = now_ms()
local seq = redis.call('INCRBY', seqk, n) - n
local out, woken, soonest = {}, 0, nil
for k = 1, n do
  local jk, uk, a = KEYS[4 + 2 * k], KEYS[5 + 2 * k], 1 + 7 * (k - 1)
  local id, payload, prio = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  -- The priority is kept as given: a Lua number (a float64) would round it, and overflow an
  -- integer reply past 2^63. Only the score, which orders, is a float.
  local runat, delay, maxatt = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6]
  local uniquefor = tonumber(ARGV[a + 7])
  if delay > 0 then runat = now + delay end
  -- A job that exists (waiting, running, or dead within its retention) makes a duplicate. A
  -- dead one past its retention whose hash has not expired yet is gone already.
  local f = redis.call('HMGET', jk, 'm', 'x') -- m: every job has one
  if f[2] and now - tonumber(f[2]) > retention then
    redis.call('DEL', jk)
    redis.call('ZREM', dead, id)
    f[1] = false
  end
  local holder = nil
  if f[1] then holder = id end
  if not holder and uniquefor > 0 then
    local held = redis.call('GET', uk)
    local sep = held and string.find(held, ':', 1, true)
    if held and tonumber(string.sub(held, 1, (sep or 0) - 1)) > now then
      holder = sep and string.sub(held, sep + 1) or id -- another job holds the key: a duplicate
    else
      redis.call('SET', uk, (now + uniquefor) .. ':' .. id, 'PX', uniquefor)
    end
  end
  if holder then
    out[k] = holder
  else
    out[k] = ''
    if prio == 0 then
      redis.call('HSET', jk, 'p', payload, 'm', maxatt, 'e', now, 'r', runat, 's', seq + k)
    else
      redis.call('HSET', jk, 'p', payload, 'q', ARGV[a + 3], 'm', maxatt, 'e', now, 'r', runat, 's', seq + k)
    end
    if delay <= 0 then
      redis.call('ZADD', due, -prio, due_member(runat, seq + k, id))
      woken = woken + 1
    else
      redis.call('ZADD', sched, runat, id)
      if not soonest or runat < soonest then soonest = runat end
    end
  end
end
if woken == 0 and soonest then
  -- A delayed job that is now the first to come: waiters must shorten their wait for it.
  local first = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
  if tonumber(first[2]) == soonest then woken = 1 end
end
if woken > 0 then wake(wk, woken) end
return out
