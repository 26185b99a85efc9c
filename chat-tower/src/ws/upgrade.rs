//! `GET /ws`: origin and identity checks, the upgrade with the socket's limits and buffer
//! sizes, and the session over the upgraded socket.

use axum::{
    body::Body,
    extract::{ws::WebSocket, FromRequestParts, Request, State, WebSocketUpgrade},
    http::{header, HeaderValue, StatusCode, Version},
    response::{IntoResponse, Response},
};
use chat_core::session;
use futures_util::{future::Either, FutureExt as _};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{handshake::derive_accept_key, protocol::Role, protocol::WebSocketConfig},
    WebSocketStream,
};
use tracing::Instrument;

use super::{io::WsIo, raw::RawSocket, socket::Socket};
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
/// Frames fed to axum's socket (HTTP/2 only: on HTTP/1.1 the text frames bypass tungstenite's
/// buffer, see `io`, and its own frames are written at once) collect in tungstenite's write
/// buffer until the session flushes (or this much is pending), so a batch leaves in one write
/// rather than one syscall and TCP segment per frame. Figures: see docs/perf.md.
///
/// 4 KiB, not 8: tungstenite never shrinks that buffer, and a burst (a big room's joins)
/// leaves it at this size plus a frame, doubled, for the connection's life. In a room of
/// 1,000 the buffer was 11 KB per connection at 8 KiB (RSS 21-23 KB per connection, 16-17
/// KB at 4 KiB); fan-out at 10/s and `bigroom` showed no change in deliveries per CPU-second
/// (a connection's batches stay far below 4 KiB there).
const WRITE_BUFFER: usize = 4 * 1024;

/// Open the chat WebSocket (JSON text frames; see the WebSocket frame schemas). Described by
/// the AsyncAPI document only: as a REST operation it could only fail.
pub(crate) async fn ws_handler(
    State(state): State<ChatState>,
    request: Request,
) -> Result<Response, ChatRejection> {
    let (mut parts, _body) = request.into_parts();
    state.inner.origins.check(&parts)?;
    let Authenticated(caller) = Authenticated::from_request_parts(&mut parts, &state).await?;
    // axum's extractor checks the request (and takes the upgrade out of it); on HTTP/1.1 the
    // session runs on the upgrade itself (`RawSocket`), so keep a handle to it first.
    let on_upgrade = parts.extensions.get::<OnUpgrade>().cloned();
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
    let key = parts.headers.get(header::SEC_WEBSOCKET_KEY);
    if let (true, Some(on_upgrade), Some(key)) =
        (parts.version <= Version::HTTP_11, on_upgrade, key)
    {
        let accept = derive_accept_key(key.as_bytes());
        drop(upgrade);
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit))
            .read_buffer_size(READ_BUFFER)
            // Every frame tungstenite writes goes to `WsIo` at once (which never refuses it),
            // so nothing waits in tungstenite's buffer behind or ahead of the text frames.
            .write_buffer_size(0);
        // Boxed until the upgrade completes, and the task's future is one state at a time
        // (`then`: the upgrade, then the session), so an idle connection's task holds the
        // session's future and nothing beside it (no async block keeping the moved-from
        // connection and socket for the connection's life).
        let session = Box::new((conn, span));
        tokio::spawn(on_upgrade.then(move |upgraded| {
            let (conn, span) = *session;
            let upgraded = match upgraded {
                Ok(upgraded) => upgraded,
                Err(err) => {
                    span.in_scope(|| tracing::debug!(cause = %err, "websocket upgrade failed"));
                    return Either::Left(std::future::ready(()));
                }
            };
            let io = WsIo::new(TokioIo::new(upgraded));
            // tokio-tungstenite's constructor is async but does no I/O: ready when first polled.
            let Some(ws) =
                WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never()
            else {
                return Either::Left(std::future::ready(()));
            };
            span.in_scope(|| tracing::debug!("open"));
            Either::Right(
                session::serve(conn, RawSocket::new(ws))
                    .map(|end| tracing::debug!(?end, "closed"))
                    .instrument(span),
            )
        }));
        return Ok(switching_protocols(&accept));
    }
    // HTTP/2: axum's socket.
    // Boxed until the upgrade completes: axum's upgrade task keeps the callback's captures
    // beside the future the callback returns for the socket's whole life, so what the closure
    // holds inline is paid twice by every idle connection (the connection and the span, 224
    // bytes). Boxed it is 8 bytes there, and the box is freed when the session starts.
    let session = Box::new((conn, span));
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_failed_upgrade(|err| tracing::debug!(cause = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let (conn, span) = *session;
            span.in_scope(|| serve(conn, socket)).instrument(span)
        })
        .into_response())
}

/// The `101 Switching Protocols` answer to an HTTP/1.1 upgrade.
fn switching_protocols(accept: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The session over axum's socket (HTTP/2), with its open and close logged at debug level (in
/// the connection's span: the caller enters it, and instruments the future with it).
///
/// Not an `async fn`: one would keep its arguments (the connection and the socket, 550
/// bytes) in its future beside the session's, which holds them again, for the connection's
/// life. The session's future is the task's future here, with the close logged by `map`.
fn serve(
    conn: chat_core::Connection,
    socket: WebSocket,
) -> impl std::future::Future<Output = ()> + Send {
    tracing::debug!("open");
    session::serve(conn, Socket::new(socket)).map(|end| tracing::debug!(?end, "closed"))
}
