//! This node's heartbeat, and the loop that refreshes it, reconciles the node's presence
//! with Redis and reaps dead nodes.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use redis::{aio::ConnectionManager, AsyncCommands};
use tracing::{debug, warn};

use super::{presence, reaper, Shared};
use crate::{backend::broker::ConnId, error::BackendError, protocol::RoomId, sync::lock};

/// Refreshes this node's heartbeat.
pub(super) async fn heartbeat(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let secret = lock(&shared.secret).clone();
    if let Some(secret) = secret {
        // Back into Redis if Redis lost it (see `RedisBackend::shared_secret`).
        let _: bool = conn
            .set_nx(shared.keys.secret(), secret)
            .await
            .map_err(BackendError::redis)?;
    }
    let now = crate::protocol::now_ms();
    let added: i64 = conn
        .zadd(shared.keys.nodes(), shared.node.to_string(), now)
        .await
        .map_err(BackendError::redis)?;
    if added == 1 && !lock(&shared.presence).is_empty() {
        warn!("this node was reaped while cut off; its reconcile restores its presence");
    }
    Ok(())
}

/// Makes this node's presence in Redis what the node has, room by room: the rooms it has
/// connections in and the rooms Redis lists for it. Removes what Redis holds and the node
/// does not (`user_left` where it was the user's last connection: an exit that never landed,
/// an enter whose reply was lost), restores what the node has and Redis lost (a reap while
/// the node was cut off, lost data) without a second `user_joined`.
///
/// Each room is synced under the gate (see [`Shared`]): its snapshot and its script see no
/// enter or exit of this node in flight.
pub(super) async fn reconcile(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let listed: Vec<String> = conn
        .smembers(shared.keys.node_rooms(shared.node))
        .await
        .map_err(BackendError::redis)?;
    let listed: BTreeSet<RoomId> = listed.into_iter().map(RoomId::new).collect();
    let mut rooms = listed.clone();
    rooms.extend(lock(&shared.presence).keys().cloned());
    let (mut left, mut restored) = (0, 0);
    for room in rooms {
        let _gate = shared.gate.write().await;
        let have: Vec<(ConnId, String)> = lock(&shared.presence)
            .get(&room)
            .map(|conns| {
                conns
                    .iter()
                    .map(|(id, user)| (*id, user.id.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if in_step(shared, conn, &room, &have, listed.contains(&room)).await? {
            continue;
        }
        let (l, r) = presence::sync_room(shared, conn, &room, shared.node, &have).await?;
        left += l;
        restored += r;
    }
    if left > 0 || restored > 0 {
        warn!(
            users_left = left,
            connections_restored = restored,
            "presence reconciled with Redis"
        );
    }
    Ok(())
}

/// Whether Redis holds `have` (this node's connections in `room`) exactly, counts each of
/// their users at least as often and lists the room for the node (`listed`): then nothing is
/// written (reads only, so that the steady state costs no script call). A room listed for the
/// node where neither has anything is dropped from the node's rooms here.
async fn in_step(
    shared: &Shared,
    conn: &mut ConnectionManager,
    room: &RoomId,
    have: &[(ConnId, String)],
    listed: bool,
) -> Result<bool, BackendError> {
    let keys = &shared.keys;
    let held: HashMap<String, String> = conn
        .hgetall(keys.node_conns(room, shared.node))
        .await
        .map_err(BackendError::redis)?;
    if held.len() != have.len()
        || have
            .iter()
            .any(|(id, user)| held.get(&id.to_string()) != Some(user))
    {
        return Ok(false);
    }
    if have.is_empty() {
        if !listed {
            return Ok(true);
        }
        let _: i64 = conn
            .srem(keys.node_rooms(shared.node), room.as_str())
            .await
            .map_err(BackendError::redis)?;
        return Ok(true);
    }
    if !listed {
        return Ok(false);
    }
    let mut own: HashMap<&str, i64> = HashMap::new();
    for (_, user) in have {
        *own.entry(user.as_str()).or_default() += 1;
    }
    let users: Vec<&str> = own.keys().copied().collect();
    let counts: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(keys.room_key(room, "online"))
        .arg(&users)
        .query_async(conn)
        .await
        .map_err(BackendError::redis)?;
    Ok(users
        .iter()
        .zip(counts)
        .all(|(user, count)| count.unwrap_or(0) >= own.get(user).copied().unwrap_or(0)))
}

/// How often a node beats: three times per presence TTL.
pub(super) fn period(config: &super::RedisConfig) -> Duration {
    (config.presence_ttl / 3).max(Duration::from_millis(100))
}

/// Heartbeat, reconcile and reaper loop. Holds only a weak reference so that dropping the backend stops it.
pub(super) async fn liveness(shared: std::sync::Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => period(&s.config),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut conn = shared.cmd.clone();
        if let Err(err) = heartbeat(&shared, &mut conn).await {
            debug!(cause = %err, "heartbeat failed");
            continue;
        }
        if let Err(err) = reconcile(&shared, &mut conn).await {
            debug!(cause = %err, "presence reconcile failed");
        }
        if let Err(err) = reaper::reap_dead_nodes(&shared, &mut conn).await {
            debug!(cause = %err, "reaping failed");
        }
    }
}
