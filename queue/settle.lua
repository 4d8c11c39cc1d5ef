-- settle: applies a batch of settlements to claimed jobs of one queue, in order.
-- KEYS: due, sched, run, dead, wake, then the hash of each op's job.
-- ARGV: retention ms, then 6 per op: kind (0 ack, 1 retry, 2 dead, 3 release, 4 extend), id,
--   token, delay ms (retry: the wait from now), lease ms (extend), error message.
-- An op applies only when its token is the job's current one (the fencing check): a worker
-- whose lease was taken back finds a newer token and changes nothing. Every op that ends a
-- lease bumps the token, so a second settlement of the same claim is refused too.
-- Returns one integer per op: 1 applied, 0 refused.
local due, sched, run, dead, wk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local retention = tonumber(ARGV[1])
local now = now_ms()
local out = {}
for k = 1, #KEYS - 5 do
  local jk, a = KEYS[5 + k], 1 + 6 * (k - 1)
  local kind, id, token = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  out[k] = 0
  if redis.call('HGET', jk, 't') == token then
    out[k] = 1
    if kind == '4' then
      -- XX: a lease taken back by a claim is not in :run any more (its token changed too).
      redis.call('ZADD', run, 'XX', now + tonumber(ARGV[a + 5]), id)
    else
      redis.call('ZREM', run, id)
      if kind == '0' then
        redis.call('DEL', jk)
      elseif kind == '1' then
        redis.call('HINCRBY', jk, 'a', 1)
        redis.call('HINCRBY', jk, 't', 1)
        redis.call('HSET', jk, 'l', ARGV[a + 6])
        schedule(due, sched, wk, jk, id, now + tonumber(ARGV[a + 4]), now)
      elseif kind == '2' then
        redis.call('HINCRBY', jk, 'a', 1)
        kill(dead, jk, id, ARGV[a + 6], now, retention)
      else -- release: the run does not count as a delivery
        redis.call('HINCRBY', jk, 'd', -1)
        redis.call('HINCRBY', jk, 't', 1)
        make_due(due, jk, id, tonumber(redis.call('HGET', jk, 'r')) or now)
        wake(wk, 1)
      end
    end
  end
end
return out
