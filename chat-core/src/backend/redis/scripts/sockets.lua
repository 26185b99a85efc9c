-- Records that node ARGV[1] has ARGV[2] open WebSockets of the user (0: none: its field goes),
-- the node's own count being the truth. With ARGV[3] > 0 (a connection opening), first checks
-- that the user's WebSockets on every live node, these included, are at most ARGV[3]: returns
-- 0, and records nothing, when they would be more. A node whose heartbeat in KEYS[2] is older
-- than ARGV[4] (ms) is dead: its field does not count, and goes. The hash lives ARGV[5] ms
-- after its last change (a count a failed call left too high heals by then).
-- KEYS: the user's socket counts (node -> open), the nodes' heartbeats.
-- Returns 1 (recorded) or 0 (refused).
local key = KEYS[1]
local max = tonumber(ARGV[3])
if max > 0 then
  local total = tonumber(ARGV[2])
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local node = fields[i]
    if node ~= ARGV[1] then
      local beat = redis.call('ZSCORE', KEYS[2], node)
      if beat and tonumber(beat) >= tonumber(ARGV[4]) then
        total = total + tonumber(fields[i + 1])
      else
        redis.call('HDEL', key, node)
      end
    end
  end
  if total > max then
    return 0
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', key, ARGV[1], ARGV[2])
  redis.call('PEXPIRE', key, ARGV[5])
else
  redis.call('HDEL', key, ARGV[1])
end
return 1
