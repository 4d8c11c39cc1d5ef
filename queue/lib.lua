-- Shared prelude of the queue scripts (prepended to each by redis.go).
--
-- Keys of queue q, all under the hash tag {q} so that one script may touch them on a Cluster:
--   P{q}:due    ZSET of the due jobs. Score: -priority (exact for |priority| < 2^53). Member:
--               runAt ms as 11 hex digits, the enqueue sequence as 12 hex digits, then the id.
--               Equal scores sort by member bytes, so ZPOPMIN yields the highest priority,
--               then the earliest runAt, then the first enqueued, with no float64 rounding
--               (one float score cannot hold priority, a 41-bit time and a sequence).
--   P{q}:sched  ZSET of the jobs waiting for their time (delayed or retried), by runAt ms.
--   P{q}:run    ZSET of the running jobs, by lease deadline ms.
--   P{q}:dead   ZSET of the dead jobs, by death time ms.
--   P{q}:seq    counter of enqueues: the tiebreak of jobs due at the same ms.
--   P{q}:wake   LIST of a few wake-up tokens: idle workers BLPOP it.
--   P{q}:paused STRING "1" while the queue is paused: claims pop nothing.
--   P{q}:u:<k>  STRING: the expiry (ms) of UniqueKey k, which expires with it.
--   P{q}:j:<id> HASH of one job. Short field names save ~40 bytes a job:
--     p payload, q priority (absent: 0), m maxAttempts, a attempts (failed runs; absent: 0),
--     d deliveries (claims; absent: 0), i interrupted runs (absent: 0), t fencing token
--     (absent: 0), e enqueuedAt ms, r runAt ms, s enqueue sequence, l lastError,
--     x diedAt ms. A dead job's hash expires DeadRetention after its death (PEXPIREAT).
-- And one key outside any queue's tag: Pqueues, a SET of the names of the queues enqueued on
-- (added by the store, not by a script).
-- Times are Redis TIME in ms; the instance clock never enters a script. The last ARGV of
-- every script is an offset in ms added to TIME: 0, except in tests, which move the store's
-- clock so on servers whose time they cannot fake. (The scripts' ARGV loops are bounded by
-- #KEYS, so it never reads as a job.)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[#ARGV])
end

-- due_member is the :due member of a job: see the header.
local function due_member(runat, seq, id)
  if runat < 0 then runat = 0 end
  return string.format('%011x%012x', runat, seq) .. id
end

local MEMBER_ID = 24 -- where the id starts in a :due member

-- make_due adds job id (hash key jk) to the due set, due since runat.
local function make_due(due, jk, id, runat)
  local f = redis.call('HMGET', jk, 'q', 's')
  redis.call('HSET', jk, 'r', runat)
  redis.call('ZADD', due, -(tonumber(f[1]) or 0), due_member(runat, tonumber(f[2]) or 0, id))
end

-- wake leaves up to n (at most 8) wake-up tokens for idle workers. The list is capped: a
-- token nobody takes costs at most a spurious wake-up, and claim deletes them once :due is empty.
local function wake(key, n)
  if n > 8 then n = 8 end
  local v = {}
  for k = 1, n do v[k] = '1' end
  if redis.call('LPUSH', key, unpack(v)) > 8 then
    redis.call('LTRIM', key, 0, 7)
  end
end

-- schedule makes job id waiting until at: due at once when at <= now (waking a worker), else
-- in :sched (waking workers when it is the earliest there, so that they wait for it).
local function schedule(due, sched, wk, jk, id, at, now)
  if at <= now then
    make_due(due, jk, id, at)
    wake(wk, 1)
    return
  end
  redis.call('HSET', jk, 'r', at)
  redis.call('ZADD', sched, at, id)
  local first = redis.call('ZRANGE', sched, 0, 0)
  if first[1] == id then wake(wk, 1) end
end

-- kill makes job id dead now with message err; its hash expires after retention ms.
local function kill(dead, jk, id, err, now, retention)
  redis.call('HSET', jk, 'l', err, 'x', now)
  redis.call('HINCRBY', jk, 't', 1)
  redis.call('ZADD', dead, now, id)
  redis.call('PEXPIREAT', jk, now + retention)
end

-- trim_dead forgets up to 1000 dead jobs older than the retention (their hashes expired by
-- themselves), so that the work of one call stays bounded.
local function trim_dead(dead, now, retention)
  local old = redis.call('ZCOUNT', dead, '-inf', now - retention)
  if old > 0 then
    if old > 1000 then old = 1000 end
    redis.call('ZREMRANGEBYRANK', dead, 0, old - 1)
  end
end


-- settle_op applies one settlement to the job whose hash is jk: its 6 fields are argv[a + 1]
-- to argv[a + 6] (kind, id, token, delay ms, lease ms, error; see settle.lua). It returns 1 when
-- the token was the job's (applied), 0 when not (refused: nothing changed).
local function settle_op(due, sched, run, dead, wk, jk, argv, a, now, retention)
  local kind, id, token = argv[a + 1], argv[a + 2], argv[a + 3]
  if redis.call('HGET', jk, 't') ~= token then return 0 end
  if kind == '4' then
    -- XX: a lease taken back by a claim is not in :run any more (its token changed too).
    redis.call('ZADD', run, 'XX', now + tonumber(argv[a + 5]), id)
    return 1
  end
  redis.call('ZREM', run, id)
  if kind == '0' then
    redis.call('DEL', jk)
  elseif kind == '1' then
    redis.call('HINCRBY', jk, 'a', 1)
    redis.call('HINCRBY', jk, 't', 1)
    redis.call('HSET', jk, 'l', argv[a + 6])
    schedule(due, sched, wk, jk, id, now + tonumber(argv[a + 4]), now)
  elseif kind == '2' then
    redis.call('HINCRBY', jk, 'a', 1)
    kill(dead, jk, id, argv[a + 6], now, retention)
  else -- release: the run does not count as a delivery
    redis.call('HINCRBY', jk, 'd', -1)
    redis.call('HINCRBY', jk, 't', 1)
    make_due(due, jk, id, tonumber(redis.call('HGET', jk, 'r')) or now)
    wake(wk, 1)
  end
  return 1
end
