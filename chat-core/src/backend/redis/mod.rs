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
//! Cluster: `P:room:{R}` (channel), `P:room:{R}:info`, `:members`, `:order`, `:log` (the
//! history stream), `:presence` (connections per node and user), `:online` (connections per
//! user). A user's channel is `P:user:{U}`. Global: `P:rooms`, `P:users`, `P:nodes` (node
//! heartbeats), `P:node:{N}:rooms`, `P:secret`.
//!
//! # Ordering
//! A room message is appended to the room's stream and published by one Lua script (XADD with
//! `MAXLEN ~`, then PUBLISH of the frame carrying the entry id): the entry id is the message
//! id, so history order = id order = delivery order, whichever node published. One script
//! call per room message, whatever the room size or the number of nodes.
//!
//! # Presence and crashed nodes
//! Each node refreshes its heartbeat in `P:nodes` (a sorted set scored by time) every third of
//! the presence TTL. Every node also reaps: a node whose heartbeat is older than the TTL is
//! claimed by whoever removes it from `P:nodes` first (ZREM is atomic, so exactly one node
//! wins), which then removes the dead node's connections from presence and publishes
//! `user_left` for each user who has no connection left anywhere: once.

mod ops;
mod scripts;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    AsyncCommands, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, info, warn};

use super::{
    broker::{BrokerEvent, Envelope, NodeId, Origin, Topic},
    Backend,
};
use crate::{
    error::BackendError,
    protocol::{RoomId, User, UserId},
};

/// Settings of the Redis backend, each with a documented default.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Prefix of every key and channel. Default `roomcast`.
    pub prefix: String,
    /// How long a node's presence outlives its last heartbeat: the users of a crashed node
    /// leave presence (and `user_left` is sent) within about this long. Default 15 s.
    pub presence_ttl: Duration,
    /// Room messages kept per room (approximately: `MAXLEN ~`). Default 1,000.
    pub history_per_room: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "roomcast".into(),
            presence_ttl: Duration::from_secs(15),
            history_per_room: 1_000,
        }
    }
}

/// Key and channel names (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn room_channel(&self, room: &RoomId) -> String {
        format!("{}:room:{{{}}}", self.prefix, room)
    }
    pub(crate) fn room_key(&self, room: &RoomId, what: &str) -> String {
        format!("{}:room:{{{}}}:{what}", self.prefix, room)
    }
    pub(crate) fn user_channel(&self, user: &UserId) -> String {
        format!("{}:user:{{{}}}", self.prefix, user)
    }
    pub(crate) fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
    pub(crate) fn users(&self) -> String {
        format!("{}:users", self.prefix)
    }
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    pub(crate) fn node_rooms(&self, node: NodeId) -> String {
        format!("{}:node:{{{node}}}:rooms", self.prefix)
    }
    pub(crate) fn secret(&self) -> String {
        format!("{}:secret", self.prefix)
    }
    pub(crate) fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Room(room) => self.room_channel(room),
            Topic::User(user) => self.user_channel(user),
        }
    }

    /// The topic of a channel name, if it is one of ours.
    pub(crate) fn topic(&self, channel: &str) -> Option<Topic> {
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

/// Pub/Sub payload: `<node hex>:<conn>\n<frame JSON>`.
pub(crate) fn envelope_header(origin: Origin) -> String {
    format!("{}:{}\n", origin.node, origin.conn)
}

/// The envelope in a message `payload` on `channel`. The frame is a view of `payload`: no copy
/// of the bytes that every recipient on this node will share.
fn parse_payload(keys: &Keys, channel: &[u8], payload: Vec<u8>) -> Option<Envelope> {
    let topic = keys.topic(std::str::from_utf8(channel).ok()?)?;
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..newline]).ok()?;
    let (node, conn) = header.split_once(':')?;
    let origin = Origin {
        node: NodeId(uuid::Uuid::parse_str(node).ok()?),
        conn: conn.parse().ok()?,
    };
    Some(Envelope {
        origin,
        topic,
        frame: bytes::Bytes::from(payload).slice(newline + 1..),
    })
}

/// A pushed message's channel and payload, taken out of the push without copying them; the
/// values as they came when the push is not `[channel, payload]` (for the log).
fn message_parts(data: Vec<Value>) -> Result<(Vec<u8>, Vec<u8>), Vec<Value>> {
    fn bytes(value: Value) -> Result<Vec<u8>, Value> {
        match value {
            Value::BulkString(bytes) => Ok(bytes),
            Value::SimpleString(text) => Ok(text.into_bytes()),
            other => Err(other),
        }
    }
    let [channel, payload] = <[Value; 2]>::try_from(data)?;
    match (bytes(channel), bytes(payload)) {
        (Ok(channel), Ok(payload)) => Ok((channel, payload)),
        (channel, payload) => Err(vec![
            channel.map_or_else(|v| v, Value::BulkString),
            payload.map_or_else(|v| v, Value::BulkString),
        ]),
    }
}

/// Local mirror of this node's presence counts, to restore them if the node was reaped while
/// cut off from Redis (its heartbeat then finds itself gone).
type LocalPresence = HashMap<(RoomId, UserId), (User, u32)>;

pub(crate) struct Shared {
    pub(crate) node: NodeId,
    pub(crate) keys: Keys,
    pub(crate) config: RedisConfig,
    pub(crate) cmd: ConnectionManager,
    pub(crate) pubsub: ConnectionManager,
    pub(crate) scripts: scripts::Scripts,
    pub(crate) events: Mutex<Option<mpsc::UnboundedReceiver<BrokerEvent>>>,
    pub(crate) presence: Mutex<LocalPresence>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A node of the chat on Redis. Turn it into a [`Backend`] with
/// [`RedisBackend::into_backend`].
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("node", &self.shared.node)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn fast_failing() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

impl RedisBackend {
    /// Connects a new node (fresh [`NodeId`]) to the Redis at `url` and starts its background
    /// tasks (Pub/Sub reader, ping watchdog, heartbeat and reaper).
    ///
    /// # Errors
    /// [`BackendError::Redis`] if Redis cannot be reached or the URL is invalid.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, BackendError> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let cmd = ConnectionManager::new_with_config(client.clone(), fast_failing()).await?;
        let keys = Keys {
            prefix: config.prefix.clone(),
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        // Pushes are turned into events on the connection's own task: a channel and a task
        // of ours in between cost one more wake-up per message.
        let pushes = Pushes {
            keys: keys.clone(),
            events: events_tx,
            disconnected: AtomicBool::new(false),
        };
        let pubsub = ConnectionManager::new_with_config(
            client,
            fast_failing()
                .set_push_sender(move |push| pushes.handle(push))
                .set_automatic_resubscription(),
        )
        .await?;
        let node = NodeId::random();
        let shared = Arc::new(Shared {
            node,
            keys,
            config,
            cmd,
            pubsub,
            scripts: scripts::Scripts::new(),
            events: Mutex::new(Some(events_rx)),
            presence: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let mut conn = shared.cmd.clone();
        // Load the scripts now, so that the first message is not the one paying for NOSCRIPT
        // and SCRIPT LOAD (a restarted Redis forgets them; the redis crate reloads on NOSCRIPT).
        shared.scripts.load_all(&mut conn).await?;
        heartbeat(&shared, &mut conn).await?;
        let tasks = vec![
            tokio::spawn(watchdog(shared.pubsub.clone())),
            tokio::spawn(watchdog(shared.cmd.clone())),
            tokio::spawn(liveness(Arc::downgrade(&shared))),
        ];
        *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        info!(%node, "redis backend connected");
        Ok(Self { shared })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node
    }

    /// The chat-wide token signing secret, created by the first node that asks (SET NX), so
    /// that every node signs and accepts the same tokens without configuration.
    ///
    /// # Errors
    /// If Redis cannot be reached.
    pub async fn shared_secret(&self) -> Result<Vec<u8>, BackendError> {
        let mut conn = self.shared.cmd.clone();
        let key = self.shared.keys.secret();
        let candidate = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let _: bool = conn.set_nx(&key, &candidate).await?;
        let secret: String = conn.get(&key).await?;
        Ok(secret.into_bytes())
    }

    /// The backend to give the chat.
    pub fn into_backend(self) -> Backend {
        let node = Arc::new(ops::RedisNode {
            shared: self.shared,
        });
        Backend {
            broker: node.clone(),
            rooms: node.clone(),
            presence: node.clone(),
            history: node,
        }
    }
}

/// Turns the Pub/Sub connection's pushes into broker events: messages become envelopes; a
/// disconnection followed by the automatic resubscription becomes one
/// [`BrokerEvent::Reconnected`]. Runs on the redis crate's task, so it never waits.
struct Pushes {
    keys: Keys,
    events: mpsc::UnboundedSender<BrokerEvent>,
    disconnected: AtomicBool,
}

impl Pushes {
    /// `Err` once the chat is gone (nobody reads the events any more).
    fn handle(&self, push: PushInfo) -> Result<(), ()> {
        match push.kind {
            PushKind::Message => {
                let (channel, payload) = match message_parts(push.data) {
                    Ok(parts) => parts,
                    Err(data) => {
                        warn!(?data, "malformed pub/sub message");
                        return Ok(());
                    }
                };
                match parse_payload(&self.keys, &channel, payload) {
                    Some(envelope) => self
                        .events
                        .send(BrokerEvent::Envelope(envelope))
                        .map_err(|_| ()),
                    None => {
                        debug!(channel = %String::from_utf8_lossy(&channel), "ignored a message that is not ours");
                        Ok(())
                    }
                }
            }
            PushKind::Disconnection => {
                warn!("redis pub/sub connection lost; resubscribing when it is back");
                self.disconnected.store(true, Ordering::Relaxed);
                Ok(())
            }
            PushKind::Subscribe if self.disconnected.swap(false, Ordering::Relaxed) => {
                info!("redis pub/sub connection restored");
                self.events.send(BrokerEvent::Reconnected).map_err(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// Keeps a connection trying to reconnect while Redis is away: the connection manager gives
/// up after its retry budget and only tries again when something uses it, which would leave
/// the Pub/Sub connection unsubscribed and the first command after an outage failing.
async fn watchdog(mut conn: ConnectionManager) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    }
}

/// Refreshes this node's heartbeat; if the node had been reaped (it was cut off for longer
/// than the TTL), restores its presence.
async fn heartbeat(shared: &Shared, conn: &mut ConnectionManager) -> Result<(), BackendError> {
    let now = crate::protocol::now_ms();
    let added: i64 = conn
        .zadd(shared.keys.nodes(), shared.node.to_string(), now)
        .await?;
    if added == 1 {
        let local: Vec<(RoomId, User, u32)> = shared
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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
    Ok(())
}

/// Heartbeat and reaper loop. Holds only a weak reference so that dropping the backend stops it.
async fn liveness(shared: std::sync::Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => (s.config.presence_ttl / 3).max(Duration::from_millis(100)),
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
        if let Err(err) = ops::reap_dead_nodes(&shared, &mut conn).await {
            debug!(cause = %err, "reaping failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_to_topics() {
        let keys = Keys { prefix: "p".into() };
        let room = Topic::Room(RoomId::new("r-1"));
        let user = Topic::User(UserId::new("u:{odd}"));
        assert_eq!(keys.channel(&room), "p:room:{r-1}");
        assert_eq!(keys.topic(&keys.channel(&room)), Some(room));
        assert_eq!(keys.topic(&keys.channel(&user)), Some(user));
        assert_eq!(keys.topic("other:room:{x}"), None);
        let origin = Origin {
            node: NodeId::random(),
            conn: 7,
        };
        let payload = format!(
            "{}{{\"type\":\"left\",\"room\":\"x\"}}",
            envelope_header(origin)
        );
        let env = parse_payload(&keys, b"p:room:{x}", payload.into_bytes()).unwrap();
        assert_eq!(env.origin, origin);
        assert_eq!(&env.frame[..], br#"{"type":"left","room":"x"}"#);
        assert!(parse_payload(&keys, b"p:room:{x}", b"garbage".to_vec()).is_none());
        let payload = format!("{}{{}}", envelope_header(origin)).into_bytes();
        assert!(parse_payload(&keys, b"\xff", payload).is_none());
        assert_eq!(
            message_parts(vec![
                Value::BulkString(b"p:room:{x}".to_vec()),
                Value::SimpleString("a:1\n{}".into()),
            ]),
            Ok((b"p:room:{x}".to_vec(), b"a:1\n{}".to_vec()))
        );
        assert_eq!(message_parts(vec![Value::Nil]), Err(vec![Value::Nil]));
        let odd = vec![Value::BulkString(b"c".to_vec()), Value::Int(1)];
        assert_eq!(message_parts(odd.clone()), Err(odd));
    }
}
