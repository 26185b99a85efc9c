//! The frames a client sends: [`ClientFrame`] and its payloads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MessageId, RoomId, UserId};

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
}
