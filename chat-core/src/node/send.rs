//! Publishing from a node: room messages, direct messages and system messages.

use tracing::warn;

use super::Chat;
use crate::{
    backend::broker::{ConnId, Envelope, NewRoomMessage, SenderCopy, Topic},
    error::Error,
    protocol::{
        now_ms, AckFrame, DirectMessage, MessageId, RoomId, RoomMessage, ServerFrame, SystemEvent,
        SystemMessage, User, UserId,
    },
};

impl Chat {
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
        self.publish_room(None, room, from, body).await
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
        self.publish_direct(None, from, to, body, None).await
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

    pub(crate) async fn publish_room(
        &self,
        conn: Option<ConnId>,
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
        Ok(self.backend().broker.publish_room_message(message).await?)
    }

    pub(crate) async fn publish_direct(
        &self,
        conn: Option<ConnId>,
        from: User,
        to: UserId,
        body: String,
        client_msg_id: Option<String>,
    ) -> Result<AckFrame, Error> {
        let backend = self.backend();
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
        let copy_to = (sender != to && conn.is_some()).then(|| SenderCopy {
            here: self.hub().user_connections(&sender) > 1,
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

    /// Publishes a system message (`user_joined`, `user_left`) to a room; a failure is
    /// logged, not returned (the join or leave it reports has happened).
    pub(crate) async fn publish_system(
        &self,
        conn: Option<ConnId>,
        user: &User,
        room: &RoomId,
        event: SystemEvent,
    ) {
        let frame = ServerFrame::System(SystemMessage {
            room: room.clone(),
            event,
            user: user.clone(),
            ts: now_ms(),
        })
        .encode();
        let envelope = Envelope {
            origin: self.origin(conn),
            topic: Topic::Room(room.clone()),
            frame,
        };
        if let Err(err) = self.backend().broker.publish(envelope).await {
            warn!(cause = %err, %room, ?event, "system message not published");
        }
    }
}
