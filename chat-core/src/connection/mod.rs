//! [`Connection`]: one client's session on a node, and what it can do.
//!
//! - `join`: joining a room, with the `joined` reply and the replay of missed history;
//! - `replay`: the side queue that buffers live frames while history is read, and the filter
//!   that drops live copies of replayed messages;
//! - `leave`: leaving a room, and the teardown when the connection closes or is dropped.

mod join;
mod leave;
mod replay;

#[cfg(test)]
mod tests;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::sync::mpsc;

use self::{leave::Teardown, replay::ReplayFilter};
use crate::{
    backend::broker::ConnId,
    error::Error,
    fanout::{Outbox, Outgoing},
    hooks::{Decision, MessageEvent, Moderation, Target},
    limits::{ConnectionPermit, Limit},
    node::Chat,
    protocol::{AckFrame, RoomId, SendDirectFrame, SendMessageFrame, ServerFrame, User},
    session::EndSignal,
    Caller,
};

/// One client connection on a node: its rooms, its outgoing queue and its user.
///
/// Frames for the client arrive on [`Connection::next_frame`]. Call [`Connection::close`] when
/// the client goes away, so that the connection leaves its rooms (and `user_left` is sent).
pub struct Connection {
    chat: Chat,
    id: ConnId,
    caller: Caller,
    /// This connection's outgoing queue and alarm (the hub holds the other references).
    outbox: Arc<Outbox>,
    /// The rooms joined, in a vector sized to fit: a connection is in a few rooms (at most
    /// `max_rooms_per_connection`, 100 by default), where a scan costs no more than hashing
    /// the id, and a set's smallest table (116 bytes) would be most of an idle connection's
    /// own state.
    rooms: Vec<RoomId>,
    /// Live copies of messages that recent joins with `since` replayed, to be dropped.
    replayed: ReplayFilter,
    closed: bool,
    /// Held until the teardown is over: [`Chat::shutdown`] waits for every one to go.
    done: mpsc::Sender<()>,
    /// Counts this connection in its user's limit of open connections until it is dropped.
    _permit: ConnectionPermit,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("user", &self.caller.user.id)
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        chat: Chat,
        id: ConnId,
        caller: Caller,
        outbox: Arc<Outbox>,
        done: mpsc::Sender<()>,
        permit: ConnectionPermit,
    ) -> Self {
        Self {
            chat,
            id,
            caller,
            outbox,
            rooms: Vec::new(),
            replayed: ReplayFilter::default(),
            closed: false,
            done,
            _permit: permit,
        }
    }

    /// This connection's id on its node.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Who this connection is.
    pub fn user(&self) -> &User {
        &self.caller.user
    }

    /// Who this connection is, as the policy sees it.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The chat this connection belongs to.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// Whether this connection has joined `room`.
    pub fn in_room(&self, room: &RoomId) -> bool {
        self.rooms.contains(room)
    }

    /// Publishes the direct messages held for this user while they had no connection to the
    /// user's topic (this connection and any other of theirs get them, oldest first), and
    /// forgets them: call it once this connection can deliver, as
    /// [`session::serve`](crate::session::serve) does when it starts. Not before: a
    /// connection dropped before its socket was up (a handshake abandoned, a refused token)
    /// would take them with it. A failure is logged and leaves them held.
    pub async fn release_held(&self) {
        self.chat.release_held(&self.caller.user.id).await;
    }

    /// The next frame for the client (serialized once, shared with other recipients), or
    /// `None` once the connection is closed.
    pub async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            let frame = std::future::poll_fn(|cx| self.outbox.poll_pop(cx)).await?;
            if !self.replayed.drops(&frame, &self.outbox) {
                return Some(frame);
            }
        }
    }

    /// A frame already queued for the client, without waiting.
    pub fn try_next_frame(&mut self) -> Option<Bytes> {
        loop {
            let frame = self.outbox.try_pop()?;
            if !self.replayed.drops(&frame, &self.outbox) {
                return Some(frame);
            }
        }
    }

    /// What the session writes next (see [`Outbox::poll_take`]), replay duplicates dropped.
    pub(crate) fn poll_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        loop {
            match self.outbox.poll_take(cx) {
                Poll::Ready(Some(Outgoing::Frame(frame)))
                    if self.replayed.drops(&frame, &self.outbox) => {}
                other => return other,
            }
        }
    }

    /// The connection's outbox (the session attaches its transport to it and polls its
    /// alarm).
    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Completes when this connection must end for a reason outside it: the chat is shutting
    /// down (close with 1001 after what is queued), the host removed the user (4403) or
    /// revoked their access (4401), or its outgoing queue overflowed (close with 4008). Cheap
    /// to poll often: the session keeps one for its whole life.
    ///
    /// A connection's alarm wakes one waiter: wait on one `EndSignal` at a time (the session
    /// does). One polled from a second task takes the wake-up away from the first; a signal
    /// created after the fact still completes at once.
    pub fn end_signal(&self) -> EndSignal {
        EndSignal::new(self.outbox.clone())
    }

    /// Sends a frame to this connection only (replies such as `ack` and `error`): written at
    /// once if the connection is idle, else queued behind what is waiting.
    pub fn reply(&self, frame: &ServerFrame) {
        self.outbox.offer(frame.encode());
    }

    /// Posts a room message. Returns the `ack` for the client; everyone else in the room,
    /// including this user's other connections, receives the message.
    ///
    /// # Errors
    /// [`Error::BadFrame`] (too long a `clientMsgId`), [`Error::NotInRoom`],
    /// [`Error::RateLimited`] (the user's room messages, on this node or on every node),
    /// [`Error::EmptyBody`], [`Error::BodyTooLarge`], [`Error::Forbidden`],
    /// [`Error::Unavailable`].
    pub async fn send_message(&mut self, frame: SendMessageFrame) -> Result<AckFrame, Error> {
        self.check_client_msg_id(frame.client_msg_id.as_deref())?;
        self.leave_evicted_now().await;
        if !self.rooms.contains(&frame.room) {
            return Err(Error::NotInRoom(frame.room));
        }
        let left = self
            .chat
            .limits()
            .take(&self.caller.user.id, Limit::Messages)?;
        let room = frame.room.clone();
        let body = self.vet(Target::Room(frame.room), frame.body).await?;
        let message = self
            .chat
            .publish_room(
                Some((self.id, left)),
                &room,
                self.caller.user.clone(),
                body,
                frame.client_msg_id.as_deref(),
            )
            .await?;
        Ok(AckFrame {
            client_msg_id: frame.client_msg_id,
            id: message.id,
            ts: message.ts,
            held: false,
        })
    }

    /// Sends a direct message to every connection of `frame.to` and to this user's other
    /// connections. Returns the `ack` for the client.
    ///
    /// # Errors
    /// [`Error::BadFrame`], [`Error::RateLimited`] (the user's direct messages, on this
    /// node or on every node), [`Error::EmptyBody`], [`Error::BodyTooLarge`],
    /// [`Error::Forbidden`] (by default: the users share no room), [`Error::UserNotFound`]
    /// (nobody by that id ever connected or joined), [`Error::RecipientOffline`] (not
    /// connected anywhere, and the chat holds no messages: `ChatConfig::held_directs_per_user`
    /// is 0), [`Error::InboxFull`], [`Error::Unavailable`]. A recipient who is not connected
    /// anywhere gets the message when a connection of theirs opens: the ack says `held`.
    pub async fn send_direct(&mut self, frame: SendDirectFrame) -> Result<AckFrame, Error> {
        self.check_client_msg_id(frame.client_msg_id.as_deref())?;
        self.chat
            .limits()
            .check(&self.caller.user.id, Limit::Directs)?;
        let to = frame.to.clone();
        let body = self.vet(Target::User(frame.to), frame.body).await?;
        self.chat
            .publish_direct(
                Some(self.id),
                self.caller.clone(),
                to,
                body,
                frame.client_msg_id,
            )
            .await
    }

    /// The body as it will be published: checked, allowed by the policy, moderated.
    async fn vet(&self, to: Target, body: String) -> Result<String, Error> {
        self.chat.check_body(&body)?;
        let event = MessageEvent::new(self.caller.clone(), to, body);
        let policy = self.chat.policy();
        if let Decision::Deny(reason) = policy.message(&event, &self.chat).await {
            return Err(Error::Forbidden(reason));
        }
        match policy.moderate(&event, &self.chat).await {
            Moderation::Accept => Ok(event.body),
            Moderation::Reject(reason) => Err(Error::Forbidden(reason)),
            Moderation::Rewrite(body) => {
                self.chat.check_body(&body)?;
                Ok(body)
            }
        }
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
        if let Some(teardown) = self.teardown() {
            teardown.run().await;
        }
    }

    /// Closes the outbox and takes what must be undone, the first time only.
    fn teardown(&mut self) -> Option<Teardown> {
        if std::mem::replace(&mut self.closed, true) {
            return None;
        }
        self.outbox.close();
        Some(Teardown {
            chat: self.chat.clone(),
            conn: self.id,
            user: self.caller.user.clone(),
            rooms: std::mem::take(&mut self.rooms),
            done: self.done.clone(),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(teardown) = self.teardown() else {
            return;
        };
        // Dropped without close(): clean up on a task so that rooms are still left and
        // `user_left` still sent. Without a runtime (it is shutting down) there is nothing
        // to run it on, and nobody left to tell.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(teardown.run());
        }
    }
}
