//! History for the host: pages of a room's messages as typed [`RoomMessage`]s.
//!
//! The REST endpoint splices the stored frames into its response as they are (no parse, no
//! re-encode); a host that wants to look at the messages gets them decoded here.

use serde::{Deserialize, Serialize};

use super::Chat;
use crate::{
    error::{BackendError, Error},
    protocol::{MessageId, RoomId, RoomMessage, ServerFrame},
};

/// A page of a room's history, oldest first ([`Chat::room_history`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<RoomMessage>,
    /// Pass as `before` for the page before this one; `None` at the start of the history.
    pub next_before: Option<MessageId>,
}

impl Chat {
    /// A page of `room`'s history as typed messages, oldest first: up to `limit` messages
    /// (clamped to 1..=[`ChatConfig::history_page_max`](crate::ChatConfig::history_page_max))
    /// older than `before`, or the newest without it. For the host: no policy is asked (a
    /// client's read goes through [`Chat::history`]). Page backwards with `next_before`.
    ///
    /// # Errors
    /// [`Error::RoomNotFound`]; [`Error::BadCursor`] for a `before` this chat never issued;
    /// [`Error::Unavailable`] if the backend is down, or holds an entry that is not a room
    /// message (`BackendError::Corrupt`).
    pub async fn room_history(
        &self,
        room: &RoomId,
        before: Option<&MessageId>,
        limit: usize,
    ) -> Result<MessagePage, Error> {
        self.room_info(room).await?;
        let limit = limit.clamp(1, self.config().history_page_max);
        let page = self
            .backend()
            .history
            .page(room, before, limit)
            .await
            .map_err(|err| match err {
                BackendError::InvalidCursor => Error::BadCursor,
                other => other.into(),
            })?;
        let messages = page
            .messages
            .iter()
            .map(|frame| match serde_json::from_slice(frame) {
                Ok(ServerFrame::Message(message)) => Ok(message),
                Ok(_) => Err(BackendError::Corrupt(format!(
                    "a history entry of room {room} is not a room message"
                ))),
                Err(err) => Err(BackendError::Corrupt(format!(
                    "a history entry of room {room}: {err}"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(MessagePage {
            messages,
            next_before: page.next_before,
        })
    }
}
