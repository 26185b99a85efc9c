-- One connection less, and the user's `user_left` published in the same step when it was
-- their last connection in the room anywhere: the exit and its announcement cannot part.
-- Idempotent: a connection not counted (out already, or reaped) changes nothing, so a failed
-- exit is retried safely (and one that ran although its reply was lost is not counted twice).
-- Returns 1 if `user_left` was published, else 0.
-- KEYS: node's connections in the room, online. ARGV: conn, user, channel, user_left payload.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
