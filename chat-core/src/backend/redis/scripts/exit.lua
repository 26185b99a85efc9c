-- One connection less, and the user's `user_left` published in the same step when it was
-- their last connection in the room anywhere: the exit and its announcement cannot part.
-- Idempotent: a connection not counted (out already, or reaped) changes nothing, so a failed
-- exit is retried safely (and one that ran although its reply was lost is not counted twice).
-- Presence is activity: the room's keys get the room TTL again (an empty room's idle time
-- counts from its last user's leaving); PEXPIRE creates no key, so a retry that lands after
-- the room expired brings nothing back.
-- Returns 1 if `user_left` was published, else 0.
-- KEYS: node's connections in the room, online, then the room's info, members, order, log.
-- ARGV: conn, user, channel, user_left payload, TTL in ms.
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
