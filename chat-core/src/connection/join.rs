//! Joining a room.

use bytes::Bytes;

use super::{replay::ReplayBuffer, Connection};
use crate::{
    backend::broker::Topic,
    error::{BackendError, Error},
    hooks::RoomEvent,
    limits::Limit,
    protocol::{JoinedFrame, MessageId, ResyncFrame, RoomId, ServerFrame, SystemEvent},
};

/// Online users listed in a `joined` reply; `onlineCount` has the total.
const JOINED_MEMBERS: usize = 100;

impl Connection {
    /// Joins a room: the `joined` reply (members online now) is queued for the client, and
    /// the room's other users get `user_joined` if this is the user's first connection there.
    /// Joining a room again just repeats the `joined` reply.
    ///
    /// A join takes one of the user's join tokens on this node (and, with
    /// [`crate::ChatConfig::shared_user_limits`], on every node); a join with `since` is
    /// charged one more per [`crate::ChatConfig::join_replay_per_token`] messages it replayed.
    ///
    /// # Errors
    /// [`Error::RateLimited`], [`Error::RoomNotFound`], [`Error::Forbidden`],
    /// [`Error::Unavailable`].
    pub async fn join(&mut self, room: &RoomId, since: Option<&MessageId>) -> Result<(), Error> {
        self.chat
            .take_limit(&self.caller.user.id, Limit::Joins)
            .await?;
        // A room the host took this connection out of is left before it is joined again.
        self.leave_evicted_now().await;
        let chat = self.chat.clone();
        let info = chat.room_info(room).await?;
        if self.rooms.contains(room) {
            for frame in self.joined_frames(room, since).await? {
                self.outbox.send(frame);
            }
            return Ok(());
        }
        self.admit(info).await?;
        let backend = chat.backend();
        let topic = Topic::Room(room.clone());
        chat.subscriptions()
            .acquire(&*backend.broker, &topic)
            .await?;
        let first = match backend
            .presence
            .enter(room, &self.caller.user, chat.node_id(), self.id)
            .await
        {
            Ok(first) => first,
            Err(err) => {
                chat.subscriptions().release(&*backend.broker, &topic).await;
                return Err(err.into());
            }
        };
        if let Err(err) = self.enter(room, since).await {
            super::leave::exit_presence(&chat, self.id, &self.caller.user, room).await;
            chat.subscriptions().release(&*backend.broker, &topic).await;
            return Err(err);
        }
        // Exactly one more: joins are rare, and most connections stay in one or two rooms.
        self.rooms.reserve_exact(1);
        self.rooms.push(room.clone());
        if first {
            chat.publish_system(
                Some(self.id),
                &self.caller.user,
                room,
                SystemEvent::UserJoined,
            )
            .await;
        }
        Ok(())
    }

    /// Whether this connection may join `room`: the room limit, then the policy; a caller
    /// who is let in becomes a member.
    async fn admit(&self, info: crate::backend::store::RoomInfo) -> Result<(), Error> {
        let limit = self.chat.config().max_rooms_per_connection;
        if self.rooms.len() >= limit {
            return Err(Error::Forbidden(format!(
                "a connection may join at most {limit} rooms"
            )));
        }
        let rooms = &self.chat.backend().rooms;
        let is_member = rooms.is_member(&info.room_id, &self.caller.user.id).await?;
        let event = RoomEvent::new(self.caller.clone(), info).member(is_member);
        self.chat.admit(&event).await?;
        if !is_member {
            self.chat
                .add_member_capped(&event.room.room_id, &self.caller.user)
                .await?;
        }
        Ok(())
    }

    /// Puts the connection in the room's fan-out after its `joined` reply and replay.
    async fn enter(&mut self, room: &RoomId, since: Option<&MessageId>) -> Result<(), Error> {
        let chat = self.chat.clone();
        let capacity = chat.config().outgoing_queue;
        let buffer = since.map(|_| {
            ReplayBuffer::start(
                chat.hub(),
                room,
                self.id,
                &self.outbox,
                &self.replayed,
                capacity,
            )
        });
        let frames = self.joined_frames(room, since).await?;
        match buffer {
            Some(buffer) => buffer.complete(frames, &mut self.replayed),
            None => chat.hub().add_to_room(room, self.id, &self.outbox, frames),
        }
        if since.is_some() {
            self.outbox.set_filtering(!self.replayed.is_empty());
        }
        Ok(())
    }

    /// The `joined` reply, then what the history holds after `since` (what is published
    /// meanwhile is buffered by the caller). Bounded by the queue size: if more was missed
    /// than that, a `resync` tells the client to reload the history instead.
    async fn joined_frames(
        &self,
        room: &RoomId,
        since: Option<&MessageId>,
    ) -> Result<Vec<Bytes>, Error> {
        let backend = self.chat.backend();
        let (members, online) = backend.presence.online(room, JOINED_MEMBERS).await?;
        let mut frames = vec![ServerFrame::Joined(JoinedFrame {
            room: room.clone(),
            members,
            online_count: Some(online),
        })
        .encode()];
        let Some(since) = since else {
            return Ok(frames);
        };
        let limit = self.chat.config().outgoing_queue.saturating_sub(3).max(1);
        let (replay, more) = backend
            .history
            .after(room, since, limit)
            .await
            .map_err(|err| match err {
                BackendError::InvalidCursor => Error::BadFrame(format!(
                    "`since` ({since}) is not a message id of room {room}; join without it and reload the history"
                )),
                other => other.into(),
            })?;
        // The replay is read now, whatever comes of the join: its cost is a debt on the
        // user's joins (the next ones wait for it).
        self.chat
            .limits()
            .charge_replay(&self.caller.user.id, replay.len());
        frames.extend(replay);
        if more {
            crate::metrics::metrics().resyncs_truncated.increment(1);
            let resync = ServerFrame::Resync(ResyncFrame {
                reason: "replay_truncated".into(),
            });
            frames.push(resync.encode());
        }
        Ok(frames)
    }
}
