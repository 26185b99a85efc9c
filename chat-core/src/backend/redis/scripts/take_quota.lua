-- One token of a bucket counted for every instance on this Redis (gcra.lua, included above):
-- a user's joins or room creations, or the guests created from one client address.
-- KEYS: the bucket's key. ARGV: interval (µs), tolerance (µs).
-- Returns 0, or how many ms until one is due.
return take_quota(KEYS[1], ARGV[1], ARGV[2])
