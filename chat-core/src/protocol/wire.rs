//! Frames as bytes: the one place that turns a frame into the bytes of a JSON text frame, and
//! reads back what the engine needs from such bytes.
//!
//! A room message's id comes from the history append, so a backend may have to encode the
//! message before the id exists. It encodes [`Unnumbered`] and splices the id in:
//! `frame = BEFORE_ID + id + AFTER_ID + rest`. The memory backend does it here
//! ([`room_message`]); the Redis script only concatenates those pieces, passed as arguments,
//! around the stream entry id, and the Redis history rebuilds the same bytes with [`splice`].
//! The tests prove the result equals serde's encoding of [`ServerFrame::Message`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{RoomId, ServerFrame, User};

impl ServerFrame {
    /// Serializes the frame once, to the bytes of a JSON text frame.
    pub fn encode(&self) -> Bytes {
        // Serializing these plain structs to a Vec cannot fail: no maps with non-string keys,
        // no custom Serialize impls that return errors.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A room message frame up to its id.
pub(crate) const BEFORE_ID: &str = r#"{"type":"message","id":""#;
#[cfg(any(feature = "redis", test))]
/// Between the id and the rest of a room message frame.
pub(crate) const AFTER_ID: &str = r#"","#;

/// The fields of a room message after its id, in the order serde writes
/// [`super::RoomMessage`].
#[derive(Serialize)]
struct AfterId<'a> {
    room: &'a RoomId,
    from: &'a User,
    body: &'a str,
    ts: i64,
}

impl AfterId<'_> {
    /// About how many bytes [`AfterId::write`] writes (exact unless a string needs escaping),
    /// so that the buffer is allocated once.
    fn len_hint(&self) -> usize {
        // `{"room":"","from":{"id":"","name":""},"body":"","ts":}` and an i64.
        const FIXED: usize = 56 + 20;
        FIXED
            + self.room.as_str().len()
            + self.from.id.as_str().len()
            + self.from.name.len()
            + self.body.len()
    }

    /// Appends `{"room":…,"ts":…}` to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        // Writing these plain structs to a Vec cannot fail (see `ServerFrame::encode`).
        let _ = serde_json::to_writer(out, self);
    }
}

#[cfg(any(feature = "redis", test))]
/// A room message encoded without its id, for a backend whose history assigns the id.
pub(crate) struct Unnumbered(Vec<u8>);

#[cfg(any(feature = "redis", test))]
impl Unnumbered {
    pub(crate) fn new(room: &RoomId, from: &User, body: &str, ts: i64) -> Self {
        let fields = AfterId {
            room,
            from,
            body,
            ts,
        };
        let mut json = Vec::with_capacity(fields.len_hint());
        fields.write(&mut json);
        Self(json)
    }

    /// What follows [`AFTER_ID`] in the frame (the fields after the id and the closing brace):
    /// what a history stores to splice the id into later.
    pub(crate) fn rest(&self) -> &[u8] {
        // Without the opening brace: the frame's own opened before the id.
        self.0.get(1..).unwrap_or_default()
    }
}

#[cfg(any(feature = "redis", test))]
/// The frame of room message `id` whose [`Unnumbered::rest`] is `rest`. Ids come from the
/// backends (digits and `-`) and are not escaped.
pub(crate) fn splice(id: &str, rest: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(BEFORE_ID.len() + id.len() + AFTER_ID.len() + rest.len());
    frame.extend_from_slice(BEFORE_ID.as_bytes());
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(AFTER_ID.as_bytes());
    frame.extend_from_slice(rest);
    Bytes::from(frame)
}

/// The frame of a room message whose id is known, in one buffer: the same bytes as
/// [`splice`] of its [`Unnumbered::rest`]. The id is not escaped (see [`splice`]).
pub(crate) fn room_message(id: &str, room: &RoomId, from: &User, body: &str, ts: i64) -> Bytes {
    let fields = AfterId {
        room,
        from,
        body,
        ts,
    };
    let mut frame = Vec::with_capacity(BEFORE_ID.len() + id.len() + 1 + fields.len_hint());
    frame.extend_from_slice(BEFORE_ID.as_bytes());
    frame.extend_from_slice(id.as_bytes());
    frame.push(b'"');
    let brace = frame.len();
    fields.write(&mut frame);
    // The fields' own `{` becomes the `,` of AFTER_ID: `"` + `,`.
    frame[brace] = b',';
    Bytes::from(frame)
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

/// The id of a `direct` frame, or `None` for any other frame.
pub(crate) fn direct_key(frame: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "type")]
        kind: String,
        id: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(frame).ok()?;
    (probe.kind == "direct").then_some(probe.id).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RoomMessage;

    #[test]
    fn spliced_room_messages_are_serdes_bytes() {
        let room = RoomId::new("r \"1\"");
        let from = User::new("u", "Ann \"quoted\" \\ é");
        let body = "hi\n\t</script> ✓";
        for id in ["1", "1732874400000-0", "42-7"] {
            let serde = ServerFrame::Message(RoomMessage {
                id: id.into(),
                room: room.clone(),
                from: from.clone(),
                body: body.into(),
                ts: -5,
            })
            .encode();
            let unnumbered = Unnumbered::new(&room, &from, body, -5);
            assert_eq!(splice(id, unnumbered.rest()), serde);
            assert_eq!(room_message(id, &room, &from, body, -5), serde);
            // What the Redis script publishes after the envelope header: the same pieces.
            let lua = [BEFORE_ID.as_bytes(), id.as_bytes(), AFTER_ID.as_bytes()].concat();
            assert_eq!([&lua[..], unnumbered.rest()].concat(), serde);
            assert_eq!(message_key(&serde), Some((room.clone(), id.to_owned())));
            // Allocated once: the hint covers the unescaped fields.
            let plain = Unnumbered::new(&RoomId::new("r"), &User::new("u", "n"), "b", i64::MIN);
            assert!(plain.0.len() <= plain.0.capacity() && plain.0.capacity() < plain.0.len() + 8);
        }
    }
}
