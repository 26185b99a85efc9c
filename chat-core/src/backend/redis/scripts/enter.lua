-- One more connection: per node+user, per user; remembers the room for the node's reaper.
-- Presence is activity: every key of the room gets the room TTL again.
-- KEYS: presence, online, node rooms, then the room's info, members, order, log. ARGV:
-- node|user, user, room, count, TTL in ms. Returns the user's total connections in the room.
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
local total = redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[4])
for _, i in ipairs({1, 2, 4, 5, 6, 7}) do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return total
