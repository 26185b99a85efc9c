//! In-process fan-out: the engine's own cost per delivery, without sockets.
//!
//! One room of 50 connections on an in-memory node; 49 of them run the real session loop
//! (`session::run`) over an in-memory sink, the 50th publishes. One iteration = one message
//! published and written by all 49 sessions. What this measures is everything roomcast adds
//! to a delivery (publish, history append, hub fan-out, task wake-up, session loop, write
//! batching) and none of what the kernel does, so it is the stable part to watch for
//! regressions; `chat-bench` measures the whole path over real sockets.
//!
//! `cargo bench -p chat-core --bench fanout`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use chat_core::{
    backend::memory::MemoryCluster,
    hooks::DefaultPolicy,
    protocol::SendMessageFrame,
    session::{self, Outbound},
    Chat, ChatConfig, User,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::{stream, Sink};
use tokio::sync::Semaphore;

const MEMBERS: usize = 50;

/// A client that reads everything at once: counts message frames as permits.
struct Reader(Arc<Semaphore>);

impl Sink<Outbound> for Reader {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), ()> {
        if let Outbound::Text(bytes) = item {
            if bytes.starts_with(br#"{"type":"message""#) {
                self.0.add_permits(1);
            }
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Ready(Ok(()))
    }
}

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements((MEMBERS - 1) as u64));
    // Coalescing off: with one message in flight at a time, a minimum write interval would
    // only measure itself.
    {
        let coalesce_ms = 0u64;
        let (chat, room, sender, delivered) = runtime.block_on(async {
            let chat = Chat::with_policy(
                MemoryCluster::new().node(),
                ChatConfig {
                    write_coalesce: Duration::from_millis(coalesce_ms),
                    ..ChatConfig::default()
                },
                Arc::new(DefaultPolicy),
            );
            let room = chat
                .open_room(None, chat_core::backend::store::Visibility::Public)
                .await
                .unwrap()
                .room_id;
            let delivered = Arc::new(Semaphore::new(0));
            for i in 1..MEMBERS {
                let mut conn = chat
                    .connect(User::new(format!("u{i}"), format!("U{i}")))
                    .await
                    .unwrap();
                conn.join(&room, None).await.unwrap();
                tokio::spawn(session::run(
                    conn,
                    stream::pending(),
                    Reader(delivered.clone()),
                ));
            }
            let mut sender = chat.connect(User::new("u0", "U0")).await.unwrap();
            sender.join(&room, None).await.unwrap();
            (chat, room, sender, delivered)
        });
        let sender = Arc::new(tokio::sync::Mutex::new(sender));
        let name = format!(
            "1 message to {} sessions, write_coalesce {coalesce_ms} ms",
            MEMBERS - 1
        );
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let (sender, delivered, room) = (sender.clone(), delivered.clone(), room.clone());
                async move {
                    let mut sender = sender.lock().await;
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        let frame = SendMessageFrame {
                            room: room.clone(),
                            body: "x".repeat(64),
                            client_msg_id: None,
                        };
                        sender.send_message(frame).await.unwrap();
                        delivered
                            .acquire_many((MEMBERS - 1) as u32)
                            .await
                            .unwrap()
                            .forget();
                    }
                    start.elapsed()
                }
            });
        });
        let mut sender = Arc::into_inner(sender).unwrap().into_inner();
        runtime.block_on(async move {
            sender.close().await;
            // A live Connection holds the shutdown open (completion by drop).
            drop(sender);
            chat.shutdown().await;
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
