-- Makes a node's connections in one room what the node says it has: the heartbeat's
-- reconcile of a live node, and the reaping of a dead one (which has none).
-- - A connection Redis holds and the node does not is removed, and `user_left` is published
--   here, in the same step, where it was the user's last connection in the room.
-- - A connection the node has and Redis lost is restored without an announcement (its
--   `user_joined` went out when it joined), or, when the node carries a reaped mark (KEYS[7]:
--   a reap told the others its users left while it was cut off), with a `user_joined` for
--   each user Redis counted nowhere before. The user's count in the room is then recounted
--   from this node's connections and every other live node's (it may have been lost with
--   them, or not; this node counts even before its beat lists it again).
-- - A reap (ARGV[9], the reaped node's id, given) that tells the others a user left marks
--   the node (INCR KEYS[7], with the room TTL), in the same step: whenever the node restores
--   what the reap removed, the mark is there. The node's reconcile clears it once it has
--   synced every room (`answered_reap.lua`).
-- Idempotent: running it again changes nothing, so a reap that stopped half-way is finished
-- by running it again, and nobody is announced twice.
-- Room expiry: nothing is restored into a room that is gone (its info expired), and what is
-- restored gets the room TTL, so that this never brings back keys of an expired room, nor
-- keys without a TTL. Removing writes nothing back (an emptied hash is deleted).
-- Returns {users who left, connections restored}.
-- KEYS: node's connections in the room, online, members, node rooms, nodes, info, the node's
-- reaped mark.
-- ARGV: room id, channel, user_left head (envelope header and the frame up to the user
-- object; '' publishes nothing), user_left tail (after it), prefix of the room's per-node
-- connection keys, room TTL in ms, user_joined head and tail (as for user_left; '': a reap,
-- which restores and announces nothing), for a reap the node's id and the deadline its beat
-- must be older than ('' '' otherwise: a reaper that read the dead list before the node beat
-- again does nothing), then conn, user pairs: the node's connections in the room.
local function announce(head, tail, uid)
  local name = redis.call('HGET', KEYS[3], uid) or uid
  redis.call('PUBLISH', ARGV[2], head .. '{"id":' .. cjson.encode(uid) .. ',"name":'
    .. cjson.encode(name) .. '}' .. tail)
end
local want = {}
if ARGV[9] ~= '' then
  local beat = tonumber(redis.call('ZSCORE', KEYS[5], ARGV[9]))
  if beat and beat > tonumber(ARGV[10]) then return {0, 0} end
end
for i = 11, #ARGV, 2 do want[ARGV[i]] = ARGV[i + 1] end
local have = redis.call('HGETALL', KEYS[1])
local left, restored, mine = 0, 0, {}
for i = 1, #have, 2 do
  local conn, uid = have[i], have[i + 1]
  if want[conn] == uid then
    want[conn] = nil
    mine[uid] = (mine[uid] or 0) + 1
  else
    redis.call('HDEL', KEYS[1], conn)
    if redis.call('HINCRBY', KEYS[2], uid, -1) <= 0 then
      redis.call('HDEL', KEYS[2], uid)
      if ARGV[3] ~= '' then announce(ARGV[3], ARGV[4], uid) end
      if ARGV[9] ~= '' then
        redis.call('INCR', KEYS[7])
        redis.call('PEXPIRE', KEYS[7], ARGV[6])
      end
      left = left + 1
    end
  end
end
local recount = {}
if redis.call('EXISTS', KEYS[6]) == 1 then
  for conn, uid in pairs(want) do
    redis.call('HSET', KEYS[1], conn, uid)
    restored = restored + 1
    recount[uid] = true
  end
  -- A count below this node's own connections was lost too: recount that user as well.
  for uid, n in pairs(mine) do
    if (tonumber(redis.call('HGET', KEYS[2], uid)) or 0) < n then recount[uid] = true end
  end
end
if next(recount) then
  local reaped = ARGV[9] == '' and ARGV[7] ~= '' and redis.call('EXISTS', KEYS[7]) == 1
  local nodes = redis.call('ZRANGE', KEYS[5], 0, -1)
  local own = {}
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do own[v] = (own[v] or 0) + 1 end
  for uid in pairs(recount) do
    local before = tonumber(redis.call('HGET', KEYS[2], uid)) or 0
    local total = own[uid] or 0
    for _, node in ipairs(nodes) do
      local key = ARGV[5] .. node
      if key ~= KEYS[1] then
        for _, v in ipairs(redis.call('HVALS', key)) do
          if v == uid then total = total + 1 end
        end
      end
    end
    if total > 0 then
      redis.call('HSET', KEYS[2], uid, total)
      if before <= 0 and reaped then announce(ARGV[7], ARGV[8], uid) end
    end
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[4], ARGV[1])
else
  redis.call('SREM', KEYS[4], ARGV[1])
end
return {left, restored}
