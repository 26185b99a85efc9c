//! The WebSocket endpoint: identity and origin checks, the upgrade, and the adapter from
//! axum's socket to [`chat_core::session::serve`].

use axum::{
    extract::{
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        FromRequestParts, Request, State,
    },
    response::{IntoResponse, Response},
};
use chat_core::session::{self, Inbound, Outbound};
use futures_util::{Sink, Stream};
use std::{
    pin::Pin,
    task::{Context, Poll},
};
use tracing::Instrument;

use crate::{
    error::{ChatRejection, Problem},
    rest::TAG,
    state::ChatState,
};

/// Per-connection read buffer. Small on purpose: client frames are a few hundred bytes, and
/// at tens of thousands of idle connections the buffers are most of the memory (tungstenite
/// allocates and zeroes it up front). A larger frame grows it as needed. Figures: see
/// docs/perf.md.
const READ_BUFFER: usize = 512;
/// Frames fed to the socket collect in tungstenite's write buffer until the session flushes
/// (or this much is pending), so a batch leaves in one write rather than one syscall and TCP
/// segment per frame. Figures: see docs/perf.md.
const WRITE_BUFFER: usize = 8 * 1024;

/// Open the chat WebSocket (JSON text frames; see the WebSocket frame schemas).
#[utoipa::path(get, path = "/ws", tag = TAG,
    params(("token" = Option<String>, Query, description = "The token from `POST /join-room/{roomId}` (or send `Authorization: Bearer`, or rely on the host's identity)")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No identity, or a bad or expired token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The chat backend is down or shutting down", body = Problem, content_type = "application/problem+json"),
    ),
    security(("token" = []), ("bearer" = []), ()))]
pub(crate) async fn ws_handler(
    State(state): State<ChatState>,
    request: Request,
) -> Result<Response, ChatRejection> {
    let (mut parts, _body) = request.into_parts();
    state.inner.origins.check(&parts)?;
    let user = state
        .identify(&parts)
        .await?
        .ok_or_else(|| ChatRejection::Unauthorized("no identity: pass ?token=".into()))?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| ChatRejection::BadRequest(e.body_text()))?;
    let chat = state.chat().clone();
    let conn = chat.connect(user).await?;
    let limit = chat.config().max_frame_bytes;
    // A debug span: it is entered on every poll of the session, and only debug events use it
    // (cost at info level: see docs/perf.md).
    let span = tracing::debug_span!("ws", conn = conn.id(), user = %conn.user().id);
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_failed_upgrade(|err| tracing::debug!(cause = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| serve(conn, socket).instrument(span))
        .into_response())
}

async fn serve(conn: chat_core::Connection, socket: WebSocket) {
    tracing::debug!("open");
    let end = session::serve(conn, Socket(socket)).await;
    tracing::debug!(?end, "closed");
}

/// axum's socket as the session's transport. One object rather than `split()` halves: the
/// session reads and writes from one task, so the halves' lock (and the `with` adapter's
/// per-frame future) was pure overhead on every delivered frame.
struct Socket(WebSocket);

impl Stream for Socket {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        Pin::new(&mut self.0).poll_next(cx).map(|message| {
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
        Pin::new(&mut self.0).poll_ready(cx)
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
        Pin::new(&mut self.0).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.0).poll_close(cx)
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
