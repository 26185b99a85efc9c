-- Ends a membership: out of the room's members and join order, and the room out of the
-- user's rooms and private rooms. Returns 1, or 0 if the user was not a member (or there is
-- no such room: then there are no members either).
-- KEYS: info, members, order, user's rooms, user's private rooms. ARGV: user id.
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
local key = redis.call('HGET', KEYS[1], 'key')
if key then
  redis.call('ZREM', KEYS[4], key)
  redis.call('ZREM', KEYS[5], key)
end
return 1
