//! Feeds arbitrary bytes to the frame decoder and the session's frame handling, as text (the
//! WebSocket layer only hands valid UTF-8 text to the session; other bytes arrive as binary
//! frames, answered with `bad_frame` before decoding). Every input must get exactly one reply
//! that is a well-formed server frame, and must not panic.
#![no_main]

use std::{cell::RefCell, sync::Arc};

use chat_core::{
    backend::memory::MemoryCluster, hooks::DefaultPolicy, protocol::ServerFrame, protocol::User,
    __private::handle_text, Chat, ChatConfig, Connection,
};
use libfuzzer_sys::fuzz_target;

struct World {
    rt: tokio::runtime::Runtime,
    conn: Connection,
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fn world() -> World {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conn = rt.block_on(async {
        let config = ChatConfig { rate_per_second: u32::MAX, rate_burst: u32::MAX, ..ChatConfig::default() };
        let chat = Chat::with_policy(MemoryCluster::new().node(), config, Arc::new(DefaultPolicy));
        let room = chat.open_room(Some("fuzz".into()), chat_core::backend::store::Visibility::Public).await.unwrap().room_id;
        let mut conn = chat.connect(User::new("f", "F")).await.unwrap();
        conn.join(&room, None).await.unwrap();
        while conn.try_next_frame().is_some() {}
        conn
    });
    World { rt, conn }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        let w = w.get_or_insert_with(world);
        w.rt.block_on(handle_text(&mut w.conn, &text));
        let mut replies = 0;
        while let Some(frame) = w.conn.try_next_frame() {
            serde_check(&frame);
            replies += 1;
        }
        assert_eq!(replies, 1, "input {text:?} got {replies} replies");
    });
});

fn serde_check(frame: &[u8]) {
    if let Err(err) = serde_json::from_slice::<ServerFrame>(frame) {
        panic!("malformed server frame {:?}: {err}", String::from_utf8_lossy(frame));
    }
}
