//! The Redis backend (feature `redis`): one chat across many instances.
//!
//! # Connections
//! Two per node, whatever the number of clients:
//! - a **Pub/Sub connection** (RESP3, push messages, automatic resubscription after a
//!   reconnect, and a ping watchdog that keeps reconnecting it while Redis is away: without
//!   traffic the redis crate's manager stops trying after its retry budget);
//! - a **command connection** for everything else (publish, scripts, reads).
//!
//! Both fail fast while Redis is down (connect timeout 250 ms, response timeout 500 ms, one
//! retry), so a sender hears `unavailable` within about a second instead of waiting.
//!
//! # Keys and channels
//! Everything lives under a configurable prefix `P` (default `roomcast`). A room's keys and
//! its channel carry the room id as a hash tag, so that they will share one slot on Redis
//! Cluster: `P:room:{R}` (channel), `P:room:{R}:info` (name, createdAt, visibility, owner,
//! `key`: the room's sort key, `joins`: its join counter), `:members` (id -> name), `:order`
//! (members scored by join number), `:log` (the history stream), `:conns:<N>` (node N's
//! connections in the room: conn id -> user id), `:online` (connections per user),
//! `:sent:<len>:<user>:<clientMsgId>` (a sent client id's first `id` and `ts`, with the dedup
//! window as TTL). A user's channel is `P:user:{U}`, and
//! its keys `P:user:{U}:rooms` and `:private` (the sort keys of the user's rooms, and of the
//! private ones, one score: read by lex), `:seen` (the user was seen: a token, a connection, a
//! join; with the room TTL; it holds `"n:<name>"`, the name then), `:dms` (the user's
//! conversations: the other users scored by the ms of the last message kept with them, with
//! the room TTL), `:q:msg`, `:q:dm`, `:q:join`, `:q:rooms` (the user's limits counted for
//! every node: GCRA buckets, `gcra.lua`, until full again), `:socks` (each node's open
//! WebSockets of the user, `sockets.lua`, 10 minutes after the last change), and `:revoked` (up to when the user's tokens are
//! void, with the tokens' lifetime as its TTL), `:sent:<len>:<to>:<clientMsgId>` (a direct
//! message's, as for rooms), `:held` (direct messages held while the user had no connection,
//! a list of `"<until> <len>:<from><payload>"`, from a guest `"<until> g<len>:..."`, TTL the
//! hold time), `:held:senders` (how many of them each sender sent) and `:held:guests` (how
//! many came from guests), both with the same TTL. A conversation's direct messages: `P:dm:{<len>:<a>:<b>}`
//! (`a` ≤ `b`, `len` the length of `a`; a sorted set of `"<id> <frame>"`, the room TTL, the
//! room history's caps). Global: `P:rooms:public` (the public rooms' sort
//! keys), `P:nodes` (node heartbeats), `P:node:{N}:rooms`, `P:guests:{<address>}` (a client
//! address's guest bucket, `take_quota.lua`, until it is full again),
//! `P:node:{N}:reaper` (a reaper's claim on dead node N, with a TTL), `P:secret`.
//!
//! # Growth
//! Every key of a room carries [`RedisConfig::room_ttl`] (default 7 days), given again by the
//! scripts that are its activity (`create_room`, `add_member`, `enter`, `exit`,
//! `append_publish`: inside the script, so a message is still one command) and, for rooms
//! with users on a node, by that node's heartbeat (`heartbeat::refresh_rooms`). A node's
//! `:conns:<N>` key is refreshed by that node only (its scripts and heartbeat); the `sync`
//! script of the reconcile and the reaper never restores presence into a room whose `info`
//! is gone, and gives what it restores the room TTL. The `:sent:` keys carry the dedup window
//! instead. An idle room thus vanishes by itself; the indexes that name it (`P:rooms:public`, a user's `:private`
//! and `:rooms`) are cleaned when a listing or a user's room batch meets it. History keeps
//! `history_per_room` entries (`MAXLEN ~`) and none older than `history_max_age` (not read,
//! and `XTRIM MINID ~` in `append_publish`). The Pub/Sub reader hands pushes to a bounded
//! channel (`backend::events`): it must never stop reading, or Redis disconnects it at
//! `client-output-buffer-limit pubsub` and every room of the node misses messages.
//!
//! Multi-slot today (Redis Cluster is a later step): `create_room.lua` (the room and
//! `P:rooms:public`), `add_member.lua` (the room and the user's keys),
//! `remove_member.lua` (the room and the user's keys), `share_a_room` (`ZINTER` over two
//! users' keys), the room scripts that write `P:node:{N}:rooms`, and `sync.lua` (which also
//! reads `P:nodes` and, only to recount a user whose count was lost, every node's
//! `:conns:<N>` of the room).
//!
//! # Ordering
//! A room message is appended to the room's stream and published by one Lua script (XADD with
//! `MAXLEN ~`, then PUBLISH of the frame carrying the entry id): the entry id is the message
//! id, so history order = id order = delivery order, whichever node published. One script
//! call per room message, whatever the room size or the number of nodes. The same script
//! checks the sender's `clientMsgId` (idempotent sends): one sent within the window returns
//! the first message's id and ts and appends and publishes nothing, so a retry after a call
//! that timed out but ran finds the first copy.
//!
//! # Presence and crashed nodes
//! Presence is counted per connection, by idempotent scripts: an enter of a counted connection
//! and an exit of one not counted change nothing, and an exit publishes `user_left` in the same
//! step when it was the user's last connection in the room. A failed exit is retried by the
//! caller until it lands (`connection::leave`); `user_left` still goes out once.
//!
//! Each node refreshes its heartbeat in `P:nodes` (a sorted set scored by time) every third of
//! the presence TTL, on a task of its own (`heartbeat::beats`), and as often, on another
//! (`heartbeat::liveness`), reconciles: room by room, Redis is made to hold the node's
//! connections as the node has them (`heartbeat::reconcile`, the `sync` script): what the node
//! does not have is removed (with `user_left` where it was the user's last connection), what
//! Redis lost is restored without a second `user_joined` (lost data: nobody was told anything),
//! or, while the node carries a reap's mark (`P:node:{N}:reaped`, set by the reap's `sync` with
//! the `user_left`s it published while the node was cut off), with a `user_joined` for each
//! user counted nowhere else; a reconcile that synced every room clears the mark unless a reap
//! touched it meanwhile. Every node also reaps: a node whose
//! heartbeat is older than the TTL is claimed for a TTL (`SET NX PX`: one reaper at a time),
//! its rooms are synced to "no connections" (`user_left` from the script, once per user), and
//! only then is it removed from `P:nodes`. A reaper that stops half-way leaves the node listed:
//! the next one finishes it once the claim expires, and what was done is not done twice.
//!
//! # Files
//! `config` ([`RedisConfig`]), `keys` (names), `connection` (fail-fast settings, watchdog,
//! pushes → events), `envelope` (the Pub/Sub payload), one file per store (`pubsub`,
//! `rooms`, `presence` with the local mirror and the room sync, `history`), `heartbeat` (and
//! the reconcile) and `reaper`, `revocation` (a user's
//! revocation record and rooms, for the host's revocations and removals), and `scripts` (the
//! Lua, in `scripts/*.lua`).

mod config;
mod connection;
mod envelope;
mod heartbeat;
mod history;
mod keys;
mod lease;
mod presence;
mod pubsub;
mod reaper;
mod revocation;
mod rooms;
mod scripts;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis::{aio::ConnectionManager, AsyncCommands, Client, IntoConnectionInfo, ProtocolVersion};
use tokio::task::JoinHandle;
use tracing::info;

pub use config::RedisConfig;
use connection::{fast_failing, watchdog, Pushes};
use heartbeat::{beats, heartbeat, liveness};
use keys::Keys;

use super::{broker::NodeId, Backend, Events};
use crate::{error::BackendError, protocol::RoomId, sync::lock};

/// What a node's backend handles and background tasks share.
struct Shared {
    node: NodeId,
    keys: Keys,
    config: RedisConfig,
    /// Everything but Pub/Sub: publish, scripts, reads.
    cmd: ConnectionManager,
    /// The one Pub/Sub connection of this node.
    pubsub: ConnectionManager,
    /// Set while the Pub/Sub connection is lost and not yet resubscribed (readiness).
    pubsub_lost: Arc<std::sync::atomic::AtomicBool>,
    scripts: scripts::Scripts,
    /// This node's connections per room: what the heartbeat's reconcile makes Redis hold.
    presence: Mutex<presence::LocalPresence>,
    /// Entering and exiting hold it shared across their script, the reconcile of a room
    /// exclusively: a reconcile then sees the local mirror and Redis agree on everything in
    /// flight (a connection that entered locally but not yet in Redis is not taken for one
    /// that Redis lost, and the reverse). Held for one script at a time.
    gate: tokio::sync::RwLock<()>,
    /// When the heartbeat last gave the keys of a room with local users the room TTL again.
    refreshed: Mutex<HashMap<RoomId, std::time::Instant>>,
    /// The rooms whose keys a message of this node gave the room TTL (and trimmed by age)
    /// in the current upkeep period: see `pubsub::Upkeep`.
    upkeep: Mutex<pubsub::Upkeep>,
    /// Tokens of its senders' message quotas this node took ahead (`lease`).
    leases: lease::Leases,
    /// The token secret this node signs with, once `shared_secret` read it: every heartbeat
    /// writes it back if Redis lost it (SET NX), so that a node started later gets the same.
    secret: Mutex<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// A node of the chat on Redis. Turn it into a [`Backend`] with
/// [`RedisBackend::into_backend`].
pub struct RedisBackend {
    shared: Arc<Shared>,
    events: Events,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("node", &self.shared.node)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects a new node (fresh [`NodeId`]) to the Redis at `url` and starts its background
    /// tasks (Pub/Sub reader, ping watchdog, heartbeat and reaper).
    ///
    /// # Errors
    /// [`BackendError::Redis`] if Redis cannot be reached or the URL is invalid.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, BackendError> {
        let info = url.into_connection_info().map_err(BackendError::redis)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client =
            Client::open(info.set_redis_settings(settings)).map_err(BackendError::redis)?;
        let cmd = ConnectionManager::new_with_config(client.clone(), fast_failing())
            .await
            .map_err(BackendError::redis)?;
        let keys = Keys::new(config.prefix.clone());
        let (events_tx, events_rx) = super::events::channel(config.event_queue);
        // Pushes are turned into events on the connection's own task: a channel and a task
        // of ours in between cost one more wake-up per message.
        let pubsub_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pushes = Pushes::new(keys.clone(), events_tx, pubsub_lost.clone());
        let pubsub = ConnectionManager::new_with_config(
            client,
            fast_failing()
                .set_push_sender(move |push| pushes.handle(push))
                .set_automatic_resubscription(),
        )
        .await
        .map_err(BackendError::redis)?;
        let node = NodeId::random();
        let shared = Arc::new(Shared {
            node,
            keys,
            config,
            cmd,
            pubsub,
            pubsub_lost,
            scripts: scripts::Scripts::new(),
            presence: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
            refreshed: Mutex::new(HashMap::new()),
            upkeep: Mutex::new(pubsub::Upkeep::default()),
            leases: lease::Leases::default(),
            secret: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let mut conn = shared.cmd.clone();
        shared.scripts.load_all(&mut conn).await?;
        heartbeat(&shared, &mut conn).await?;
        let tasks = vec![
            tokio::spawn(watchdog(shared.pubsub.clone())),
            tokio::spawn(watchdog(shared.cmd.clone())),
            tokio::spawn(beats(Arc::downgrade(&shared))),
            tokio::spawn(liveness(Arc::downgrade(&shared))),
        ];
        *lock(&shared.tasks) = tasks;
        info!(%node, "redis backend connected");
        Ok(Self {
            shared,
            events: events_rx,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node
    }

    /// The chat-wide token signing secret, created by the first node that asks (SET NX), so
    /// that every node signs and accepts the same tokens without configuration.
    ///
    /// Redis may lose it (a restart without persistence, `FLUSHALL`): every node that holds
    /// it writes it back at each heartbeat, and a node that finds none while other nodes are
    /// alive waits for that before it creates one. A node started in the first heartbeat
    /// period after the loss, before any survivor beat again, can still pick another secret:
    /// configure one (`ChatBuilder::token_secret`) where tokens must always hold.
    ///
    /// # Errors
    /// If Redis cannot be reached.
    pub async fn shared_secret(&self) -> Result<Vec<u8>, BackendError> {
        let mut conn = self.shared.cmd.clone();
        let key = self.shared.keys.secret();
        // Live nodes (heartbeats) without a secret: one of them lost it with Redis's data and
        // writes it back at its next heartbeat; wait for that rather than make another.
        // This node's own heartbeat (written by `connect`) does not count: the first node of
        // a chat would otherwise wait two periods for a secret nobody holds.
        let period = heartbeat::period(&self.shared.config);
        let nodes = self.shared.keys.nodes();
        let live: usize = conn.zcard(&nodes).await.map_err(BackendError::redis)?;
        let own: Option<f64> = conn
            .zscore(&nodes, self.shared.node.to_string())
            .await
            .map_err(BackendError::redis)?;
        let others = live.saturating_sub(usize::from(own.is_some()));
        let deadline = tokio::time::Instant::now()
            + if others > 0 {
                period * 2
            } else {
                Duration::ZERO
            };
        let existing: Option<String> = loop {
            let found: Option<String> = conn.get(&key).await.map_err(BackendError::redis)?;
            if found.is_some() || tokio::time::Instant::now() >= deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let secret = match existing {
            Some(secret) => secret,
            None => {
                let candidate = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                let _: bool = conn
                    .set_nx(&key, &candidate)
                    .await
                    .map_err(BackendError::redis)?;
                conn.get(&key).await.map_err(BackendError::redis)?
            }
        };
        *lock(&self.shared.secret) = Some(secret.clone());
        Ok(secret.into_bytes())
    }

    /// The backend to give the chat.
    pub fn into_backend(self) -> Backend {
        let node = Arc::new(RedisNode {
            shared: self.shared,
        });
        Backend {
            broker: node.clone(),
            rooms: node.clone(),
            presence: node.clone(),
            history: node,
            events: self.events,
        }
    }
}

/// One node's handles on Redis; implements every backend trait.
struct RedisNode {
    shared: Arc<Shared>,
}

impl RedisNode {
    fn conn(&self) -> ConnectionManager {
        self.shared.cmd.clone()
    }

    /// Runs one of the [`scripts`] on the command connection.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        script
            .invoke_async(&mut self.conn())
            .await
            .map_err(BackendError::redis)
    }

    /// Runs `script` as `evalsha`, a command the caller built (`EVALSHA <hash> <numkeys>`
    /// from [`evalsha`], then the keys and arguments), loading the script and trying once
    /// more on NOSCRIPT (a restarted Redis), as [`RedisNode::invoke`] does. For the calls
    /// made per message: a `ScriptInvocation` holds every key and argument in a buffer of
    /// its own, then copies them into the command.
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        evalsha: &redis::Cmd,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn();
        match evalsha.query_async(&mut conn).await {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let _: String = script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(BackendError::redis)?;
                evalsha.query_async(&mut conn).await
            }
            result => result,
        }
        .map_err(BackendError::redis)
    }
}

/// A duration in whole microseconds, as the quota scripts take it (`gcra.lua`).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `EVALSHA <script's hash> <numkeys>`: the start of a command for [`RedisNode::eval`], with
/// room for `args` keys and arguments of `bytes` bytes in all (an estimate: the command
/// grows past it if need be).
fn evalsha(script: &redis::Script, numkeys: usize, args: usize, bytes: usize) -> redis::Cmd {
    let hash = script.get_hash();
    let mut cmd = redis::Cmd::with_capacity(3 + args, 8 + hash.len() + 4 + bytes);
    cmd.arg("EVALSHA");
    cmd.arg(hash).arg(numkeys);
    cmd
}
