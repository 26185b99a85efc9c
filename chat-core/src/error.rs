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
    /// An error from Redis. Its type is this crate's [`RedisError`], so that the redis crate's
    /// version is no part of this API.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[source] RedisError),
}

#[cfg(feature = "redis")]
impl BackendError {
    /// Wraps an error of the redis crate. Crate-private: a public `From` would put the redis
    /// crate's type into this API.
    pub(crate) fn redis(err: redis::RedisError) -> Self {
        Self::Redis(RedisError(err))
    }
}

/// An error from the Redis client, opaque. It displays and debugs as the client's own error,
/// and its `source()` is the client error's source.
#[cfg(feature = "redis")]
pub struct RedisError(redis::RedisError);

#[cfg(feature = "redis")]
impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(feature = "redis")]
impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
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
    /// The body is blank (empty, or only invisible characters).
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
    /// A page cursor that this chat never issued.
    #[error("invalid cursor: pass the `nextCursor` of the previous page, or none")]
    BadCursor,
    /// The chat is shutting down and takes no new work.
    #[error("the chat is shutting down")]
    ShuttingDown,
    /// The room has as many members as it may have (`ChatConfig::max_members_per_room`).
    #[error("room {room} is full: it has {limit} members")]
    RoomFull {
        /// The room.
        room: RoomId,
        /// The configured cap.
        limit: usize,
    },
}

impl Error {
    /// The contract error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadFrame(_) | Self::BadCursor => ErrorCode::BadFrame,
            Self::NotInRoom(_) => ErrorCode::NotInRoom,
            Self::RoomNotFound(_) => ErrorCode::RoomNotFound,
            Self::UserNotFound(_) => ErrorCode::UserNotFound,
            Self::EmptyBody => ErrorCode::EmptyBody,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::RecipientOffline(_) => ErrorCode::RecipientOffline,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Unavailable(_) | Self::ShuttingDown => ErrorCode::Unavailable,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    #[test]
    fn a_redis_error_reads_as_before() {
        let client = || redis::RedisError::from(std::io::Error::other("boom"));
        let err = BackendError::redis(client());
        assert_eq!(err.to_string(), format!("redis: {}", client()));
        assert_eq!(format!("{err:?}"), format!("Redis({:?})", client()));
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source, Some(client().to_string()));
    }
}
