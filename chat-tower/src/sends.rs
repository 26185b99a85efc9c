//! Server-side sends and reads on the [`ChatHandle`]: `chat.room(&id).send(body)`,
//! `chat.user(&id).send(body)`, `.send_as(&bot, body)`, `chat.room(&id).history(..)`.
//!
//! The host speaks with its own authority: no policy hook is asked and moderation does not
//! rewrite what it sends (bodies are held to the same limits as clients'). Without a named
//! sender, messages come from the chat's system user ([`crate::ChatBuilder::system_user`]).

use chat_core::{RoomHandle, RoomId, UserHandle, UserId};

use crate::ChatHandle;

impl ChatHandle {
    /// A room, for server-side sends and typed history:
    ///
    /// ```no_run
    /// # async fn run(chat: chat_tower::ChatHandle, room: chat_tower::chat_core::RoomId)
    /// # -> Result<(), chat_tower::chat_core::Error> {
    /// use chat_tower::chat_core::User;
    /// chat.room(&room).send("maintenance at noon").await?; // from the system user
    /// chat.room(&room).send_as(&User::new("bot", "Bot"), "beep").await?;
    /// let page = chat.room(&room).history(None, 50).await?; // typed RoomMessages
    /// # Ok(()) }
    /// ```
    ///
    /// See [`RoomHandle`] for each call's errors.
    pub fn room<'a>(&'a self, room: &'a RoomId) -> RoomHandle<'a> {
        self.chat().to_room(room)
    }

    /// A user, for server-side direct messages to every connection of theirs:
    /// `chat.user(&id).send("your export is ready").await?`. See [`UserHandle`].
    pub fn user<'a>(&'a self, user: &'a UserId) -> UserHandle<'a> {
        self.chat().to_user(user)
    }
}
