//! The Redis history store: each room's stream (`:log`), entry ids as message ids.

use bytes::Bytes;
use redis::AsyncCommands;

use super::RedisNode;
use crate::{
    backend::{
        history::{HistoryPage, HistoryStore},
        BoxFuture,
    },
    error::BackendError,
    protocol::{MessageId, RoomId},
};

/// Rebuilds the frame of a stream entry: the same bytes the script published.
fn frame_of(id: &str, rest: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(30 + id.len() + rest.len());
    frame.extend_from_slice(br#"{"type":"message","id":""#);
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\",");
    frame.extend_from_slice(rest);
    Bytes::from(frame)
}

/// A stream id (`ms-seq`), or `InvalidCursor`.
fn stream_id(id: &MessageId) -> Result<&str, BackendError> {
    let s = id.as_str();
    let (ms, seq) = s.split_once('-').ok_or(BackendError::InvalidCursor)?;
    if ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok() {
        Ok(s)
    } else {
        Err(BackendError::InvalidCursor)
    }
}

type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;

fn entry_frames(entries: Entries) -> Vec<(String, Bytes)> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let rest = fields.into_iter().find(|(k, _)| k == "r")?.1;
            let frame = frame_of(&id, &rest);
            Some((id, frame))
        })
        .collect()
}

impl HistoryStore for RedisNode {
    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, BackendError>> {
        Box::pin(async move {
            let end = match before {
                Some(id) => format!("({}", stream_id(id)?),
                None => "+".to_owned(),
            };
            let entries: Entries = self
                .conn()
                .xrevrange_count(self.shared.keys.room_key(room, "log"), end, "-", limit + 1)
                .await?;
            let mut frames = entry_frames(entries);
            let more = frames.len() > limit;
            frames.truncate(limit);
            frames.reverse();
            let next_before = if more {
                frames.first().map(|(id, _)| MessageId::new(id.as_str()))
            } else {
                None
            };
            Ok(HistoryPage {
                messages: frames.into_iter().map(|(_, f)| f).collect(),
                next_before,
            })
        })
    }

    fn after<'a>(
        &'a self,
        room: &'a RoomId,
        after: &'a MessageId,
        limit: usize,
    ) -> BoxFuture<'a, Result<(Vec<Bytes>, bool), BackendError>> {
        Box::pin(async move {
            let start = format!("({}", stream_id(after)?);
            let entries: Entries = self
                .conn()
                .xrange_count(
                    self.shared.keys.room_key(room, "log"),
                    start,
                    "+",
                    limit + 1,
                )
                .await?;
            let mut frames = entry_frames(entries);
            let more = frames.len() > limit;
            frames.truncate(limit);
            Ok((frames.into_iter().map(|(_, f)| f).collect(), more))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        backend::broker::{NewRoomMessage, NodeId, Origin},
        protocol::{RoomMessage, ServerFrame, User},
    };

    #[test]
    fn stream_frames_match_published_frames() {
        let message = NewRoomMessage {
            origin: Origin {
                node: NodeId::random(),
                conn: 1,
            },
            room: RoomId::new("r"),
            from: User::new("u", "U \"quoted\""),
            body: "hi\n".into(),
            ts: 5,
        };
        let rest = super::super::pubsub::frame_rest(&message);
        let frame = frame_of("1-0", rest.as_bytes());
        let parsed: ServerFrame = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            parsed,
            ServerFrame::Message(RoomMessage {
                id: MessageId::new("1-0"),
                room: message.room,
                from: message.from,
                body: message.body,
                ts: 5
            })
        );
        assert!(stream_id(&MessageId::new("12-3")).is_ok());
        assert!(stream_id(&MessageId::new("12")).is_err());
        assert!(stream_id(&MessageId::new("a-b")).is_err());
    }
}
