-- Stores a room unless it exists, and lists it if public. Returns 1, or 0 if it existed.
-- The room's info carries the room TTL (refreshed by activity: see `RedisConfig::room_ttl`).
-- KEYS: info, public rooms index. ARGV: name, createdAt, visibility, sort key, TTL in ms,
-- owner (absent for none).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'createdAt', ARGV[2], 'visibility', ARGV[3],
  'key', ARGV[4])
if ARGV[6] then redis.call('HSET', KEYS[1], 'owner', ARGV[6]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[3] == 'public' then redis.call('ZADD', KEYS[2], 0, ARGV[4]) end
return 1
