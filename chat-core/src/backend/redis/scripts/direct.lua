-- PUBLISH a direct message to the recipient's channel and, if it reached anyone, to the
-- sender's channel: when the sender has other connections on the publishing node (ARGV[4]
-- is 1) or another node subscribes to it (each node has one Pub/Sub connection, and the
-- publishing node is one of them). Returns {the recipient channel's receivers, id, ts}.
-- Idempotent sends: with a `sent` key (the sender's clientMsgId to this recipient), a message
-- whose key holds a first send is not published: returns {-1, first id, first ts}. Only a
-- message that reached the recipient is remembered (a retry of an undelivered one is tried).
-- `sent` holds "<id> <ts>" (ids hold no space).
-- KEYS: sent (optional). ARGV: recipient channel, sender channel ('' for none), payload,
-- sender has others here, id, ts, window in ms (with `sent`).
local sent = KEYS[1]
if sent then
  local first = redis.call('GET', sent)
  if first then
    local at = string.find(first, ' ', 1, true)
    return {-1, string.sub(first, 1, at - 1), string.sub(first, at + 1)}
  end
end
local n = redis.call('PUBLISH', ARGV[1], ARGV[3])
if n > 0 and ARGV[2] ~= '' then
  if ARGV[4] == '1' or redis.call('PUBSUB', 'NUMSUB', ARGV[2])[2] > 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
end
if sent and n > 0 then
  redis.call('SET', sent, ARGV[5] .. ' ' .. ARGV[6], 'PX', ARGV[7])
end
return {n, ARGV[5] or '', ARGV[6] or '0'}
