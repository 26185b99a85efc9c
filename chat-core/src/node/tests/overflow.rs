//! The node's bounded event channel (`backend::events`): what overflows becomes a `resync`
//! to the rooms concerned, and nothing is lost from history.

use serde_json::Value;

use crate::node::*;
use crate::{
    backend::{
        memory::{MemoryCluster, MemoryConfig},
        store::Visibility,
    },
    protocol::User,
};

/// The frames queued for a connection so far, as JSON.
fn queued(conn: &Connection) -> Vec<Value> {
    std::iter::from_fn(|| conn.outbox().try_pop())
        .map(|bytes: bytes::Bytes| serde_json::from_slice(&bytes).unwrap())
        .collect()
}

#[tokio::test]
async fn an_overflowing_event_channel_resyncs_the_rooms_it_dropped_frames_of() {
    // Two events fit; the dispatcher (on this one thread) cannot run while we publish.
    let cluster = MemoryCluster::with_config(MemoryConfig {
        event_queue: 2,
        ..MemoryConfig::default()
    });
    let chat = Chat::new(cluster.node(), ChatConfig::default());
    let owner = Caller::member(User::new("owner", "Owner"));
    let room = chat
        .create_room(&owner, Some("busy".into()), Visibility::Public)
        .await
        .unwrap()
        .room_id;
    let quiet = chat
        .create_room(&owner, Some("quiet".into()), Visibility::Public)
        .await
        .unwrap()
        .room_id;
    let mut listener = chat.connect(owner.clone()).await.unwrap();
    listener.join(&room, None).await.unwrap();
    listener.join(&quiet, None).await.unwrap();
    // Let the `user_joined` events through before the burst.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let before = queued(&listener);
    assert!(before.iter().all(|f| f["type"] == "joined"), "{before:?}");

    for i in 0..10 {
        chat.to_room(&room).send(format!("m{i}")).await.unwrap();
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let frames = queued(&listener);
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    // The resync comes first, for the busy room only; the two that fitted follow in order.
    assert_eq!(types, ["resync", "message", "message"], "{frames:?}");
    assert_eq!(frames[0]["reason"], "node_overloaded");
    assert_eq!(frames[1]["body"], "m0");
    assert_eq!(frames[2]["body"], "m1");
    // Nothing is lost: the client reloads the history, which has all ten.
    let history = chat.room_history(&room, None, 50).await.unwrap();
    assert_eq!(history.messages.len(), 10);
    // The channel works as before once drained.
    chat.to_room(&quiet).send("after").await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let after = queued(&listener);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["body"], "after");
}
