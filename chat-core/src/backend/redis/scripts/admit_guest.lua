-- One guest creation from a client's bucket, for every instance on this Redis: ARGV[1] a
-- minute, all of them at once after a quiet minute (a token bucket, kept as GCRA: the key
-- holds the bucket's "theoretical arrival time" in microseconds of Redis's clock, so the
-- instances' clocks do not matter). The key lives until the bucket is full again.
-- KEYS: the client's key. ARGV: guests a minute (at least 1).
-- Returns 0, or how many ms until one is due.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local per = math.max(tonumber(ARGV[1]), 1)
local interval = 60000000 / per
local tolerance = interval * (per - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
if tat - now > tolerance then
  return math.ceil((tat - now - tolerance) / 1000)
end
local after = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000))
return 0
