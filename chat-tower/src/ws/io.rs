//! [`WsIo`]: the upgraded connection under tungstenite, with the session's text frames written
//! around it.
//!
//! tungstenite encodes every frame into its own write buffer (a copy of the payload per
//! recipient) and writes it through several layers; for the one frame that is sent to
//! thousands of connections that was most of a delivery's user-space cost. A server's frame is
//! not masked, so its bytes are a 2-to-10-byte header and the payload as it is: [`WsIo`] keeps
//! the payload's `Bytes` (shared by every recipient) beside its header and hands both to the
//! kernel with one `writev` per batch, with no copy.
//!
//! tungstenite still reads, answers pings, and writes pings and close frames, through
//! [`WsIo`]'s `AsyncWrite`, which accepts every byte it is given: what the socket does not take
//! at once waits in the same queue as the text frames. So tungstenite's own buffer is empty
//! after each of its writes, and the bytes leave in the order they were handed over, frame by
//! frame.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Queued bytes past which the socket reports itself not ready (`Sink::poll_ready`): a client
/// that does not read pushes back on the session instead of growing this queue.
pub(super) const BACKED_UP: usize = 64 * 1024;

/// Chunks handed to one `writev`: 2 slices each (header and payload).
const WRITEV_CHUNKS: usize = 16;

/// Chunks the queue keeps when it drains: a batch of frames (the flush tick's, about ten under
/// load) then reuses the buffer instead of allocating and growing it again. A larger one (a
/// burst) is freed at once, and [`WsIo::trim`] (at each keepalive ping) frees what an idle
/// connection does not need.
const KEPT_WHILE_ACTIVE: usize = 32;

/// Chunks an idle connection's queue keeps.
const KEPT_IDLE: usize = 4;

/// One frame (or a run of tungstenite's bytes, with no header) waiting to be written.
struct Chunk {
    head: [u8; 10],
    head_len: u8,
    body: Bytes,
    /// Bytes of `head` then `body` already written.
    sent: usize,
}

impl Chunk {
    /// A text frame carrying `body`: FIN, opcode 1, no mask, the length in 7, 16 or 64 bits.
    fn text(body: Bytes) -> Self {
        let mut head = [0u8; 10];
        head[0] = 0x81;
        let len = body.len();
        let head_len = if len < 126 {
            head[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            head[1] = 126;
            head[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self {
            head,
            head_len,
            body,
            sent: 0,
        }
    }

    /// Bytes as they are (tungstenite's frames).
    fn raw(body: Bytes) -> Self {
        Self {
            head: [0; 10],
            head_len: 0,
            body,
            sent: 0,
        }
    }

    fn len(&self) -> usize {
        usize::from(self.head_len) + self.body.len()
    }

    /// What is left to write: the rest of the header, the rest of the body.
    fn rest(&self) -> (&[u8], &[u8]) {
        let head = usize::from(self.head_len);
        if self.sent < head {
            (&self.head[self.sent..head], &self.body)
        } else {
            (&[], &self.body[self.sent - head..])
        }
    }
}

/// The upgraded connection: reads pass through; writes go out in order, text frames without a
/// copy (see the module docs).
pub(super) struct WsIo<T> {
    inner: T,
    pending: VecDeque<Chunk>,
    /// Bytes in `pending` not written yet.
    pending_bytes: usize,
}

impl<T> WsIo<T> {
    pub(super) fn new(inner: T) -> Self {
        Self {
            inner,
            pending: VecDeque::new(),
            pending_bytes: 0,
        }
    }

    /// Queues a text frame carrying `body` (valid UTF-8: the session's frames are JSON that the
    /// server encoded). Written by the next [`WsIo::poll_drain`].
    pub(super) fn push_text(&mut self, body: Bytes) {
        let chunk = Chunk::text(body);
        self.pending_bytes += chunk.len();
        self.pending.push_back(chunk);
    }

    fn push_raw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.pending_bytes += bytes.len();
        self.pending
            .push_back(Chunk::raw(Bytes::copy_from_slice(bytes)));
    }

    /// Bytes accepted and not written yet.
    pub(super) fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Marks `n` more bytes written.
    fn advance(&mut self, mut n: usize) {
        self.pending_bytes -= n;
        while n > 0 {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            let left = front.len() - front.sent;
            if n < left {
                front.sent += n;
                return;
            }
            n -= left;
            self.pending.pop_front();
        }
        // A burst grew the queue's buffer: it is given back at once.
        self.free_spare(KEPT_WHILE_ACTIVE);
    }

    /// Frees the buffer that traffic grew if nothing is queued and it is larger than an idle
    /// connection keeps (called before each keepalive ping).
    pub(super) fn trim(&mut self) {
        self.free_spare(KEPT_IDLE);
    }

    fn free_spare(&mut self, keep: usize) {
        if self.pending.is_empty() && self.pending.capacity() > keep {
            self.pending = VecDeque::new();
        }
    }
}

impl<T: AsyncWrite + Unpin> WsIo<T> {
    /// Writes what is queued: one `writev` per [`WRITEV_CHUNKS`] frames. `Pending` (with the
    /// waker registered) while the socket is full.
    pub(super) fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(front) = self.pending.front() {
            let written = if self.pending.len() == 1 {
                // The common case (an inline write): one frame, two slices on the stack.
                let (head, body) = front.rest();
                let slices = [IoSlice::new(head), IoSlice::new(body)];
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?
            } else {
                let mut slices = [IoSlice::new(&[]); 2 * WRITEV_CHUNKS];
                let mut count = 0;
                for chunk in self.pending.iter().take(WRITEV_CHUNKS) {
                    let (head, body) = chunk.rest();
                    for part in [head, body] {
                        if !part.is_empty() {
                            slices[count] = IoSlice::new(part);
                            count += 1;
                        }
                    }
                }
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..count]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WsIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// tungstenite's writes (pongs, pings, close frames): always accepted, behind what is queued.
impl<T: AsyncWrite + Unpin> AsyncWrite for WsIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_empty() || this.poll_drain(cx)?.is_ready() {
            match Pin::new(&mut this.inner).poll_write(cx, buf) {
                Poll::Ready(Ok(n)) => this.push_raw(&buf[n.min(buf.len())..]),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => this.push_raw(buf),
            }
        } else {
            this.push_raw(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_headers_use_the_shortest_length() {
        let short = Chunk::text(Bytes::from(vec![b'a'; 125]));
        assert_eq!(&short.head[..usize::from(short.head_len)], &[0x81, 125]);
        let medium = Chunk::text(Bytes::from(vec![b'a'; 300]));
        assert_eq!(
            &medium.head[..usize::from(medium.head_len)],
            &[0x81, 126, 0x01, 0x2c]
        );
        let long = Chunk::text(Bytes::from(vec![b'a'; 70_000]));
        assert_eq!(
            &long.head[..usize::from(long.head_len)],
            &[0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
    }

    /// A writer that takes at most `step` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_keep_frames_whole_and_in_order() {
        let mut io = WsIo::new(Trickle {
            out: Vec::new(),
            step: 3,
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        io.push_text(Bytes::from_static(b"hello"));
        io.push_raw(&[0x89, 0x00]);
        io.push_text(Bytes::from(vec![b'x'; 200]));
        assert!(io.poll_drain(&mut cx).is_ready());
        assert_eq!(io.pending_bytes(), 0);
        let mut want = vec![0x81, 5];
        want.extend_from_slice(b"hello");
        want.extend_from_slice(&[0x89, 0x00, 0x81, 126, 0, 200]);
        want.extend_from_slice(&[b'x'; 200]);
        assert_eq!(io.inner.out, want);
    }

    #[test]
    fn a_batch_keeps_its_buffer_until_the_ping_and_a_burst_gives_it_back() {
        let mut io = WsIo::new(Trickle {
            out: Vec::new(),
            step: usize::MAX,
        });
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut batch = |io: &mut WsIo<Trickle>, frames: usize| {
            for _ in 0..frames {
                io.push_text(Bytes::from_static(b"{}"));
            }
            assert!(io.poll_drain(&mut cx).is_ready());
            assert_eq!(io.pending_bytes(), 0);
            io.pending.capacity()
        };
        // A batch's buffer is reused by the next batch...
        let kept = batch(&mut io, 10);
        assert!(kept >= 10);
        assert_eq!(batch(&mut io, 10), kept);
        // ...an idle connection's ping gives it back...
        io.trim();
        assert_eq!(io.pending.capacity(), 0);
        // ...and a burst's is freed as soon as it drains.
        assert_eq!(batch(&mut io, KEPT_WHILE_ACTIVE + 1), 0);
    }
}
