-- Adds a member if the room exists. Returns 1, or 0 for no such room. A new member gets the
-- room's next join number (its place in the join order) and the room's sort key goes into
-- the user's rooms (and private rooms, if private). A known member only gets its name
-- refreshed. Rooms stored before v2 have no sort key: they are not indexed per user.
-- KEYS: info, members, order, user's rooms, user's private rooms, users. ARGV: user id, name.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'joins', 1), ARGV[1])
  local room = redis.call('HMGET', KEYS[1], 'key', 'visibility')
  if room[1] then
    redis.call('ZADD', KEYS[4], 0, room[1])
    if room[2] == 'private' then redis.call('ZADD', KEYS[5], 0, room[1]) end
  end
end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
return 1
