//! [`Chat`]: one node of the chat engine, shared by the HTTP layer and every connection.
//!
//! - `rooms`: the REST queries (create, list, details, membership, history) and their types;
//! - `access`: the host ending a user's access (revocation, removal, end of a membership);
//! - `history`: history for the host, as typed messages ([`MessagePage`]);
//! - `send`: server-side sends ([`RoomHandle`], [`UserHandle`]) and publishing room, direct
//!   and system messages;
//! - `tasks`: the node's background tasks (the broker dispatcher and the keepalive sweep).

mod access;
mod history;
mod rooms;
mod send;
mod tasks;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex,
};
pub(crate) use tasks::FailedExit;

use tokio::sync::mpsc;
use tracing::{debug, warn};

pub use self::history::MessagePage;
pub use self::rooms::{MemberPage, RoomDetails, RoomPage, RoomSummary, ROOM_DETAILS_MEMBERS};
pub use self::send::{RoomHandle, UserHandle};
use crate::{
    backend::broker::{ConnId, NodeId, Origin, Topic},
    backend::{Backend, Handles},
    config::ChatConfig,
    connection::Connection,
    error::Error,
    fanout::{Alarm, Hub, Outbox, Subscriptions},
    hooks::{DefaultPolicy, Policy},
    limits::UserLimits,
    protocol::UserId,
    sync::lock,
    Caller,
};

/// One node of the chat: cheap to clone, shared by the HTTP layer and every connection.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    /// The node's background tasks, aborted when the last handle to the node goes (first
    /// field: dropped first).
    tasks: tasks::Tasks,
    backend: Handles,
    config: ChatConfig,
    policy: Arc<dyn Policy>,
    hub: Arc<Hub>,
    subscriptions: Arc<Subscriptions>,
    /// Per-user limits, shared by all of a user's connections on this node.
    limits: Arc<UserLimits>,
    /// Users whose record of open WebSockets failed, until it lands.
    stale_sockets: Arc<tasks::StaleSockets>,
    node: NodeId,
    next_conn: AtomicU64,
    /// Set once by `shutdown`, before every connection's alarm is raised.
    shutting_down: AtomicBool,
    /// Set once by `drain` (connections close with 1012 rather than 1001).
    draining: AtomicBool,
    /// Every live [`Connection`] holds a clone; shutdown drops this one and waits until the
    /// receiver sees all of them gone (mini-redis's completion-by-drop).
    done_tx: Mutex<Option<mpsc::Sender<()>>>,
    done_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Chat {
    /// A chat node on `backend` with the default policy ([`DefaultPolicy`]).
    ///
    /// Spawns the node's dispatcher task, so it must be called inside a tokio runtime.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn new(backend: Backend, config: ChatConfig) -> Self {
        Self::with_policy(backend, config, Arc::new(DefaultPolicy))
    }

    /// A chat node with a policy. See [`Chat::new`].
    ///
    /// # Panics
    /// As [`Chat::new`].
    pub fn with_policy(backend: Backend, config: ChatConfig, policy: Arc<dyn Policy>) -> Self {
        let (backend, events) = backend.into_parts();
        let node = backend.broker.node_id();
        let hub = Arc::new(Hub::new(node));
        let subscriptions = Arc::new(Subscriptions::default());
        let stale_sockets = Arc::new(tasks::StaleSockets::default());
        let tasks = tasks::Tasks::spawn(
            &hub,
            events,
            &config,
            backend.presence.clone(),
            node,
            (subscriptions.clone(), backend.broker.clone()),
            &stale_sockets,
        );
        let (done_tx, done_rx) = mpsc::channel(1);
        let limits = Arc::new(UserLimits::new(&config));
        // The metrics' handles, registered with whatever recorder the host installed.
        let _ = crate::metrics::metrics();
        Self {
            inner: Arc::new(Inner {
                tasks,
                backend,
                config,
                policy,
                hub,
                subscriptions,
                limits,
                stale_sockets,
                node,
                next_conn: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                done_tx: Mutex::new(Some(done_tx)),
                done_rx: tokio::sync::Mutex::new(done_rx),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.inner.config
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node
    }

    /// Connections open on this node.
    pub fn local_connections(&self) -> usize {
        self.inner.hub.connection_count()
    }

    /// Opens a connection for `caller` (a [`Caller`], or a `User` the host identified):
    /// registers it for direct messages and returns the [`Connection`] through which it joins
    /// rooms and sends. Direct messages held while the user had no connection are released
    /// by [`Connection::release_held`], which [`session::serve`](crate::session::serve) calls
    /// as it starts (a host that drives the connection itself calls it once it can deliver).
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] after [`Chat::shutdown`]; [`Error::RateLimited`] if the user
    /// has [`ChatConfig::max_connections_per_user`] open on this node already (or, with
    /// [`ChatConfig::shared_user_limits`], on all nodes together);
    /// [`Error::Unavailable`] if the broker cannot subscribe to the user's topic.
    pub async fn connect(&self, caller: impl Into<Caller>) -> Result<Connection, Error> {
        let caller = caller.into();
        let user = &caller.user;
        let done = lock(&self.inner.done_tx)
            .clone()
            .ok_or(Error::ShuttingDown)?;
        let inner = &self.inner;
        let permit = inner.limits.open(&user.id)?;
        inner.backend.rooms.remember_user(user).await?;
        self.admit_socket(&user.id).await?;
        let topic = Topic::User(user.id.clone());
        if let Err(err) = self
            .subscriptions()
            .acquire(&*inner.backend.broker, &topic)
            .await
        {
            // Counted across nodes a moment ago: count it out again.
            self.record_sockets(&user.id).await;
            return Err(err.into());
        }
        let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let tick = inner.tasks.tick().cloned();
        let outbox = Outbox::new(inner.config.outgoing_queue, tick);
        inner.hub.add_user_conn(&user.id, id, outbox.clone());
        // `shutdown` sets the flag, then raises every connection in the hub: a connection that
        // entered the hub too late to be raised sees the flag here.
        if inner.shutting_down.load(Ordering::SeqCst) {
            let drain = if inner.draining.load(Ordering::SeqCst) {
                Alarm::DRAIN
            } else {
                0
            };
            outbox.alarm.raise(Alarm::SHUTDOWN | drain);
        }
        crate::metrics::metrics().connections_opened.increment(1);
        debug!(conn = id, user = %user.id, "connected");
        Ok(Connection::new(
            self.clone(),
            id,
            caller,
            outbox,
            done,
            permit,
        ))
    }

    /// Publishes the direct messages held for `user` while they had no connection
    /// (`ChatConfig::held_directs_per_user`) to the user's topic, once a connection of theirs
    /// is subscribed, in the hub and able to deliver ([`Connection::release_held`]): it (and
    /// any other of theirs) gets them, oldest first. A failure leaves them held for the next
    /// connection (or the broker's next reconnect), and is logged.
    pub(crate) async fn release_held(&self, user: &UserId) {
        let config = &self.inner.config;
        if config.held_directs() == 0 {
            return;
        }
        let broker = &*self.inner.backend.broker;
        match broker.release_held(user).await {
            Ok(0) => {}
            Ok(released) => {
                crate::metrics::metrics()
                    .directs_released
                    .increment(released as u64);
                debug!(user = %user, released, "held direct messages released");
            }
            Err(err) => {
                warn!(user = %user, cause = %err, "held direct messages not released: kept for the next connection")
            }
        }
    }

    /// Stops the chat: every connection is told to close (close code 1001) after finishing
    /// what it is doing, and this returns once all of them have closed. New connections are
    /// refused with [`Error::ShuttingDown`].
    pub async fn shutdown(&self) {
        lock(&self.inner.done_tx).take();
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.hub.raise_all(Alarm::SHUTDOWN);
        // `None` once every connection's sender is dropped.
        let _ = self.inner.done_rx.lock().await.recv().await;
    }

    /// Drains this instance for a rolling restart: new connections are refused
    /// ([`Error::ShuttingDown`], a 503 on the upgrade), and every connection writes what is
    /// queued for it, closes with 1012 ("reconnect, to another instance") and leaves its
    /// rooms, so that this instance's presence is gone (others get `user_left` once, only
    /// for users with no connection elsewhere). Returns `true` once all of them have closed,
    /// `false` if [`ChatConfig::drain_timeout`] passed first (the rest are left to the
    /// process's exit and the backend's crashed-node cleanup).
    pub async fn drain(&self) -> bool {
        lock(&self.inner.done_tx).take();
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        crate::metrics::metrics().draining.set(1.0);
        let connections = self.local_connections();
        tracing::info!(connections, "draining: closing every connection with 1012");
        self.inner.hub.raise_all(Alarm::DRAIN | Alarm::SHUTDOWN);
        let done = async {
            let _ = self.inner.done_rx.lock().await.recv().await;
        };
        let drained = tokio::time::timeout(self.inner.config.drain_timeout, done)
            .await
            .is_ok();
        if drained {
            tracing::info!("drained");
        } else {
            tracing::warn!(
                left = self.local_connections(),
                "drain timeout passed with connections still open"
            );
        }
        drained
    }

    /// Whether [`Chat::drain`] (or [`Chat::shutdown`]) was called: a readiness probe answers
    /// "not ready" from then on, so that load balancers send nobody new here.
    pub fn is_draining(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether this instance can serve: not draining, the backend reachable and its
    /// subscriptions restored after an outage (Redis: the command and Pub/Sub connections
    /// answer a PING, and a lost Pub/Sub connection has resubscribed). Bounded by a second.
    pub async fn ready(&self) -> bool {
        if self.is_draining() {
            return false;
        }
        let subscribed = self.inner.subscriptions.count() > 0;
        let probe = self.inner.backend.broker.ready(subscribed);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), probe).await,
            Ok(Ok(()))
        )
    }

    /// Sets the engine's gauges (`roomcast_connections`, `roomcast_room_memberships`,
    /// `roomcast_rooms_local`, `roomcast_subscriptions`, `roomcast_outgoing_queued_frames`,
    /// `roomcast_outgoing_queue_max`, `roomcast_draining`, `roomcast_runtime_tasks`) from this
    /// node's state. Call it right before rendering
    /// the metrics (chat-tower's metrics router does): the hot path keeps no gauge up to date.
    /// One node per process is what the gauges describe.
    pub fn record_gauges(&self) {
        let stats = self.inner.hub.stats();
        let metrics = crate::metrics::metrics();
        metrics.connections.set(stats.connections as f64);
        metrics.rooms.set(stats.rooms as f64);
        metrics.room_memberships.set(stats.memberships as f64);
        metrics.queued_frames.set(stats.queued as f64);
        metrics.queue_max.set(stats.queue_max as f64);
        metrics
            .subscriptions
            .set(self.inner.subscriptions.count() as f64);
        metrics
            .draining
            .set(if self.is_draining() { 1.0 } else { 0.0 });
        // Leaked tasks show here (the process's whole runtime: the host's tasks too).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            metrics
                .runtime_tasks
                .set(runtime.metrics().num_alive_tasks() as f64);
        }
    }

    /// Local subscriptions to broker topics (rooms and users with a connection here).
    pub fn subscription_count(&self) -> usize {
        self.inner.subscriptions.count()
    }

    pub(crate) fn backend(&self) -> &Handles {
        &self.inner.backend
    }

    pub(crate) fn policy(&self) -> &dyn Policy {
        &*self.inner.policy
    }

    pub(crate) fn limits(&self) -> &UserLimits {
        &self.inner.limits
    }

    /// Counts one more WebSocket of `user` for every node
    /// ([`ChatConfig::shared_user_limits`]): refused past
    /// [`ChatConfig::max_connections_per_user`] over all live nodes (each node checked its own
    /// first).
    ///
    /// # Errors
    /// [`Error::RateLimited`] ([`Limit::Connections`](crate::Limit::Connections));
    /// [`Error::Unavailable`] if the backend fails.
    async fn admit_socket(&self, user: &crate::protocol::UserId) -> Result<(), Error> {
        let config = &self.inner.config;
        if !config.shared_user_limits {
            return Ok(());
        }
        let open = self.inner.hub.user_connections(user) + 1;
        let max = config.max_connections_per_user.max(1);
        let presence = &self.inner.backend.presence;
        let admitted = presence
            .count_sockets(user, self.node_id(), open, Some(max))
            .await?;
        // Admitted or not, the record is this node's count again.
        self.inner.stale_sockets.clear(user);
        if admitted {
            return Ok(());
        }
        crate::metrics::metrics().rate_limited(crate::Limit::Connections);
        Err(Error::RateLimited {
            limit: crate::Limit::Connections,
            retry_after: crate::limits::CONNECTION_RETRY_AFTER,
        })
    }

    /// Records this node's open WebSockets of `user` for every node (after a close, or a
    /// connect that failed after [`Chat::admit_socket`]). A failure (logged at debug level)
    /// is tried again every second by the node's tasks, with the count then, until it lands
    /// or a connect or close of the user's here records it: a record left too high would
    /// refuse the user's connections everywhere.
    pub(crate) async fn record_sockets(&self, user: &crate::protocol::UserId) {
        if !self.inner.config.shared_user_limits {
            return;
        }
        let open = self.inner.hub.user_connections(user);
        let presence = &self.inner.backend.presence;
        match presence
            .count_sockets(user, self.node_id(), open, None)
            .await
        {
            Ok(_) => self.inner.stale_sockets.clear(user),
            Err(err) => {
                debug!(user = %user, cause = %err, "open WebSockets not recorded for every node");
                self.inner.stale_sockets.mark(user);
            }
        }
    }

    /// Takes one of `user`'s `limit` on this node, then (with
    /// [`crate::ChatConfig::shared_user_limits`]) for every node on the backend: for a join or
    /// a room creation (a message takes its shared one inside the publish).
    ///
    /// # Errors
    /// [`Error::RateLimited`]; [`Error::Unavailable`] if the backend fails.
    pub(crate) async fn take_limit(
        &self,
        user: &crate::protocol::UserId,
        limit: crate::limits::Limit,
    ) -> Result<(), Error> {
        self.limits().check(user, limit)?;
        if let Some(quota) = self.limits().quota(limit) {
            self.backend().rooms.take_quota(user, quota).await?;
        }
        Ok(())
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Hands a failed presence exit to the node's retries (`tasks`).
    pub(crate) fn retry_exit(&self, exit: tasks::FailedExit) {
        self.inner.tasks.retry_exit(exit);
    }

    pub(crate) fn subscriptions(&self) -> &Subscriptions {
        &self.inner.subscriptions
    }

    /// Where something this node publishes for connection `conn` (if any) comes from.
    pub(crate) fn origin(&self, conn: Option<ConnId>) -> Origin {
        Origin {
            node: self.inner.node,
            conn,
        }
    }
}

#[cfg(test)]
mod tests;
