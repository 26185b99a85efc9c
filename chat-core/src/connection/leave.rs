//! Leaving a room, and the teardown of a closing connection.

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Connection;
use crate::{
    backend::broker::{ConnId, Topic},
    error::Error,
    fanout::Alarm,
    logs::EXIT_FAILURES,
    node::{Chat, FailedExit},
    protocol::{LeftFrame, RoomId, ServerFrame, SystemEvent, User},
};

impl Connection {
    /// Leaves a room; queues the `left` reply.
    ///
    /// # Errors
    /// [`Error::NotInRoom`].
    pub async fn leave(&mut self, room: &RoomId) -> Result<(), Error> {
        let Some(at) = self.rooms.iter().position(|r| r == room) else {
            return Err(Error::NotInRoom(room.clone()));
        };
        self.rooms.swap_remove(at);
        self.replayed.forget(room, &self.outbox);
        exit_room(&self.chat, self.id, &self.caller.user, room).await;
        self.reply(&ServerFrame::Left(LeftFrame { room: room.clone() }));
        Ok(())
    }

    /// Leaves the rooms the hub took this connection out of because the host ended the
    /// user's membership (see `Chat::remove_member`): each gets its `left` as if the client
    /// had left it, and `user_left` goes out where this was the user's last connection there.
    /// The session calls it when the alarm says so.
    pub(crate) async fn leave_evicted(&mut self) {
        for room in self.chat.hub().take_evictions(self.id) {
            // Err: left meanwhile, nothing more to do.
            let _ = self.leave(&room).await;
        }
    }

    /// [`Connection::leave_evicted`] if the alarm says there is something to leave (one
    /// atomic load otherwise): before a join or a send, so that a connection used without a
    /// session, or whose session has not got to it yet, never acts in a room it was taken
    /// out of.
    pub(super) async fn leave_evicted_now(&mut self) {
        if self.outbox.alarm.take_chore(Alarm::EVICTED) {
            self.leave_evicted().await;
        }
    }
}

/// What a closing connection must undo, taken out of it so that `close` can await it and a
/// drop can spawn it.
pub(super) struct Teardown {
    pub(super) chat: Chat,
    pub(super) conn: ConnId,
    pub(super) user: User,
    pub(super) rooms: Vec<RoomId>,
    /// Released when the teardown is over.
    pub(super) done: mpsc::Sender<()>,
}

impl Teardown {
    pub(super) async fn run(self) {
        let Self {
            chat,
            conn,
            user,
            rooms,
            done,
        } = self;
        // The user's topic first: once others see `user_left`, a direct message to a user
        // with no other connection finds no subscriber and is held for them
        // (`ChatConfig::held_directs_per_user`) instead of reaching a node that has nobody to
        // give it to.
        chat.hub().remove_user_conn(&user.id, conn);
        chat.subscriptions()
            .release(&*chat.backend().broker, &Topic::User(user.id.clone()))
            .await;
        chat.record_sockets(&user.id).await;
        for room in &rooms {
            exit_room(&chat, conn, &user, room).await;
        }
        debug!(conn, user = %user.id, "closed");
        drop(done);
    }
}

/// Takes a connection out of a room: fan-out, subscription, presence, and `user_left` if it
/// was the user's last connection there.
async fn exit_room(chat: &Chat, conn: ConnId, user: &User, room: &RoomId) {
    let backend = chat.backend();
    chat.hub().remove_from_room(room, conn);
    chat.subscriptions()
        .release(&*backend.broker, &Topic::Room(room.clone()))
        .await;
    exit_presence(chat, conn, user, room).await;
}

/// Counts the connection out of the room's presence; the store publishes `user_left` in the
/// same step if it was the user's last connection there. An exit that fails (the backend is
/// unreachable, or slower than its timeout) goes to the node's retries (`node::tasks`), tried
/// again with backoff until it lands: the exit is idempotent, so one that ran although its
/// reply was lost is not counted twice, and `user_left` goes out once. (On Redis, the
/// heartbeat's reconcile also removes a connection whose exit never landed.)
pub(super) async fn exit_presence(chat: &Chat, conn: ConnId, user: &User, room: &RoomId) {
    let left = chat.system_envelope(Some(conn), user, room, SystemEvent::UserLeft);
    let presence = &chat.backend().presence;
    let Err(err) = presence
        .exit(room, user, chat.node_id(), conn, left.clone())
        .await
    else {
        return;
    };
    match EXIT_FAILURES.admit() {
        Some(held_back) => warn!(
            cause = %err,
            %room,
            more_since_last_line = held_back,
            "presence not updated on leave; retrying in the background"
        ),
        None => debug!(cause = %err, %room, "presence not updated on leave; retrying"),
    }
    chat.retry_exit(FailedExit {
        room: room.clone(),
        user: user.clone(),
        conn,
        left,
    });
}
