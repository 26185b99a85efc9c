//! Publishing from a node: server-side sends ([`RoomHandle`], [`UserHandle`]), and the room,
//! direct and system messages that connections publish.

use tracing::warn;

use super::Chat;
use crate::{
    backend::broker::{
        Charge, ConnId, Dedup, DirectDedup, DirectSent, Envelope, Hold, Keep, NewDirect,
        NewRoomMessage, SenderCopy, Topic,
    },
    caller::Caller,
    error::{BackendError, Error},
    limits::Limit,
    protocol::{
        now_ms, AckFrame, DirectMessage, MessageId, RoomId, RoomMessage, ServerFrame, SystemEvent,
        SystemMessage, User, UserId,
    },
};

/// A room, for server-side sends and reads by the host: [`Chat::to_room`].
///
/// The host speaks with its own authority: no policy hook is asked and moderation does not
/// rewrite what it sends (it checks the body against the limits only). The room's connections
/// receive the message like any other, and it is kept in history.
#[derive(Clone, Copy, Debug)]
#[must_use = "a RoomHandle does nothing until you send or read"]
pub struct RoomHandle<'a> {
    chat: &'a Chat,
    room: &'a RoomId,
}

impl RoomHandle<'_> {
    /// The room.
    pub fn id(&self) -> &RoomId {
        self.room
    }

    /// Posts `body` to the room as the chat's system user
    /// ([`ChatConfig::system_user`](crate::ChatConfig::system_user)).
    ///
    /// # Errors
    /// [`Error::RoomNotFound`]; [`Error::EmptyBody`] or [`Error::BodyTooLarge`] (the same
    /// limits as clients'); [`Error::Unavailable`] if the backend is down or slower than its timeout (see there).
    pub async fn send(self, body: impl Into<String>) -> Result<RoomMessage, Error> {
        let from = self.chat.config().system_user.clone();
        self.send_as(&from, body).await
    }

    /// Posts `body` to the room as `from` (a bot, or a user on whose behalf the host acts).
    /// `from` need not be a member of the room.
    ///
    /// # Errors
    /// As [`RoomHandle::send`].
    pub async fn send_as(self, from: &User, body: impl Into<String>) -> Result<RoomMessage, Error> {
        let body = body.into();
        self.chat.check_body(&body)?;
        self.chat.room_info(self.room).await?;
        self.chat
            .publish_room(None, self.room, from.clone(), body, None)
            .await
    }

    /// A page of the room's history as typed messages, oldest first: up to `limit` messages
    /// older than `before` (the newest without it). No policy is asked. See
    /// [`Chat::room_history`].
    ///
    /// # Errors
    /// As [`Chat::room_history`].
    pub async fn history(
        self,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<super::MessagePage, Error> {
        self.chat.room_history(self.room, before, limit).await
    }
}

/// A user, for server-side direct messages: [`Chat::to_user`]. As with [`RoomHandle`], no
/// policy hook is asked.
#[derive(Clone, Copy, Debug)]
#[must_use = "a UserHandle does nothing until you send"]
pub struct UserHandle<'a> {
    chat: &'a Chat,
    user: &'a UserId,
}

impl UserHandle<'_> {
    /// The user.
    pub fn id(&self) -> &UserId {
        self.user
    }

    /// Sends `body` to every connection of the user, as the chat's system user
    /// ([`ChatConfig::system_user`](crate::ChatConfig::system_user)). Returns the message's
    /// id and time.
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::InboxFull`] and [`Error::RecipientOffline`] (a known
    /// user with no connection anywhere: held for them, with `held` in the returned ack,
    /// unless their held messages are at the limit or holding is off:
    /// [`ChatConfig::held_directs_per_user`](crate::ChatConfig::held_directs_per_user)),
    /// [`Error::EmptyBody`], [`Error::BodyTooLarge`], [`Error::Unavailable`].
    pub async fn send(self, body: impl Into<String>) -> Result<AckFrame, Error> {
        let from = self.chat.config().system_user.clone();
        self.send_as(&from, body).await
    }

    /// Sends `body` to the user as `from` (a bot).
    ///
    /// # Errors
    /// As [`UserHandle::send`].
    pub async fn send_as(self, from: &User, body: impl Into<String>) -> Result<AckFrame, Error> {
        let body = body.into();
        self.chat.check_body(&body)?;
        self.chat
            .publish_direct(
                None,
                Caller::member(from.clone()),
                self.user.clone(),
                body,
                None,
            )
            .await
    }
}

impl Chat {
    /// A room, for server-side sends and history: `chat.to_room(&room).send("hi").await?`
    /// posts as the system user, `.send_as(&bot, "hi")` as a bot.
    pub fn to_room<'a>(&'a self, room: &'a RoomId) -> RoomHandle<'a> {
        RoomHandle { chat: self, room }
    }

    /// A user, for server-side direct messages: `chat.to_user(&user).send("hi").await?`.
    pub fn to_user<'a>(&'a self, user: &'a UserId) -> UserHandle<'a> {
        UserHandle { chat: self, user }
    }

    /// Posts a message to a room from the server side (not from a connection): every
    /// connection in the room receives it.
    ///
    /// Prefer `self.to_room(room).send_as(&from, body)` ([`Chat::to_room`]), or `.send(body)`
    /// to post as the system user; this stays for existing callers.
    ///
    /// # Errors
    /// As [`RoomHandle::send`].
    pub async fn send_to_room(
        &self,
        room: &RoomId,
        from: User,
        body: String,
    ) -> Result<RoomMessage, Error> {
        self.to_room(room).send_as(&from, body).await
    }

    /// Sends a direct message from the server side to every connection of `to`.
    ///
    /// Prefer `self.to_user(&to).send_as(&from, body)` ([`Chat::to_user`]); this stays for
    /// existing callers.
    ///
    /// # Errors
    /// As [`UserHandle::send`].
    pub async fn send_direct(
        &self,
        from: User,
        to: UserId,
        body: String,
    ) -> Result<AckFrame, Error> {
        self.to_user(&to).send_as(&from, body).await
    }

    pub(crate) fn check_body(&self, body: &str) -> Result<(), Error> {
        if crate::protocol::text::is_blank(body) {
            return Err(Error::EmptyBody);
        }
        let limit = self.config().max_body_chars;
        // Count characters only when the byte length could exceed the limit.
        if body.len() > limit && body.chars().count() > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        Ok(())
    }

    /// The deduplication of a send with this `clientMsgId` (none without one, or with a
    /// zero window).
    fn dedup(&self, client_msg_id: Option<&str>) -> Option<Dedup> {
        let window = self.config().dedup_window;
        client_msg_id.filter(|_| !window.is_zero()).map(|id| Dedup {
            client_msg_id: id.to_owned(),
            window,
        })
    }

    /// Publishes a room message; with a `clientMsgId`, a second send of it within the
    /// window returns the first message instead (see [`Dedup`]).
    ///
    /// `sender`: the sending connection, and the tokens its user has left on this node after
    /// its own check; `None` for the host's sends.
    pub(crate) async fn publish_room(
        &self,
        sender: Option<(ConnId, u32)>,
        room: &RoomId,
        from: User,
        body: String,
        client_msg_id: Option<&str>,
    ) -> Result<RoomMessage, Error> {
        let conn = sender.map(|(conn, _)| conn);
        // A connection's send: the user's limit for every node too (not the host's sends),
        // leased no further than the user's limit on this node lets them send.
        let quota = sender.and_then(|(_, left)| {
            let quota = self.limits().quota(Limit::Messages)?;
            Some(crate::limits::Quota {
                lease: left.saturating_add(1),
                ..quota
            })
        });
        let message = NewRoomMessage {
            origin: self.origin(conn),
            room: room.clone(),
            from,
            body,
            ts: now_ms(),
            dedup: self.dedup(client_msg_id),
            quota,
        };
        let metrics = crate::metrics::metrics();
        match self.backend().broker.publish_room_message(message).await {
            Ok(message) => {
                metrics.room_messages.increment(1);
                Ok(message)
            }
            Err(err) => {
                if !matches!(err, BackendError::OverQuota { .. }) {
                    metrics.publish_errors_room.increment(1);
                }
                Err(err.into())
            }
        }
    }

    pub(crate) async fn publish_direct(
        &self,
        conn: Option<ConnId>,
        from: Caller,
        to: UserId,
        body: String,
        client_msg_id: Option<String>,
    ) -> Result<AckFrame, Error> {
        let backend = self.backend();
        let guest = from.guest;
        let message = DirectMessage {
            id: MessageId::new(uuid::Uuid::now_v7().to_string()),
            from: from.user,
            to: to.clone(),
            body,
            ts: now_ms(),
        };
        let dedup = self.dedup(client_msg_id.as_deref());
        let mut ack = AckFrame {
            client_msg_id,
            id: message.id.clone(),
            ts: message.ts,
            held: false,
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
        let sent_by = sender.clone();
        let copy_to = (sender != to && conn.is_some()).then(|| SenderCopy {
            here: self.hub().user_connections(&sender) > 1,
            topic: Topic::User(sender),
        });
        let check = dedup.as_ref().map(|dedup| DirectDedup {
            from: &sent_by,
            to: &to,
            dedup,
            id: &ack.id,
            ts: ack.ts,
        });
        let config = self.config();
        let hold = (config.held_directs() > 0).then(|| Hold {
            to: &to,
            from: &sent_by,
            max: config.held_directs(),
            max_per_sender: config.held_directs_per_sender.max(1),
            guest,
            max_from_guests: config.held_directs_from_guests,
            max_age: config.held_max_age(),
            ts: ack.ts,
        });
        let metrics = crate::metrics::metrics();
        let keep = config.keep_direct_history.then_some(Keep {
            from: &sent_by,
            to: &to,
            id: &ack.id,
            ts: ack.ts,
            listed: config.conversations_per_user.max(1),
        });
        let direct = NewDirect {
            envelope,
            copy_to,
            dedup: check,
            hold,
            keep,
            charge: conn
                .and_then(|_| self.limits().quota(Limit::Directs))
                .map(|quota| Charge {
                    user: &sent_by,
                    quota,
                }),
        };
        let sent = backend
            .broker
            .publish_direct(direct)
            .await
            .inspect_err(|err| {
                if !matches!(err, BackendError::OverQuota { .. }) {
                    metrics.publish_errors_direct.increment(1);
                }
            })?;
        let reached = match sent {
            DirectSent::Published(reached) => reached,
            DirectSent::Duplicate { id, ts, held } => {
                ack.id = id;
                ack.ts = ts;
                ack.held = held;
                return Ok(ack);
            }
            DirectSent::Held => {
                metrics.direct_messages.increment(1);
                metrics.directs_held.increment(1);
                ack.held = true;
                return Ok(ack);
            }
            DirectSent::InboxFull => return Err(Error::InboxFull(to)),
        };
        if reached == 0 {
            // Nobody is subscribed to the recipient's topic: no connection anywhere. Only now
            // pay for the lookup that tells "unknown" from "offline".
            return Err(if backend.rooms.user_known(&to).await? {
                Error::RecipientOffline(to)
            } else {
                Error::UserNotFound(to)
            });
        }
        metrics.direct_messages.increment(1);
        Ok(ack)
    }

    /// Publishes a system message (`user_joined`, `user_left`) to a room; a failure is
    /// logged, not returned (the join or leave it reports has happened).
    pub(crate) async fn publish_system(
        &self,
        conn: Option<ConnId>,
        user: &User,
        room: &RoomId,
        event: SystemEvent,
    ) {
        let envelope = self.system_envelope(conn, user, room, event);
        if let Err(err) = self.backend().broker.publish(envelope).await {
            warn!(cause = %err, %room, ?event, "system message not published");
        }
    }

    /// The envelope of a system message (`user_joined`, `user_left`) in a room, now.
    pub(crate) fn system_envelope(
        &self,
        conn: Option<ConnId>,
        user: &User,
        room: &RoomId,
        event: SystemEvent,
    ) -> Envelope {
        let frame = ServerFrame::System(SystemMessage {
            room: room.clone(),
            event,
            user: user.clone(),
            ts: now_ms(),
        })
        .encode();
        Envelope {
            origin: self.origin(conn),
            topic: Topic::Room(room.clone()),
            frame,
        }
    }
}
