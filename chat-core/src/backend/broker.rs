//! The [`Broker`]: how instances ("nodes") of one chat reach each other.
//!
//! # Delivery path
//! A node delivers **only what the broker hands back**: a message published by a connection on
//! node A goes to the broker, and every node subscribed to its topic, A included, receives it
//! from the broker's event stream and fans it out to its local connections. This is what makes
//! a room's order the same on every node (the broker's order), and it makes loop prevention a
//! property of the structure:
//! - the receive path ((`crate::fanout`)) never publishes, so nothing received is re-published;
//! - every [`Envelope`] carries its [`Origin`] (node id and connection id), and a node skips the
//!   origin connection when it fans out, so the sender gets its `ack` and no echo, while the
//!   sender's other connections (tabs) do receive the message.
//!
//! A topic is subscribed once per node, ref-counted by local interest ((`crate::fanout`)), never
//! once per connection.
//!
//! # Backends
//! [`super::memory::MemoryCluster`] (the default, in-process) and, with the `redis` feature,
//! `super::redis::RedisBackend`.

use std::{fmt, time::Duration};

use bytes::Bytes;

use super::Reply;
use crate::{
    limits::Quota,
    protocol::{MessageId, RoomId, RoomMessage, User, UserId},
};

/// The id of one chat instance (node). Random per process start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub uuid::Uuid);

impl NodeId {
    /// A new random node id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0.simple())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.simple(), f)
    }
}

/// The id of one connection, unique within its node (never 0).
pub type ConnId = u64;

/// Where an envelope was published: which node, and which connection on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The publishing node.
    pub node: NodeId,
    /// The sending connection on that node; `None` for what no connection sent (server-side
    /// sends, system events that must reach everyone).
    pub conn: Option<ConnId>,
}

/// What a node subscribes to: one topic per room and one per user (for direct messages).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Room messages and system events of one room.
    Room(RoomId),
    /// Direct messages to one user (all of their connections).
    User(UserId),
}

/// A published frame: routing (topic, origin) plus the frame, serialized once by the publisher
/// and shared by every recipient.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Who published it.
    pub origin: Origin,
    /// Where it goes.
    pub topic: Topic,
    /// The server frame, as the bytes of a JSON text frame.
    pub frame: Bytes,
}

/// The copy of a direct message for the sender's other connections (tabs).
#[derive(Clone, Debug)]
pub struct SenderCopy {
    /// The sender's topic.
    pub topic: Topic,
    /// The sender has other connections on the publishing node, so the copy is needed
    /// whatever the other nodes do. Without them, a backend that can tell may skip the copy
    /// when no other node listens on `topic` (the sender's only connection is the one that
    /// sent it, and it never gets its own message back).
    pub here: bool,
}

impl SenderCopy {
    /// The copy of the direct message `envelope` for the sender's topic.
    pub fn envelope(self, envelope: &Envelope) -> Envelope {
        Envelope {
            topic: self.topic,
            ..envelope.clone()
        }
    }
}

/// A room message to sequence, store and publish.
#[derive(Clone, Debug)]
pub struct NewRoomMessage {
    /// Who publishes it.
    pub origin: Origin,
    /// The room.
    pub room: RoomId,
    /// The sender.
    pub from: User,
    /// The text.
    pub body: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
    /// Publish it only if its sender did not send this `clientMsgId` to this room within the
    /// window; otherwise the first one is returned and nothing is published or stored.
    pub dedup: Option<Dedup>,
    /// Take one of the sender's `quota` first, in the same step (after the `dedup` check: a
    /// retry costs nothing): [`OverQuota`](crate::BackendError::OverQuota) when none is
    /// left, and nothing is published or stored. `None` for the host's own sends.
    pub quota: Option<Quota>,
}

/// What makes a send idempotent (contract v2, "Retrying is safe"): the sender's
/// `clientMsgId`, remembered with the first send's id and timestamp for `window`.
///
/// A backend checks it in the same atomic step as the append and publish, so that a retry
/// after a send whose reply was lost (a timed-out script that ran) finds the first copy. It is
/// scoped to the sender and the target (the room, or the recipient of a direct message): the
/// same id sent to another room is another message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dedup {
    /// The client's id of the message, as the client sent it.
    pub client_msg_id: String,
    /// How long it is remembered (`ChatConfig::dedup_window`).
    pub window: Duration,
}

/// The deduplication of one direct message: who sent it, to whom, its [`Dedup`], and the id
/// and timestamp to remember if it is published.
#[derive(Clone, Copy, Debug)]
pub struct DirectDedup<'a> {
    /// The sender.
    pub from: &'a UserId,
    /// The recipient.
    pub to: &'a UserId,
    /// The client's id and the window.
    pub dedup: &'a Dedup,
    /// This message's id.
    pub id: &'a MessageId,
    /// This message's timestamp (Unix epoch milliseconds).
    pub ts: i64,
}

/// A direct message to publish ([`Broker::publish_direct`]).
#[derive(Clone, Debug)]
pub struct NewDirect<'a> {
    /// The frame, for the recipient's topic.
    pub envelope: Envelope,
    /// The copy for the sender's other connections (tabs).
    pub copy_to: Option<SenderCopy>,
    /// Deduplication by the sender's `clientMsgId`.
    pub dedup: Option<DirectDedup<'a>>,
    /// Holding it for a recipient who is not connected anywhere.
    pub hold: Option<Hold<'a>>,
    /// Keeping it in the history of the sender's and the recipient's conversation.
    pub keep: Option<Keep<'a>>,
    /// Take one of the sender's quota first, in the same step (after the `dedup` check):
    /// [`OverQuota`](crate::BackendError::OverQuota) when none is left, and nothing is
    /// published, held or kept.
    pub charge: Option<Charge<'a>>,
}

/// One of a user's [`Quota`] to take, for every node on the backend.
#[derive(Clone, Copy, Debug)]
pub struct Charge<'a> {
    /// Whose.
    pub user: &'a UserId,
    /// Which limit, at which rate.
    pub quota: Quota,
}

/// A direct message kept in the history of the conversation of its two users (read with
/// `HistoryStore::direct_page`), when it reached the recipient or is held for them; the
/// conversation moves to the top of both users' lists (`HistoryStore::conversations`).
#[derive(Clone, Copy, Debug)]
pub struct Keep<'a> {
    /// The sender.
    pub from: &'a UserId,
    /// The recipient.
    pub to: &'a UserId,
    /// The message's id: a UUIDv7, so ids sort by time.
    pub id: &'a MessageId,
    /// The message's timestamp (Unix epoch milliseconds): its conversation's place in both
    /// users' lists of conversations (`HistoryStore::conversations`).
    pub ts: i64,
    /// Conversations listed per user: past it the least recent one drops out of the list.
    pub listed: usize,
}

/// Keeping a direct message for a recipient who is not connected anywhere, until a
/// connection of theirs opens ([`Broker::release_held`]).
#[derive(Clone, Copy, Debug)]
pub struct Hold<'a> {
    /// The recipient.
    pub to: &'a UserId,
    /// The sender.
    pub from: &'a UserId,
    /// Messages that may wait for one recipient; past it, [`DirectSent::InboxFull`].
    pub max: usize,
    /// Of those, messages that may come from one sender; past it, [`DirectSent::InboxFull`].
    pub max_per_sender: usize,
    /// Whether the sender is a guest ([`crate::Caller::guest`]).
    pub guest: bool,
    /// Of those, messages that may come from guests altogether; past it, a guest's message is
    /// [`DirectSent::InboxFull`].
    pub max_from_guests: usize,
    /// How long a held message is kept (measured from its `ts`).
    pub max_age: Duration,
    /// The message's timestamp (Unix epoch milliseconds).
    pub ts: i64,
}

impl Hold<'_> {
    /// When the held message stops being delivered (Unix epoch milliseconds).
    pub fn until(&self) -> i64 {
        self.ts.saturating_add(super::history::millis(self.max_age))
    }
}

/// What [`Broker::publish_direct`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectSent {
    /// Published; the recipient's topic reached this many nodes (0: the recipient is not
    /// connected anywhere and the message was not held: no copy was sent and nothing was
    /// remembered for deduplication; with a [`Hold`], the recipient is not a known user).
    Published(usize),
    /// The recipient is not connected anywhere: the message is held for them ([`Hold`]), the
    /// sender's copy was published and the `clientMsgId` remembered.
    Held,
    /// The recipient is not connected anywhere and has [`Hold::max`] messages waiting, or
    /// [`Hold::max_per_sender`] from this sender: nothing was stored, published or remembered.
    InboxFull,
    /// The sender sent this `clientMsgId` to this recipient within the window and it was
    /// delivered: nothing was published again. The first one's id and timestamp.
    Duplicate {
        /// The first message's id.
        id: MessageId,
        /// The first message's timestamp (Unix epoch milliseconds).
        ts: i64,
        /// The first one was held for the recipient ([`DirectSent::Held`]).
        held: bool,
    },
}

/// An order of the host about one user, published to the user's topic: every node with a
/// connection of that user is subscribed to it already (no subscription of its own), and no
/// other node receives it. Not a frame: no client ever sees it as such.
///
/// Backends mark it apart from envelopes where a cheap check tells (the memory backend sends
/// [`BrokerEvent::Control`]; Redis flags the payload's first byte), so that delivering a
/// frame never pays for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// The user it is about (its topic is [`Topic::User`] of this id).
    pub user: UserId,
    /// What the user's connections must do.
    pub action: ControlAction,
}

/// What a [`Control`] tells the user's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlAction {
    /// The user's access was revoked: close every connection with 4401.
    Revoke,
    /// The user was removed: close every connection with 4403.
    Remove,
    /// The user's membership of a room ended: every connection leaves it (`left`).
    Leave(RoomId),
}

impl Control {
    /// The topic it is published to: the user's.
    pub fn topic(&self) -> Topic {
        Topic::User(self.user.clone())
    }
}

/// What a node's event stream yields.
#[derive(Debug)]
pub enum BrokerEvent {
    /// A frame on a topic this node subscribed to.
    Envelope(Envelope),
    /// An order about one user whose topic this node subscribed to (see [`Control`]).
    Control(Control),
    /// The broker lost its connection and has restored it (and the subscriptions): frames
    /// published meanwhile may have been missed.
    Reconnected,
}

/// How nodes of one chat reach each other. Object-safe; backends are shared as
/// `Arc<dyn Broker>`.
///
/// Errors are real: a publish that fails returns `Err` (the sender is told `unavailable`), and
/// a backend that reconnects restores its subscriptions by itself and reports
/// [`BrokerEvent::Reconnected`].
pub trait Broker: Send + Sync + 'static {
    /// This node's id (the `origin.node` of what it publishes).
    fn node_id(&self) -> NodeId;

    /// Publishes an envelope to its topic; returns how many nodes it reached.
    fn publish(&self, envelope: Envelope) -> Reply<'_, usize>;

    /// Appends a room message to the room's history, which assigns its id, and publishes it to
    /// the room's topic, as one atomic step: history order = id order = delivery order.
    ///
    /// With [`NewRoomMessage::dedup`], a message whose sender sent the same `clientMsgId` to
    /// the room within the window is neither stored nor published: the first one's id and
    /// timestamp are returned (the same check, in the same atomic step).
    fn publish_room_message(&self, message: NewRoomMessage) -> Reply<'_, RoomMessage>;

    /// Publishes a direct message to the recipient's topic and, if that reached any node, a
    /// copy to the sender's topic (`copy_to`, for their other connections). Returns how many
    /// nodes the recipient's topic reached (0: the recipient is not connected anywhere, and
    /// no copy was sent). The default makes two `publish` calls and always sends the copy; a
    /// backend may do it in one round trip, and skip a copy nobody would receive (see
    /// [`SenderCopy::here`]).
    ///
    /// With `dedup` ([`DirectDedup`]), a direct message that reached the recipient is
    /// remembered (its id and ts) for the window, and a later one with the same `clientMsgId`
    /// from the same sender to the same recipient is not published: [`DirectSent::Duplicate`]
    /// with the first one's id and timestamp. A backend that deduplicates checks in the same
    /// atomic step as the publish; the default ignores `dedup`.
    ///
    /// With `hold` ([`Hold`]), a message that reached nobody is kept for a recipient the
    /// backend knows (`RoomStore::user_known`), in the same atomic step as the publish:
    /// [`DirectSent::Held`] (or [`DirectSent::InboxFull`]). The default holds nothing.
    ///
    /// With `keep` ([`Keep`]), a message that reached the recipient or is held for them is
    /// appended to their conversation's history in the same step. The default keeps nothing.
    ///
    /// With `charge` ([`Charge`]), one of the sender's quota is taken first, in the same step,
    /// after the `dedup` check; [`OverQuota`](crate::BackendError::OverQuota) (nothing done)
    /// when none is left.
    /// The default takes nothing.
    fn publish_direct<'a>(&'a self, direct: NewDirect<'a>) -> Reply<'a, DirectSent> {
        let NewDirect {
            envelope, copy_to, ..
        } = direct;
        Box::pin(async move {
            let copy = copy_to.map(|copy| copy.envelope(&envelope));
            let reached = self.publish(envelope).await?;
            if let (true, Some(copy)) = (reached > 0, copy) {
                if let Err(err) = self.publish(copy).await {
                    tracing::warn!(cause = %err, "direct message delivered, but not to the sender's other connections");
                }
            }
            Ok(DirectSent::Published(reached))
        })
    }

    /// Publishes the direct messages held for `user` ([`Hold`]) to the user's topic, oldest
    /// first, and forgets them, as one atomic step (a message held meanwhile is either among
    /// them or published live); those past their age ([`Hold::until`]) are dropped. Called once a
    /// connection of `user` is subscribed and can receive. Returns how many were published.
    /// Default: none (a broker that holds nothing).
    fn release_held<'a>(&'a self, user: &'a UserId) -> Reply<'a, usize> {
        let _ = user;
        Box::pin(std::future::ready(Ok(0)))
    }

    /// Publishes a [`Control`] to its user's topic; returns how many nodes it reached (0: the
    /// user has no connection anywhere). The receiving nodes apply it to their connections of
    /// that user; nothing about it is stored.
    fn publish_control(&self, control: Control) -> Reply<'_, usize>;

    /// Subscribes this node to topics (one call for many). Completes once the subscription is
    /// active: a frame published after that is delivered.
    fn subscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()>;

    /// Unsubscribes this node from topics.
    fn unsubscribe(&self, topics: Vec<Topic>) -> Reply<'_, ()>;

    /// Whether the broker can serve now, for a readiness probe: `Ok` when it is reachable
    /// and, if the node has subscriptions (`subscribed`), they are in place (restored after
    /// an outage). Default: always ready (an in-process broker).
    fn ready(&self, subscribed: bool) -> Reply<'_, ()> {
        let _ = subscribed;
        Box::pin(std::future::ready(Ok(())))
    }
}

fn _assert_object_safe(_: &dyn Broker) {}
