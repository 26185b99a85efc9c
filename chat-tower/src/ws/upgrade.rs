//! `GET /ws`: origin and identity checks, the upgrade with the socket's limits and buffer
//! sizes, and the session over the upgraded socket.

use axum::{
    extract::{ws::WebSocket, FromRequestParts, Request, State, WebSocketUpgrade},
    response::{IntoResponse, Response},
};
use chat_core::session;
use tracing::Instrument;

use super::socket::Socket;
use crate::{
    error::ChatRejection,
    identity::resolve::{recheck_token, Authenticated},
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

/// Open the chat WebSocket (JSON text frames; see the WebSocket frame schemas). Described by
/// the AsyncAPI document only: as a REST operation it could only fail.
pub(crate) async fn ws_handler(
    State(state): State<ChatState>,
    request: Request,
) -> Result<Response, ChatRejection> {
    let (mut parts, _body) = request.into_parts();
    state.inner.origins.check(&parts)?;
    let Authenticated(caller) = Authenticated::from_request_parts(&mut parts, &state).await?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| ChatRejection::BadRequest(e.body_text()))?;
    let chat = state.chat().clone();
    let conn = chat.connect(caller).await?;
    // Dropping `conn` on a refusal tears it down.
    recheck_token(&parts, &chat, conn.caller()).await?;
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

/// The session over one upgraded socket, with its open and close logged at debug level.
async fn serve(conn: chat_core::Connection, socket: WebSocket) {
    tracing::debug!("open");
    let end = session::serve(conn, Socket::new(socket)).await;
    tracing::debug!(?end, "closed");
}
