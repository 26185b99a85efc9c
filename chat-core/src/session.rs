//! The per-connection loop, written over a generic [`Stream`] of [`Inbound`] and [`Sink`] of
//! [`Outbound`] so that it runs on any WebSocket implementation (the tower crate adapts axum's)
//! and on plain channels in tests.
//!
//! One `select!` loop per connection handles, in priority order: shutdown, slow-consumer
//! overflow, frames queued for the client, frames from the client, and the keepalive ping. A
//! client frame is handled to completion (including its broker round trip) before the next
//! one is read, so a connection's requests are answered in order.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tracing::debug;

use crate::{
    engine::Connection,
    error::Error,
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

/// Runs one connection until it ends, then closes it (leaving its rooms).
pub async fn run<S, K>(mut conn: Connection, mut inbound: S, mut outbound: K) -> SessionEnd
where
    S: Stream<Item = Inbound> + Unpin,
    K: Sink<Outbound> + Unpin,
{
    let config = conn.chat().config().clone();
    let mut limiter = RateLimiter::new(config.rate_per_second, config.rate_burst);
    let ping_every = config.ping_interval.max(Duration::from_millis(10));
    let mut ping = interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let (mut shutdown, slow) = conn.signals();

    let end = loop {
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => {
                // Finish what is queued, then say goodbye.
                while let Some(frame) = conn.try_next_frame() {
                    if outbound.feed(Outbound::Text(frame)).await.is_err() {
                        break;
                    }
                }
                let _ = outbound.send(Outbound::Close(close_code::GOING_AWAY, "server shutting down")).await;
                break SessionEnd::Shutdown;
            }
            () = slow.notified() => {
                let _ = outbound.send(Outbound::Close(close_code::SLOW_CONSUMER, "slow consumer")).await;
                break SessionEnd::SlowConsumer;
            }
            frame = conn.next_frame() => {
                let Some(frame) = frame else { break SessionEnd::ClientClosed };
                if write_batch(&mut conn, &mut outbound, frame).await.is_err() {
                    break SessionEnd::SendFailed;
                }
            }
            message = inbound.next() => {
                last_seen = Instant::now();
                match message {
                    None | Some(Inbound::Close) => break SessionEnd::ClientClosed,
                    Some(Inbound::Error(err)) => {
                        debug!(cause = %err, "transport error");
                        break SessionEnd::ClientClosed;
                    }
                    Some(Inbound::TooLarge) => {
                        let _ = outbound.send(Outbound::Close(close_code::TOO_BIG, "frame too large")).await;
                        break SessionEnd::TooLarge;
                    }
                    Some(Inbound::Alive) => {}
                    Some(Inbound::Binary(_)) => {
                        conn.reply(&error_frame(&Error::BadFrame("binary frames are not part of the protocol; send JSON text frames".into()), None));
                    }
                    Some(Inbound::Text(text)) => {
                        if text.len() > config.max_frame_bytes {
                            let _ = outbound.send(Outbound::Close(close_code::TOO_BIG, "frame too large")).await;
                            break SessionEnd::TooLarge;
                        }
                        if limiter.allow() {
                            handle_text(&mut conn, &text).await;
                        } else {
                            let err = Error::RateLimited { per_second: config.rate_per_second };
                            conn.reply(&error_frame(&err, client_msg_id_of(&text)));
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= config.idle_timeout {
                    let _ = outbound.send(Outbound::Close(close_code::POLICY, "idle timeout")).await;
                    break SessionEnd::Idle;
                }
                if outbound.send(Outbound::Ping).await.is_err() {
                    break SessionEnd::SendFailed;
                }
            }
        }
    };
    conn.close().await;
    let _ = outbound.close().await;
    end
}

/// Completes once the chat is shutting down (or gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // `let _ =` drops the watch guard at once: it must not live across an await.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write_batch<K>(conn: &mut Connection, outbound: &mut K, first: Bytes) -> Result<(), K::Error>
where
    K: Sink<Outbound> + Unpin,
{
    outbound.feed(Outbound::Text(first)).await?;
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
