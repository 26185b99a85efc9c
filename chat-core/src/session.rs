//! The per-connection loop, written over a generic [`Stream`] of [`Inbound`] and [`Sink`] of
//! [`Outbound`] so that it runs on any WebSocket implementation (the tower crate adapts axum's)
//! and on plain channels in tests.
//!
//! One `select!` loop per connection handles, in priority order: shutdown, slow-consumer
//! overflow, frames queued for the client, frames from the client, and the keepalive ping. A
//! client frame is handled to completion (including its broker round trip) before the next
//! one is read, so a connection's requests are answered in order.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, TryLockError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tracing::debug;

use crate::{
    engine::{Connection, EndCause, EndSignal},
    error::Error,
    hub::{Direct, DirectWrite, Outgoing},
    protocol::{close_code, ClientFrame, ErrorFrame, ServerFrame},
};

/// What the client sent, as the session sees it.
#[derive(Debug)]
pub enum Inbound {
    /// A text frame.
    Text(String),
    /// A binary frame (the protocol has none; answered with `bad_frame`).
    Binary(Bytes),
    /// A ping or pong: proof of life.
    Alive,
    /// The client closed the connection.
    Close,
    /// The client sent a message larger than the configured limit.
    TooLarge,
    /// The transport failed (protocol error, reset).
    Error(String),
}

/// What the session sends to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A JSON text frame (valid UTF-8).
    Text(Bytes),
    /// A keepalive ping.
    Ping,
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed, or its transport ended.
    ClientClosed,
    /// The chat is shutting down (close 1001).
    Shutdown,
    /// The client's queue overflowed (close 4008).
    SlowConsumer,
    /// A frame over the size limit (close 1009).
    TooLarge,
    /// Nothing arrived for the idle timeout (close 1008).
    Idle,
    /// Sending to the client failed.
    SendFailed,
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug)]
struct RateLimiter {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_second: f64::from(per_second.max(1)),
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Runs one connection until it ends, then closes it (leaving its rooms). `inbound` and
/// `outbound` are the two halves of the client's transport; a transport that is one object
/// (a WebSocket) is better served by [`serve`] as it is: splitting one costs a lock of its own.
pub async fn run<S, K>(conn: Connection, inbound: S, outbound: K) -> SessionEnd
where
    S: Stream<Item = Inbound> + Unpin + Send + 'static,
    K: Sink<Outbound> + Unpin + Send + 'static,
{
    serve(conn, Duplex { inbound, outbound }).await
}

/// Runs one connection over a transport that both yields [`Inbound`] and accepts
/// [`Outbound`] until it ends, then closes it (leaving its rooms).
///
/// While it runs, the node's dispatcher may write a frame for an idle connection straight to
/// `transport` (from its own task, never waiting: see `hub::Outbox`), so the transport is
/// kept behind a mutex that the session takes for each poll. Those writes poll the sink with
/// a no-op waker (the session flushes with its own if they would block), so `transport` must
/// keep the waker of its read side apart from that of its write side, as axum's and
/// tokio-tungstenite's WebSockets do: a transport with one waker slot for both would miss
/// read wake-ups.
pub async fn serve<T>(mut conn: Connection, transport: T) -> SessionEnd
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send + 'static,
{
    let shared = Arc::new(Mutex::new(transport));
    conn.outbox().attach(shared.clone());
    let mut transport = Shared(shared);
    let config = conn.chat().config().clone();
    let mut limiter = RateLimiter::new(config.rate_per_second, config.rate_burst);
    // Pings are due when the node's keepalive sweep says so (no timer per connection).
    let outbox = conn.shared_outbox();
    let mut ping_registered = None;
    let mut last_seen = Instant::now();
    // One future for the session's life: polling it is a load and a waker registration.
    let mut ended = conn.end_signal();
    let io = &mut transport;

    let end = loop {
        tokio::select! {
            biased;
            cause = &mut ended => break finish(&mut conn, io, cause).await,
            outgoing = std::future::poll_fn(|cx| conn.poll_outgoing(cx)) => {
                let first = match outgoing {
                    None => break SessionEnd::ClientClosed,
                    Some(Outgoing::Failed) => break SessionEnd::SendFailed,
                    Some(Outgoing::Frame(frame)) => Some(frame),
                    // A direct write left its flush to us.
                    Some(Outgoing::Flush) => None,
                };
                match until_ended(&mut ended, write_batch(&mut conn, io, first)).await {
                    Ok(Ok(())) => conn.outbox().end_write(),
                    Ok(Err(_)) => break SessionEnd::SendFailed,
                    Err(cause) => break finish(&mut conn, io, cause).await,
                }
            }
            message = io.next() => {
                last_seen = Instant::now();
                match message {
                    None | Some(Inbound::Close) => break SessionEnd::ClientClosed,
                    Some(Inbound::Error(err)) => {
                        debug!(cause = %err, "transport error");
                        break SessionEnd::ClientClosed;
                    }
                    Some(Inbound::TooLarge) => {
                        send_close(&conn, io, close_code::TOO_BIG, "frame too large").await;
                        break SessionEnd::TooLarge;
                    }
                    Some(Inbound::Alive) => {}
                    Some(Inbound::Binary(_)) => {
                        conn.reply(&error_frame(&Error::BadFrame("binary frames are not part of the protocol; send JSON text frames".into()), None));
                    }
                    Some(Inbound::Text(text)) => {
                        if text.len() > config.max_frame_bytes {
                            send_close(&conn, io, close_code::TOO_BIG, "frame too large").await;
                            break SessionEnd::TooLarge;
                        }
                        if limiter.allow() {
                            // Boxed: the handling futures (join, publish) are large, and inline
                            // they would make every idle connection's session that large too.
                            Box::pin(handle_text(&mut conn, &text)).await;
                        } else {
                            let err = Error::RateLimited { per_second: config.rate_per_second };
                            conn.reply(&error_frame(&err, client_msg_id_of(&text)));
                        }
                    }
                }
            }
            () = std::future::poll_fn(|cx| outbox.alarm.poll_ping(cx, &mut ping_registered)) => {
                if last_seen.elapsed() >= config.idle_timeout {
                    send_close(&conn, io, close_code::POLICY, "idle timeout").await;
                    break SessionEnd::Idle;
                }
                conn.outbox().begin_write();
                match until_ended(&mut ended, io.send(Outbound::Ping)).await {
                    Ok(Ok(())) => conn.outbox().end_write(),
                    Ok(Err(_)) => break SessionEnd::SendFailed,
                    Err(cause) => break finish(&mut conn, io, cause).await,
                }
            }
        }
    };
    conn.outbox().detach();
    // Boxed for the same reason as the frame handling: it runs once, at the end.
    Box::pin(conn.close()).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, transport.close()).await;
    end
}

/// Runs `work` (a write) unless the connection must end first. A client that stops reading
/// blocks a write once its TCP buffers are full; meanwhile its queue overflows or the chat
/// shuts down, and either must still end the session.
async fn until_ended<F: std::future::Future>(
    ended: &mut EndSignal,
    work: F,
) -> Result<F::Output, EndCause> {
    tokio::select! {
        biased;
        cause = &mut *ended => Err(cause),
        out = work => Ok(out),
    }
}

/// Ends the session for `cause`: on shutdown, what is queued is written first (unless the
/// client stopped reading); then the close frame.
async fn finish<K>(conn: &mut Connection, io: &mut K, cause: EndCause) -> SessionEnd
where
    K: Sink<Outbound> + Unpin,
{
    match cause {
        EndCause::Shutdown => {
            conn.outbox().detach();
            let flush = async {
                while let Some(frame) = conn.try_next_frame() {
                    if io.feed(Outbound::Text(frame)).await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_GRACE, flush).await;
            send_close(conn, io, close_code::GOING_AWAY, "server shutting down").await;
            SessionEnd::Shutdown
        }
        EndCause::SlowConsumer => {
            send_close(conn, io, close_code::SLOW_CONSUMER, "slow consumer").await;
            SessionEnd::SlowConsumer
        }
    }
}

/// A stream and a sink used as one transport (see [`run`]).
struct Duplex<S, K> {
    inbound: S,
    outbound: K,
}

impl<S: Stream + Unpin, K: Unpin> Stream for Duplex<S, K> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inbound).poll_next(cx)
    }
}

impl<S: Unpin, K: Sink<Outbound> + Unpin> Sink<Outbound> for Duplex<S, K> {
    type Error = K::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), K::Error> {
        Pin::new(&mut self.outbound).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_close(cx)
    }
}

/// The transport as the session uses it: every poll takes the lock it shares with the
/// hub's direct writes (uncontended but for the rare direct write to this connection that
/// races with the session's own poll).
struct Shared<T>(Arc<Mutex<T>>);

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, T> {
        // A poll that panicked leaves a transport that fails its next call: no invariant of
        // ours to protect.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Stream + Unpin> Stream for Shared<T> {
    type Item = T::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        Pin::new(&mut *self.lock()).poll_next(cx)
    }
}

impl<T: Sink<Outbound> + Unpin> Sink<Outbound> for Shared<T> {
    type Error = T::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), T::Error> {
        Pin::new(&mut *self.lock()).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_close(cx)
    }
}

/// A direct write: one non-blocking attempt, from the dispatcher's task. Whatever would wait
/// goes back to the session: a held lock or a backed-up transport ([`Direct::Busy`]: the
/// frame is queued), a flush that would block ([`Direct::Unflushed`]: the session flushes
/// with its own waker, so the no-op waker here is never the one left waiting).
impl<T> DirectWrite for Mutex<T>
where
    T: Sink<Outbound> + Unpin + Send,
{
    fn try_write(&self, frame: Bytes) -> Direct {
        // This runs on the dispatcher's task: a panic in transport code must cost this one
        // connection (its session meets the failure), not the node's fan-out.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_now(self, frame)))
            .unwrap_or(Direct::Failed)
    }
}

/// The body of a direct write (see `DirectWrite for Mutex<T>`).
fn write_now<T>(shared: &Mutex<T>, frame: Bytes) -> Direct
where
    T: Sink<Outbound> + Unpin,
{
    let mut transport = match shared.try_lock() {
        Ok(transport) => transport,
        Err(TryLockError::WouldBlock) => return Direct::Busy(frame),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
    };
    let mut transport = Pin::new(&mut *transport);
    let mut cx = Context::from_waker(Waker::noop());
    match transport.as_mut().poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(_)) => return Direct::Failed,
        Poll::Pending => return Direct::Busy(frame),
    }
    if transport
        .as_mut()
        .start_send(Outbound::Text(frame))
        .is_err()
    {
        return Direct::Failed;
    }
    match transport.poll_flush(&mut cx) {
        Poll::Ready(Ok(())) => Direct::Written,
        Poll::Ready(Err(_)) => Direct::Failed,
        Poll::Pending => Direct::Unflushed,
    }
}

/// How long a closing session waits on a client that does not read before giving up on it.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Sends a close frame, unless the client stopped reading (then the transport is dropped).
/// Direct writes stop first: nothing may follow the close frame.
async fn send_close<K>(conn: &Connection, outbound: &mut K, code: u16, reason: &'static str)
where
    K: Sink<Outbound> + Unpin,
{
    conn.outbox().detach();
    let _ = tokio::time::timeout(CLOSE_GRACE, outbound.send(Outbound::Close(code, reason))).await;
}

/// Writes `first` and whatever else is queued, then flushes once (one syscall, one TCP
/// segment for the lot). When writes are coalesced, the session is woken for a connection
/// written less than `write_coalesce` ago only at the node's flush tick (`hub::FlushTick`),
/// so a connection receiving a stream of frames gets them in batches, while the first frame
/// after a quiet spell leaves at once (usually written directly by the dispatcher, without
/// this task).
async fn write_batch<K>(
    conn: &mut Connection,
    outbound: &mut K,
    first: Option<Bytes>,
) -> Result<(), K::Error>
where
    K: Sink<Outbound> + Unpin,
{
    if let Some(first) = first {
        outbound.feed(Outbound::Text(first)).await?;
    }
    // Bounded so one busy connection cannot starve its own inbound side.
    for _ in 0..64 {
        match conn.try_next_frame() {
            Some(frame) => outbound.feed(Outbound::Text(frame)).await?,
            None => break,
        }
    }
    outbound.flush().await
}

/// Decodes and handles one client text frame; every outcome queues exactly one reply
/// (`joined`, `left`, `ack` or `error`).
pub async fn handle_text(conn: &mut Connection, text: &str) {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(err) => {
            let err = Error::BadFrame(describe_decode_error(text, &err));
            conn.reply(&error_frame(&err, client_msg_id_of(text)));
            return;
        }
    };
    match frame {
        ClientFrame::Join(join) => {
            if let Err(err) = conn.join(&join.room, join.since.as_ref()).await {
                conn.reply(&error_frame(&err, None));
            }
        }
        ClientFrame::Leave(leave) => {
            if let Err(err) = conn.leave(&leave.room).await {
                conn.reply(&error_frame(&err, None));
            }
        }
        ClientFrame::Message(message) => {
            let id = message.client_msg_id.clone();
            let reply = match conn.send_message(message).await {
                Ok(ack) => ServerFrame::Ack(ack),
                Err(err) => error_frame(&err, id),
            };
            conn.reply(&reply);
        }
        ClientFrame::Direct(direct) => {
            let id = direct.client_msg_id.clone();
            let reply = match conn.send_direct(direct).await {
                Ok(ack) => ServerFrame::Ack(ack),
                Err(err) => error_frame(&err, id),
            };
            conn.reply(&reply);
        }
    }
}

/// The `error` frame for an error.
pub fn error_frame(err: &Error, client_msg_id: Option<String>) -> ServerFrame {
    ServerFrame::Error(ErrorFrame {
        code: err.code(),
        message: err.to_string(),
        client_msg_id,
    })
}

fn describe_decode_error(text: &str, err: &serde_json::Error) -> String {
    if serde_json::from_str::<serde_json::Value>(text).is_err() {
        format!("not JSON: {err}")
    } else {
        format!("not a known frame: {err}")
    }
}

/// Best effort: the `clientMsgId` of a frame that failed to decode, so the client can match
/// the error to what it sent.
fn client_msg_id_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "clientMsgId")]
        client_msg_id: Option<String>,
    }
    serde_json::from_str::<Probe>(text)
        .ok()
        .and_then(|p| p.client_msg_id)
        .filter(|id| id.len() <= 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_burst_then_rate() {
        let mut limiter = RateLimiter::new(10, 3);
        assert!(limiter.allow() && limiter.allow() && limiter.allow());
        assert!(!limiter.allow());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.allow());
        assert!(!limiter.allow());
    }
}

#[cfg(test)]
mod loop_tests {
    use std::sync::Arc;

    use futures_channel::mpsc as fmpsc;
    use futures_util::stream;

    use super::*;
    use crate::{backend::memory::MemoryCluster, protocol::User, Chat, ChatConfig};

    fn chat(config: ChatConfig) -> Chat {
        Chat::with_policy(
            MemoryCluster::new().node(),
            config,
            Arc::new(crate::hooks::OpenRooms),
        )
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
            ..ChatConfig::default()
        });
        let room = chat.create_room(None).await.unwrap().room_id;
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
        let room = chat.create_room(None).await.unwrap().room_id;
        let mut reader = chat.connect(User::new("r", "R")).await.unwrap();
        reader.join(&room, None).await.unwrap();
        let socket = Socket::default();
        let session = tokio::spawn(run(reader, stream::pending(), socket.clone()));
        let mut sender = chat.connect(User::new("s", "S")).await.unwrap();
        sender.join(&room, None).await.unwrap();
        (room, socket, session, sender)
    }

    #[tokio::test]
    async fn direct_writes_hand_a_blocked_flush_to_the_session_and_keep_the_order() {
        for coalesce_ms in [0, 2] {
            let (room, socket, session, mut sender) = reader_and_sender(ChatConfig {
                write_coalesce: Duration::from_millis(coalesce_ms),
                ..ChatConfig::default()
            })
            .await;
            let mut sent = Vec::new();
            for i in 0..300 {
                // Blocked and unblocked in the middle of the stream: frames written directly,
                // left unflushed, queued behind the session's flush, then direct again.
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
                // Mostly one message at a time (the dispatcher writes directly only when it has
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
    async fn a_failed_direct_write_ends_the_session_instead_of_dropping_the_frame() {
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
        let room = chat.create_room(None).await.unwrap().room_id;
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
}
