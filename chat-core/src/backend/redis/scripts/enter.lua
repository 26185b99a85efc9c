-- One more connection in a room: into this node's connections there (conn id -> user id),
-- the user's count in the room (all nodes), and the room into the node's rooms (for the
-- reconcile and the reaper). Idempotent: a connection counted already changes nothing.
-- Returns 1 when it is the user's first connection in the room anywhere, else 0.
-- KEYS: node's connections in the room, online, node rooms. ARGV: conn, user, room.
redis.call('SADD', KEYS[3], ARGV[3])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
return 0
