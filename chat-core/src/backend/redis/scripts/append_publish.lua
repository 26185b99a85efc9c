-- XADD a room message (without its id) to the room's stream, then PUBLISH its frame with the
-- entry id spliced in. Returns the id. The frame's bytes are built in Rust (protocol::wire):
-- this only concatenates head .. id .. after_id .. rest. Entries older than ARGV[7] are
-- trimmed, and a message is activity: every key of the room gets the room TTL again.
-- KEYS: stream, then the room's info, members, order, presence, online. ARGV: maxlen, rest,
-- channel, head (envelope header and the frame up to the id), after_id, TTL in ms, min id.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2])
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[7])
for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. id .. ARGV[5] .. ARGV[2])
return id
