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
  out[k] = settle_op(due, sched, run, dead, wk, KEYS[5 + k], ARGV, 1 + 6 * (k - 1), now, retention)
end
return out
