//! [`Chat`]: one node of the chat engine, and [`Connection`]: one client's session on it.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, warn};

use crate::{
    backend::{
        broker::{
            BrokerEvent, ConnId, Envelope, NewRoomMessage, NodeId, Origin, SenderCopy, Topic,
            NO_CONN,
        },
        history::HistoryPage,
        store::{Member, RoomInfo},
        Backend, Handles,
    },
    config::ChatConfig,
    error::{BackendError, Error},
    hooks::{Decision, DirectEvent, JoinEvent, MembersOnly, MessageEvent, Policy},
    hub::{Alarm, FlushTick, Hub, Outbox, Outgoing, Peer},
    protocol::{
        message_key, now_ms, AckFrame, DirectMessage, JoinedFrame, LeftFrame, MessageId,
        ResyncFrame, RoomId, RoomMessage, SendDirectFrame, SendMessageFrame, ServerFrame,
        SystemEvent, SystemMessage, User, UserId,
    },
};

/// A room with how many users are online in it now (`GET /rooms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "online": 3})))]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Users connected to the room now, across all nodes.
    pub online: usize,
}

/// A room with its members (`GET /rooms/{roomId}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"roomId": "0b7a2c1e-6a3f-4f7e-9d2b-5c8e1f4a9b30", "name": "General", "createdAt": "2026-11-29T10:00:00Z", "members": [{"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice", "online": true}]})))]
#[serde(rename_all = "camelCase")]
pub struct RoomDetails {
    /// The room id.
    pub room_id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// Everyone who joined the room, with whether they are online now.
    pub members: Vec<Member>,
}

/// One node of the chat: cheap to clone, shared by the HTTP layer and every connection.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Handles,
    config: ChatConfig,
    policy: Arc<dyn Policy>,
    hub: Arc<Hub>,
    node: NodeId,
    next_conn: AtomicU64,
    /// Set once by `shutdown`, before every connection's alarm is raised.
    shutting_down: AtomicBool,
    /// Every live [`Connection`] holds a clone; shutdown drops this one and waits until the
    /// receiver sees all of them gone (mini-redis's completion-by-drop).
    done_tx: Mutex<Option<mpsc::Sender<()>>>,
    done_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
    dispatcher: Option<JoinHandle<()>>,
    /// The node's flush tick and its task, when writes are coalesced.
    tick: Option<(Arc<FlushTick>, JoinHandle<()>)>,
    /// The node's keepalive sweep (see [`keepalive`]).
    keepalive: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.dispatcher.take() {
            task.abort();
        }
        if let Some((tick, task)) = self.tick.take() {
            task.abort();
            tick.stop();
        }
        if let Some(task) = self.keepalive.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

impl Chat {
    /// A chat node on `backend` with the default policy ([`MembersOnly`]).
    ///
    /// Spawns the node's dispatcher task, so it must be called inside a tokio runtime.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn new(backend: Backend, config: ChatConfig) -> Self {
        Self::with_policy(backend, config, Arc::new(MembersOnly))
    }

    /// A chat node with a policy. See [`Chat::new`].
    ///
    /// # Panics
    /// As [`Chat::new`].
    pub fn with_policy(backend: Backend, config: ChatConfig, policy: Arc<dyn Policy>) -> Self {
        let (backend, events) = backend.into_parts();
        let node = backend.broker.node_id();
        let hub = Arc::new(Hub::new(node));
        let dispatcher = tokio::spawn(dispatch(hub.clone(), events));
        let tick = (!config.write_coalesce.is_zero()).then(|| {
            let tick = FlushTick::new(config.write_coalesce, config.write_coalesce_max);
            (tick.clone(), tokio::spawn(tick.run()))
        });
        let keepalive = tokio::spawn(keepalive(hub.clone(), config.ping_interval));
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            inner: Arc::new(Inner {
                backend,
                config,
                policy,
                hub,
                node,
                next_conn: AtomicU64::new(NO_CONN + 1),
                shutting_down: AtomicBool::new(false),
                done_tx: Mutex::new(Some(done_tx)),
                done_rx: tokio::sync::Mutex::new(done_rx),
                dispatcher: Some(dispatcher),
                tick,
                keepalive: Some(keepalive),
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

    /// The backend (engine-internal: the REST queries go through the methods above).
    pub(crate) fn backend(&self) -> &Handles {
        &self.inner.backend
    }

    /// Connections open on this node.
    pub fn local_connections(&self) -> usize {
        self.inner.hub.connection_count()
    }

    /// Creates a room named `name` (default: "Room " and the first 8 characters of its id).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the room store fails.
    pub async fn create_room(&self, name: Option<String>) -> Result<RoomInfo, Error> {
        let now = time::OffsetDateTime::now_utc();
        let created_at = now
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| BackendError::Corrupt(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let room = RoomInfo {
            name: name.unwrap_or_else(|| format!("Room {}", &id[..8])),
            room_id: RoomId::new(id),
            created_at,
        };
        self.inner.backend.rooms.create(room.clone()).await?;
        Ok(room)
    }

    /// All rooms, oldest first, with who is online.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if a store fails.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, Error> {
        let rooms = self.inner.backend.rooms.list().await?;
        let ids: Vec<RoomId> = rooms.iter().map(|r| r.room_id.clone()).collect();
        let online = self.inner.backend.presence.online_counts(&ids).await?;
        Ok(rooms
            .into_iter()
            .zip(online.into_iter().chain(std::iter::repeat(0)))
            .map(|(r, online)| RoomSummary {
                room_id: r.room_id,
                name: r.name,
                created_at: r.created_at,
                online,
            })
            .collect())
    }

    /// One room with its members.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if a store fails.
    pub async fn room(&self, room: &RoomId) -> Result<RoomDetails, Error> {
        let info = self.room_info(room).await?;
        let backend = &self.inner.backend;
        let members = backend.rooms.members(room).await?;
        let online: HashSet<UserId> = backend
            .presence
            .online(room)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        Ok(RoomDetails {
            room_id: info.room_id,
            name: info.name,
            created_at: info.created_at,
            members: members
                .into_iter()
                .map(|u| Member {
                    online: online.contains(&u.id),
                    id: u.id,
                    name: u.name,
                })
                .collect(),
        })
    }

    /// A room's stored record.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if the room store fails.
    pub async fn room_info(&self, room: &RoomId) -> Result<RoomInfo, Error> {
        self.inner
            .backend
            .rooms
            .get(room)
            .await?
            .ok_or_else(|| Error::RoomNotFound(room.clone()))
    }

    /// Makes `user` a member of `room` (`POST /join-room/{roomId}`).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], or [`Error::Unavailable`] if a store fails.
    pub async fn add_member(&self, room: &RoomId, user: &User) -> Result<(), Error> {
        // The store checks the room's existence in the same step as the insert.
        if !self.inner.backend.rooms.add_member(room, user).await? {
            return Err(Error::RoomNotFound(room.clone()));
        }
        Ok(())
    }

    /// A page of a room's history, oldest first.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`]; [`Error::Unavailable`] wrapping
    /// [`BackendError::InvalidCursor`] for a `before` this chat never issued.
    pub async fn history(
        &self,
        room: &RoomId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        self.room_info(room).await?;
        let limit = limit.clamp(1, self.inner.config.history_page_max);
        Ok(self.inner.backend.history.page(room, before, limit).await?)
    }

    /// Posts a message to a room from the server side (not from a connection): every
    /// connection in the room receives it.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], [`Error::EmptyBody`], [`Error::BodyTooLarge`],
    /// [`Error::Unavailable`].
    pub async fn send_to_room(
        &self,
        room: &RoomId,
        from: User,
        body: String,
    ) -> Result<RoomMessage, Error> {
        self.check_body(&body)?;
        self.room_info(room).await?;
        self.publish_room(NO_CONN, room, from, body).await
    }

    /// Sends a direct message from the server side to every connection of `to`.
    ///
    /// # Errors
    /// As [`Connection::send_direct`].
    pub async fn send_direct(
        &self,
        from: User,
        to: UserId,
        body: String,
    ) -> Result<AckFrame, Error> {
        self.check_body(&body)?;
        self.publish_direct(NO_CONN, from, to, body, None).await
    }

    fn check_body(&self, body: &str) -> Result<(), Error> {
        if body.trim().is_empty() {
            return Err(Error::EmptyBody);
        }
        let limit = self.inner.config.max_body_chars;
        // Count characters only when the byte length could exceed the limit.
        if body.len() > limit && body.chars().count() > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        Ok(())
    }

    async fn publish_room(
        &self,
        conn: ConnId,
        room: &RoomId,
        from: User,
        body: String,
    ) -> Result<RoomMessage, Error> {
        let message = NewRoomMessage {
            origin: self.origin(conn),
            room: room.clone(),
            from,
            body,
            ts: now_ms(),
        };
        Ok(self
            .inner
            .backend
            .broker
            .publish_room_message(message)
            .await?)
    }

    async fn publish_direct(
        &self,
        conn: ConnId,
        from: User,
        to: UserId,
        body: String,
        client_msg_id: Option<String>,
    ) -> Result<AckFrame, Error> {
        let backend = &self.inner.backend;
        let message = DirectMessage {
            id: MessageId::new(uuid::Uuid::now_v7().to_string()),
            from,
            to: to.clone(),
            body,
            ts: now_ms(),
        };
        let ack = AckFrame {
            client_msg_id,
            id: message.id.clone(),
            ts: message.ts,
        };
        let sender = message.from.id.clone();
        let frame = ServerFrame::Direct(message).encode();
        let origin = self.origin(conn);
        let envelope = Envelope {
            origin,
            topic: Topic::User(to.clone()),
            frame,
        };
        // The sender's other connections (tabs) see what they sent; not for server-side sends
        // or a note to oneself (the recipient's topic already covers that). The backend skips
        // the copy if nobody else would get it.
        let copy_to = (sender != to && conn != NO_CONN).then(|| SenderCopy {
            here: self.inner.hub.user_connections(&sender) > 1,
            topic: Topic::User(sender),
        });
        let reached = backend.broker.publish_direct(envelope, copy_to).await?;
        if reached == 0 {
            // Nobody is subscribed to the recipient's topic: no connection anywhere. Only now
            // pay for the lookup that tells "unknown" from "offline".
            return Err(if backend.rooms.user_known(&to).await? {
                Error::RecipientOffline(to)
            } else {
                Error::UserNotFound(to)
            });
        }
        Ok(ack)
    }

    fn origin(&self, conn: ConnId) -> Origin {
        Origin {
            node: self.inner.node,
            conn,
        }
    }

    /// Opens a connection for `user`: registers it for direct messages and returns the
    /// [`Connection`] through which it joins rooms and sends.
    ///
    /// # Errors
    /// [`Error::ShuttingDown`] after [`Chat::shutdown`]; [`Error::Unavailable`] if the broker
    /// cannot subscribe to the user's topic.
    pub async fn connect(&self, user: User) -> Result<Connection, Error> {
        let done = self
            .inner
            .done_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::ShuttingDown)?;
        let inner = &self.inner;
        inner.backend.rooms.remember_user(&user).await?;
        let topic = Topic::User(user.id.clone());
        inner.hub.acquire(&*inner.backend.broker, &topic).await?;
        let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let tick = inner.tick.as_ref().map(|(tick, _)| tick.clone());
        let peer = Outbox::new(inner.config.outgoing_queue, tick);
        inner.hub.add_user_conn(&user.id, id, peer.clone());
        // `shutdown` sets the flag, then raises every connection in the hub: a connection that
        // entered the hub too late to be raised sees the flag here.
        if inner.shutting_down.load(Ordering::SeqCst) {
            peer.alarm.raise(Alarm::SHUTDOWN);
        }
        debug!(conn = id, user = %user.id, "connected");
        Ok(Connection {
            chat: self.clone(),
            id,
            user,
            peer,
            rooms: HashSet::new(),
            replayed: Vec::new(),
            closed: false,
            _done: done,
        })
    }

    /// Stops the chat: every connection is told to close (close code 1001) after finishing
    /// what it is doing, and this returns once all of them have closed. New connections are
    /// refused with [`Error::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.inner
            .done_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.hub.raise_all(Alarm::SHUTDOWN);
        // `None` once every connection's sender is dropped.
        let _ = self.inner.done_rx.lock().await.recv().await;
    }

    pub(crate) fn policy(&self) -> &dyn Policy {
        &*self.inner.policy
    }
}

/// The keepalive sweep is spread over this many slices of the ping interval, so that the
/// node's connections are not all pinged at the same moment.
const KEEPALIVE_SLICES: u64 = 16;

/// The node's keepalive sweep: every `ping_interval`, each local connection is told once
/// that a ping is due (its session then checks the idle timeout and pings the client). One
/// timer per node rather than one per connection: an idle connection holds no timer entry
/// (about 100 bytes measured) and its session has one branch less to poll on every wake-up. A
/// connection's first ping comes within one interval of its connect.
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

/// The node's dispatcher: the one consumer of the broker's event stream.
async fn dispatch(hub: Arc<Hub>, mut events: mpsc::UnboundedReceiver<BrokerEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            BrokerEvent::Envelope(envelope) => {
                // Direct writes to idle connections while keeping up; with a backlog, the
                // connections' own tasks write (on every core) and this only queues.
                hub.deliver(&envelope, events.is_empty());
            }
            BrokerEvent::Reconnected => {
                let frame = ServerFrame::Resync(ResyncFrame {
                    reason: "broker_reconnected".into(),
                })
                .encode();
                hub.broadcast_all(&frame);
            }
        }
    }
}

/// One client connection on a node: its rooms, its outgoing queue and its user.
///
/// Frames for the client arrive on [`Connection::next_frame`]. Call [`Connection::close`] when
/// the client goes away, so that the connection leaves its rooms (and `user_left` is sent).
pub struct Connection {
    chat: Chat,
    id: ConnId,
    user: User,
    /// This connection's outgoing queue and alarm (the hub holds the other references).
    peer: Peer,
    rooms: HashSet<RoomId>,
    /// Message ids replayed by recent joins with `since`, per room, and whether the replayed
    /// copy has been read yet (see `join`).
    replayed: Vec<(RoomId, HashMap<String, bool>)>,
    closed: bool,
    _done: mpsc::Sender<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("user", &self.user.id)
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

/// Why a connection must end (see [`Connection::end_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// The chat is shutting down.
    Shutdown,
    /// The connection's outgoing queue overflowed: the client does not read fast enough.
    SlowConsumer,
}

/// A future that completes with the first [`EndCause`] raised for a connection (shutdown wins
/// if both are). It can be polled again after completing.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct EndSignal {
    outbox: Peer,
    /// The waker last registered with the alarm. The alarm only gives it up when it is raised,
    /// so while the task's waker is the same, a poll is just a load of the raised causes.
    registered: Option<std::task::Waker>,
}

impl std::future::Future for EndSignal {
    type Output = EndCause;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<EndCause> {
        let this = self.get_mut();
        let poll = match &this.registered {
            Some(waker) if waker.will_wake(cx.waker()) => match this.outbox.alarm.raised() {
                0 => std::task::Poll::Pending,
                raised => std::task::Poll::Ready(raised),
            },
            _ => {
                this.registered = Some(cx.waker().clone());
                this.outbox.alarm.poll_raised(cx)
            }
        };
        poll.map(|raised| {
            if raised & Alarm::SHUTDOWN != 0 {
                EndCause::Shutdown
            } else {
                EndCause::SlowConsumer
            }
        })
    }
}

impl Connection {
    /// This connection's id on its node.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Who this connection is.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The chat this connection belongs to.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// Whether this connection has joined `room`.
    pub fn in_room(&self, room: &RoomId) -> bool {
        self.rooms.contains(room)
    }

    /// The next frame for the client (serialized once, shared with other recipients), or
    /// `None` once the connection is closed.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            let frame = std::future::poll_fn(|cx| self.peer.poll_pop(cx)).await?;
            if !self.already_replayed(&frame) {
                return Some(frame);
            }
        }
    }

    /// What the session writes next (see [`Outbox::poll_take`]), replay duplicates dropped.
    pub(crate) fn poll_outgoing(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Outgoing>> {
        loop {
            match self.peer.poll_take(cx) {
                std::task::Poll::Ready(Some(Outgoing::Frame(frame)))
                    if self.already_replayed(&frame) => {}
                other => return other,
            }
        }
    }

    /// The connection's outbox (the session attaches its transport to it).
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.peer
    }

    /// This connection's outbox, shared (for a session that polls its alarm while it also
    /// borrows the connection).
    pub(crate) fn shared_outbox(&self) -> Peer {
        self.peer.clone()
    }

    /// A frame already queued for the client, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Bytes> {
        loop {
            let frame = self.peer.try_pop()?;
            if !self.already_replayed(&frame) {
                return Some(frame);
            }
        }
    }

    /// Whether `frame` is a second (live) copy of a message that a `join` with `since`
    /// replayed: the replayed copy is queued first and passes; a later copy is dropped; the
    /// first message the replay did not hold ends the check for that room. Free when no such
    /// join is settling (the common case: no parsing).
    fn already_replayed(&mut self, frame: &[u8]) -> bool {
        if self.replayed.is_empty() {
            return false;
        }
        let Some((room, id)) = message_key(frame) else {
            return false;
        };
        let Some(i) = self.replayed.iter().position(|(r, _)| *r == room) else {
            return false;
        };
        match self.replayed[i].1.get_mut(&id) {
            Some(seen) if *seen => true,
            Some(seen) => {
                *seen = true;
                false
            }
            None => {
                self.replayed.swap_remove(i);
                if self.replayed.is_empty() {
                    self.peer.set_filtering(false);
                }
                false
            }
        }
    }

    /// Completes when this connection must end for a reason outside it: the chat is shutting
    /// down (close with 1001 after what is queued) or its outgoing queue overflowed (close
    /// with 4008). Cheap to poll often: the session keeps one for its whole life.
    ///
    /// A connection's alarm wakes one waiter: wait on one `EndSignal` at a time (the session
    /// does). One polled from a second task takes the wake-up away from the first; a signal
    /// created after the fact still completes at once.
    pub fn end_signal(&self) -> EndSignal {
        EndSignal {
            outbox: self.peer.clone(),
            registered: None,
        }
    }

    /// Sends a frame to this connection only (replies such as `ack` and `error`): written at
    /// once if the connection is idle, else queued behind what is waiting.
    pub fn reply(&self, frame: &ServerFrame) {
        self.peer.offer(frame.encode());
    }

    /// Joins a room: the `joined` reply (members online now) is queued for the client, and
    /// the room's other users get `user_joined` if this is the user's first connection there.
    /// Joining a room again just repeats the `joined` reply.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`], [`Error::Forbidden`], [`Error::Unavailable`].
    pub async fn join(&mut self, room: &RoomId, since: Option<&MessageId>) -> Result<(), Error> {
        let chat = self.chat.clone();
        let backend = chat.backend();
        let config = chat.config();
        chat.room_info(room).await?;
        let rejoin = self.rooms.contains(room);
        if !rejoin {
            if self.rooms.len() >= config.max_rooms_per_connection {
                return Err(Error::Forbidden(format!(
                    "a connection may join at most {} rooms",
                    config.max_rooms_per_connection
                )));
            }
            let is_member = backend.rooms.is_member(room, &self.user.id).await?;
            let event = JoinEvent {
                user: self.user.clone(),
                room: room.clone(),
                is_member,
            };
            if let Decision::Deny(reason) = chat.policy().join(&event).await {
                return Err(Error::Forbidden(reason));
            }
            if !is_member {
                backend.rooms.add_member(room, &self.user).await?;
            }
        }
        let topic = Topic::Room(room.clone());
        if !rejoin {
            chat.inner.hub.acquire(&*backend.broker, &topic).await?;
        }
        let entered = if rejoin {
            Ok(false)
        } else {
            backend
                .presence
                .enter(room, &self.user, chat.node_id())
                .await
        };
        let entered_ok = entered.is_ok();
        // Joining with `since`: from here until the replay is queued, live frames of the room
        // are collected in a side queue, so that nothing published while the history is read
        // falls between the replay and the live stream.
        let mut buffered = None;
        if entered_ok && !rejoin && since.is_some() {
            // The connection's task filters the replay's duplicates as it pops: no direct
            // writes around it until that is over.
            self.peer.set_filtering(true);
            let side = Outbox::new(config.outgoing_queue, None);
            chat.inner.hub.add_to_room(room, self.id, &side, Vec::new());
            buffered = Some(side);
        }
        let prepared = match entered {
            Ok(first) => self.prepare_joined(room, since).await.map(|f| (first, f)),
            Err(err) => Err(err.into()),
        };
        let (first, frames) = match prepared {
            Ok(ok) => ok,
            Err(err) => {
                if buffered.is_some() {
                    chat.inner.hub.remove_from_room(room, self.id);
                    self.peer.set_filtering(!self.replayed.is_empty());
                }
                if !rejoin {
                    if entered_ok {
                        let _ = backend
                            .presence
                            .exit(room, &self.user, chat.node_id())
                            .await;
                    }
                    chat.inner.hub.release(&*backend.broker, &topic).await;
                }
                return Err(err);
            }
        };
        if rejoin {
            for frame in frames {
                self.peer.send(frame);
            }
            return Ok(());
        }
        match buffered {
            Some(side) => {
                // Live frames that the replay already holds are dropped; the others were
                // published after the history read, so they follow the replay in order.
                let replayed: HashSet<String> = frames
                    .iter()
                    .filter_map(|f| message_key(f).map(|(_, id)| id))
                    .collect();
                let mut lost = false;
                chat.inner.hub.complete_join(
                    room,
                    self.id,
                    &self.peer,
                    frames,
                    &side,
                    |frame| message_key(frame).is_none_or(|(_, id)| !replayed.contains(&id)),
                    || {
                        // A side queue that overflowed dropped frames: say so.
                        lost = side.alarm.raised() & Alarm::SLOW != 0;
                        lost.then(|| {
                            ServerFrame::Resync(ResyncFrame {
                                reason: "replay_overflow".into(),
                            })
                            .encode()
                        })
                    },
                );
                if lost {
                    warn!(%room, "join with since: live frames overflowed while replaying");
                }
                // A message can be in the history before it reaches this node's hub (the
                // broker's delivery lags its append), so a replayed message may still arrive
                // live after this: drop those until the first live message the replay did not
                // have (everything after it is newer).
                if !replayed.is_empty() {
                    let seen = replayed.into_iter().map(|id| (id, false)).collect();
                    self.replayed.push((room.clone(), seen));
                }
            }
            None => chat
                .inner
                .hub
                .add_to_room(room, self.id, &self.peer, frames),
        }
        if since.is_some() {
            self.peer.set_filtering(!self.replayed.is_empty());
        }
        self.rooms.insert(room.clone());
        if first {
            publish_system(&chat, self.id, &self.user, room, SystemEvent::UserJoined).await;
        }
        Ok(())
    }

    async fn prepare_joined(
        &self,
        room: &RoomId,
        since: Option<&MessageId>,
    ) -> Result<Vec<Bytes>, Error> {
        let backend = self.chat.backend();
        let members = backend.presence.online(room).await?;
        let mut frames = vec![ServerFrame::Joined(JoinedFrame {
            room: room.clone(),
            members,
        })
        .encode()];
        if let Some(since) = since {
            // Replays what the history holds after `since` (what is published meanwhile is
            // buffered by `join`). Bounded by the queue size: if more is missed than that, the
            // client is told to reload the history instead.
            let limit = self.chat.config().outgoing_queue.saturating_sub(3).max(1);
            let (replay, more) =
                backend
                    .history
                    .after(room, since, limit)
                    .await
                    .map_err(|err| match err {
                        BackendError::InvalidCursor => Error::BadFrame(format!(
                            "`since` ({since}) is not a message id of room {room}; join without it and reload the history"
                        )),
                        other => other.into(),
                    })?;
            frames.extend(replay);
            if more {
                frames.push(
                    ServerFrame::Resync(ResyncFrame {
                        reason: "replay_truncated".into(),
                    })
                    .encode(),
                );
            }
        }
        Ok(frames)
    }

    /// Leaves a room; queues the `left` reply.
    ///
    /// # Errors
    /// [`Error::NotInRoom`].
    pub async fn leave(&mut self, room: &RoomId) -> Result<(), Error> {
        if !self.rooms.contains(room) {
            return Err(Error::NotInRoom(room.clone()));
        }
        self.leave_room(room).await;
        self.reply(&ServerFrame::Left(LeftFrame { room: room.clone() }));
        Ok(())
    }

    async fn leave_room(&mut self, room: &RoomId) {
        self.rooms.remove(room);
        // A replay's duplicate check ends with the room: otherwise it could last as long as
        // the connection (most replayed messages never come again live), and with it the
        // per-frame probe and the ban on direct writes.
        if let Some(i) = self.replayed.iter().position(|(r, _)| r == room) {
            self.replayed.swap_remove(i);
            if self.replayed.is_empty() {
                self.peer.set_filtering(false);
            }
        }
        leave_room(&self.chat, self.id, &self.user, room).await;
    }

    /// Posts a room message. Returns the `ack` for the client; everyone else in the room,
    /// including this user's other connections, receives the message.
    ///
    /// # Errors
    /// [`Error::BadFrame`] (too long a `clientMsgId`), [`Error::NotInRoom`],
    /// [`Error::EmptyBody`], [`Error::BodyTooLarge`], [`Error::Forbidden`],
    /// [`Error::Unavailable`].
    pub async fn send_message(&mut self, frame: SendMessageFrame) -> Result<AckFrame, Error> {
        self.check_client_msg_id(frame.client_msg_id.as_deref())?;
        if !self.rooms.contains(&frame.room) {
            return Err(Error::NotInRoom(frame.room));
        }
        self.chat.check_body(&frame.body)?;
        let event = MessageEvent {
            user: self.user.clone(),
            room: frame.room.clone(),
            body: frame.body,
        };
        if let Decision::Deny(reason) = self.chat.policy().message(&event).await {
            return Err(Error::Forbidden(reason));
        }
        let message = self
            .chat
            .publish_room(self.id, &event.room, self.user.clone(), event.body)
            .await?;
        Ok(AckFrame {
            client_msg_id: frame.client_msg_id,
            id: message.id,
            ts: message.ts,
        })
    }

    /// Sends a direct message to every connection of `frame.to` and to this user's other
    /// connections. Returns the `ack` for the client.
    ///
    /// # Errors
    /// [`Error::BadFrame`], [`Error::EmptyBody`], [`Error::BodyTooLarge`],
    /// [`Error::Forbidden`], [`Error::UserNotFound`] (nobody by that id ever connected or
    /// joined), [`Error::RecipientOffline`], [`Error::Unavailable`].
    pub async fn send_direct(&mut self, frame: SendDirectFrame) -> Result<AckFrame, Error> {
        self.check_client_msg_id(frame.client_msg_id.as_deref())?;
        self.chat.check_body(&frame.body)?;
        let event = DirectEvent {
            user: self.user.clone(),
            to: frame.to,
            body: frame.body,
        };
        if let Decision::Deny(reason) = self.chat.policy().direct(&event).await {
            return Err(Error::Forbidden(reason));
        }
        self.chat
            .publish_direct(
                self.id,
                self.user.clone(),
                event.to,
                event.body,
                frame.client_msg_id,
            )
            .await
    }

    fn check_client_msg_id(&self, id: Option<&str>) -> Result<(), Error> {
        let max = self.chat.config().max_client_msg_id;
        match id {
            Some(id) if id.len() > max => Err(Error::BadFrame(format!(
                "clientMsgId is longer than {max} bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// Leaves every room (sending `user_left` where this was the user's last connection) and
    /// unregisters the connection. Idempotent.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.peer.close();
        let rooms: Vec<RoomId> = self.rooms.drain().collect();
        cleanup(&self.chat, self.id, &self.user, rooms).await;
    }
}

/// Removes a connection from a room: hub, subscription, presence, and `user_left` if it was
/// the user's last connection there.
async fn leave_room(chat: &Chat, conn: ConnId, user: &User, room: &RoomId) {
    let backend = chat.backend();
    chat.inner.hub.remove_from_room(room, conn);
    chat.inner
        .hub
        .release(&*backend.broker, &Topic::Room(room.clone()))
        .await;
    match backend.presence.exit(room, user, chat.node_id()).await {
        Ok(true) => publish_system(chat, conn, user, room, SystemEvent::UserLeft).await,
        Ok(false) => {}
        Err(err) => warn!(cause = %err, %room, "presence not updated on leave"),
    }
}

async fn publish_system(chat: &Chat, conn: ConnId, user: &User, room: &RoomId, event: SystemEvent) {
    let frame = ServerFrame::System(SystemMessage {
        room: room.clone(),
        event,
        user: user.clone(),
        ts: now_ms(),
    })
    .encode();
    let envelope = Envelope {
        origin: chat.origin(conn),
        topic: Topic::Room(room.clone()),
        frame,
    };
    if let Err(err) = chat.backend().broker.publish(envelope).await {
        warn!(cause = %err, %room, ?event, "system message not published");
    }
}

/// Everything a closing connection must undo.
async fn cleanup(chat: &Chat, conn: ConnId, user: &User, rooms: Vec<RoomId>) {
    for room in &rooms {
        leave_room(chat, conn, user, room).await;
    }
    chat.inner.hub.remove_user_conn(&user.id, conn);
    chat.inner
        .hub
        .release(&*chat.backend().broker, &Topic::User(user.id.clone()))
        .await;
    debug!(conn, user = %user.id, "closed");
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.peer.close();
        // Dropped without close(): clean up on a task so that rooms are still left and
        // `user_left` still sent. Without a runtime (it is shutting down) there is nothing
        // to run it on, and nobody left to tell.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let chat = self.chat.clone();
            let (conn, user) = (self.id, self.user.clone());
            let rooms: Vec<RoomId> = self.rooms.drain().collect();
            let done = self._done.clone();
            handle.spawn(async move {
                cleanup(&chat, conn, &user, rooms).await;
                drop(done);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryCluster;

    async fn chat_with_room() -> (Chat, RoomId) {
        let chat = Chat::with_policy(
            MemoryCluster::new().node(),
            ChatConfig::default(),
            Arc::new(crate::hooks::OpenRooms),
        );
        let room = chat.create_room(Some("r".into())).await.unwrap().room_id;
        (chat, room)
    }

    /// Counts wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn end_signal_wakes_the_latest_waker_and_shutdown_wins_over_slow() {
        use std::{future::Future, pin::Pin, task::Poll};
        let (chat, _room) = chat_with_room().await;
        let conn = chat.connect(User::new("a", "A")).await.unwrap();
        let mut signal = conn.end_signal();
        let first = Arc::new(CountingWaker(Default::default()));
        let second = Arc::new(CountingWaker(Default::default()));
        let (w1, w2) = (first.clone().into(), second.clone().into());
        let mut poll = |waker: &std::task::Waker| {
            Pin::new(&mut signal).poll(&mut std::task::Context::from_waker(waker))
        };
        assert!(poll(&w1).is_pending());
        // Polled again from the same task: nothing to register again; from another: the new
        // waker replaces the old one.
        assert!(poll(&w1).is_pending());
        assert!(poll(&w2).is_pending());
        conn.peer.alarm.raise(Alarm::SLOW);
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&w2), Poll::Ready(EndCause::SlowConsumer));
        conn.peer.alarm.raise(Alarm::SHUTDOWN);
        assert_eq!(poll(&w1), Poll::Ready(EndCause::Shutdown));
        // A second signal of the same connection sees what was raised before it existed.
        assert_eq!(conn.end_signal().await, EndCause::Shutdown);
    }

    #[tokio::test]
    async fn leaving_a_room_ends_its_replay_check_and_direct_writes_resume() {
        let (chat, room) = chat_with_room().await;
        let mut b = chat.connect(User::new("b", "B")).await.unwrap();
        b.join(&room, None).await.unwrap();
        let send = |body: &str| SendMessageFrame {
            room: room.clone(),
            body: body.into(),
            client_msg_id: None,
        };
        let first = b.send_message(send("one")).await.unwrap();
        b.send_message(send("two")).await.unwrap();
        let mut a = chat.connect(User::new("a", "A")).await.unwrap();
        a.join(&room, Some(&first.id)).await.unwrap();
        // "two" was replayed: its live copy, if it comes, must be dropped.
        assert!(a.peer.filtering());
        a.leave(&room).await.unwrap();
        assert!(a.replayed.is_empty());
        assert!(!a.peer.filtering());
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn topics_are_subscribed_once_per_node_and_released_after_the_last_connection() {
        let (chat, room) = chat_with_room().await;
        let hub = chat.inner.hub.clone();
        let mut a = chat.connect(User::new("a", "A")).await.unwrap();
        let mut a2 = chat.connect(User::new("a", "A")).await.unwrap();
        let mut b = chat.connect(User::new("b", "B")).await.unwrap();
        // One topic per user, not per connection.
        assert_eq!(hub.topic_count(), 2);
        a.join(&room, None).await.unwrap();
        a2.join(&room, None).await.unwrap();
        b.join(&room, None).await.unwrap();
        assert_eq!(hub.topic_count(), 3);
        a.close().await;
        a2.close().await;
        assert_eq!(
            hub.topic_count(),
            2,
            "b still holds the room and its user topic"
        );
        b.close().await;
        assert_eq!(hub.topic_count(), 0);
        assert_eq!(chat.local_connections(), 0);
    }

    #[tokio::test]
    async fn a_dropped_connection_still_leaves_its_rooms() {
        let (chat, room) = chat_with_room().await;
        let mut a = chat.connect(User::new("a", "A")).await.unwrap();
        let mut b = chat.connect(User::new("b", "B")).await.unwrap();
        a.join(&room, None).await.unwrap();
        b.join(&room, None).await.unwrap();
        drop(b);
        // a: joined, user_joined(b), then user_left(b) from the drop's cleanup task.
        let mut events = Vec::new();
        while events.len() < 3 {
            let frame = a.next_frame().await.unwrap();
            events.push(serde_json::from_slice::<ServerFrame>(&frame).unwrap());
        }
        assert!(matches!(&events[2], ServerFrame::System(s) if s.event == SystemEvent::UserLeft));
        a.close().await;
        assert_eq!(chat.inner.hub.topic_count(), 0);
    }

    #[tokio::test]
    async fn shutdown_waits_for_connections_and_refuses_new_ones() {
        let (chat, _room) = chat_with_room().await;
        let mut conn = chat.connect(User::new("a", "A")).await.unwrap();
        let stopping = tokio::spawn({
            let chat = chat.clone();
            async move { chat.shutdown().await }
        });
        assert_eq!(conn.end_signal().await, EndCause::Shutdown);
        assert!(!stopping.is_finished());
        assert!(matches!(
            chat.connect(User::new("b", "B")).await,
            Err(Error::ShuttingDown)
        ));
        conn.close().await;
        drop(conn);
        stopping.await.unwrap();
    }
}
