-- One more connection in a room: into this node's connections there (conn id -> user id),
-- the user's count in the room (all nodes), and the room into the node's rooms (for the
-- reconcile and the reaper). Idempotent: a connection counted already changes nothing.
-- Presence is activity: the room's keys get the room TTL again.
-- Returns 1 when it is the user's first connection in the room anywhere, else 0.
-- KEYS: node's connections in the room, online, node rooms, then the room's info, members,
-- order, log. ARGV: conn, user, room, TTL in ms.
redis.call('SADD', KEYS[3], ARGV[3])
local first = 0
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1
  and redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then first = 1 end
for _, i in ipairs({1, 2, 4, 5, 6, 7}) do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return first
