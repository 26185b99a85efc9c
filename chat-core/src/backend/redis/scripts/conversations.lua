-- A page of a user's conversations, the most recent first: up to ARGV[3] of the other users
-- with the time of their last message, no older than ARGV[1] (ms), and (with a cursor: its
-- time ARGV[2]) none more recent than the cursor. Those sharing the cursor's millisecond
-- are all returned, ARGV[3] more than them: the caller drops those at or before the cursor
-- (byte order of the user ids, which Lua's locale-dependent `<` must not decide).
-- KEYS: the user's conversations (a sorted set: other user -> ms). Returns {peer, ms, ...}.
local max = '+inf'
local extra = 0
if ARGV[2] ~= '' then
  max = ARGV[2]
  extra = redis.call('ZCOUNT', KEYS[1], ARGV[2], ARGV[2])
end
return redis.call('ZRANGE', KEYS[1], max, ARGV[1], 'BYSCORE', 'REV', 'LIMIT', 0,
  tonumber(ARGV[3]) + extra, 'WITHSCORES')
