//! The reaper: the users of a node that stopped beating leave presence, once.

use redis::{aio::ConnectionManager, AsyncCommands};

use super::{envelope, Shared};
use crate::{
    backend::broker::{NodeId, Origin},
    error::BackendError,
    protocol::{now_ms, RoomId, ServerFrame, SystemEvent, SystemMessage, User, UserId},
};

/// Finds nodes whose heartbeat is older than the TTL, claims each (ZREM: one winner), and
/// removes its connections from presence, publishing `user_left` for users with none left.
pub(super) async fn reap_dead_nodes(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let keys = &shared.keys;
    let deadline = now_ms() - shared.config.presence_ttl.as_millis() as i64;
    let dead: Vec<String> = conn
        .zrangebyscore(keys.nodes(), "-inf", deadline)
        .await
        .map_err(BackendError::redis)?;
    for node in dead {
        let claimed: i64 = conn
            .zrem(keys.nodes(), &node)
            .await
            .map_err(BackendError::redis)?;
        if claimed != 1 {
            continue; // another node is reaping it
        }
        let Ok(node_id) = uuid::Uuid::parse_str(&node).map(NodeId) else {
            continue;
        };
        let rooms_key = keys.node_rooms(node_id);
        let rooms: Vec<String> = conn
            .smembers(&rooms_key)
            .await
            .map_err(BackendError::redis)?;
        let mut left = 0;
        for room in rooms {
            let room = RoomId::new(room);
            let gone: Vec<String> = shared
                .scripts
                .reap
                .key(keys.room_key(&room, "presence"))
                .key(keys.room_key(&room, "online"))
                .arg(format!("{node}|"))
                .invoke_async(conn)
                .await
                .map_err(BackendError::redis)?;
            for uid in gone {
                let name: Option<String> = conn
                    .hget(keys.room_key(&room, "members"), &uid)
                    .await
                    .map_err(BackendError::redis)?;
                let user = User {
                    name: name.unwrap_or_else(|| uid.clone()),
                    id: UserId::new(uid),
                };
                let frame = ServerFrame::System(SystemMessage {
                    room: room.clone(),
                    event: SystemEvent::UserLeft,
                    user,
                    ts: now_ms(),
                })
                .encode();
                let origin = Origin {
                    node: shared.node,
                    conn: None,
                };
                let payload = envelope::payload(origin, &frame);
                let _: usize = conn
                    .publish(keys.room_channel(&room), payload)
                    .await
                    .map_err(BackendError::redis)?;
                left += 1;
            }
        }
        let _: () = conn.del(&rooms_key).await.map_err(BackendError::redis)?;
        tracing::info!(%node, users_left = left, "reaped a dead node");
    }
    Ok(())
}
