//! [`serve`]: an HTTP/1 server for the app that holds the chat router, with the limits a
//! server on the open internet needs, which `axum::serve` does not set: a header-read
//! timeout, an idle timeout and a cap on open connections ([`ChatConfig`]'s `http_*` fields).
//!
//! Built on hyper's HTTP/1 connection builder (`header_read_timeout` with hyper-util's
//! `TokioTimer`, `serve_connection(..).with_upgrades()` for the WebSocket) and an accept
//! loop capped by a semaphore. The semaphore's permit and the idle timer live in the
//! connection's I/O object, which moves into the WebSocket on an upgrade: a WebSocket holds
//! its permit until it closes, and counts against the cap like any connection.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use chat_core::ChatConfig;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
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
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
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
        let conn = http
            .serve_connection(io, TowerToHyperService::new(app.clone()))
            .with_upgrades();
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

/// An accepted socket with its share of the connection cap and its idle timer.
///
/// The timer is checked where the connection waits for the client (a read that would block):
/// both hyper and an upgraded WebSocket always have a read pending. It is re-armed lazily, so
/// that a busy connection costs a clock read per I/O call and no timer operation.
struct Guarded {
    tcp: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Option<Duration>,
    last_active: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(tcp: TcpStream, permit: OwnedSemaphorePermit, idle: Option<Duration>) -> Self {
        Self {
            tcp,
            _permit: permit,
            idle,
            last_active: Instant::now(),
            timer: None,
        }
    }

    fn touch(&mut self) {
        if self.idle.is_some() {
            self.last_active = Instant::now();
        }
    }

    /// `Ready(Err(TimedOut))` once nothing went either way for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(idle) = self.idle else {
            return Poll::Pending;
        };
        loop {
            let deadline = self.last_active + idle;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline && Instant::now() < deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= self.last_active + idle {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle past the idle timeout",
                )));
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
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
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
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
    async fn a_silent_connection_times_out_and_activity_defers_it() {
        let idle = Duration::from_millis(300);
        let (mut server, mut client) = guarded(idle).await;
        let mut buf = [0u8; 8];
        tokio::time::sleep(idle / 2).await;
        client.write_all(b"hi").await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        let active = Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Not before the idle time counted from the last byte (a bound, not a measurement).
        assert!(active.elapsed() >= idle - Duration::from_millis(5));
        drop(client);
    }
}
