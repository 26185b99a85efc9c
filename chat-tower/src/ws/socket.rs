//! [`Socket`]: axum's WebSocket as one `Stream + Sink` of the session's `Inbound` and
//! `Outbound`.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chat_core::session::{Inbound, Outbound};
use futures_util::{Sink, Stream};

/// axum's socket as the session's transport. One object rather than `split()` halves: the
/// session reads and writes from one task, so the halves' lock (and the `with` adapter's
/// per-frame future) was pure overhead on every delivered frame.
///
/// Boxed: the session moves its transport into the allocation it shares with the node's
/// inline writes, but its future keeps the argument's room (and so does the call that made
/// it) for the connection's life. Inline the socket (368 bytes) would be paid three times
/// by every idle connection; boxed it is 8 bytes in those places and once on the heap.
pub(super) struct Socket(Box<WebSocket>);

impl Socket {
    pub(super) fn new(socket: WebSocket) -> Self {
        Self(Box::new(socket))
    }
}

impl Stream for Socket {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        Pin::new(&mut *self.0).poll_next(cx).map(|message| {
            message.map(|message| match message {
                Ok(Message::Text(text)) => Inbound::Text(text.as_str().to_owned()),
                Ok(Message::Binary(bytes)) => Inbound::Binary(bytes),
                Ok(Message::Ping(_) | Message::Pong(_)) => Inbound::Alive,
                Ok(Message::Close(_)) => Inbound::Close,
                Err(err) if is_capacity_error(&err) => Inbound::TooLarge,
                Err(err) => Inbound::Error(err.to_string()),
            })
        })
    }
}

impl Sink<Outbound> for Socket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.0).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, out: Outbound) -> Result<(), Self::Error> {
        let message = match out {
            Outbound::Text(bytes) => {
                Message::Text(Utf8Bytes::try_from(bytes).map_err(axum::Error::new)?)
            }
            Outbound::Ping => Message::Ping(Default::default()),
            Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })),
        };
        Pin::new(&mut *self.0).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.0).poll_close(cx)
    }
}

/// A message over `max_message_size` surfaces as tungstenite's capacity error; the session
/// answers it with close code 1009.
fn is_capacity_error(err: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("Space limit exceeded")
            || text.contains("too long")
            || text.contains("too big")
        {
            return true;
        }
        source = e.source();
    }
    let text = err.to_string();
    text.contains("Space limit exceeded") || text.contains("Message too long")
}
