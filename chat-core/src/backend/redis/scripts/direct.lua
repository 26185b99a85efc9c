-- PUBLISH a direct message to the recipient's channel and, if it reached anyone, to the
-- sender's channel: when the sender has other connections on the publishing node (ARGV[4]
-- is 1) or another node subscribes to it (each node has one Pub/Sub connection, and the
-- publishing node is one of them). Returns the recipient channel's receivers.
-- ARGV: recipient channel, sender channel ('' for none), payload, sender has others here.
local n = redis.call('PUBLISH', ARGV[1], ARGV[3])
if n > 0 and ARGV[2] ~= '' then
  if ARGV[4] == '1' or redis.call('PUBSUB', 'NUMSUB', ARGV[2])[2] > 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
end
return n
