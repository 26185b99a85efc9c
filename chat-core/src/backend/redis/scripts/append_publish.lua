-- XADD a room message (without its id) to the room's stream, then PUBLISH its frame with the
-- entry id spliced in. Returns the id. The frame's bytes are built in Rust (protocol::wire):
-- this only concatenates head .. id .. after_id .. rest.
-- KEYS: stream. ARGV: maxlen, rest, channel, head (envelope header and the frame up to the
-- id), after_id.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. id .. ARGV[5] .. ARGV[2])
return id
