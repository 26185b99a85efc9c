-- Ids and names of the users in a set-like key, names from the members hash.
-- KEYS: ids source (hash or zset), members. ARGV: "hash" | "zset".
local ids
if ARGV[1] == 'zset' then ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else ids = redis.call('HKEYS', KEYS[1]) end
if #ids == 0 then return {{}, {}} end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
