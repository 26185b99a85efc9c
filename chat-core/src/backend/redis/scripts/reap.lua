-- Removes a dead node's connections from one room. Returns the users who have none left.
-- KEYS: presence, online. ARGV: "node|".
local fields = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #fields, 2 do
  local f = fields[i]
  if string.sub(f, 1, #ARGV[1]) == ARGV[1] then
    local uid = string.sub(f, #ARGV[1] + 1)
    redis.call('HDEL', KEYS[1], f)
    local total = redis.call('HINCRBY', KEYS[2], uid, -tonumber(fields[i + 1]))
    if total <= 0 then
      redis.call('HDEL', KEYS[2], uid)
      table.insert(gone, uid)
    end
  end
end
return gone
