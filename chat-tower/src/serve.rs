//! [`serve`]: an HTTP/1 server for the app that holds the chat router, with the limits a
//! server on the open internet needs, which `axum::serve` does not set: a header-read
//! timeout, an idle timeout and a cap on open connections ([`ChatConfig`]'s `http_*` fields).
//!
//! Built on hyper's HTTP/1 connection builder (`header_read_timeout` with hyper-util's
//! `TokioTimer`, `serve_connection(..).with_upgrades()` for the WebSocket) and an accept
//! loop capped by a semaphore. The semaphore's permit lives in the connection's I/O object,
//! which moves into the WebSocket on an upgrade: a WebSocket holds its permit until it
//! closes, and counts against the cap like any connection.
//!
//! The idle timeout keeps no timer per connection (an idle connection costs none): a timer
//! exists only while something waits on the client, made when the wait starts and dropped
//! when it ends. A request body that stops arriving (`IdleBody`, while the handler waits
//! for its next bytes) closes the connection with no response; so does a write the client
//! does not read (`Guarded`, while a write is blocked: a response or a WebSocket's
//! frames). An idle keep-alive connection is hyper's header-read timeout's (it runs from
//! the end of the previous response); an idle WebSocket is the chat's (its pings and
//! `ChatConfig::idle_timeout`, from the node's keepalive sweep).
//!
//! Every request carries the connection's peer as axum's [`ConnectInfo<SocketAddr>`], as
//! `into_make_service_with_connect_info` would give it (the guest limit reads it).
use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, Request},
    response::Response,
    BoxError, Router,
};
use chat_core::ChatConfig;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

/// Serves `app` on `listener` until `shutdown` completes, with the HTTP limits of `config`:
/// [`http_header_read_timeout`](ChatConfig::http_header_read_timeout),
/// [`http_idle_timeout`](ChatConfig::http_idle_timeout) and
/// [`http_max_connections`](ChatConfig::http_max_connections). Every accepted socket gets
/// `TCP_NODELAY` (chat frames are small and latency-bound).
///
/// On `shutdown` it stops accepting, lets each HTTP connection finish its request in flight,
/// and returns once they have closed. Upgraded WebSockets are the chat's: close them in
/// `shutdown` itself, before it completes, with [`ChatHandle::shutdown`](crate::ChatHandle)
/// (close code 1001).
///
/// # Errors
/// None in practice: accept errors (e.g. out of file descriptors) are logged and retried a
/// second later, as `axum::serve` does.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    config: &ChatConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(nonzero(config.http_header_read_timeout));
    let idle = nonzero(config.http_idle_timeout);
    let permits = Arc::new(Semaphore::new(
        config.http_max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // The signal's receiver is dropped when `shutdown` completes; the connections wait for
    // that. `closed` has one receiver per live connection task: its sender waits for all.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        // A permit first: at the cap, connections wait in the listen backlog, unaccepted.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never: the semaphore is not closed
            },
            () = signal_tx.closed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = signal_tx.closed() => break,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %err, "TCP_NODELAY not set");
        }
        let io = TokioIo::new(Guarded::new(tcp, permit, idle));
        let service = App {
            router: app.clone(),
            idle,
            peer,
        };
        let conn = http.serve_connection(io, service).with_upgrades();
        let signal_tx = signal_tx.clone();
        let closed_rx = closed_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let mut signalled = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(err) = result {
                            // Header-read timeouts, idle timeouts and resets land here.
                            tracing::debug!(cause = %err, "connection ended");
                        }
                        break;
                    }
                    () = signal_tx.closed(), if !signalled => {
                        signalled = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed_rx);
        });
    }
    drop(closed_rx);
    drop(listener);
    closed_tx.closed().await;
    Ok(())
}

/// `None` for zero: the limit is off.
fn nonzero(limit: Duration) -> Option<Duration> {
    (!limit.is_zero()).then_some(limit)
}

/// An accept error: a connection that died before it was accepted is skipped; anything else
/// (out of file descriptors) is logged and waited out for a second.
async fn accept_error(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(cause = %err, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The app as hyper calls it: each request's body is an [`IdleBody`], and a request whose
/// body stalled ends the connection instead of being answered.
#[derive(Clone)]
struct App {
    router: Router,
    idle: Option<Duration>,
    /// The client's address, for handlers that read [`ConnectInfo`] (the guest limit).
    peer: SocketAddr,
}

impl hyper::service::Service<axum::http::Request<Incoming>> for App {
    type Response = Response;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Response>> + Send>>;

    fn call(&self, request: axum::http::Request<Incoming>) -> Self::Future {
        let stalled = Arc::new(AtomicBool::new(false));
        let idle = self.idle;
        let mut request: Request = request.map(|body| {
            axum::body::Body::new(IdleBody {
                body,
                idle,
                timer: None,
                stalled: stalled.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = tower::ServiceExt::oneshot(self.router.clone(), request);
        Box::pin(async move {
            let response: Result<Response, Infallible> = response.await;
            let Ok(response) = response;
            if stalled.load(Ordering::Relaxed) {
                // No answer: the client stopped sending, and gets the connection closed.
                return Err(timed_out("request body stalled past the idle timeout"));
            }
            Ok(response)
        })
    }
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// A request body that fails once no byte of it came for the idle timeout. Its timer exists
/// only while the handler waits for the body's next bytes.
struct IdleBody {
    body: Incoming,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Set when it failed: the request ends the connection (see [`App`]).
    stalled: Arc<AtomicBool>,
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let Some(idle) = this.idle else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.timer = None;
        this.stalled.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(timed_out(
            "request body stalled past the idle timeout",
        )
        .into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An accepted socket with its share of the connection cap, and a timer while a write is
/// blocked: a write that the client leaves unread for the idle timeout fails (`TimedOut`),
/// which ends the connection (hyper's, or the WebSocket's session).
struct Guarded {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Option<Duration>,
    /// Made when a write blocks, dropped when one goes through.
    blocked: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, idle: Option<Duration>) -> Self {
        Self {
            tcp,
            _permit: permit,
            idle,
            blocked: None,
        }
    }

    /// `result` of a write or flush, or `TimedOut` once writes blocked for the idle timeout.
    fn written<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.blocked = None;
            return result;
        }
        let Some(idle) = self.idle else {
            return Poll::Pending;
        };
        let timer = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(timed_out("a write blocked past the idle timeout")))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.written(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.written(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.tcp).poll_flush(cx);
        this.written(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn guarded(idle: Duration) -> (Guarded, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        (
            Guarded::new(accepted.unwrap().0, permit, Some(idle)),
            client.unwrap(),
        )
    }

    #[tokio::test]
    async fn a_write_the_client_leaves_unread_times_out_and_an_idle_one_does_not() {
        let idle = Duration::from_millis(300);
        let (mut server, mut client) = guarded(idle).await;
        // Idle, with a read pending past the idle timeout: nothing times out.
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(2 * idle, server.read(&mut buf)).await;
        assert!(read.is_err(), "an idle connection was cut: {read:?}");
        client.write_all(b"hi").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 2);
        // The client reads nothing: once the socket buffers are full a write blocks, and
        // fails after the idle timeout.
        let chunk = vec![0u8; 64 * 1024];
        let err = loop {
            match server.write(&chunk).await {
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }
}
