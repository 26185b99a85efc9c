-- The end of a node's reconcile that synced every room: the node's reaped mark goes, unless a
-- reap touched it since the round read it (that reap's rooms wait for the next round).
-- KEYS: the node's reaped mark. ARGV: its value when the round started.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
