-- pause: pauses or resumes one queue.
-- KEYS: paused, wake. ARGV: 1 to pause, 0 to resume.
-- Pausing drops the wake-up tokens (a waiting worker has nothing to claim); resuming leaves
-- some, so that the workers waiting on the queue claim at once.
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], '1')
  redis.call('DEL', KEYS[2])
elseif redis.call('DEL', KEYS[1]) == 1 then
  wake(KEYS[2], 8)
end
return 0
