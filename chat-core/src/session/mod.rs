//! The per-connection loop, written over a generic [`Stream`] of [`Inbound`] and [`Sink`] of
//! [`Outbound`] so that it runs on any WebSocket implementation (the tower crate adapts axum's)
//! and on plain channels in tests.
//!
//! One `select!` loop per connection handles, in priority order: the end causes (shutdown,
//! removal, revocation, slow-consumer overflow), frames queued for the client, frames from the
//! client, and the chores (the keepalive ping, leaving rooms whose membership ended). A
//! client frame is handled to completion (including its broker round trip) before the next
//! one is read, so a connection's requests are answered in order.
//!
//! - `transport`: the socket as the session and the dispatcher's inline writes share it;
//! - `frames`: decoding and handling client frames; `rate`: the per-connection flood guard
//!   (per-user limits are the node's, checked where each request is handled);
//! - `end`: why a session ends ([`SessionEnd`]) and the [`EndSignal`].

mod end;
pub(crate) mod frames;
mod rate;
mod transport;

#[cfg(test)]
mod tests;

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tracing::debug;

pub use self::end::{EndSignal, SessionEnd};
use self::{
    frames::{error_frame, handle_text},
    rate::FloodGuard,
    transport::{Duplex, Transport},
};
use crate::{
    connection::Connection,
    error::Error,
    fanout::{Alarm, Outgoing},
    protocol::close_code,
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
/// `transport` (from its own task, never waiting: see the `fanout` module's `Outbox`). Those
/// writes poll the sink with a no-op waker (the session flushes with its own if they would
/// block), so `transport` must keep the waker of its read side apart from that of its write
/// side, as axum's and tokio-tungstenite's WebSockets do: a transport with one waker slot for
/// both would miss read wake-ups.
pub async fn serve<T>(mut conn: Connection, transport: T) -> SessionEnd
where
    T: Stream<Item = Inbound> + Sink<Outbound> + Unpin + Send + 'static,
{
    let outbox = conn.outbox().clone();
    let mut transport = Transport::attach(transport, &outbox);
    // The socket is up: what was held for the user while they were offline can go out now.
    conn.release_held().await;
    // The two settings the loop reads, not a clone of the whole config (about 300 bytes and
    // two allocations, held by every idle connection's session).
    let (max_frame_bytes, idle_timeout) = {
        let config = conn.chat().config();
        (config.max_frame_bytes, config.idle_timeout)
    };
    let mut guard = {
        let config = conn.chat().config();
        FloodGuard::new(config.rate_per_second, config.rate_burst)
    };
    // Set while the flood guard holds reading back (boxed: rare, and idle sessions stay small).
    let mut paused: Option<Pin<Box<Sleep>>> = None;
    // Pings are due when the node's keepalive sweep says so (no timer per connection).
    let mut chores_registered = None;
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
                    // An inline write left its flush to us.
                    Some(Outgoing::Flush) => None,
                };
                let writing = outbox.adopt_write();
                match until_ended(&mut ended, write_batch(&mut conn, io, first)).await {
                    Ok(Ok(())) => drop(writing),
                    Ok(Err(_)) => break SessionEnd::SendFailed,
                    Err(cause) => break finish(&mut conn, io, cause).await,
                }
            }
            () = resume(&mut paused), if paused.is_some() => paused = None,
            message = io.next(), if paused.is_none() => {
                last_seen = Instant::now();
                if let Some(until) = guard.count() {
                    crate::metrics::metrics().frames_paced.increment(1);
                    paused = Some(Box::pin(tokio::time::sleep_until(until)));
                }
                match message {
                    None | Some(Inbound::Close) => break SessionEnd::ClientClosed,
                    Some(Inbound::Error(err)) => {
                        debug!(cause = %err, "transport error");
                        break SessionEnd::ClientClosed;
                    }
                    Some(Inbound::TooLarge) => {
                        send_close(io, close_code::TOO_BIG, "frame too large").await;
                        break SessionEnd::TooLarge;
                    }
                    Some(Inbound::Alive) => {}
                    Some(Inbound::Binary(_)) => {
                        conn.reply(&error_frame(&Error::BadFrame("binary frames are not part of the protocol; send JSON text frames".into()), None));
                    }
                    Some(Inbound::Text(text)) => {
                        if text.len() > max_frame_bytes {
                            send_close(io, close_code::TOO_BIG, "frame too large").await;
                            break SessionEnd::TooLarge;
                        }
                        // Boxed: the handling futures (join, publish) are large, and inline
                        // they would make every idle connection's session that large too.
                        Box::pin(handle_text(&mut conn, &text)).await;
                    }
                }
            }
            chores = std::future::poll_fn(|cx| outbox.alarm.poll_chores(cx, &mut chores_registered)) => {
                if chores & Alarm::EVICTED != 0 {
                    // Rare (the host ended a membership): boxed like the frame handling.
                    Box::pin(conn.leave_evicted()).await;
                }
                if chores & Alarm::PING == 0 {
                    continue;
                }
                if last_seen.elapsed() >= idle_timeout {
                    send_close(io, close_code::POLICY, "idle timeout").await;
                    break SessionEnd::Idle;
                }
                // Between batches an active connection keeps its queue's buffer; at each ping
                // an idle one gives it back.
                outbox.trim();
                let writing = outbox.begin_write();
                match until_ended(&mut ended, io.send(Outbound::Ping)).await {
                    Ok(Ok(())) => drop(writing),
                    Ok(Err(_)) => break SessionEnd::SendFailed,
                    Err(cause) => break finish(&mut conn, io, cause).await,
                }
            }
        }
    };
    transport.detach();
    crate::metrics::metrics().closed(end);
    // Boxed for the same reason as the frame handling: it runs once, at the end.
    Box::pin(conn.close()).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, transport.close()).await;
    end
}

/// Completes when the flood guard's pause is over (never, when there is none).
async fn resume(paused: &mut Option<Pin<Box<Sleep>>>) {
    match paused {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Runs `work` (a write) unless the connection must end first. A client that stops reading
/// blocks a write once its TCP buffers are full; meanwhile its queue overflows or the chat
/// shuts down, and either must still end the session.
async fn until_ended<F: std::future::Future>(
    ended: &mut EndSignal,
    work: F,
) -> Result<F::Output, SessionEnd> {
    tokio::select! {
        biased;
        cause = &mut *ended => Err(cause),
        out = work => Ok(out),
    }
}

/// Ends the session for `cause` (from the [`EndSignal`]): on shutdown, what is queued is
/// written first (unless the client stopped reading); then the close frame. A revoked or
/// removed user gets nothing more than the close frame.
async fn finish<T>(conn: &mut Connection, io: &mut Transport<T>, cause: SessionEnd) -> SessionEnd
where
    T: Sink<Outbound> + Unpin,
{
    if matches!(cause, SessionEnd::Shutdown | SessionEnd::Draining) {
        io.detach();
        let flush = async {
            while let Some(frame) = conn.try_next_frame() {
                if io.feed(Outbound::Text(frame)).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, flush).await;
        if cause == SessionEnd::Draining {
            send_close(io, close_code::DRAINING, "instance draining, reconnect").await;
        } else {
            send_close(io, close_code::GOING_AWAY, "server shutting down").await;
        }
    } else {
        let (code, reason) = match cause {
            SessionEnd::Revoked => (close_code::REVOKED, "access revoked"),
            SessionEnd::Removed => (close_code::REMOVED, "removed by the host"),
            _ => (close_code::SLOW_CONSUMER, "slow consumer"),
        };
        send_close(io, code, reason).await;
    }
    cause
}

/// How long a closing session waits on a client that does not read before giving up on it.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Sends a close frame, unless the client stopped reading (then the transport is dropped).
/// Inline writes stop first: nothing may follow the close frame.
async fn send_close<T>(io: &mut Transport<T>, code: u16, reason: &'static str)
where
    T: Sink<Outbound> + Unpin,
{
    io.detach();
    let _ = tokio::time::timeout(CLOSE_GRACE, io.send(Outbound::Close(code, reason))).await;
}

/// Writes `first` and whatever else is queued, then flushes once (one syscall, one TCP
/// segment for the lot). When writes are coalesced, a connection written less than a tick
/// period ago is woken only at the node's flush tick, so a connection receiving a stream of
/// frames gets them in batches, while the first frame after a quiet spell leaves at once
/// (usually written inline by the dispatcher, without this task).
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
