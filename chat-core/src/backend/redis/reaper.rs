//! The reaper: the users of a node that stopped beating leave presence, once.
//!
//! A dead node stays in `P:nodes` until its reap is over. A reaper claims it for a while
//! (`SET NX PX`, the presence TTL): one reaper at a time, and one that stops half-way (it
//! crashed, Redis went away) leaves the node to the next reaper once the claim expires. Each
//! room is reaped by the sync script (the node has no connections), which publishes the
//! `user_left`s in the same step and is idempotent: the next reaper finishes what is left, and
//! nobody is announced twice.

use redis::{aio::ConnectionManager, AsyncCommands};

use super::{
    presence::{self, SyncBy},
    Shared,
};
use crate::{
    backend::broker::NodeId,
    error::BackendError,
    protocol::{now_ms, RoomId},
};

/// Finds nodes whose heartbeat is older than the TTL and reaps each that it can claim.
pub(super) async fn reap_dead_nodes(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let keys = &shared.keys;
    let ttl = shared.config.presence_ttl;
    let deadline = now_ms() - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let dead: Vec<String> = conn
        .zrangebyscore(keys.nodes(), "-inf", deadline)
        .await
        .map_err(BackendError::redis)?;
    for node in dead {
        let Ok(node_id) = uuid::Uuid::parse_str(&node).map(NodeId) else {
            continue;
        };
        if node_id == shared.node {
            continue;
        }
        let claim: Option<String> = redis::cmd("SET")
            .arg(keys.node_reaper(node_id))
            .arg(shared.node.to_string())
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(conn)
            .await
            .map_err(BackendError::redis)?;
        if claim.is_none() {
            continue; // another reaper has it
        }
        let rooms: Vec<String> = conn
            .smembers(keys.node_rooms(node_id))
            .await
            .map_err(BackendError::redis)?;
        let mut left = 0;
        for room in rooms {
            let room = RoomId::new(room);
            left += presence::sync_room(
                shared,
                conn,
                &room,
                node_id,
                &[],
                SyncBy::Reaper { deadline },
            )
            .await?
            .0;
        }
        let forgotten: i64 = shared
            .scripts
            .forget_node
            .key(keys.nodes())
            .key(keys.node_rooms(node_id))
            .key(keys.node_reaper(node_id))
            .arg(&node)
            .arg(deadline)
            .invoke_async(conn)
            .await
            .map_err(BackendError::redis)?;
        tracing::info!(
            %node,
            users_left = left,
            came_back = forgotten == 0,
            "reaped a dead node"
        );
    }
    Ok(())
}
