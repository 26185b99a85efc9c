-- PUBLISH a direct message to the recipient's channel and, if it reached anyone (or is held
-- for them), to the sender's channel: when the sender has other connections on the publishing
-- node (ARGV[4] is 1) or another node subscribes to it (each node has one Pub/Sub connection,
-- and the publishing node is one of them).
-- Holding (ARGV[8] > 0): a message that reached nobody is kept for a recipient the chat knows
-- (`seen`, or the hash of users seen before it existed), at most ARGV[8] of them, ARGV[14]
-- from one sender (counted in the `held:senders` hash) and, when the sender is a guest
-- (ARGV[24] is 1), ARGV[25] from guests altogether (counted in `held:guests`), in the
-- recipient's `held` list as "<until> <len(from)>:<from><payload>" (from a guest: "<until>
-- g<len(from)>:..."), the keys' TTL the hold time; entries past their
-- "until" are dropped from the head first (with their senders' and guests' counts), and a full list
-- holds nothing more (nothing held is dropped for it). `release_held.lua` publishes them.
-- Idempotent sends: with a `sent` key (the sender's clientMsgId to this recipient), a message
-- whose key holds a first send is not published: returns {-1, first id, first ts, held}.
-- Only a message that reached the recipient or is held for them is remembered (a retry of an
-- undelivered one is tried). `sent` holds "<id> <ts>", and " h" after them when it was held
-- (ids hold no space).
-- Keeping (ARGV[15] is 1): a message that reached the recipient or is held is added to the
-- conversation's `log`, a sorted set of "<id> <frame>" (ids are UUIDv7 strings: by lex, by
-- time; the frame is the payload after its header line, so it is sent once), without those
-- below the floor id ARGV[18] (too old), at most ARGV[17], its TTL ARGV[19]; and the
-- conversation goes to the top of both users' lists of conversations (sorted sets of the
-- other user by the time ARGV[16] of the last message, never moved back), without those
-- older than ARGV[23] (ms), at most ARGV[22] (the least recent go), their TTL the log's.
-- The sender's quota (ARGV[26] not '0'): one token is taken (take_quota, gcra.lua) after the
-- `sent` check (a retry costs none); with none left nothing is done: returns {-4, '', ms, 0}.
-- KEYS: sent (when ARGV[12] is 1), then held, seen, legacy users, held:senders, held:guests
-- (when holding), then log, the sender's and the recipient's conversations (when keeping),
-- then the sender's quota bucket (when ARGV[26] is not '0').
-- ARGV: recipient channel, sender channel ('' for none), payload, sender has others here, id,
-- ts, dedup window in ms, hold at most (0: no hold), held until (ms), hold TTL (ms),
-- recipient id, has `sent`, sender id, hold at most from one sender, keep, the message's ms,
-- log at most, log floor id, log TTL (ms), sender id, recipient id, conversations at most,
-- conversations floor (ms), sender is a guest, hold at most from guests, quota interval (µs,
-- or '0'), quota tolerance (µs).
-- Returns {receivers (>= 0), id, ts, 0}, or {-1, first id, first ts, held (0 or 1)} (a
-- duplicate), {-2, '', 0, 0} (the recipient's held list is full), {-3, id, ts, 1} (held),
-- {-4, '', ms, 0} (over the quota).
local k = 0
local sent = nil
if ARGV[12] == '1' then
  sent = KEYS[1]
  k = 1
end
if sent then
  local first = redis.call('GET', sent)
  if first then
    local at = string.find(first, ' ', 1, true)
    local rest = string.sub(first, at + 1)
    local held_first = string.find(rest, ' ', 1, true)
    if held_first then
      return {-1, string.sub(first, 1, at - 1), string.sub(rest, 1, held_first - 1), 1}
    end
    return {-1, string.sub(first, 1, at - 1), rest, 0}
  end
end
if ARGV[26] ~= '0' then
  local wait = take_quota(KEYS[#KEYS], ARGV[26], ARGV[27])
  if wait > 0 then
    return {-4, '', wait, 0}
  end
end
local n = redis.call('PUBLISH', ARGV[1], ARGV[3])
local held = false
local max = tonumber(ARGV[8])
if n == 0 and max > 0 then
  local inbox = KEYS[k + 1]
  if redis.call('EXISTS', KEYS[k + 2]) == 1 or redis.call('HEXISTS', KEYS[k + 3], ARGV[11]) == 1 then
    local senders = KEYS[k + 4]
    local guests = KEYS[k + 5]
    local now = tonumber(ARGV[9]) - tonumber(ARGV[10])
    while true do
      local head = redis.call('LINDEX', inbox, 0)
      if not head then
        break
      end
      local at = string.find(head, ' ', 1, true)
      if tonumber(string.sub(head, 1, at - 1)) > now then
        break
      end
      redis.call('LPOP', inbox)
      local colon = string.find(head, ':', at + 1, true)
      local from_guest = string.sub(head, at + 1, at + 1) == 'g'
      local digits = at + (from_guest and 2 or 1)
      local from = string.sub(head, colon + 1, colon + tonumber(string.sub(head, digits, colon - 1)))
      if redis.call('HINCRBY', senders, from, -1) <= 0 then
        redis.call('HDEL', senders, from)
      end
      if from_guest and redis.call('DECR', guests) <= 0 then
        redis.call('DEL', guests)
      end
    end
    if redis.call('LLEN', inbox) >= max
      or tonumber(redis.call('HGET', senders, ARGV[13]) or '0') >= tonumber(ARGV[14]) then
      return {-2, '', '0', 0}
    end
    local guest = ARGV[24] == '1'
    if guest and tonumber(redis.call('GET', guests) or '0') >= tonumber(ARGV[25]) then
      return {-2, '', '0', 0}
    end
    redis.call('RPUSH', inbox, ARGV[9] .. (guest and ' g' or ' ') .. #ARGV[13] .. ':' .. ARGV[13] .. ARGV[3])
    redis.call('PEXPIRE', inbox, ARGV[10])
    redis.call('HINCRBY', senders, ARGV[13], 1)
    redis.call('PEXPIRE', senders, ARGV[10])
    if guest then
      redis.call('INCR', guests)
      redis.call('PEXPIRE', guests, ARGV[10])
    end
    held = true
  end
end
if (n > 0 or held) and ARGV[2] ~= '' then
  if ARGV[4] == '1' or redis.call('PUBSUB', 'NUMSUB', ARGV[2])[2] > 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
end
if (n > 0 or held) and ARGV[15] == '1' then
  local log = KEYS[k + (max > 0 and 5 or 0) + 1]
  local frame = string.sub(ARGV[3], (string.find(ARGV[3], '\n', 1, true) or 0) + 1)
  redis.call('ZADD', log, 0, ARGV[5] .. ' ' .. frame)
  redis.call('ZREMRANGEBYLEX', log, '-', '(' .. ARGV[18])
  local extra = redis.call('ZCARD', log) - tonumber(ARGV[17])
  if extra > 0 then
    redis.call('ZREMRANGEBYRANK', log, 0, extra - 1)
  end
  redis.call('PEXPIRE', log, ARGV[19])
  local lists = {{KEYS[k + (max > 0 and 5 or 0) + 2], ARGV[21]}, {KEYS[k + (max > 0 and 5 or 0) + 3], ARGV[20]}}
  for _, list in ipairs(lists) do
    redis.call('ZADD', list[1], 'GT', ARGV[16], list[2])
    redis.call('ZREMRANGEBYSCORE', list[1], '-inf', '(' .. ARGV[23])
    local over = redis.call('ZCARD', list[1]) - tonumber(ARGV[22])
    if over > 0 then
      redis.call('ZREMRANGEBYRANK', list[1], 0, over - 1)
    end
    redis.call('PEXPIRE', list[1], ARGV[19])
  end
end
if sent and (n > 0 or held) then
  redis.call('SET', sent, ARGV[5] .. ' ' .. ARGV[6] .. (held and ' h' or ''), 'PX', ARGV[7])
end
if held then
  return {-3, ARGV[5], ARGV[6], 1}
end
return {n, ARGV[5], ARGV[6], 0}
