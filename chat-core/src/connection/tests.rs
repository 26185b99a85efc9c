use std::sync::{atomic::Ordering, Arc};

use super::*;
use crate::{
    backend::memory::MemoryCluster,
    config::ChatConfig,
    fanout::Alarm,
    protocol::{SendMessageFrame, SystemEvent},
    session::SessionEnd,
};

async fn chat_with_room() -> (Chat, RoomId) {
    let chat = Chat::with_policy(
        MemoryCluster::new().node(),
        ChatConfig::default(),
        Arc::new(crate::hooks::DefaultPolicy),
    );
    let room = chat
        .open_room(Some("r".into()), crate::backend::store::Visibility::Public)
        .await
        .unwrap()
        .room_id;
    (chat, room)
}

/// Counts wake-ups.
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn end_signal_wakes_the_latest_waker_and_shutdown_wins_over_slow() {
    use std::{future::Future, pin::Pin, task::Poll};
    let (chat, _room) = chat_with_room().await;
    let conn = chat.connect(User::new("a", "A")).await.unwrap();
    let mut signal = conn.end_signal();
    let first = Arc::new(CountingWaker(Default::default()));
    let second = Arc::new(CountingWaker(Default::default()));
    let (w1, w2) = (first.clone().into(), second.clone().into());
    let mut poll = |waker: &std::task::Waker| {
        Pin::new(&mut signal).poll(&mut std::task::Context::from_waker(waker))
    };
    assert!(poll(&w1).is_pending());
    // Polled again from the same task: nothing to register again; from another: the new
    // waker replaces the old one.
    assert!(poll(&w1).is_pending());
    assert!(poll(&w2).is_pending());
    conn.outbox.alarm.raise(Alarm::SLOW);
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    assert_eq!(poll(&w2), Poll::Ready(SessionEnd::SlowConsumer));
    conn.outbox.alarm.raise(Alarm::SHUTDOWN);
    assert_eq!(poll(&w1), Poll::Ready(SessionEnd::Shutdown));
    // A second signal of the same connection sees what was raised before it existed.
    assert_eq!(conn.end_signal().await, SessionEnd::Shutdown);
}

#[tokio::test]
async fn leaving_a_room_ends_its_replay_check_and_inline_writes_resume() {
    let (chat, room) = chat_with_room().await;
    let mut b = chat.connect(User::new("b", "B")).await.unwrap();
    b.join(&room, None).await.unwrap();
    let send = |body: &str| SendMessageFrame {
        room: room.clone(),
        body: body.into(),
        client_msg_id: None,
    };
    let first = b.send_message(send("one")).await.unwrap();
    b.send_message(send("two")).await.unwrap();
    let mut a = chat.connect(User::new("a", "A")).await.unwrap();
    a.join(&room, Some(&first.id)).await.unwrap();
    // "two" was replayed: its live copy, if it comes, must be dropped.
    assert!(a.outbox.filtering());
    a.leave(&room).await.unwrap();
    assert!(a.replayed.is_empty());
    assert!(!a.outbox.filtering());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn topics_are_subscribed_once_per_node_and_released_after_the_last_connection() {
    let (chat, room) = chat_with_room().await;
    let subscriptions = || chat.subscriptions().count();
    let mut a = chat.connect(User::new("a", "A")).await.unwrap();
    let mut a2 = chat.connect(User::new("a", "A")).await.unwrap();
    let mut b = chat.connect(User::new("b", "B")).await.unwrap();
    // One topic per user, not per connection.
    assert_eq!(subscriptions(), 2);
    a.join(&room, None).await.unwrap();
    a2.join(&room, None).await.unwrap();
    b.join(&room, None).await.unwrap();
    assert_eq!(subscriptions(), 3);
    a.close().await;
    a2.close().await;
    assert_eq!(
        subscriptions(),
        2,
        "b still holds the room and its user topic"
    );
    b.close().await;
    assert_eq!(subscriptions(), 0);
    assert_eq!(chat.local_connections(), 0);
}

#[tokio::test]
async fn a_dropped_connection_still_leaves_its_rooms() {
    let (chat, room) = chat_with_room().await;
    let mut a = chat.connect(User::new("a", "A")).await.unwrap();
    let mut b = chat.connect(User::new("b", "B")).await.unwrap();
    a.join(&room, None).await.unwrap();
    b.join(&room, None).await.unwrap();
    drop(b);
    // a: joined, user_joined(b), then user_left(b) from the drop's cleanup task.
    let mut events = Vec::new();
    while events.len() < 3 {
        let frame = a.next_frame().await.unwrap();
        events.push(serde_json::from_slice::<ServerFrame>(&frame).unwrap());
    }
    assert!(matches!(&events[2], ServerFrame::System(s) if s.event == SystemEvent::UserLeft));
    a.close().await;
    assert_eq!(chat.subscriptions().count(), 0);
}

#[tokio::test]
async fn shutdown_waits_for_connections_and_refuses_new_ones() {
    let (chat, _room) = chat_with_room().await;
    let mut conn = chat.connect(User::new("a", "A")).await.unwrap();
    let stopping = tokio::spawn({
        let chat = chat.clone();
        async move { chat.shutdown().await }
    });
    assert_eq!(conn.end_signal().await, SessionEnd::Shutdown);
    assert!(!stopping.is_finished());
    assert!(matches!(
        chat.connect(User::new("b", "B")).await,
        Err(Error::ShuttingDown)
    ));
    conn.close().await;
    drop(conn);
    stopping.await.unwrap();
}
