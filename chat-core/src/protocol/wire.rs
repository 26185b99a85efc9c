//! Frames as bytes: the one place that turns a frame into the bytes of a JSON text frame, and
//! reads back what the engine needs from such bytes.

use bytes::Bytes;
use serde::Deserialize;

use super::{RoomId, ServerFrame};

impl ServerFrame {
    /// Serializes the frame once, to the bytes of a JSON text frame.
    pub fn encode(&self) -> Bytes {
        // Serializing these plain structs to a Vec cannot fail: no maps with non-string keys,
        // no custom Serialize impls that return errors.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
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
