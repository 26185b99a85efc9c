//! The Pub/Sub payload of an envelope: `<node hex>:<conn>\n<frame JSON>`, written by every
//! publish (and by the scripts, which get the header as an argument) and read by the push
//! handler; and of a [`Control`] on a user's channel: `!<action>\n<argument>` (`!revoke\n`,
//! `!remove\n`, `!leave\n<room id>`). A node id is hex, so the first byte tells the two apart:
//! an envelope pays one byte comparison for controls to exist, and no JSON is parsed.

use std::fmt::Write as _;

use bytes::Bytes;

use super::keys::Keys;
use crate::{
    backend::broker::{BrokerEvent, Control, ControlAction, Envelope, NodeId, Origin, Topic},
    protocol::RoomId,
};

/// The first byte of a control payload (never the first of a node id's hex).
const CONTROL: u8 = b'!';

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

/// The payload of a control (its channel is its user's).
pub(super) fn control_payload(control: &Control) -> Vec<u8> {
    let text = match &control.action {
        ControlAction::Revoke => "!revoke\n".to_owned(),
        ControlAction::Remove => "!remove\n".to_owned(),
        ControlAction::Leave(room) => format!("!leave\n{room}"),
    };
    text.into_bytes()
}

/// The event in a message `payload` on `channel`: an envelope, or a control on a user's
/// channel. An envelope's frame is a view of `payload`: no copy of the bytes that every
/// recipient on this node will share.
pub(super) fn parse(keys: &Keys, channel: &[u8], payload: Vec<u8>) -> Option<BrokerEvent> {
    let topic = keys.topic(std::str::from_utf8(channel).ok()?)?;
    if payload.first() == Some(&CONTROL) {
        return parse_control(topic, &payload).map(BrokerEvent::Control);
    }
    parse_envelope(topic, payload).map(BrokerEvent::Envelope)
}

fn parse_control(topic: Topic, payload: &[u8]) -> Option<Control> {
    let Topic::User(user) = topic else {
        return None;
    };
    let text = std::str::from_utf8(payload.get(1..)?).ok()?;
    let (action, argument) = text.split_once('\n')?;
    let action = match (action, argument) {
        ("revoke", "") => ControlAction::Revoke,
        ("remove", "") => ControlAction::Remove,
        ("leave", room) if !room.is_empty() => ControlAction::Leave(RoomId::new(room)),
        _ => return None,
    };
    Some(Control { user, action })
}

fn parse_envelope(topic: Topic, payload: Vec<u8>) -> Option<Envelope> {
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
        let Some(BrokerEvent::Envelope(env)) = parse(&keys, b"p:room:{x}", payload) else {
            panic!("not an envelope");
        };
        assert_eq!(env.origin, origin);
        assert_eq!(&env.frame[..], br#"{"type":"left","room":"x"}"#);
        assert!(parse(&keys, b"p:room:{x}", b"garbage".to_vec()).is_none());
        let payload = format!("{}{{}}", header(origin)).into_bytes();
        assert!(parse(&keys, b"\xff", payload).is_none());
    }

    #[test]
    fn controls_round_trip_on_user_channels_only() {
        let keys = Keys::new("p");
        let user = crate::protocol::UserId::new("u:1");
        for action in [
            ControlAction::Revoke,
            ControlAction::Remove,
            ControlAction::Leave(RoomId::new("r-1")),
        ] {
            let control = Control {
                user: user.clone(),
                action,
            };
            let channel = keys.user_channel(&user);
            let Some(BrokerEvent::Control(back)) =
                parse(&keys, channel.as_bytes(), control_payload(&control))
            else {
                panic!("not a control: {control:?}");
            };
            assert_eq!(back, control);
            let on_room = parse(&keys, b"p:room:{x}", control_payload(&control));
            assert!(on_room.is_none(), "a control on a room channel");
        }
        for bad in [&b"!revoke"[..], b"!kick\n", b"!leave\n", b"!revoke\nx"] {
            assert!(parse(&keys, b"p:user:{u}", bad.to_vec()).is_none());
        }
    }
}
