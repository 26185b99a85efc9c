-- take_quota(key, interval, tolerance) and take_tokens(key, interval, tolerance, want),
-- included at the top of the scripts that take a quota (scripts.rs). Tokens of a bucket kept
-- as GCRA: the key holds the bucket's "theoretical arrival time" in microseconds of Redis's
-- clock (so the instances' clocks do not matter), one token is worth `interval` µs, and the
-- arrival time may run `tolerance` µs ahead of now (interval x (burst - 1)). The key lives
-- until the bucket is full again.
-- take_tokens takes up to `want` tokens at once (a node's lease, spent locally: see
-- redis/lease.rs), more than one only while the bucket keeps as many again after them, so
-- that near its end the bucket goes one token at a time, to whichever instance asks.
-- Returns how many were taken and 0, or 0 and how many ms until one is due.
local function take_tokens(key, interval, tolerance, want)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  interval = tonumber(interval)
  tolerance = tonumber(tolerance)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then
    tat = now
  end
  if tat - now > tolerance then
    return 0, math.ceil((tat - now - tolerance) / 1000)
  end
  local n = 1
  want = tonumber(want)
  if want > 1 then
    local available = 1 + math.floor((tolerance - (tat - now)) / interval)
    n = math.max(1, math.min(want, math.floor(available / 2)))
  end
  local after = tat + n * interval
  redis.call('SET', key, string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000))
  return n, 0
end
-- One token. Returns 0 (taken), or how many ms until one is due (nothing taken).
local function take_quota(key, interval, tolerance)
  local _, wait = take_tokens(key, interval, tolerance, 1)
  return wait
end
