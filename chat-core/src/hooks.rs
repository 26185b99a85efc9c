//! Policy hooks: what a connection may do. Every hook takes an event struct and returns a
//! [`Decision`], so new fields can be added without breaking hosts.
//!
//! Unconfigured does not mean "allow all": the default policy, [`MembersOnly`], lets a
//! connection join only rooms its user is a member of (membership comes from
//! `POST /join-room/{roomId}`, which the host's identity hook guards), and lets members post.
//! [`OpenRooms`] lets any identified user join any existing room.

use crate::{
    backend::BoxFuture,
    protocol::{RoomId, User, UserId},
};

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse, with a reason the client sees in the `forbidden` error.
    Deny(String),
}

/// A connection wants to join a room.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JoinEvent {
    /// Who.
    pub user: User,
    /// Which room.
    pub room: RoomId,
    /// Whether the user is a member of the room (joined it through the REST API).
    pub is_member: bool,
}

/// A connection wants to post a room message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessageEvent {
    /// Who.
    pub user: User,
    /// Which room (already joined).
    pub room: RoomId,
    /// The text.
    pub body: String,
}

/// A connection wants to send a direct message.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DirectEvent {
    /// Who.
    pub user: User,
    /// To whom.
    pub to: UserId,
    /// The text.
    pub body: String,
}

/// Decides what connections may do. Each method has a default; override what you need.
pub trait Policy: Send + Sync + 'static {
    /// May this connection join the room? Default: only if the user is a member.
    fn join<'a>(&'a self, event: &'a JoinEvent) -> BoxFuture<'a, Decision> {
        let decision = if event.is_member {
            Decision::Allow
        } else {
            Decision::Deny(format!(
                "not a member of room {}: POST /join-room/{} first",
                event.room, event.room
            ))
        };
        Box::pin(async move { decision })
    }

    /// May this message be posted? Default: yes (the connection has joined the room).
    fn message<'a>(&'a self, _event: &'a MessageEvent) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Allow })
    }

    /// May this direct message be sent? Default: yes.
    fn direct<'a>(&'a self, _event: &'a DirectEvent) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Allow })
    }
}

/// The default policy: join rooms you are a member of; post in rooms you joined; send direct
/// messages to anyone.
#[derive(Clone, Copy, Debug, Default)]
pub struct MembersOnly;

impl Policy for MembersOnly {}

/// Any identified user may join any existing room (and becomes a member by joining).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenRooms;

impl Policy for OpenRooms {
    fn join<'a>(&'a self, _event: &'a JoinEvent) -> BoxFuture<'a, Decision> {
        Box::pin(async { Decision::Allow })
    }
}
