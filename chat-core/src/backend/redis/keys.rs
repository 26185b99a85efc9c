//! Key and channel names: everything under the prefix, a room's keys hash-tagged by its id
//! (see the module docs of `redis`).

use crate::{
    backend::broker::{NodeId, Topic},
    protocol::{RoomId, UserId},
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
        format!("{}:room:{{{}}}", self.prefix, room)
    }
    pub(super) fn room_key(&self, room: &RoomId, what: &str) -> String {
        format!("{}:room:{{{}}}:{what}", self.prefix, room)
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
    pub(super) fn users(&self) -> String {
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
        format!("{}{node}", self.node_conns_prefix(room))
    }
    /// What precedes the node id in [`Keys::node_conns`] (the sync script counts a user's
    /// connections on every node with it).
    pub(super) fn node_conns_prefix(&self, room: &RoomId) -> String {
        self.room_key(room, "conns:")
    }
    /// Who is reaping a dead node (a claim with a TTL: a reaper that stops half-way leaves
    /// the rest to the next one).
    pub(super) fn node_reaper(&self, node: NodeId) -> String {
        format!("{}:node:{{{node}}}:reaper", self.prefix)
    }
    /// A sent `clientMsgId` of `user` to a room (its first id and timestamp), in the room's
    /// slot. Length-prefixed: no user id and client id pair reads as another.
    pub(super) fn room_sent(&self, room: &RoomId, user: &UserId, client_msg_id: &str) -> String {
        let sent = format!("sent:{}:{user}:{client_msg_id}", user.as_str().len());
        self.room_key(room, &sent)
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
}
