-- The end of a reap: the dead node out of the heartbeats and its rooms forgotten, unless it
-- beat again meanwhile (it came back: its own reconcile restores what it has); then the
-- reaper's claim is released. Returns 1 if the node was forgotten.
-- KEYS: nodes, node rooms, reaper claim. ARGV: node, deadline (ms).
local score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
local forgotten = 0
if not score or score <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  forgotten = 1
end
redis.call('DEL', KEYS[3])
return forgotten
