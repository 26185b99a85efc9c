//! Key and channel names: everything under the prefix, a room's keys hash-tagged by its id
//! (see the module docs of `redis`).

use std::fmt::Write as _;

use crate::{
    backend::broker::{NodeId, Topic},
    limits::Limit,
    protocol::{RoomId, User, UserId},
};

/// The suffixes of the keys of a room that every node shares (see [`Keys::room_keys`]).
pub(super) const ROOM_KEYS: [&str; 5] = ["info", "members", "order", "log", "online"];

/// Key and channel names (see the module docs).
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub(super) fn room_channel(&self, room: &RoomId) -> String {
        let mut name = self.room_names(room, 0);
        name.buf.truncate(name.base - 1);
        name.buf
    }
    pub(super) fn room_key(&self, room: &RoomId, what: &str) -> String {
        let mut name = self.room_names(room, what.len());
        name.buf.push_str(what);
        name.buf
    }
    /// A builder of `room`'s key names in one buffer (`extra`: room reserved for the longest
    /// suffix): the names a message's script takes cost no allocation each (see
    /// [`RoomNames`]). `room_key`, `room_channel` and `node_conns` are built with it,
    /// so that the names are the same whichever way they are made.
    pub(super) fn room_names(&self, room: &RoomId, extra: usize) -> RoomNames {
        let room = room.as_str();
        let mut buf = String::with_capacity(self.prefix.len() + room.len() + 9 + extra);
        buf.push_str(&self.prefix);
        buf.push_str(":room:{");
        buf.push_str(room);
        buf.push_str("}:");
        let base = buf.len();
        RoomNames { buf, base }
    }
    /// The keys of a room that carry the room's TTL and that `node` refreshes: `info`,
    /// `members`, `order`, `log`, `online`, and `node`'s connections in the room
    /// (`:conns:<N>`: each node refreshes its own).
    pub(super) fn room_keys(&self, room: &RoomId, node: NodeId) -> [String; 6] {
        let [info, members, order, log, online] = ROOM_KEYS.map(|what| self.room_key(room, what));
        [
            info,
            members,
            order,
            log,
            online,
            self.node_conns(room, node),
        ]
    }
    pub(super) fn user_channel(&self, user: &UserId) -> String {
        format!("{}:user:{{{}}}", self.prefix, user)
    }
    /// The sort keys of the public rooms (`backend::paging`), one score: read BYLEX.
    pub(super) fn public_rooms(&self) -> String {
        format!("{}:rooms:public", self.prefix)
    }
    /// A user's own keys, hash-tagged by the user's id: `rooms` (the sort keys of every room
    /// the user is a member of) and `private` (of the private ones).
    pub(super) fn user_key(&self, user: &UserId, what: &str) -> String {
        format!("{}:user:{{{}}}:{what}", self.prefix, user)
    }
    /// That the chat has seen `user` (a guest token, a connection, a join), for the room TTL
    /// since then, and the name they had ([`Keys::seen_value`]; the names of the other users
    /// in a list of conversations): what tells `recipient_offline` from `user_not_found`. One key per user with
    /// its own TTL, so users who never come back do not pile up (before, one hash of every
    /// user ever seen, `{prefix}:users`, still read: [`Keys::legacy_users`]).
    pub(super) fn user_seen(&self, user: &UserId) -> String {
        self.user_key(user, "seen")
    }

    /// The value of a [`Keys::user_seen`] key: the name the user had then.
    pub(super) fn seen_value(user: &User) -> String {
        format!("{SEEN_NAME}{}", user.name)
    }

    /// A user's bucket of one [`Limit`] counted for every instance (`gcra.lua`): in the
    /// user's slot.
    pub(super) fn quota(&self, user: &UserId, limit: Limit) -> String {
        self.user_key(
            user,
            match limit {
                Limit::Messages => "q:msg",
                Limit::Joins => "q:join",
                Limit::Directs => "q:dm",
                Limit::RoomCreations => "q:rooms",
                Limit::Connections => "q:conns",
                // Guests are counted per client address (`Keys::guest_bucket`), not per user.
                Limit::Guests => "q:guests",
            },
        )
    }

    /// A client address's (or IPv6 /64's) guest bucket (`take_quota.lua`).
    pub(super) fn guest_bucket(&self, block: std::net::IpAddr) -> String {
        format!("{}:guests:{{{block}}}", self.prefix)
    }

    /// The hash of every user seen, as versions before [`Keys::user_seen`] kept it: read (never
    /// written) so that users seen before an upgrade are not unknown at once; it can be
    /// deleted one room TTL after the upgrade.
    pub(super) fn legacy_users(&self) -> String {
        format!("{}:users", self.prefix)
    }
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub(super) fn node_rooms(&self, node: NodeId) -> String {
        format!("{}:node:{{{node}}}:rooms", self.prefix)
    }
    /// A node's connections in a room (conn id -> user id), in the room's slot.
    pub(super) fn node_conns(&self, room: &RoomId, node: NodeId) -> String {
        let mut name = self.room_names(room, NODE_CONNS_EXTRA);
        name.node_conns(node);
        name.buf
    }
    /// What precedes the node id in [`Keys::node_conns`] (the sync script counts a user's
    /// connections on every node with it).
    pub(super) fn node_conns_prefix(&self, room: &RoomId) -> String {
        self.room_key(room, "conns:")
    }
    /// That a reap told the others a node's users left (set by the reap's `sync.lua` with the
    /// room TTL; taken by the node's next beat, if it was alive after all, so that it announces
    /// them back).
    pub(super) fn node_reaped(&self, node: NodeId) -> String {
        format!("{}:node:{{{node}}}:reaped", self.prefix)
    }
    /// Who is reaping a dead node (a claim with a TTL: a reaper that stops half-way leaves
    /// the rest to the next one).
    pub(super) fn node_reaper(&self, node: NodeId) -> String {
        format!("{}:node:{{{node}}}:reaper", self.prefix)
    }
    /// A user's conversations: a sorted set of the other users by the time (ms) of the last
    /// direct message kept between them (`HistoryStore::conversations`).
    pub(super) fn conversations(&self, user: &UserId) -> String {
        self.user_key(user, "dms")
    }

    /// The direct messages of the conversation of `a` and `b` (in `history::conversation`
    /// order), hash-tagged by both: a sorted set of `"<id> <frame>"`.
    pub(super) fn direct_log(&self, a: &UserId, b: &UserId) -> String {
        format!("{}:dm:{{{}:{a}:{b}}}", self.prefix, a.as_str().len())
    }
    /// A sent `clientMsgId` of a direct message from `from` to `to`, in the sender's slot.
    pub(super) fn direct_sent(&self, from: &UserId, to: &UserId, client_msg_id: &str) -> String {
        let sent = format!("sent:{}:{to}:{client_msg_id}", to.as_str().len());
        self.user_key(from, &sent)
    }
    pub(super) fn secret(&self) -> String {
        format!("{}:secret", self.prefix)
    }
    pub(super) fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Room(room) => self.room_channel(room),
            Topic::User(user) => self.user_channel(user),
        }
    }

    /// The topic of a channel name, if it is one of ours.
    pub(super) fn topic(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        let (kind, tagged) = rest.split_once(':')?;
        let id = tagged.strip_prefix('{')?.strip_suffix('}')?;
        match kind {
            "room" => Some(Topic::Room(RoomId::new(id))),
            "user" => Some(Topic::User(UserId::new(id))),
            _ => None,
        }
    }
}

/// Room for `conns:<node id>` (a node id is 32 hex digits).
pub(super) const NODE_CONNS_EXTRA: usize = 6 + 32;

/// Room for `sent:<len>:<user>:<clientMsgId>`.
pub(super) fn sent_extra(user: &UserId, client_msg_id: &str) -> usize {
    5 + 20 + 1 + user.as_str().len() + 1 + client_msg_id.len()
}

/// One room's key names, one at a time in one buffer that holds `prefix:room:{R}:` once:
/// each call replaces the previous suffix and lends the whole name out, so a script call
/// that names several of the room's keys allocates no string per key (a room message names
/// six or seven of them: `pubsub`).
pub(super) struct RoomNames {
    buf: String,
    /// The length of `prefix:room:{R}:`.
    base: usize,
}

impl RoomNames {
    /// The room's key `what` (as [`Keys::room_key`]).
    pub(super) fn key(&mut self, what: &str) -> &str {
        self.buf.truncate(self.base);
        self.buf.push_str(what);
        &self.buf
    }
    /// `node`'s connections in the room (as [`Keys::node_conns`]).
    pub(super) fn node_conns(&mut self, node: NodeId) -> &str {
        self.buf.truncate(self.base);
        self.buf.push_str("conns:");
        // Writing to a String does not fail.
        let _ = write!(self.buf, "{node}");
        &self.buf
    }
    /// A sent `clientMsgId` of `user` to the room (its first id and timestamp), in the room's
    /// slot. Length-prefixed: no user id and client id pair reads as another.
    pub(super) fn sent(&mut self, user: &UserId, client_msg_id: &str) -> &str {
        self.buf.truncate(self.base);
        self.buf.push_str("sent:");
        let _ = write!(self.buf, "{}", user.as_str().len());
        self.buf.push(':');
        self.buf.push_str(user.as_str());
        self.buf.push(':');
        self.buf.push_str(client_msg_id);
        &self.buf
    }
    /// The longest name the buffer holds without growing.
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
    /// The room's channel (as [`Keys::room_channel`]): the buffer without its last `:`.
    pub(super) fn channel(&self) -> &str {
        &self.buf[..self.base - 1]
    }
}

/// What precedes the name in a [`Keys::user_seen`] value (versions before it wrote `1`).
const SEEN_NAME: &str = "n:";

/// The name in a [`Keys::user_seen`] value, if it holds one.
pub(super) fn seen_name(value: &str) -> Option<String> {
    value.strip_prefix(SEEN_NAME).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_to_topics() {
        let keys = Keys::new("p");
        let room = Topic::Room(RoomId::new("r-1"));
        let user = Topic::User(UserId::new("u:{odd}"));
        assert_eq!(keys.channel(&room), "p:room:{r-1}");
        assert_eq!(keys.topic(&keys.channel(&room)), Some(room));
        assert_eq!(keys.topic(&keys.channel(&user)), Some(user));
        assert_eq!(keys.topic("other:room:{x}"), None);
    }

    /// The names built in one buffer are the names `format!` made before (the keys a
    /// running deployment holds), whatever order they are asked for in.
    #[test]
    fn room_names_are_the_formatted_names() {
        let keys = Keys::new("P");
        let node = NodeId::random();
        let user = UserId::new("u:{odd}\u{e9}");
        for room in [
            RoomId::new("r-1"),
            RoomId::new(""),
            RoomId::new("{x}:\u{1F600}"),
        ] {
            let mut names = keys.room_names(&room, 0);
            assert_eq!(names.channel(), format!("P:room:{{{room}}}"));
            assert_eq!(names.key("log"), format!("P:room:{{{room}}}:log"));
            assert_eq!(
                names.sent(&user, "c.1"),
                format!("P:room:{{{room}}}:sent:{}:{user}:c.1", user.as_str().len())
            );
            assert_eq!(names.key("info"), format!("P:room:{{{room}}}:info"));
            assert_eq!(
                names.node_conns(node),
                format!("P:room:{{{room}}}:conns:{node}")
            );
            assert_eq!(names.channel(), keys.room_channel(&room));
            assert_eq!(names.key("members"), keys.room_key(&room, "members"));
            assert_eq!(names.node_conns(node), keys.node_conns(&room, node));
            assert_eq!(
                keys.node_conns(&room, node),
                format!("{}{node}", keys.node_conns_prefix(&room))
            );
        }
    }
}
