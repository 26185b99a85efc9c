-- XADD a room message (without its id) to the room's stream, then PUBLISH its frame with the
-- entry id spliced in. Returns {id, ts, tokens taken}. The frame's bytes are built in Rust (protocol::wire):
-- this only concatenates head .. id .. after_id .. rest. Entries older than ARGV[7] are
-- trimmed, and a message is activity: the room's keys get the room TTL again (ARGV[6] '0':
-- this node did that for the room less than an upkeep period ago; skipped).
-- Idempotent sends: with a `sent` key (the sender's clientMsgId in this room), a message whose
-- key holds a first send is neither appended nor published; the first one's {id, ts} is
-- returned. Checked here, in the step that appends, so that a retry after a timed-out call
-- that ran all the same finds the first copy.
-- `sent` holds "<id> <ts>" (ids hold no space).
-- The sender's quota (ARGV[10] not '0'): up to ARGV[12] tokens are taken (take_tokens,
-- gcra.lua: this one and the node's lease for the next ones) after the `sent` check (a retry
-- costs none); with none left nothing is done: returns {'', ms to wait, 0}.
-- KEYS: stream, then (only with the upkeep: ARGV[6] not '0') the room's info, members, order,
-- online, this node's connections in the room, then sent (when ARGV[9] is not '0'), then the
-- sender's quota bucket (when ARGV[10] is not '0'). ARGV: maxlen, rest, channel, head
-- (envelope header and the frame up to the id), after_id, TTL in ms (or '0'), min id, ts,
-- window in ms (or '0': no `sent`), quota interval in µs (or '0': none), quota tolerance in µs,
-- tokens wanted. Returns {id, ts, tokens taken (0 without a quota, or for a retry)}.
local upkeep = ARGV[6] ~= '0'
local sent = ARGV[9] ~= '0' and KEYS[upkeep and 7 or 2] or nil
if sent then
  local first = redis.call('GET', sent)
  if first then
    local at = string.find(first, ' ', 1, true)
    return {string.sub(first, 1, at - 1), string.sub(first, at + 1), 0}
  end
end
local taken = 0
if ARGV[10] ~= '0' then
  local wait
  taken, wait = take_tokens(KEYS[#KEYS], ARGV[10], ARGV[11], ARGV[12])
  if wait > 0 then
    return {'', wait, 0}
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2])
if upkeep then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[7])
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. id .. ARGV[5] .. ARGV[2])
if sent then
  redis.call('SET', sent, id .. ' ' .. ARGV[8], 'PX', ARGV[9])
end
return {id, ARGV[8], taken}
