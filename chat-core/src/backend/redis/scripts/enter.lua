-- One more connection: per node+user, per user; remembers the room for the node's reaper.
-- KEYS: presence, online, node rooms. ARGV: node|user, user, room, count. Returns the user's
-- total connections in the room.
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[4])
