-- take_quota(key, interval, tolerance), included at the top of the scripts that take a
-- quota (scripts.rs). One token of a bucket kept as GCRA: the key holds the bucket's
-- "theoretical arrival time" in microseconds of Redis's clock (so the instances' clocks do
-- not matter), one token is worth `interval` µs, and the arrival time may run `tolerance` µs
-- ahead of now (interval x (burst - 1)). The key lives until the bucket is full again.
-- Returns 0 (taken), or how many ms until one is due (nothing taken).
local function take_quota(key, interval, tolerance)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  interval = tonumber(interval)
  tolerance = tonumber(tolerance)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then
    tat = now
  end
  if tat - now > tolerance then
    return math.ceil((tat - now - tolerance) / 1000)
  end
  local after = tat + interval
  redis.call('SET', key, string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000))
  return 0
end
