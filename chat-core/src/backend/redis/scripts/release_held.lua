-- PUBLISH the direct messages held for a user (`direct.lua`) to the user's channel, oldest
-- first, and delete them, in one step: a message held meanwhile is either among them or, the
-- user's channel having a subscriber now, published live. Those past their "until" are
-- dropped.
-- KEYS: held, held:senders (the count per sender), held:guests (the guests' count). ARGV: the
-- user's channel, now (ms).
-- Returns how many were published.
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items == 0 then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local now = tonumber(ARGV[2])
local n = 0
-- Each item is "<until> <len(from)>:<from><payload>", or "<until> g<len(from)>:..." from a
-- guest.
for _, item in ipairs(items) do
  local at = string.find(item, ' ', 1, true)
  local colon = at and string.find(item, ':', at + 1, true)
  if colon and tonumber(string.sub(item, 1, at - 1)) > now then
    local digits = at + (string.sub(item, at + 1, at + 1) == 'g' and 2 or 1)
    local len = tonumber(string.sub(item, digits, colon - 1))
    redis.call('PUBLISH', ARGV[1], string.sub(item, colon + 1 + len))
    n = n + 1
  end
end
return n
