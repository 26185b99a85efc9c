-- One connection less. Returns 1 if it was the user's last in the room, 0 if not, -1 if the
-- connection was not counted (already reaped). Presence is activity: every key of the room
-- gets the room TTL again (an empty room's idle time counts from its last user's leaving).
-- KEYS: presence, online, then the room's info, members, order, log. ARGV: node|user, user,
-- TTL in ms.
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if c <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if c < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if total <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
