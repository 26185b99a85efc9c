//! Errors: [`BackendError`] from the broker and stores, [`Error`] from engine operations.

use crate::protocol::{ErrorCode, RoomId, UserId};

/// What a backend (broker, room store, presence, history) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend cannot be reached now (connection down, timed out).
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A history cursor (`before`, `since`) that this backend never issued.
    #[error("invalid message id cursor")]
    InvalidCursor,
    /// Data in the backend that this version cannot read.
    #[error("corrupt backend data: {0}")]
    Corrupt(String),
    /// An error from Redis.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Why a chat operation failed. Each variant maps to one contract [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not JSON, or not a known frame.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The connection has not joined the room.
    #[error("you have not joined room {0}")]
    NotInRoom(RoomId),
    /// No such room.
    #[error("room {0} not found")]
    RoomNotFound(RoomId),
    /// No such user.
    #[error("user {0} not found")]
    UserNotFound(UserId),
    /// The body is blank.
    #[error("the message body is empty")]
    EmptyBody,
    /// The body is too long.
    #[error("the message body is longer than {limit} characters")]
    BodyTooLarge {
        /// The configured limit, in characters.
        limit: usize,
    },
    /// The connection sends too fast.
    #[error("too many frames; at most {per_second} per second")]
    RateLimited {
        /// The configured sustained rate.
        per_second: u32,
    },
    /// The recipient has no connection anywhere.
    #[error("user {0} is not connected")]
    RecipientOffline(UserId),
    /// The policy said no.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The broker or a store is down: nothing was sent.
    #[error("the chat backend is unavailable, nothing was sent: {0}")]
    Unavailable(#[from] BackendError),
    /// The chat is shutting down and takes no new work.
    #[error("the chat is shutting down")]
    ShuttingDown,
}

impl Error {
    /// The contract error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadFrame(_) => ErrorCode::BadFrame,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::RoomNotFound(_) => ErrorCode::RoomNotFound,
            Self::UserNotFound(_) => ErrorCode::UserNotFound,
            Self::EmptyBody => ErrorCode::EmptyBody,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::RecipientOffline(_) => ErrorCode::RecipientOffline,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Unavailable(_) | Self::ShuttingDown => ErrorCode::Unavailable,
        }
    }
}
