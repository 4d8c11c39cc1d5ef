-- enqueue: stores jobs of one queue, skipping those whose id the queue still holds.
-- KEYS: due, sched, seq, wake, dead, then the hash of each job.
-- ARGV: retention ms, then 5 per job: id, payload, priority, delay ms (runAt minus the
--   instance's now, so that the due time is counted on Redis's clock), maxAttempts.
-- Returns one integer per job: 1 for a duplicate (nothing stored), 0 when stored.
local due, sched, seqk, wk, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n = #KEYS - 5
local retention = tonumber(ARGV[1])
local now = now_ms()
local seq = redis.call('INCRBY', seqk, n) - n
local out, woken, soonest = {}, 0, nil
for k = 1, n do
  local jk, a = KEYS[5 + k], 1 + 5 * (k - 1)
  local id, payload, prio = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local runat, maxatt = now + tonumber(ARGV[a + 4]), ARGV[a + 5]
  -- A job that exists (waiting, running, or dead within its retention) makes a duplicate. A
  -- dead one past its retention whose hash has not expired yet is gone already.
  local f = redis.call('HMGET', jk, 'm', 'x') -- m: every job has one
  if f[2] and now - tonumber(f[2]) > retention then
    redis.call('DEL', jk)
    redis.call('ZREM', dead, id)
    f[1] = false
  end
  if f[1] then
    out[k] = 1
  else
    out[k] = 0
    if prio == 0 then
      redis.call('HSET', jk, 'p', payload, 'm', maxatt, 'e', now, 'r', runat, 's', seq + k)
    else
      redis.call('HSET', jk, 'p', payload, 'q', prio, 'm', maxatt, 'e', now, 'r', runat, 's', seq + k)
    end
    if runat <= now then
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
