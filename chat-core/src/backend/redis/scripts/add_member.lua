-- Adds a member if the room exists. Returns 1, 0 for no such room, or -1 when the user is not
-- a member and the room has ARGV[4] members already (absent: no cap). A new member gets the
-- room's next join number (its place in the join order) and the room's sort key goes into
-- the user's rooms (and private rooms, if private). A known member only gets its name
-- refreshed. Rooms stored before v2 have no sort key: they are not indexed per user. A join
-- is activity: every key of the room gets the room TTL again, and the user is seen (for as
-- long; the key holds "n:<name>", `Keys::seen_value`).
-- KEYS: info, members, order, user's rooms, user's private rooms, user seen, then the room's
-- log, online. ARGV: user id, name, TTL in ms, cap.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
  and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
if redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'joins', 1), ARGV[1])
  local room = redis.call('HMGET', KEYS[1], 'key', 'visibility')
  if room[1] then
    redis.call('ZADD', KEYS[4], 0, room[1])
    if room[2] == 'private' then redis.call('ZADD', KEYS[5], 0, room[1]) end
  end
end
redis.call('SET', KEYS[6], 'n:' .. ARGV[2], 'PX', ARGV[3])
for _, i in ipairs({1, 2, 3, 7, 8}) do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return 1
