-- Decides #KEYS requests of one entity as one unit, with the arithmetic of gcra() in gcra.go,
-- in microseconds of the server's clock. Either every request with n > 0 is granted and charged,
-- or nothing is written. A key holds its theoretical arrival time and expires when it is back to
-- a full burst, so idle keys cost nothing.
--
-- ARGV[3i-2], ARGV[3i-1], ARGV[3i]: interval, burst tolerance (both in us) and n for KEYS[i].
-- Returns, for each key: allowed (0/1), remaining, retry after (us), reset after (us).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, tats, dirty, granted = {}, {}, {}, true
for i, key in ipairs(KEYS) do
  local iv, tol, n = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local tat = tats[key]
  if tat == nil then
    tat = tonumber(redis.call('GET', key)) or 0
  end
  if tat < now then tat = now end
  local allowed, rem, retry, reset, nxt = 0, 0, 0, 0, tat
  if n < 0 then
    nxt = math.max(tat + n * iv, now)
    allowed, rem, reset = 1, math.max(0, math.floor((now - nxt + tol) / iv)), nxt - now
    dirty[key] = true
  elseif n == 0 then
    rem = math.max(0, math.floor((now - tat + tol) / iv))
    if rem >= 1 then allowed = 1 else retry = tat - tol + iv - now end
    reset = tat - now
  else
    nxt = tat + n * iv
    local diff = now - (nxt - tol)
    if diff >= 0 then
      allowed, rem, reset = 1, math.floor(diff / iv), nxt - now
      dirty[key] = true
    else
      granted, nxt = false, tat
      rem, retry, reset = math.max(0, math.floor((now - tat + tol) / iv)), -diff, tat - now
    end
  end
  tats[key] = nxt
  out[4*i-3], out[4*i-2], out[4*i-1], out[4*i] = allowed, rem, retry, reset
end
if not granted then
  -- Nothing is written: granted requests report what is left without their own charge.
  for i = 1, #KEYS do
    local iv, n = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i])
    if n > 0 and out[4*i-3] == 1 then
      out[4*i-2], out[4*i] = out[4*i-2] + n, math.max(0, out[4*i] - n * iv)
    end
  end
else
  for key in pairs(dirty) do
    local tat = tats[key]
    if tat > now then
      -- Integer-valued numbers reach Redis as integers (%.17g).
      redis.call('SET', key, tat, 'PX', math.ceil((tat - now) / 1000))
    else
      redis.call('DEL', key)
    end
  end
end
return out
