//! This node's heartbeat and the loop that refreshes it (`beats`), and the loop that
//! reconciles the node's presence with Redis, keeps the TTLs of its room set and of the rooms
//! it has users in, and reaps dead nodes (`liveness`): two tasks, so that a slow reconcile
//! never delays a beat.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use redis::{aio::ConnectionManager, AsyncCommands};
use tracing::{debug, warn};

use super::{
    presence::{self, SyncBy},
    reaper, Shared,
};
use crate::{backend::broker::ConnId, error::BackendError, protocol::RoomId, sync::lock};

/// Refreshes this node's heartbeat: one round trip, the beat first. Sent whole even when the
/// reply times out, so a Redis that is slow rather than gone still gets it (two calls in a
/// row used to stop at the first timeout, and a node beating into an overloaded Redis was
/// reaped while alive: 100,000 connections on 6 instances, docs/perf.md session 9).
pub(super) async fn heartbeat(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    let now = crate::protocol::now_ms();
    let mut beat = redis::pipe();
    beat.zadd(shared.keys.nodes(), shared.node.to_string(), now)
        .ignore();
    if let Some(secret) = lock(&shared.secret).clone() {
        // Back into Redis if Redis lost it (see `RedisBackend::shared_secret`).
        beat.set_nx(shared.keys.secret(), secret).ignore();
    }
    let () = beat.query_async(conn).await.map_err(BackendError::redis)?;
    Ok(())
}

/// The TTLs that a live node keeps up, after its reconcile (which may have written the node's
/// room set anew): its room set's, and its rooms' (see [`refresh_rooms`]).
pub(super) async fn refresh_ttls(
    shared: &Shared,
    conn: &mut ConnectionManager,
) -> Result<(), BackendError> {
    // The rooms the reaper reads if this node dies: kept while it beats, gone by itself if
    // nobody is left to reap it (an instance back after longer than this restores its
    // presence with its reconcile, and the set with it). As long as the rooms' TTL: this
    // node's `:conns:<N>` keys, which the reaper finds through the set, live that long after
    // its last beat, so a reap after a long outage of every instance (no reaper meanwhile)
    // still finds them all and nobody stays online; after that everything of the node is gone.
    let node_rooms_ttl = shared
        .config
        .room_ttl_ms()
        .max(u64::try_from((shared.config.presence_ttl * 4).as_millis()).unwrap_or(u64::MAX))
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
/// connection on this node (the room's shared keys and this node's connections there) get
/// the room TTL again once a quarter of it has passed, so that a room never expires under its
/// users (pipelined; a room costs this once per `room_ttl / 4`). Each node refreshes its own
/// `:conns:<N>` key; a dead node's is removed by its reaper.
async fn refresh_rooms(shared: &Shared, conn: &mut ConnectionManager) -> Result<(), BackendError> {
    let every = shared.config.room_ttl / 4;
    let now = Instant::now();
    let due: Vec<RoomId> = {
        let rooms: BTreeSet<RoomId> = lock(&shared.presence).keys().cloned().collect();
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
        for key in shared.keys.room_keys(room, shared.node) {
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

/// Makes this node's presence in Redis what the node has, room by room: the rooms it has
/// connections in and the rooms Redis lists for it. Removes what Redis holds and the node
/// does not (`user_left` where it was the user's last connection: an exit that never landed,
/// an enter whose reply was lost), restores what the node has and Redis lost. After lost
/// data nobody was told anything, so the restore says nothing; after a reap while the node
/// was cut off the others were told its users left (the reap left the node a mark in the same
/// step), so a user counted nowhere else is announced back with `user_joined`.
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
    // A reap's mark (`sync.lua` sets it with the `user_left`s it publishes, and each room's
    // sync below announces back what it restores while the mark is there): cleared at the
    // end if this round synced every room and no reap touched it meanwhile.
    let mark_key = shared.keys.node_reaped(shared.node);
    let mark: Option<i64> = conn.get(&mark_key).await.map_err(BackendError::redis)?;
    if mark.is_some() {
        warn!("this node was reaped while cut off; restoring its presence and announcing its users again");
    }
    for room in rooms {
        let _gate = shared.gate.write().await;
        let have: Vec<(ConnId, String)> = lock(&shared.presence)
            .get(&room)
            .map(|conns| {
                conns
                    .iter()
                    .map(|(id, user)| (*id, user.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if in_step(shared, conn, &room, &have, listed.contains(&room)).await? {
            continue;
        }
        let (l, r) =
            presence::sync_room(shared, conn, &room, shared.node, &have, SyncBy::Node).await?;
        left += l;
        restored += r;
    }
    if let Some(mark) = mark {
        let _: i64 = shared
            .scripts
            .answered_reap
            .key(&mark_key)
            .arg(mark)
            .invoke_async(conn)
            .await
            .map_err(BackendError::redis)?;
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
/// node where neither has anything is dropped from the node's rooms here. A room that is gone
/// (expired) while the node has connections in it and Redis none counts as in step once the
/// node's rooms no longer list it: nothing would be restored into it.
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
        // Nothing held of what the node has, in a room that expired (or that Redis lost
        // with all its keys): the sync would restore nothing (see `sync.lua`), so it is not
        // run every beat for nothing.
        if held.is_empty() {
            let exists: bool = conn
                .exists(keys.room_key(room, "info"))
                .await
                .map_err(BackendError::redis)?;
            return Ok(!exists && !listed);
        }
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

/// Runs `round` once per heartbeat period while the backend lives. Holds only a weak
/// reference between rounds, so that dropping the backend stops it.
async fn every_period(
    shared: std::sync::Weak<Shared>,
    mut round: impl AsyncFnMut(&Shared, &mut ConnectionManager),
) {
    let Some(period) = shared.upgrade().map(|s| period(&s.config)) else {
        return;
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut conn = shared.cmd.clone();
        round(&shared, &mut conn).await;
    }
}

/// The heartbeat loop, on a timer of its own: a reconcile or a reap that takes long (a node
/// with thousands of rooms, a Redis answering slowly) must not delay the beat that keeps this
/// node from being taken for dead.
pub(super) async fn beats(shared: std::sync::Weak<Shared>) {
    every_period(shared, async |shared, conn| {
        if let Err(err) = heartbeat(shared, conn).await {
            debug!(cause = %err, "heartbeat failed");
        }
    })
    .await;
}

/// Reconcile, TTL and reaper loop, one round per heartbeat period (the beats run on their
/// own: [`beats`]).
pub(super) async fn liveness(shared: std::sync::Weak<Shared>) {
    every_period(shared, async |shared, conn| {
        if let Err(err) = reconcile(shared, conn).await {
            debug!(cause = %err, "presence reconcile failed");
        }
        if let Err(err) = refresh_ttls(shared, conn).await {
            debug!(cause = %err, "refreshing TTLs failed");
        }
        if let Err(err) = reaper::reap_dead_nodes(shared, conn).await {
            debug!(cause = %err, "reaping failed");
        }
    })
    .await;
}
