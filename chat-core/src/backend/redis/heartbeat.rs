//! This node's heartbeat, and the loop that refreshes it and reaps dead nodes.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use redis::{aio::ConnectionManager, AsyncCommands};
use tracing::{debug, warn};

use super::{reaper, Shared};
use crate::{
    error::BackendError,
    protocol::{RoomId, User},
    sync::lock,
};

/// Refreshes this node's heartbeat; if the node had been reaped (it was cut off for longer
/// than the TTL), restores its presence.
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
    if added == 1 {
        let local: Vec<(RoomId, User, u32)> = lock(&shared.presence)
            .iter()
            .map(|((room, _), (user, n))| (room.clone(), user.clone(), *n))
            .collect();
        if !local.is_empty() {
            warn!(
                entries = local.len(),
                "this node was reaped while cut off; restoring its presence"
            );
        }
        for (room, user, n) in local {
            shared.scripts.enter(shared, conn, &room, &user, n).await?;
        }
    }
    // The rooms the reaper reads if this node dies: kept while it beats, gone by itself if
    // nobody is left to reap it (an instance back after longer than this restores its
    // presence above, and the set with it).
    let node_rooms_ttl = u64::try_from((shared.config.presence_ttl * 4).as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i64::MAX as u64 / 2);
    let _: bool = redis::cmd("PEXPIRE")
        .arg(shared.keys.node_rooms(shared.node))
        .arg(node_rooms_ttl)
        .query_async(conn)
        .await
        .map_err(BackendError::redis)?;
    refresh_rooms(shared, conn).await
}

/// Users online are activity even when nothing else happens: the keys of every room with a
/// connection on this node get the room TTL again once a quarter of it has passed, so that a
/// room never expires under its users (pipelined; a room costs this once per `room_ttl / 4`).
async fn refresh_rooms(shared: &Shared, conn: &mut ConnectionManager) -> Result<(), BackendError> {
    let every = shared.config.room_ttl / 4;
    let now = Instant::now();
    let due: Vec<RoomId> = {
        let rooms: HashSet<RoomId> = lock(&shared.presence)
            .keys()
            .map(|(room, _)| room.clone())
            .collect();
        let mut refreshed = lock(&shared.refreshed);
        refreshed.retain(|room, _| rooms.contains(room));
        rooms
            .into_iter()
            .filter(|room| {
                refreshed
                    .get(room)
                    .is_none_or(|at| now.duration_since(*at) >= every)
            })
            .collect()
    };
    if due.is_empty() {
        return Ok(());
    }
    let ttl = shared.config.room_ttl_ms();
    let mut pipe = redis::pipe();
    for room in &due {
        for key in shared.keys.room_keys(room) {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
        }
    }
    let () = pipe.query_async(conn).await.map_err(BackendError::redis)?;
    let mut refreshed = lock(&shared.refreshed);
    for room in due {
        refreshed.insert(room, now);
    }
    Ok(())
}

/// How often a node beats: three times per presence TTL.
pub(super) fn period(config: &super::RedisConfig) -> Duration {
    (config.presence_ttl / 3).max(Duration::from_millis(100))
}

/// Heartbeat and reaper loop. Holds only a weak reference so that dropping the backend stops it.
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
        if let Err(err) = reaper::reap_dead_nodes(&shared, &mut conn).await {
            debug!(cause = %err, "reaping failed");
        }
    }
}
