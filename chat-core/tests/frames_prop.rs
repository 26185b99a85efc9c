//! Property test: whatever a client sends, the server answers with exactly one well-formed
//! frame (a reply or an `error`), never panics, and the connection keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chat_core::{
    __private::handle_text,
    backend::memory::MemoryCluster,
    hooks::DefaultPolicy,
    protocol::{ServerFrame, User},
    Chat, ChatConfig, Connection, RoomId,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Frames shaped like the protocol's, with wrong or odd values in the fields.
fn arb_framish() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        Just("join"),
        Just("leave"),
        Just("message"),
        Just("direct"),
        Just("ack"),
        Just("JOIN"),
        Just("")
    ];
    let string_or_any = || prop_oneof![".{0,20}".prop_map(Value::from), arb_json()];
    (
        ty,
        string_or_any(),
        string_or_any(),
        string_or_any(),
        string_or_any(),
        string_or_any(),
    )
        .prop_map(|(ty, room, body, to, id, since)| {
            json!({"type": ty, "room": room, "body": body, "to": to, "clientMsgId": id, "since": since})
        })
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    conn: Connection,
    room: RoomId,
}

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (conn, room) = rt.block_on(async {
        let config = ChatConfig {
            rate_per_second: 1_000_000,
            rate_burst: 1_000_000,
            ..ChatConfig::default()
        };
        let chat = Chat::with_policy(MemoryCluster::new().node(), config, Arc::new(DefaultPolicy));
        let room = chat
            .open_room(None, chat_core::backend::store::Visibility::Public)
            .await
            .unwrap()
            .room_id;
        let mut conn = chat.connect(User::new("p", "P")).await.unwrap();
        conn.join(&room, None).await.unwrap();
        let _joined = conn.try_next_frame().unwrap();
        (conn, room)
    });
    Fixture { rt, conn, room }
}

/// Sends `text`; asserts exactly one reply that parses as a server frame, and returns it.
fn one_reply(f: &mut Fixture, text: &str) -> ServerFrame {
    f.rt.block_on(handle_text(&mut f.conn, text));
    let mut replies = Vec::new();
    while let Some(frame) = f.conn.try_next_frame() {
        replies.push(serde_json::from_slice::<ServerFrame>(&frame).unwrap());
    }
    assert_eq!(replies.len(), 1, "for {text:?}: {replies:?}");
    replies.pop().unwrap()
}

fn still_works(f: &mut Fixture) {
    let room = f.room.to_string();
    let ok = one_reply(
        f,
        &json!({"type":"message","room":room,"body":"ok"}).to_string(),
    );
    assert!(matches!(ok, ServerFrame::Ack(_)), "{ok:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut f = fixture();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let reply = one_reply(&mut f, &text);
        prop_assert!(matches!(reply, ServerFrame::Error(_)), "{reply:?}");
        still_works(&mut f);
    }

    #[test]
    fn arbitrary_json(value in arb_json()) {
        let mut f = fixture();
        let reply = one_reply(&mut f, &value.to_string());
        prop_assert!(matches!(reply, ServerFrame::Error(_)), "{reply:?}");
        still_works(&mut f);
    }

    #[test]
    fn protocol_shaped_frames(value in arb_framish(), use_room in any::<bool>()) {
        let mut f = fixture();
        let mut value = value;
        if use_room {
            value["room"] = Value::from(f.room.to_string());
        }
        let reply = one_reply(&mut f, &value.to_string());
        prop_assert!(matches!(
            reply,
            ServerFrame::Error(_) | ServerFrame::Ack(_) | ServerFrame::Joined(_) | ServerFrame::Left(_)
        ));
        if !matches!(reply, ServerFrame::Left(_)) {
            still_works(&mut f);
        }
    }
}
