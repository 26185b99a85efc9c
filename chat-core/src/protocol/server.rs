//! The frames the server sends: [`ServerFrame`] and its payloads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ErrorCode, MessageId, RoomId, User, UserId};

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

/// `{"type":"joined","room":R,"members":[...],"onlineCount":N}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinedFrame {
    /// The room joined.
    pub room: RoomId,
    /// The users online in the room now (including the joiner): at most 100 of them.
    pub members: Vec<User>,
    /// How many users are online in the room now, all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_count: Option<usize>,
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

/// `{"type":"ack","clientMsgId"?,"id","ts","held"?}`.
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
    /// Only on a direct message's ack, and only `true`: the recipient is not connected
    /// anywhere, so the message is held for them and delivered when a connection of theirs
    /// opens (addition to contract v2). Absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
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
    /// With `rate_limited`: milliseconds to wait before the request would pass (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `{"type":"resync","reason"}`: messages may have been missed (addition to v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResyncFrame {
    /// Why, e.g. `broker_reconnected`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
            retry_after_ms: None,
        });
        assert_eq!(
            std::str::from_utf8(&err.encode()).unwrap(),
            r#"{"type":"error","code":"recipient_offline","message":"m"}"#
        );
        let ack = ServerFrame::Ack(AckFrame {
            client_msg_id: Some("c".into()),
            id: "1".into(),
            ts: 2,
            held: false,
        });
        assert_eq!(
            std::str::from_utf8(&ack.encode()).unwrap(),
            r#"{"type":"ack","clientMsgId":"c","id":"1","ts":2}"#
        );
    }
}
