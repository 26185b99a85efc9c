//! The node's background tasks: the dispatcher (the one consumer of the broker's events),
//! the flush tick (coalesced writes), the keepalive sweep, and the retries of what failed:
//! presence exits, unsubscribes, records of a user's open WebSockets.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    backend::{
        broker::{Broker, BrokerEvent, ConnId, Envelope, NodeId, Origin},
        events::Missed,
        store::PresenceStore,
        Events,
    },
    config::ChatConfig,
    fanout::{FlushTick, Hub, Push, Subscriptions},
    protocol::{ResyncFrame, RoomId, ServerFrame, User, UserId},
    sync::lock,
};

/// First wait before failed presence exits are tried again; doubled while they keep failing.
const EXIT_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two rounds of retries.
const EXIT_RETRY_MAX: Duration = Duration::from_secs(5);

/// A presence exit that failed (the backend was unreachable, or slower than its timeout): it
/// is tried again until it lands. The exit is idempotent and publishes `left` itself when it
/// was the user's last connection, so a retry of one that had run all the same changes
/// nothing and `user_left` goes out once.
pub(crate) struct FailedExit {
    pub(crate) room: RoomId,
    pub(crate) user: User,
    pub(crate) conn: ConnId,
    /// The `user_left` envelope to publish in the same step.
    pub(crate) left: Envelope,
}

/// Users whose record of this node's open WebSockets failed to land
/// (`Chat::record_sockets`, with `ChatConfig::shared_user_limits`): a record left too high
/// would refuse their connections on every node. Each is recorded again (with the node's count
/// then) every [`UNSUBSCRIBE_RETRY`] until it lands, or until a connect or close of theirs
/// here records it. One entry per user, whatever their connections.
#[derive(Debug, Default)]
pub(crate) struct StaleSockets(Mutex<HashSet<UserId>>);

impl StaleSockets {
    /// `user`'s record failed.
    pub(crate) fn mark(&self, user: &UserId) {
        lock(&self.0).insert(user.clone());
    }

    /// `user`'s record landed.
    pub(crate) fn clear(&self, user: &UserId) {
        let mut stale = lock(&self.0);
        if !stale.is_empty() {
            stale.remove(user);
        }
    }

    fn take(&self) -> Vec<UserId> {
        lock(&self.0).drain().collect()
    }

    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

/// The keepalive sweep is spread over this many slices of the ping interval, so that the
/// node's connections are not all pinged at the same moment.
const KEEPALIVE_SLICES: u64 = 16;

/// The node's tasks; dropping this aborts them.
pub(super) struct Tasks {
    dispatcher: JoinHandle<()>,
    /// The node's flush tick and its task, when writes are coalesced.
    tick: Option<(Arc<FlushTick>, JoinHandle<()>)>,
    keepalive: JoinHandle<()>,
    /// Failed presence exits go here, to the task that retries them.
    exits: mpsc::UnboundedSender<FailedExit>,
    exit_retries: JoinHandle<()>,
    /// Retries unsubscribes that failed (`Subscriptions::retry_stale`).
    unsubscribes: JoinHandle<()>,
}

impl Tasks {
    /// Spawns the node's tasks on the current tokio runtime.
    pub(super) fn spawn(
        hub: &Arc<Hub>,
        events: Events,
        config: &ChatConfig,
        presence: Arc<dyn PresenceStore>,
        node: NodeId,
        subscriptions: (Arc<Subscriptions>, Arc<dyn Broker>),
        stale_sockets: &Arc<StaleSockets>,
    ) -> Self {
        let tick = (!config.write_coalesce.is_zero()).then(|| {
            let tick = FlushTick::new(config.write_coalesce, config.write_coalesce_max);
            (tick.clone(), tokio::spawn(tick.run()))
        });
        let (subscriptions, broker) = subscriptions;
        let held = (config.held_directs() > 0).then(|| broker.clone());
        let dispatcher = tokio::spawn(dispatch(
            hub.clone(),
            events,
            tick.as_ref().map(|(tick, _)| tick.clone()),
            held,
        ));
        let keepalive = tokio::spawn(keepalive(hub.clone(), config.ping_interval));
        let (exits, failed) = mpsc::unbounded_channel();
        let sockets = SocketRecords {
            stale: stale_sockets.clone(),
            hub: hub.clone(),
            presence: presence.clone(),
            node,
        };
        let exit_retries = tokio::spawn(retry_exits(presence, node, failed));
        let unsubscribes = tokio::spawn(retry_stale(subscriptions, broker, sockets));
        Self {
            dispatcher,
            tick,
            keepalive,
            exits,
            exit_retries,
            unsubscribes,
        }
    }

    /// Hands a failed presence exit to the task that retries it.
    pub(super) fn retry_exit(&self, exit: FailedExit) {
        // Err only once the task is gone: the node is being dropped.
        let _ = self.exits.send(exit);
    }

    /// The flush tick, when writes are coalesced.
    pub(super) fn tick(&self) -> Option<&Arc<FlushTick>> {
        self.tick.as_ref().map(|(tick, _)| tick)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.dispatcher.abort();
        if let Some((tick, task)) = self.tick.take() {
            task.abort();
            tick.stop();
        }
        self.keepalive.abort();
        self.exit_retries.abort();
        self.unsubscribes.abort();
    }
}

/// Retries failed presence exits, oldest first, with backoff: a round stops at the first
/// failure (the backend is still away) and the next one waits twice as long (up to
/// [`EXIT_RETRY_MAX`]); one at a time, so a backend coming back is not met by a burst of
/// everything that failed meanwhile. Unbounded channel: one entry per connection that left
/// while the backend was away, each dropped once it lands.
async fn retry_exits(
    presence: Arc<dyn PresenceStore>,
    node: NodeId,
    mut failed: mpsc::UnboundedReceiver<FailedExit>,
) {
    let mut pending = VecDeque::new();
    let mut wait = EXIT_RETRY_FIRST;
    // Exits that landed since the queue was last empty: one line for all of them.
    let mut landed = 0u64;
    loop {
        if pending.is_empty() {
            if landed > 0 {
                info!(
                    exits = landed,
                    failures_not_logged = crate::logs::EXIT_FAILURES.take_held_back(),
                    "presence exits landed after retries"
                );
                landed = 0;
            }
            let Some(exit) = failed.recv().await else {
                return;
            };
            pending.push_back(exit);
            wait = EXIT_RETRY_FIRST;
        }
        // Back off, taking in what fails meanwhile.
        let backoff = tokio::time::sleep(wait);
        tokio::pin!(backoff);
        loop {
            tokio::select! {
                () = &mut backoff => break,
                exit = failed.recv() => match exit {
                    Some(exit) => pending.push_back(exit),
                    None => return,
                },
            }
        }
        while let Some(exit) = pending.pop_front() {
            let FailedExit {
                room,
                user,
                conn,
                left,
            } = &exit;
            match presence.exit(room, user, node, *conn, left.clone()).await {
                Ok(_) => {
                    debug!(%room, user = %user.id, "presence exit landed after a retry");
                    landed += 1;
                }
                Err(err) => {
                    debug!(cause = %err, pending = pending.len() + 1, "presence exit retry failed");
                    pending.push_front(exit);
                    wait = (wait * 2).min(EXIT_RETRY_MAX);
                    break;
                }
            }
        }
    }
}

/// How often unsubscribes that failed (the broker was away) are tried again.
const UNSUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// Tries again, every [`UNSUBSCRIBE_RETRY`], the unsubscribes that failed (a topic nobody
/// here wants must not stay subscribed: a Redis connection resubscribes what it still tracks
/// after an outage) and the records of open WebSockets that failed ([`StaleSockets`]). A check
/// of two empty sets per second when nothing failed.
async fn retry_stale(
    subscriptions: Arc<Subscriptions>,
    broker: Arc<dyn Broker>,
    sockets: SocketRecords,
) {
    let mut tick = tokio::time::interval(UNSUBSCRIBE_RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        sockets.retry().await;
        let pending = subscriptions.retry_stale(&*broker).await;
        if pending > 0 {
            debug!(pending, "unsubscribes still failing");
            failing = true;
        } else if std::mem::take(&mut failing) {
            info!(
                failures_not_logged = crate::logs::UNSUBSCRIBE_FAILURES.take_held_back(),
                "failed unsubscribes landed after retries"
            );
        }
    }
}

/// What the retry of failed open-WebSocket records needs: the users, the node's counts (its
/// hub), and where to record them.
struct SocketRecords {
    stale: Arc<StaleSockets>,
    hub: Arc<Hub>,
    presence: Arc<dyn PresenceStore>,
    node: NodeId,
}

impl SocketRecords {
    /// Records again, with this node's count now, the open WebSockets of each user whose
    /// record failed; a round stops at the first failure (the backend is still away), the rest
    /// wait for the next.
    async fn retry(&self) {
        let users = self.stale.take();
        for (i, user) in users.iter().enumerate() {
            let open = self.hub.user_connections(user);
            let recorded = self
                .presence
                .count_sockets(user, self.node, open, None)
                .await;
            if let Err(err) = recorded {
                for user in &users[i..] {
                    self.stale.mark(user);
                }
                let pending = self.stale.len();
                debug!(cause = %err, pending, "open WebSockets still not recorded");
                return;
            }
            debug!(%user, open, "open WebSockets recorded after a retry");
        }
    }
}

/// The node's keepalive sweep: every `ping_interval`, each local connection is told once
/// that a ping is due (its session then checks the idle timeout and pings the client). One
/// timer per node rather than one per connection, so an idle connection holds no timer entry
/// and its session has one branch less to poll. A connection's first ping comes within one
/// interval of its connect.
async fn keepalive(hub: Arc<Hub>, ping_interval: Duration) {
    let slices = KEEPALIVE_SLICES;
    let every = (ping_interval / slices as u32).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slice in (0..slices).cycle() {
        tick.tick().await;
        hub.ping_slice(slice, slices);
    }
}

/// Events waiting behind the one being dispatched from which the dispatcher stops writing
/// inline and hands frames to the flush tick (or, without one, to the connections' tasks).
///
/// Not at the first event waiting: Redis hands over the pushes of one read together, so a
/// backlog of one or two is the normal case at moderate load, and queueing then made a third
/// of the deliveries a wake-up, a task poll and a write each instead of one inline write
/// (W1's rooms on spare cores at 10/s, docs/perf.md session 9: 199k–210k deliveries per CPU-s
/// and p99 2.1–2.3 ms with batching from a backlog of one, 214k–232k and 1.4–1.8 ms from
/// eight; W1 on this box unchanged within noise at 10, 20 and 40/s).
pub(crate) const BATCH_BACKLOG: usize = 8;

/// The node's dispatcher: the one consumer of the broker's event stream. Its backlog tells
/// the flush tick whether the node is behind.
///
/// `held`: the broker when direct messages are held for offline users
/// (`ChatConfig::held_directs_per_user`): after a reconnect of the broker, messages held while
/// this node's subscriptions were down (the recipient looked offline) are released to its
/// users.
async fn dispatch(
    hub: Arc<Hub>,
    mut events: Events,
    tick: Option<Arc<FlushTick>>,
    held: Option<Arc<dyn Broker>>,
) {
    while let Some(event) = events.recv().await {
        let backlog = events.len();
        if let Some(tick) = &tick {
            tick.note_backlog(backlog);
        }
        // Before the event: what overflowed gets its `resync` ahead of later frames.
        if let Some(missed) = events.take_missed() {
            resync_missed(&hub, missed);
        }
        match event {
            BrokerEvent::Envelope(envelope) => {
                // Inline writes to idle connections while keeping up; when behind, the
                // connections' own tasks write (on every core) and this only queues.
                let how = if backlog < BATCH_BACKLOG {
                    Push::Inline
                } else {
                    // Behind: the tick writes each connection's frames of the next
                    // millisecond in one go, instead of a wake-up and a write per frame.
                    Push::Batch
                };
                let delivered = hub.deliver(&envelope, how);
                // Per envelope, not per delivery: one add, and one latency sample from the
                // frame's own `ts` (publish time) when it has one.
                if delivered > 0 {
                    let metrics = crate::metrics::metrics();
                    metrics.deliveries.increment(delivered as u64);
                    if let Some(ts) = crate::metrics::frame_ts(&envelope.frame) {
                        let ms = crate::protocol::now_ms().saturating_sub(ts).max(0);
                        metrics.delivery_latency.record(ms as f64 / 1_000.0);
                        if let Some(tick) = &tick {
                            tick.note_age(ms.unsigned_abs());
                        }
                    }
                }
            }
            // Its own variant: frames never pay for it.
            BrokerEvent::Control(control) => hub.control(&control),
            BrokerEvent::Reconnected => {
                let metrics = crate::metrics::metrics();
                metrics.broker_reconnects.increment(1);
                metrics
                    .resyncs_reconnect
                    .increment(hub.connection_count() as u64);
                let frame = ServerFrame::Resync(ResyncFrame {
                    reason: "broker_reconnected".into(),
                })
                .encode();
                hub.broadcast_all(&frame);
                if let Some(broker) = &held {
                    tokio::spawn(release_held(hub.users(), broker.clone()));
                }
            }
        }
    }
}

/// Releases the direct messages held for `users` (each a user with a connection here), one
/// at a time; a failure is logged (they stay held for the user's next connection or the next
/// reconnect).
async fn release_held(users: Vec<UserId>, broker: Arc<dyn Broker>) {
    for user in users {
        match broker.release_held(&user).await {
            Ok(0) => {}
            Ok(released) => {
                let metrics = crate::metrics::metrics();
                metrics.directs_released.increment(released as u64);
                info!(%user, released, "held direct messages released after a reconnect");
            }
            Err(err) => {
                warn!(%user, cause = %err, "held direct messages not released after a reconnect");
            }
        }
    }
}

/// The `resync` (reason `node_overloaded`) for what the node's full event channel dropped,
/// and the host's orders it kept aside (see `backend::events`).
fn resync_missed(hub: &Hub, missed: Missed) {
    let frame = ServerFrame::Resync(ResyncFrame {
        reason: "node_overloaded".into(),
    })
    .encode();
    let resyncs = &crate::metrics::metrics().resyncs_overloaded;
    if missed.all {
        resyncs.increment(hub.connection_count() as u64);
        hub.broadcast_all(&frame);
    } else {
        for topic in missed.topics {
            let envelope = Envelope {
                origin: Origin {
                    node: hub.node(),
                    conn: None,
                },
                topic,
                frame: frame.clone(),
            };
            resyncs.increment(hub.deliver(&envelope, Push::Wake) as u64);
        }
    }
    for control in missed.controls {
        hub.control(&control);
    }
}
