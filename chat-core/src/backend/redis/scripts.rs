//! The Lua scripts: each makes one multi-key change atomic (and one round trip).

use redis::{aio::ConnectionManager, Script};

use super::Shared;
use crate::{
    error::BackendError,
    protocol::{RoomId, User},
};

/// XADD the message (without its id) to the room's stream, then PUBLISH the frame with the
/// entry id spliced in as `id`. Returns the id.
/// KEYS: stream. ARGV: maxlen, frame rest (the JSON after `{`, without `id`), channel, header.
const APPEND_PUBLISH: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '{"type":"message","id":"' .. id .. '",' .. ARGV[2])
return id
"#;

/// PUBLISH a direct message to the recipient's channel and, if it reached anyone, to the
/// sender's channel: when the sender has other connections on the publishing node (ARGV[4]
/// is 1) or another node subscribes to it (each node has one Pub/Sub connection, and the
/// publishing node is one of them). Returns the recipient channel's receivers.
/// ARGV: recipient channel, sender channel ('' for none), payload, sender has others here.
const DIRECT: &str = r#"
local n = redis.call('PUBLISH', ARGV[1], ARGV[3])
if n > 0 and ARGV[2] ~= '' then
  if ARGV[4] == '1' or redis.call('PUBSUB', 'NUMSUB', ARGV[2])[2] > 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
end
return n
"#;

/// One more connection: per node+user, per user; remembers the room for the node's reaper.
/// KEYS: presence, online, node rooms. ARGV: node|user, user, room, count. Returns the user's
/// total connections in the room.
const ENTER: &str = r#"
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
return redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[4])
"#;

/// One connection less. Returns 1 if it was the user's last in the room, 0 if not, -1 if the
/// connection was not counted (already reaped).
/// KEYS: presence, online. ARGV: node|user, user.
const EXIT: &str = r#"
local c = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if c <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
if c < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if total <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
"#;

/// Removes a dead node's connections from one room. Returns the users who have none left.
/// KEYS: presence, online. ARGV: "node|".
const REAP: &str = r#"
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
"#;

/// Adds a member if the room exists. Returns 1, or 0 for no such room.
/// KEYS: info, members, order, users. ARGV: user id, name, now ms.
const ADD_MEMBER: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return 1
"#;

/// Ids and names of the users in a set-like key, names from the members hash.
/// KEYS: ids source (hash or zset), members. ARGV: "hash" | "zset".
const USERS_WITH_NAMES: &str = r#"
local ids
if ARGV[1] == 'zset' then ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else ids = redis.call('HKEYS', KEYS[1]) end
if #ids == 0 then return {{}, {}} end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
"#;

pub(crate) struct Scripts {
    pub(crate) append_publish: Script,
    pub(crate) direct: Script,
    pub(crate) enter: Script,
    pub(crate) exit: Script,
    pub(crate) reap: Script,
    pub(crate) add_member: Script,
    pub(crate) users_with_names: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            append_publish: Script::new(APPEND_PUBLISH),
            direct: Script::new(DIRECT),
            enter: Script::new(ENTER),
            exit: Script::new(EXIT),
            reap: Script::new(REAP),
            add_member: Script::new(ADD_MEMBER),
            users_with_names: Script::new(USERS_WITH_NAMES),
        }
    }

    pub(crate) async fn load_all(&self, conn: &mut ConnectionManager) -> Result<(), BackendError> {
        for script in [
            &self.append_publish,
            &self.direct,
            &self.enter,
            &self.exit,
            &self.reap,
            &self.add_member,
            &self.users_with_names,
        ] {
            let _: String = script.prepare_invoke().load_async(conn).await?;
        }
        Ok(())
    }

    /// Counts `n` connections of `user` in `room` on this node; returns the user's total.
    pub(crate) async fn enter(
        &self,
        shared: &Shared,
        conn: &mut ConnectionManager,
        room: &RoomId,
        user: &User,
        n: u32,
    ) -> Result<i64, BackendError> {
        let keys = &shared.keys;
        Ok(self
            .enter
            .key(keys.room_key(room, "presence"))
            .key(keys.room_key(room, "online"))
            .key(keys.node_rooms(shared.node))
            .arg(format!("{}|{}", shared.node, user.id))
            .arg(user.id.as_str())
            .arg(room.as_str())
            .arg(n)
            .invoke_async(conn)
            .await?)
    }
}
