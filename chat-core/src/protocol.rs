//! The wire protocol, v1: identifiers, users and the WebSocket frames.
//!
//! Frames are JSON text frames tagged by `type` (see `CONTRACT.md`). Every type here derives
//! [`schemars::JsonSchema`], which is where the checked-in `openapi/ws-*.schema.json` files come
//! from. Unknown fields in client frames are ignored, so that newer clients can talk to older
//! servers; a client can never set a field the server owns (`from`, `id`, `ts`).

use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string without checking it.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
    };
}

string_id!(
    /// A room id: a UUID string for rooms created through the API. Client frames may carry
    /// any string; one that names no room is answered with `room_not_found`.
    RoomId
);
string_id!(
    /// A stable, unique user id, set by the host's identity hook (or the guest token).
    UserId
);
string_id!(
    /// A message id: unique within its room (or, for direct messages, globally) and opaque to
    /// clients. Room message ids come from the history append, so their order is the room's order.
    MessageId
);

/// A user: a stable id and a display name (not unique).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "5f0c9a9e-2d4b-4f1a-8c3e-7b6d5a4c3b21", "name": "alice"})))]
pub struct User {
    /// Stable, unique id.
    pub id: UserId,
    /// Display name.
    pub name: String,
}

impl User {
    /// A user from an id and a display name.
    pub fn new(id: impl Into<UserId>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
        }
    }
}

/// A frame sent by a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Join a room; the reply is `joined` (or `error`).
    Join(JoinFrame),
    /// Leave a room; the reply is `left` (or `error`).
    Leave(LeaveFrame),
    /// Post a message to a joined room; the reply is `ack` (or `error`).
    Message(SendMessageFrame),
    /// Send a private message to a user; the reply is `ack` (or `error`).
    Direct(SendDirectFrame),
}

/// `{"type":"join","room":R,"since"?:id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinFrame {
    /// The room to join.
    pub room: RoomId,
    /// Replay every room message after this id before live ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<MessageId>,
}

/// `{"type":"leave","room":R}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaveFrame {
    /// The room to leave.
    pub room: RoomId,
}

/// `{"type":"message","room":R,"body":text,"clientMsgId"?:string}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageFrame {
    /// A room this connection has joined.
    pub room: RoomId,
    /// The text (not HTML). Must not be blank; at most the configured number of characters.
    pub body: String,
    /// Echoed in the `ack` or `error` that answers this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// `{"type":"direct","to":userId,"body":text,"clientMsgId"?:string}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendDirectFrame {
    /// The recipient's user id.
    pub to: UserId,
    /// The text (not HTML).
    pub body: String,
    /// Echoed in the `ack` or `error` that answers this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The reply to `join`.
    Joined(JoinedFrame),
    /// The reply to `leave`.
    Left(LeftFrame),
    /// A room message.
    Message(RoomMessage),
    /// A private message.
    Direct(DirectMessage),
    /// A user joined or left a room.
    System(SystemMessage),
    /// The sender's confirmation that its `message` or `direct` was accepted and published.
    Ack(AckFrame),
    /// A request failed; the connection stays open.
    Error(ErrorFrame),
    /// The server may have missed messages for the connection's rooms (for example while its
    /// broker reconnected). Clients that care re-join with `since` or reload history.
    /// An addition to contract v1.
    Resync(ResyncFrame),
}

impl ServerFrame {
    /// Serializes the frame once, to the bytes of a JSON text frame.
    pub fn encode(&self) -> Bytes {
        // Serializing these plain structs to a Vec cannot fail: no maps with non-string keys,
        // no custom Serialize impls that return errors.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `{"type":"joined","room":R,"members":[...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JoinedFrame {
    /// The room joined.
    pub room: RoomId,
    /// The users online in the room now (including the joiner).
    pub members: Vec<User>,
}

/// `{"type":"left","room":R}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeftFrame {
    /// The room left.
    pub room: RoomId,
}

/// A room message, as delivered and as kept in history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomMessage {
    /// Unique within the room; opaque.
    pub id: MessageId,
    /// The room.
    pub room: RoomId,
    /// The sender, set by the server from the sender's identity.
    pub from: User,
    /// The text (not HTML).
    pub body: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
}

/// A private message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DirectMessage {
    /// Unique; opaque.
    pub id: MessageId,
    /// The sender, set by the server.
    pub from: User,
    /// The recipient's user id.
    pub to: UserId,
    /// The text (not HTML).
    pub body: String,
    /// Unix epoch milliseconds.
    pub ts: i64,
}

/// A membership change in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    /// The user's first connection entered the room (anywhere in the cluster).
    UserJoined,
    /// The user's last connection left the room or disconnected.
    UserLeft,
}

/// `{"type":"system","room","event","user","ts"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SystemMessage {
    /// The room.
    pub room: RoomId,
    /// What happened.
    pub event: SystemEvent,
    /// Who it happened to.
    pub user: User,
    /// Unix epoch milliseconds.
    pub ts: i64,
}

/// `{"type":"ack","clientMsgId"?,"id","ts"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AckFrame {
    /// The `clientMsgId` of the frame this acknowledges, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// The server-assigned message id.
    pub id: MessageId,
    /// The server timestamp of the message, Unix epoch milliseconds.
    pub ts: i64,
}

/// `{"type":"error","code","message","clientMsgId"?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFrame {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// The `clientMsgId` of the frame that failed, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// `{"type":"resync","reason"}`: messages may have been missed (addition to v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResyncFrame {
    /// Why, e.g. `broker_reconnected`.
    pub reason: String,
}

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
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The room and id of a serialized room `message` frame; `None` for any other frame.
pub(crate) fn message_key(frame: &[u8]) -> Option<(RoomId, String)> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
        room: Option<RoomId>,
    }
    let probe: Probe = serde_json::from_slice(frame).ok()?;
    if probe.kind != "message" {
        return None;
    }
    Some((probe.room?, probe.id?))
}

/// WebSocket close codes the server uses.
pub mod close_code {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer did not answer pings.
    pub const POLICY: u16 = 1008;
    /// A frame was larger than the configured limit.
    pub const TOO_BIG: u16 = 1009;
    /// The connection could not keep up: its outgoing queue stayed full.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// Unix epoch milliseconds now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_as_in_the_contract() {
        let f: ClientFrame = serde_json::from_str(r#"{"type":"join","room":"r1"}"#).unwrap();
        assert_eq!(
            f,
            ClientFrame::Join(JoinFrame {
                room: "r1".into(),
                since: None
            })
        );
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"message","room":"r","body":"hi","clientMsgId":"c1","from":{"id":"x","name":"y"}}"#,
        )
        .unwrap();
        assert_eq!(
            f,
            ClientFrame::Message(SendMessageFrame {
                room: "r".into(),
                body: "hi".into(),
                client_msg_id: Some("c1".into())
            })
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"direct","body":"x"}"#).is_err());
    }

    #[test]
    fn server_frames_serialize_as_in_the_contract() {
        let frame = ServerFrame::Message(RoomMessage {
            id: "7".into(),
            room: "r".into(),
            from: User::new("u1", "Ann"),
            body: "hi".into(),
            ts: 5,
        });
        assert_eq!(
            std::str::from_utf8(&frame.encode()).unwrap(),
            r#"{"type":"message","id":"7","room":"r","from":{"id":"u1","name":"Ann"},"body":"hi","ts":5}"#
        );
        let err = ServerFrame::Error(ErrorFrame {
            code: ErrorCode::RecipientOffline,
            message: "m".into(),
            client_msg_id: None,
        });
        assert_eq!(
            std::str::from_utf8(&err.encode()).unwrap(),
            r#"{"type":"error","code":"recipient_offline","message":"m"}"#
        );
        let ack = ServerFrame::Ack(AckFrame {
            client_msg_id: Some("c".into()),
            id: "1".into(),
            ts: 2,
        });
        assert_eq!(
            std::str::from_utf8(&ack.encode()).unwrap(),
            r#"{"type":"ack","clientMsgId":"c","id":"1","ts":2}"#
        );
    }

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
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
