-- One connection less. Returns 1 if it was the user's last in the room, 0 if not, -1 if the
-- connection was not counted (already reaped).
-- KEYS: presence, online. ARGV: node|user, user.
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if c <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if c < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if total <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
