//! Error codes (in `error` frames) and WebSocket close codes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The error codes of contract v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a known frame.
    BadFrame,
    /// The connection has not joined that room.
    NotInRoom,
    /// No room with that id.
    RoomNotFound,
    /// No user with that id.
    UserNotFound,
    /// The body is empty or only whitespace.
    EmptyBody,
    /// The body is longer than the configured limit.
    BodyTooLarge,
    /// Too many frames; slow down.
    RateLimited,
    /// The recipient of a direct message is not connected anywhere.
    RecipientOffline,
    /// The policy does not allow this.
    Forbidden,
    /// The broker is down: the message was not sent.
    Unavailable,
    /// The room has as many members as it may have; a new member is refused.
    RoomFull,
    /// The recipient of a direct message is not connected anywhere and has as many messages
    /// waiting for them as the server keeps: nothing was sent.
    InboxFull,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::NotInRoom => "not_in_room",
            Self::RoomNotFound => "room_not_found",
            Self::UserNotFound => "user_not_found",
            Self::EmptyBody => "empty_body",
            Self::BodyTooLarge => "body_too_large",
            Self::RateLimited => "rate_limited",
            Self::RecipientOffline => "recipient_offline",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::RoomFull => "room_full",
            Self::InboxFull => "inbox_full",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server uses.
pub mod close_code {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer did not answer pings.
    pub const POLICY: u16 = 1008;
    /// This instance is draining: reconnect (to another instance) (contract v2).
    pub const DRAINING: u16 = 1012;
    /// A frame was larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// The connection could not keep up: its outgoing queue stayed full.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The token expired or the user's access was revoked while connected.
    pub const REVOKED: u16 = 4401;
    /// The host removed the user.
    pub const REMOVED: u16 = 4403;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_strings_match_serde() {
        for code in [
            ErrorCode::BadFrame,
            ErrorCode::NotInRoom,
            ErrorCode::RoomNotFound,
            ErrorCode::UserNotFound,
            ErrorCode::EmptyBody,
            ErrorCode::BodyTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::RecipientOffline,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
            ErrorCode::RoomFull,
            ErrorCode::InboxFull,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
