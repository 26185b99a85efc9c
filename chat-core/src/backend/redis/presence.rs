//! The Redis presence store: each node's connections per room (`:conns:<node>`, conn id →
//! user id) and the users' counts (`:online`), mirrored locally so that the heartbeat can
//! reconcile Redis with what the node has (see `heartbeat`).
//!
//! Entering and exiting are idempotent scripts, and an exit publishes its `user_left` in the
//! same step: a failed exit is retried by the caller until it lands, and the reconcile removes
//! whatever a lost exit left behind, so nobody stays online and nobody is announced twice.

use std::collections::HashMap;

use super::{envelope, RedisNode, Shared};
use crate::{
    backend::{
        broker::{ConnId, Envelope, NodeId, Origin},
        store::PresenceStore,
        Reply,
    },
    error::BackendError,
    protocol::{now_ms, RoomId, ServerFrame, SystemEvent, SystemMessage, User, UserId},
    sync::lock,
};

/// This node's connections per room, as the node has them: what the reconcile makes Redis
/// hold. Changed before the script that tells Redis (under the reconcile gate, see
/// [`Shared`]), so that a reconcile never sees Redis ahead of it.
///
/// Each connection's user id only, which is all that `:conns:<node>` holds and the reconcile
/// (`heartbeat::reconcile`, `sync.lua`) compares and restores: not the whole [`User`] (the
/// display name is a second allocation per connection and room, for nothing).
pub(super) type LocalPresence = HashMap<RoomId, HashMap<ConnId, UserId>>;

/// How long a user's record of open WebSockets lives after its last change (`sockets.lua`):
/// a count a failed close left too high stops counting by then.
const SOCKETS_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl PresenceStore for RedisNode {
    fn count_sockets<'a>(
        &'a self,
        user: &'a UserId,
        node: NodeId,
        open: usize,
        max: Option<usize>,
    ) -> Reply<'a, bool> {
        Box::pin(async move {
            let keys = &self.shared.keys;
            let ttl = self.shared.config.presence_ttl;
            let alive_since = now_ms() - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let recorded: u8 = self
                .invoke(
                    self.shared
                        .scripts
                        .sockets
                        .key(keys.user_key(user, "socks"))
                        .key(keys.nodes())
                        .arg(node.to_string())
                        .arg(open)
                        .arg(max.map_or(0, |max| max.max(1)))
                        .arg(alive_since)
                        .arg(u64::try_from(SOCKETS_TTL.as_millis()).unwrap_or(u64::MAX)),
                )
                .await?;
            Ok(recorded == 1)
        })
    }

    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
    ) -> Reply<'a, bool> {
        Box::pin(async move {
            debug_assert_eq!(node, self.shared.node);
            let _gate = self.shared.gate.read().await;
            lock(&self.shared.presence)
                .entry(room.clone())
                .or_default()
                .insert(conn, user.id.clone());
            let keys = &self.shared.keys;
            let mut enter = self.shared.scripts.enter.prepare_invoke();
            enter
                .key(keys.node_conns(room, node))
                .key(keys.room_key(room, "online"))
                .key(keys.node_rooms(node))
                .key(keys.room_key(room, "info"))
                .key(keys.room_key(room, "members"))
                .key(keys.room_key(room, "order"))
                .key(keys.room_key(room, "log"))
                .arg(conn)
                .arg(user.id.as_str())
                .arg(room.as_str())
                .arg(self.shared.config.room_ttl_ms());
            match self.invoke::<i64>(&enter).await {
                Ok(first) => Ok(first == 1),
                Err(err) => {
                    // Not in the room: if the script ran all the same, the reconcile removes
                    // the connection from Redis.
                    forget(&self.shared, room, conn);
                    Err(err)
                }
            }
        })
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
        left: Envelope,
    ) -> Reply<'a, bool> {
        Box::pin(async move {
            let _gate = self.shared.gate.read().await;
            forget(&self.shared, room, conn);
            let keys = &self.shared.keys;
            let mut exit = self.shared.scripts.exit.prepare_invoke();
            exit.key(keys.node_conns(room, node))
                .key(keys.room_key(room, "online"))
                .key(keys.room_key(room, "info"))
                .key(keys.room_key(room, "members"))
                .key(keys.room_key(room, "order"))
                .key(keys.room_key(room, "log"))
                .arg(conn)
                .arg(user.id.as_str())
                .arg(keys.channel(&left.topic))
                .arg(envelope::payload(left.origin, &left.frame))
                .arg(self.shared.config.room_ttl_ms());
            let published: i64 = self.invoke(&exit).await?;
            Ok(published == 1)
        })
    }

    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)> {
        Box::pin(async move {
            let (mut users, total) = self.users_with_names(room, "online", 0, limit).await?;
            // In id order, as the memory store gives them.
            users.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            let total = total
                .first()
                .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX));
            Ok((users, total))
        })
    }

    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>> {
        Box::pin(async move {
            if users.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            // HMGET of the given users only: one field each.
            let counts: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(self.shared.keys.room_key(room, "online"))
                .arg(&ids)
                .query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)?;
            Ok(counts.into_iter().map(|c| c.unwrap_or(0) > 0).collect())
        })
    }

    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>> {
        Box::pin(async move {
            if rooms.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for room in rooms {
                pipe.hlen(self.shared.keys.room_key(room, "online"));
            }
            pipe.query_async(&mut self.conn())
                .await
                .map_err(BackendError::redis)
        })
    }
}

/// Takes a connection out of the local mirror.
fn forget(shared: &Shared, room: &RoomId, conn: ConnId) {
    let mut local = lock(&shared.presence);
    if let Some(conns) = local.get_mut(room) {
        conns.remove(&conn);
        if conns.is_empty() {
            local.remove(room);
        }
    }
}

/// Whose sync [`sync_room`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncBy {
    /// The node itself (its reconcile): what it restores of a reap is announced back.
    Node,
    /// A reaper, for a node whose beat is older than `deadline` (Unix ms; the script does
    /// nothing if the node beat since): a `user_left` it publishes marks the node as reaped
    /// (`Keys::node_reaped`), for the node's reconcile if it was alive after all.
    Reaper { deadline: i64 },
}

/// Makes `node`'s connections in `room` in Redis what `have` says (none for a dead node):
/// what Redis holds and `have` does not is removed, with `user_left` published by the script
/// where it was the user's last connection; what `have` holds and Redis lost is restored,
/// unless the room expired (then nothing is restored), and with the room TTL: without an
/// announcement, or, while the node carries a reap's mark, with a `user_joined` for each user
/// whom Redis counted nowhere (the others were told they left: a reap while this node was cut
/// off). Idempotent. Returns (users who left, connections restored).
pub(super) async fn sync_room(
    shared: &Shared,
    conn: &mut redis::aio::ConnectionManager,
    room: &RoomId,
    node: NodeId,
    have: &[(ConnId, String)],
    by: SyncBy,
) -> Result<(i64, i64), BackendError> {
    let keys = &shared.keys;
    let (head, tail) = system_template(shared, room, SystemEvent::UserLeft);
    let (joined_head, joined_tail, reaped_node, deadline) = match by {
        SyncBy::Node => {
            let (head, tail) = system_template(shared, room, SystemEvent::UserJoined);
            (head, tail, String::new(), String::new())
        }
        SyncBy::Reaper { deadline } => (
            Vec::new(),
            Vec::new(),
            node.to_string(),
            deadline.to_string(),
        ),
    };
    let mut sync = shared.scripts.sync.prepare_invoke();
    sync.key(keys.node_conns(room, node))
        .key(keys.room_key(room, "online"))
        .key(keys.room_key(room, "members"))
        .key(keys.node_rooms(node))
        .key(keys.nodes())
        .key(keys.room_key(room, "info"))
        .key(keys.node_reaped(node))
        .arg(room.as_str())
        .arg(keys.room_channel(room))
        .arg(head)
        .arg(tail)
        .arg(keys.node_conns_prefix(room))
        .arg(shared.config.room_ttl_ms())
        .arg(joined_head)
        .arg(joined_tail)
        .arg(reaped_node)
        .arg(deadline);
    for (id, user) in have {
        sync.arg(*id).arg(user.as_str());
    }
    sync.invoke_async(conn).await.map_err(BackendError::redis)
}

/// The payload of a system message (`user_left`, `user_joined`) in `room` published by this
/// node (no connection), cut where the user object goes: the sync script puts each user in
/// between.
fn system_template(shared: &Shared, room: &RoomId, event: SystemEvent) -> (Vec<u8>, Vec<u8>) {
    let placeholder = User::new("@", "@");
    let frame = ServerFrame::System(SystemMessage {
        room: room.clone(),
        event,
        user: placeholder.clone(),
        ts: now_ms(),
    })
    .encode();
    let origin = Origin {
        node: shared.node,
        conn: None,
    };
    let payload = envelope::payload(origin, &frame);
    // The user comes after the room and before `ts` (a number): the last match is the user.
    let user = serde_json::to_vec(&placeholder).unwrap_or_default();
    match payload
        .windows(user.len().max(1))
        .rposition(|w| w == user.as_slice())
    {
        Some(at) => (payload[..at].to_vec(), payload[at + user.len()..].to_vec()),
        // Not reachable (the frame holds the user it was made with). An empty head tells the
        // script to publish nothing rather than something malformed; it still removes.
        None => (Vec::new(), Vec::new()),
    }
}
