-- At most ARGV[3] users of a room, with their names from the members hash (false for none):
-- - ARGV[1] 'order': the members after join number ARGV[2], in join order; the third list
--   holds their join numbers;
-- - ARGV[1] 'online': users online now (the first that HSCAN finds); the third list holds
--   how many are online in all.
-- Only what is returned is read (ZRANGE ... LIMIT, HSCAN until enough), whatever the room's
-- size; names are looked up 1,000 at a time (unpack has a bound).
-- KEYS: source (order zset or online hash), members. Returns {ids, names, numbers}.
local ids, numbers = {}, {}
local limit = tonumber(ARGV[3])
if ARGV[1] == 'order' then
  local page = redis.call('ZRANGE', KEYS[1], '(' .. ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0,
    ARGV[3], 'WITHSCORES')
  for i = 1, #page, 2 do
    ids[#ids + 1] = page[i]
    numbers[#numbers + 1] = tonumber(page[i + 1])
  end
else
  numbers[1] = redis.call('HLEN', KEYS[1])
  local seen, cursor = {}, '0'
  while limit > 0 do
    local scan = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', math.min(limit, 1000))
    cursor = scan[1]
    for i = 1, #scan[2], 2 do
      local id = scan[2][i]
      if #ids < limit and not seen[id] then
        seen[id] = true
        ids[#ids + 1] = id
      end
    end
    if cursor == '0' or #ids >= limit then break end
  end
end
local names = {}
for i = 1, #ids, 1000 do
  local chunk = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #chunk do names[#names + 1] = chunk[j] end
end
return {ids, names, numbers}
