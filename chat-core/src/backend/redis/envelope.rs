//! The Pub/Sub payload of an envelope: `<node hex>:<conn>\n<frame JSON>`, written by every
//! publish (and by the scripts, which get the header as an argument) and read by the push
//! handler.

use std::fmt::Write as _;

use bytes::Bytes;

use super::keys::Keys;
use crate::backend::broker::{Envelope, NodeId, Origin};

/// The header in front of the frame, with room for a room message's head to follow it (the
/// append-and-publish script gets both as one argument).
pub(super) fn header(origin: Origin) -> String {
    let mut header = String::with_capacity(96);
    // Writing to a String cannot fail. No connection is 0 on the wire (connection ids start
    // at 1).
    let _ = writeln!(header, "{}:{}", origin.node, origin.conn.unwrap_or(0));
    header
}

/// The payload of `frame` published by `origin`: header, then the frame.
pub(super) fn payload(origin: Origin, frame: &[u8]) -> Vec<u8> {
    let header = header(origin);
    let mut payload = Vec::with_capacity(header.len() + frame.len());
    payload.extend_from_slice(header.as_bytes());
    payload.extend_from_slice(frame);
    payload
}

/// The envelope in a message `payload` on `channel`. The frame is a view of `payload`: no copy
/// of the bytes that every recipient on this node will share.
pub(super) fn parse(keys: &Keys, channel: &[u8], payload: Vec<u8>) -> Option<Envelope> {
    let topic = keys.topic(std::str::from_utf8(channel).ok()?)?;
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..newline]).ok()?;
    let (node, conn) = header.split_once(':')?;
    let origin = Origin {
        node: NodeId(uuid::Uuid::parse_str(node).ok()?),
        conn: Some(conn.parse().ok()?).filter(|&conn: &u64| conn != 0),
    };
    Some(Envelope {
        origin,
        topic,
        frame: Bytes::from(payload).slice(newline + 1..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_to_envelopes() {
        let keys = Keys::new("p");
        let origin = Origin {
            node: NodeId::random(),
            conn: Some(7),
        };
        let payload = payload(origin, br#"{"type":"left","room":"x"}"#);
        let env = parse(&keys, b"p:room:{x}", payload).unwrap();
        assert_eq!(env.origin, origin);
        assert_eq!(&env.frame[..], br#"{"type":"left","room":"x"}"#);
        assert!(parse(&keys, b"p:room:{x}", b"garbage".to_vec()).is_none());
        let payload = format!("{}{{}}", header(origin)).into_bytes();
        assert!(parse(&keys, b"\xff", payload).is_none());
    }
}
