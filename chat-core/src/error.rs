//! Errors: [`BackendError`] from the broker and stores, [`Error`] from engine operations.

use std::time::Duration;

pub use crate::limits::Limit;
use crate::protocol::{ErrorCode, RoomId, UserId};

/// A wait in whole milliseconds, rounded up (so that waiting that long is enough), at least 1.
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

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
    /// The history archive failed (`crate::archive`): unreachable, or it refused a statement.
    #[error("archive: {0}")]
    Archive(String),
    /// Not a failure: the user is over a [`crate::Quota`] the backend counts for every node
    /// (`ChatConfig::shared_user_limits`), so nothing was done. Becomes
    /// [`Error::RateLimited`], never `unavailable`.
    #[error("over the shared limit of {limit}; retry in {} ms", retry_after_ms(*retry_after))]
    OverQuota {
        /// Which limit.
        limit: Limit,
        /// How long until one is due.
        retry_after: Duration,
    },
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
    /// Over a per-user limit ([`Limit`]): nothing was done; try again after `retry_after`.
    #[error("too many {limit}; retry in {} ms", retry_after_ms(*retry_after))]
    RateLimited {
        /// Which limit.
        limit: Limit,
        /// How long until the request would pass.
        retry_after: Duration,
    },
    /// The recipient has no connection anywhere.
    #[error("user {0} is not connected")]
    RecipientOffline(UserId),
    /// The recipient has no connection anywhere and as many direct messages waiting for them
    /// as the chat keeps (`ChatConfig::held_directs_per_user`): nothing was sent.
    #[error("user {0} is not connected and has too many messages waiting")]
    InboxFull(UserId),
    /// The policy said no.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The broker or a store did not answer. Refused at once (the backend is down): nothing
    /// was sent. Timed out: it may have been carried out all the same (a message published);
    /// a message retried with the same `clientMsgId` is deduplicated, so the retry gets the
    /// first copy's `ack` and nobody gets it twice.
    #[error(
        "the chat backend is unavailable (a call that timed out may have been carried out): {0}"
    )]
    Unavailable(BackendError),
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
    /// How long to wait before trying again, for [`Error::RateLimited`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

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
            Self::InboxFull(_) => ErrorCode::InboxFull,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Unavailable(_) | Self::ShuttingDown => ErrorCode::Unavailable,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
        }
    }
}

/// A new correlation id: it ties what a client is told about a failure (which never holds the
/// backend's own text: it may name hosts, keys or Redis internals) to the log line that holds
/// the real error. 32 hex digits, random.
pub fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a client may be told about an [`Error`] ([`Error::for_client`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientError {
    /// The contract error code.
    pub code: ErrorCode,
    /// A message for people: the error's own text, or for a backend failure a generic text
    /// that names the correlation id.
    pub message: String,
    /// For a backend failure: the id under which the real error was logged.
    pub correlation_id: Option<String>,
}

impl From<BackendError> for Error {
    /// [`Error::Unavailable`], but for [`BackendError::OverQuota`], which is
    /// [`Error::RateLimited`] (and counted as such in the metrics).
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::OverQuota { limit, retry_after } => {
                crate::metrics::metrics().rate_limited(limit);
                Self::RateLimited { limit, retry_after }
            }
            err => Self::Unavailable(err),
        }
    }
}

impl Error {
    /// Whether this is a failure of the backend (or of the node), whose text must not reach a
    /// client: [`Error::Unavailable`] but for a bad cursor, which is the client's mistake.
    pub fn is_backend_failure(&self) -> bool {
        matches!(self, Self::Unavailable(err) if !matches!(err, BackendError::InvalidCursor))
    }

    /// What a client may be told. A backend failure ([`Error::is_backend_failure`]) is logged
    /// here at `error` level with its cause and a new correlation id, and the client gets
    /// `unavailable` with a generic message that names the id; any other error is told as it
    /// is (its text holds only what the client sent and the contract's words).
    pub fn for_client(&self) -> ClientError {
        if self.is_backend_failure() {
            let id = new_correlation_id();
            tracing::error!(correlation_id = %id, cause = %self, "backend failure");
            return ClientError {
                code: self.code(),
                message: format!(
                    "the chat backend is unavailable; try again (correlation id {id})"
                ),
                correlation_id: Some(id),
            };
        }
        ClientError {
            code: self.code(),
            message: self.to_string(),
            correlation_id: None,
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn a_backend_failure_is_told_without_its_text() {
        let err = Error::Unavailable(BackendError::Unavailable("10.0.0.7:6379 NOAUTH".into()));
        let told = err.for_client();
        assert_eq!(told.code, ErrorCode::Unavailable);
        let id = told.correlation_id.expect("a correlation id");
        assert_eq!(id.len(), 32);
        assert!(told.message.contains(&id), "{}", told.message);
        assert!(!told.message.contains("NOAUTH") && !told.message.contains("6379"));
        let cursor = Error::Unavailable(BackendError::InvalidCursor).for_client();
        assert_eq!(cursor.correlation_id, None);
        let empty = Error::EmptyBody.for_client();
        assert_eq!(
            (empty.code, empty.correlation_id),
            (ErrorCode::EmptyBody, None)
        );
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
