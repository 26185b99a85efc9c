//! Policy hooks: the host decides who may do what. Every hook takes an event and the chat,
//! and returns a decision; events are `#[non_exhaustive]` (new fields do not break hosts)
//! and have constructors, so that a host can test its policy without a running chat.
//!
//! Unconfigured does not mean "allow all". The defaults ([`DefaultPolicy`]):
//! - **create a room**: any identified caller (guests included);
//! - **join** (REST `join-room` and the WebSocket alike): a public room, anyone; a private
//!   room, its members and holders of a valid invite;
//! - **read** (details, members, history) and **listing**: a public room, anyone; a private
//!   room, its members only (to everyone else it does not exist);
//! - **send to a room**: members who joined it;
//! - **direct messages**: to users who share a room with the sender;
//! - **moderation**: every body as it is.
//!
//! Implement [`Policy`] for a type, or set closures on [`Hooks`] (the rest keep the defaults).

use std::{future::Future, sync::Arc};

use crate::{
    backend::store::{RoomInfo, Visibility},
    node::Chat,
    protocol::{RoomId, UserId},
    BoxFuture, Caller,
};

/// A policy's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse, with a reason the client sees in the `forbidden` error.
    Deny(String),
}

/// What moderation does with a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moderation {
    /// Publish it as it is.
    Accept,
    /// Refuse it, with a reason the sender sees in the `forbidden` error.
    Reject(String),
    /// Publish this text instead.
    Rewrite(String),
}

/// Someone wants to create a room.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateRoomEvent {
    /// Who.
    pub caller: Caller,
    /// The room's name.
    pub name: String,
    /// Public or private.
    pub visibility: Visibility,
}

impl CreateRoomEvent {
    /// The event for `caller` creating a room named `name`.
    pub fn new(caller: Caller, name: impl Into<String>, visibility: Visibility) -> Self {
        Self {
            caller,
            name: name.into(),
            visibility,
        }
    }
}

/// Someone wants to join a room, or to read or see it listed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RoomEvent {
    /// Who.
    pub caller: Caller,
    /// The room (name, visibility, owner).
    pub room: RoomInfo,
    /// Whether the caller is a member of the room.
    pub is_member: bool,
    /// Whether the caller presented a valid invite to this room (joins only).
    pub invited: bool,
}

impl RoomEvent {
    /// The event for `caller` and `room`, not a member, not invited.
    pub fn new(caller: Caller, room: RoomInfo) -> Self {
        Self {
            caller,
            room,
            is_member: false,
            invited: false,
        }
    }

    /// The same, with whether the caller is a member.
    pub fn member(mut self, is_member: bool) -> Self {
        self.is_member = is_member;
        self
    }

    /// The same, with whether the caller holds a valid invite.
    pub fn invited(mut self, invited: bool) -> Self {
        self.invited = invited;
        self
    }

    /// Public, or the caller is a member: what every default but `join` asks.
    fn open_to_caller(&self) -> bool {
        self.room.visibility == Visibility::Public || self.is_member
    }
}

/// Someone wants to post a message: to a room, or directly to a user.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MessageEvent {
    /// Who.
    pub caller: Caller,
    /// Where to.
    pub to: Target,
    /// The text.
    pub body: String,
}

impl MessageEvent {
    /// The event for `caller` sending `body` to `to`.
    pub fn new(caller: Caller, to: Target, body: impl Into<String>) -> Self {
        Self {
            caller,
            to,
            body: body.into(),
        }
    }
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// A room the sender has joined.
    Room(RoomId),
    /// A user (a direct message).
    User(UserId),
}

/// Decides what callers may do. Each method has a secure default (see the module docs);
/// override what you need. Every hook gets the chat, to look things up.
pub trait Policy: Send + Sync + 'static {
    /// May the caller create this room? Default: yes.
    fn create_room<'a>(
        &'a self,
        event: &'a CreateRoomEvent,
        chat: &'a Chat,
    ) -> BoxFuture<'a, Decision> {
        let _ = (event, chat);
        Box::pin(async { Decision::Allow })
    }

    /// May the caller join this room (over REST or the WebSocket)? Default: a public room,
    /// yes; a private one, members and invitees only.
    fn join<'a>(&'a self, event: &'a RoomEvent, chat: &'a Chat) -> BoxFuture<'a, Decision> {
        let _ = chat;
        let allowed = event.open_to_caller() || event.invited;
        Box::pin(async move { allow_if(allowed, "a private room: members only") })
    }

    /// May the caller read this room (details, members, history)? Default: a public room,
    /// yes; a private one, members only. A refusal is answered as "no such room".
    fn read<'a>(&'a self, event: &'a RoomEvent, chat: &'a Chat) -> BoxFuture<'a, Decision> {
        let _ = chat;
        let allowed = event.open_to_caller();
        Box::pin(async move { allow_if(allowed, "a private room: members only") })
    }

    /// Is this room in the caller's room list? The store lists public rooms and the private
    /// rooms the caller is a member of; default: all of those. Here `is_member` is known for
    /// private rooms only (it is `false` for public ones, which are not looked up one by one).
    fn listed<'a>(&'a self, event: &'a RoomEvent, chat: &'a Chat) -> BoxFuture<'a, bool> {
        let _ = chat;
        let listed = event.open_to_caller();
        Box::pin(async move { listed })
    }

    /// May this message be sent? Default: to a room, yes (the sender has joined it); to a
    /// user, if they share a room.
    fn message<'a>(&'a self, event: &'a MessageEvent, chat: &'a Chat) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            match &event.to {
                Target::Room(_) => Decision::Allow,
                Target::User(to) if *to == event.caller.user.id => Decision::Allow,
                Target::User(to) => match chat.share_a_room(&event.caller.user.id, to).await {
                    Ok(shared) => allow_if(
                        shared,
                        "direct messages go to users who share a room with you",
                    ),
                    Err(err) => {
                        Decision::Deny(format!("cannot check who you share a room with: {err}"))
                    }
                },
            }
        })
    }

    /// What becomes of this body? Runs after [`Policy::message`] allowed it. Default: it is
    /// published as it is.
    fn moderate<'a>(
        &'a self,
        event: &'a MessageEvent,
        chat: &'a Chat,
    ) -> BoxFuture<'a, Moderation> {
        let _ = (event, chat);
        Box::pin(async { Moderation::Accept })
    }
}

fn allow_if(allowed: bool, reason: &str) -> Decision {
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(reason.to_owned())
    }
}

/// The defaults of every hook (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {}

type Hook<E, R> = Arc<dyn Fn(E, Chat) -> BoxFuture<'static, R> + Send + Sync>;

/// A policy made of closures, one per hook; a hook without one keeps its default. Each
/// closure gets its own copy of the event and a handle to the chat, so it may be `async move`.
///
/// ```
/// use chat_core::hooks::{Decision, Hooks, Moderation, RoomEvent, MessageEvent};
/// let policy = Hooks::new()
///     .on_join(|event: RoomEvent, _chat| async move {
///         if event.caller.guest { Decision::Deny("log in to join".into()) } else { Decision::Allow }
///     })
///     .on_moderate(|event: MessageEvent, _chat| async move {
///         Moderation::Rewrite(event.body.replace("darn", "d**n"))
///     });
/// ```
#[derive(Clone, Default)]
pub struct Hooks {
    create_room: Option<Hook<CreateRoomEvent, Decision>>,
    join: Option<Hook<RoomEvent, Decision>>,
    read: Option<Hook<RoomEvent, Decision>>,
    listed: Option<Hook<RoomEvent, bool>>,
    message: Option<Hook<MessageEvent, Decision>>,
    moderate: Option<Hook<MessageEvent, Moderation>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

fn hook<E, R, F, Fut>(f: F) -> Hook<E, R>
where
    F: Fn(E, Chat) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    Arc::new(move |event, chat| Box::pin(f(event, chat)))
}

/// Each hook: its field, the builder method that sets it, its event and its answer; expands
/// to the builder methods and to the `Policy` impl that calls a set closure or the default.
macro_rules! hooks {
    ($($(#[$doc:meta])* $name:ident / $setter:ident: $event:ty => $reply:ty;)+) => {
        impl Hooks {
            /// Every hook at its default.
            pub fn new() -> Self {
                Self::default()
            }

            $(
                $(#[$doc])*
                #[must_use]
                pub fn $setter<F, Fut>(mut self, f: F) -> Self
                where
                    F: Fn($event, Chat) -> Fut + Send + Sync + 'static,
                    Fut: Future<Output = $reply> + Send + 'static,
                {
                    self.$name = Some(hook(f));
                    self
                }
            )+
        }

        impl Policy for Hooks {
            $(
                fn $name<'a>(&'a self, event: &'a $event, chat: &'a Chat) -> BoxFuture<'a, $reply> {
                    match &self.$name {
                        Some(f) => f(event.clone(), chat.clone()),
                        None => DefaultPolicy.$name(event, chat),
                    }
                }
            )+
        }
    };
}

hooks! {
    /// Decides who may create rooms.
    create_room / on_create_room: CreateRoomEvent => Decision;
    /// Decides who may join which room (REST and WebSocket).
    join / on_join: RoomEvent => Decision;
    /// Decides who may read which room.
    read / on_read: RoomEvent => Decision;
    /// Decides which rooms a caller sees listed.
    listed / on_listed: RoomEvent => bool;
    /// Decides who may send what where (room messages and direct messages).
    message / on_message: MessageEvent => Decision;
    /// Accepts, rejects or rewrites bodies.
    moderate / on_moderate: MessageEvent => Moderation;
}
