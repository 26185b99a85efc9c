use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_channel::mpsc as fmpsc;
use futures_util::stream;

use super::*;
use crate::{
    backend::memory::MemoryCluster,
    protocol::{ServerFrame, User},
    Chat, ChatConfig,
};

fn chat(config: ChatConfig) -> Chat {
    Chat::with_policy(
        MemoryCluster::new().node(),
        config,
        Arc::new(crate::hooks::DefaultPolicy),
    )
}

async fn public_room(chat: &Chat) -> crate::RoomId {
    let public = crate::backend::store::Visibility::Public;
    chat.open_room(None, public).await.unwrap().room_id
}

/// A sink that never accepts anything: a client that stopped reading.
struct Stuck;

impl Sink<Outbound> for Stuck {
    type Error = ();
    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Pending
    }
    fn start_send(self: std::pin::Pin<&mut Self>, _: Outbound) -> Result<(), ()> {
        Ok(())
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Pending
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), ()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_instead_of_buffering_forever() {
    let chat = chat(ChatConfig {
        outgoing_queue: 8,
        user_messages_burst: 1_000,
        ..ChatConfig::default()
    });
    let room = public_room(&chat).await;
    let mut slow = chat.connect(User::new("slow", "S")).await.unwrap();
    slow.join(&room, None).await.unwrap();
    let session = tokio::spawn(run(slow, stream::pending(), Stuck));
    let mut fast = chat.connect(User::new("fast", "F")).await.unwrap();
    fast.join(&room, None).await.unwrap();
    for i in 0..50 {
        let frame = crate::protocol::SendMessageFrame {
            room: room.clone(),
            body: format!("m{i}"),
            client_msg_id: None,
        };
        fast.send_message(frame).await.unwrap();
    }
    assert_eq!(session.await.unwrap(), SessionEnd::SlowConsumer);
    fast.close().await;
}

/// A socket that takes frames into a write buffer and flushes them to `wire`, unless
/// `blocked` (a full TCP buffer): then flushing waits until it is unblocked.
#[derive(Clone, Default)]
struct Socket {
    state: Arc<std::sync::Mutex<SocketState>>,
}

#[derive(Default)]
struct SocketState {
    buffer: Vec<Bytes>,
    wire: Vec<Bytes>,
    blocked: bool,
    /// Every write fails (a broken connection).
    broken: bool,
    flush_waker: Option<std::task::Waker>,
}

impl Socket {
    fn set_blocked(&self, blocked: bool) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            state.blocked = blocked;
            state.flush_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wire(&self) -> Vec<Bytes> {
        self.state.lock().unwrap().wire.clone()
    }
}

impl Sink<Outbound> for Socket {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), ()> {
        let mut state = self.state.lock().unwrap();
        if state.broken {
            return Err(());
        }
        if let Outbound::Text(frame) = item {
            state.buffer.push(frame);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut state = self.state.lock().unwrap();
        if state.blocked {
            state.flush_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let buffered = std::mem::take(&mut state.buffer);
        state.wire.extend(buffered);
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

/// The bodies of the room messages on `wire`, in order.
fn bodies(wire: &[Bytes]) -> Vec<String> {
    wire.iter()
        .filter_map(|f| match serde_json::from_slice::<ServerFrame>(f).ok()? {
            ServerFrame::Message(m) => Some(m.body),
            _ => None,
        })
        .collect()
}

/// A room with a reader served over `Socket` (its session spawned) and a sender.
async fn reader_and_sender(
    config: ChatConfig,
) -> (
    crate::protocol::RoomId,
    Socket,
    tokio::task::JoinHandle<SessionEnd>,
    Connection,
) {
    let chat = chat(config);
    let room = public_room(&chat).await;
    let mut reader = chat.connect(User::new("r", "R")).await.unwrap();
    reader.join(&room, None).await.unwrap();
    let socket = Socket::default();
    let session = tokio::spawn(run(reader, stream::pending(), socket.clone()));
    let mut sender = chat.connect(User::new("s", "S")).await.unwrap();
    sender.join(&room, None).await.unwrap();
    (room, socket, session, sender)
}

#[tokio::test]
async fn inline_writes_hand_a_blocked_flush_to_the_session_and_keep_the_order() {
    for coalesce_ms in [0, 2] {
        let (room, socket, session, mut sender) = reader_and_sender(ChatConfig {
            write_coalesce: Duration::from_millis(coalesce_ms),
            user_messages_burst: 1_000,
            ..ChatConfig::default()
        })
        .await;
        let mut sent = Vec::new();
        for i in 0..300 {
            // Blocked and unblocked in the middle of the stream: frames written inline,
            // left unflushed, queued behind the session's flush, then inline again.
            if i % 50 == 10 {
                socket.set_blocked(true);
            }
            if i % 50 == 30 {
                socket.set_blocked(false);
            }
            let body = format!("m{i}");
            sender
                .send_message(crate::protocol::SendMessageFrame {
                    room: room.clone(),
                    body: body.clone(),
                    client_msg_id: None,
                })
                .await
                .unwrap();
            sent.push(body);
            // Mostly one message at a time (the dispatcher writes inline only when it has
            // no backlog), sometimes a burst.
            if i % 7 != 0 {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
            }
        }
        socket.set_blocked(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while bodies(&socket.wire()).len() < sent.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bodies(&socket.wire()), sent, "coalesce {coalesce_ms} ms");
        sender.close().await;
        session.abort();
    }
}

#[tokio::test]
async fn a_failed_inline_write_ends_the_session_instead_of_dropping_the_frame() {
    let (room, socket, session, mut sender) = reader_and_sender(ChatConfig::default()).await;
    // Let the session write what it has (joined, user_joined) and go idle.
    while socket.wire().len() < 2 {
        tokio::task::yield_now().await;
    }
    socket.state.lock().unwrap().broken = true;
    sender
        .send_message(crate::protocol::SendMessageFrame {
            room: room.clone(),
            body: "lost with the connection".into(),
            client_msg_id: None,
        })
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .expect("the session must end")
        .unwrap();
    assert_eq!(end, SessionEnd::SendFailed);
    sender.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_ping_stuck_on_a_full_socket_still_ends_at_shutdown() {
    let chat = chat(ChatConfig {
        ping_interval: Duration::from_secs(1),
        ..ChatConfig::default()
    });
    let conn = chat.connect(User::new("a", "A")).await.unwrap();
    let socket = Socket::default();
    socket.set_blocked(true);
    let session = tokio::spawn(run(conn, stream::pending(), socket.clone()));
    // The first ping's flush blocks for good (the client stopped reading).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!session.is_finished());
    tokio::time::timeout(Duration::from_secs(10), chat.shutdown())
        .await
        .expect("shutdown must not wait on the stuck ping");
    assert_eq!(session.await.unwrap(), SessionEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn pings_an_idle_client_and_closes_a_silent_one() {
    let chat = chat(ChatConfig {
        ping_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(25),
        ..ChatConfig::default()
    });
    let start = Instant::now();
    let conn = chat.connect(User::new("a", "A")).await.unwrap();
    let (tx, mut rx) = fmpsc::unbounded::<Outbound>();
    let session = tokio::spawn(run(conn, stream::pending(), tx));
    // Pings every 10 s (the node's sweep: the first within 10 s of the connect)...
    let mut pings = Vec::new();
    let last = loop {
        match rx.next().await {
            Some(Outbound::Ping) if pings.len() < 10 => pings.push(start.elapsed()),
            other => break other,
        }
    };
    assert_eq!(
        last,
        Some(Outbound::Close(close_code::POLICY, "idle timeout"))
    );
    assert!(pings[0] <= Duration::from_secs(10), "{pings:?}");
    for pair in pings.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::from_secs(10), "{pings:?}");
    }
    // ...and the close at the first sweep 25 s or more after the last sign of life.
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_secs(25) && closed <= Duration::from_secs(35),
        "{closed:?} {pings:?}"
    );
    assert_eq!(pings.len(), 3, "{pings:?}");
    assert_eq!(session.await.unwrap(), SessionEnd::Idle);
}

#[tokio::test]
async fn shutdown_sends_going_away_after_what_is_queued() {
    let chat = chat(ChatConfig::default());
    let room = public_room(&chat).await;
    let conn = chat.connect(User::new("a", "A")).await.unwrap();
    let (in_tx, in_rx) = fmpsc::unbounded::<Inbound>();
    let (tx, mut rx) = fmpsc::unbounded::<Outbound>();
    let session = tokio::spawn(run(conn, in_rx, tx));
    in_tx
        .unbounded_send(Inbound::Text(
            serde_json::json!({"type":"join","room":room}).to_string(),
        ))
        .unwrap();
    let Some(Outbound::Text(joined)) = rx.next().await else {
        panic!("no joined")
    };
    assert!(std::str::from_utf8(&joined).unwrap().contains("\"joined\""));
    chat.shutdown().await;
    assert_eq!(
        rx.next().await,
        Some(Outbound::Close(
            close_code::GOING_AWAY,
            "server shutting down"
        ))
    );
    assert_eq!(session.await.unwrap(), SessionEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn the_flood_guard_paces_a_flooding_connection_and_answers_every_frame() {
    let chat = chat(ChatConfig {
        rate_per_second: 10,
        rate_burst: 5,
        ..ChatConfig::default()
    });
    let conn = chat.connect(User::new("f", "F")).await.unwrap();
    let (in_tx, in_rx) = fmpsc::unbounded();
    let (out_tx, mut out_rx) = fmpsc::unbounded::<Outbound>();
    // Frames that no per-user limit counts: leaves of a room it is not in, and garbage.
    for i in 0..25 {
        let text = if i % 2 == 0 {
            r#"{"type":"leave","room":"r"}"#
        } else {
            "not json"
        };
        in_tx.unbounded_send(Inbound::Text(text.into())).unwrap();
    }
    let start = Instant::now();
    let session = tokio::spawn(run(conn, in_rx, out_tx));
    let mut answered = 0;
    while answered < 25 {
        match out_rx.next().await {
            Some(Outbound::Text(frame)) => {
                let frame: serde_json::Value = serde_json::from_slice(&frame).unwrap();
                assert_eq!(frame["type"], "error", "{frame}");
                assert_ne!(frame["code"], "rate_limited", "{frame}");
                answered += 1;
            }
            Some(Outbound::Ping) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Five at once, then ten a second: the 25th is read two seconds after the first. Paused
    // time: this measures the pacing, not the machine.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2_100),
        "{took:?}"
    );
    drop(in_tx);
    assert_eq!(session.await.unwrap(), SessionEnd::ClientClosed);
}
