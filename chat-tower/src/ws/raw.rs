//! [`RawSocket`]: an HTTP/1.1 WebSocket as one `Stream + Sink` of the session's `Inbound` and
//! `Outbound`: tungstenite reads (and writes pings and close frames), text frames go out
//! through [`WsIo`] without a copy.

use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use chat_core::session::{Inbound, Outbound};
use futures_util::{Sink, Stream};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        self,
        protocol::{frame::coding::CloseCode, CloseFrame},
        Message,
    },
    WebSocketStream,
};

use super::io::{WsIo, BACKED_UP};

/// The WebSocket over the upgraded connection.
pub(super) type Upgrade = WebSocketStream<WsIo<TokioIo<Upgraded>>>;

/// The session's transport over an upgraded HTTP/1.1 connection.
pub(super) struct RawSocket {
    /// Boxed: the session's future keeps room for its transport argument after moving it into
    /// the shared transport, so an inline socket would be paid twice per connection.
    ws: Box<Upgrade>,
    /// A close frame was received or sent: text frames are refused, as tungstenite refuses
    /// what it is given after a close (they would follow the close frame on the wire).
    closed: bool,
}

impl RawSocket {
    pub(super) fn new(ws: Upgrade) -> Self {
        Self {
            ws: Box::new(ws),
            closed: false,
        }
    }
}

impl Stream for RawSocket {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let this = &mut *self;
        Pin::new(&mut *this.ws).poll_next(cx).map(|message| {
            if !matches!(
                message,
                Some(Ok(Message::Text(_)
                    | Message::Binary(_)
                    | Message::Ping(_)
                    | Message::Pong(_)))
            ) {
                this.closed = true;
            }
            message.map(|message| match message {
                Ok(Message::Text(text)) => Inbound::Text(text.as_str().to_owned()),
                Ok(Message::Binary(bytes)) => Inbound::Binary(bytes),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Inbound::Alive,
                Ok(Message::Close(_)) => Inbound::Close,
                Err(tungstenite::Error::Capacity(_)) => Inbound::TooLarge,
                Err(err) => Inbound::Error(err.to_string()),
            })
        })
    }
}

impl Sink<Outbound> for RawSocket {
    type Error = tungstenite::Error;

    /// Ready unless [`BACKED_UP`] bytes wait for a client that does not read.
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let io = self.ws.get_mut();
        if io.pending_bytes() >= BACKED_UP {
            ready!(io.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, out: Outbound) -> Result<(), Self::Error> {
        let message = match out {
            Outbound::Text(_) if self.closed => return Err(tungstenite::Error::AlreadyClosed),
            Outbound::Text(bytes) => {
                self.ws.get_mut().push_text(bytes);
                return Ok(());
            }
            Outbound::Ping => {
                // Between batches an active connection keeps its queue's buffer; at each ping
                // an idle one gives it back.
                self.ws.get_mut().trim();
                Message::Ping(Default::default())
            }
            Outbound::Close(code, reason) => {
                self.closed = true;
                Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }))
            }
        };
        // Written through `WsIo` at once (the write buffer size is 0), behind the text frames.
        Pin::new(&mut *self.ws).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // tungstenite's own bytes are in the same queue: draining it flushes them too.
        ready!(self.ws.get_mut().poll_drain(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        ready!(self.ws.get_mut().poll_drain(cx))?;
        Pin::new(&mut *self.ws).poll_close(cx)
    }
}
