-- XADD the message (without its id) to the room's stream, then PUBLISH the frame with the
-- entry id spliced in as `id`. Returns the id.
-- KEYS: stream. ARGV: maxlen, frame rest (the JSON after `{`, without `id`), channel, header.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '{"type":"message","id":"' .. id .. '",' .. ARGV[2])
return id
