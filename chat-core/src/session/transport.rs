//! The client's transport as the session and the node's dispatcher share it.
//!
//! [`Transport`] owns the hand-over: it attaches itself to the connection's outbox so that the
//! dispatcher can write an idle connection's frame inline ([`InlineWrite`]), and detaches
//! before the session closes the socket (nothing may follow a close frame) and when dropped.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, TryLockError},
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use futures_util::{Sink, Stream};

use super::{Inbound, Outbound};
use crate::{
    fanout::{Flushed, Inline, InlineWrite, Outbox},
    sync::lock,
};

/// The transport behind the mutex that the session takes for each poll and an inline write
/// takes with `try_lock` (uncontended but for the rare inline write that races with the
/// session's own poll).
struct Locked<T>(Mutex<T>);

/// The session's transport: the client's socket, shared with inline writes while attached.
pub(super) struct Transport<T> {
    locked: Arc<Locked<T>>,
    outbox: Arc<Outbox>,
}

impl<T> Transport<T>
where
    T: Sink<Outbound> + Unpin + Send + 'static,
{
    /// Wraps `transport` and attaches it to `outbox` for inline writes.
    pub(super) fn attach(transport: T, outbox: &Arc<Outbox>) -> Self {
        let locked = Arc::new(Locked(Mutex::new(transport)));
        outbox.attach(locked.clone());
        Self {
            locked,
            outbox: outbox.clone(),
        }
    }
}

impl<T> Transport<T> {
    /// Stops inline writes: the session writes alone from now on. Idempotent.
    pub(super) fn detach(&self) {
        self.outbox.detach();
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        // A poll that panicked leaves a transport that fails its next call: no invariant of
        // ours to protect.
        lock(&self.locked.0)
    }
}

impl<T> Drop for Transport<T> {
    fn drop(&mut self) {
        self.detach();
    }
}

impl<T: Stream<Item = Inbound> + Unpin> Stream for Transport<T> {
    type Item = Inbound;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        Pin::new(&mut *self.lock()).poll_next(cx)
    }
}

impl<T: Sink<Outbound> + Unpin> Sink<Outbound> for Transport<T> {
    type Error = T::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound) -> Result<(), T::Error> {
        Pin::new(&mut *self.lock()).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), T::Error>> {
        Pin::new(&mut *self.lock()).poll_close(cx)
    }
}

/// An inline write: one non-blocking attempt, from the dispatcher's task. Whatever would wait
/// goes back to the session: a held lock or a backed-up transport ([`Inline::Busy`]: the
/// frame is queued), a flush that would block ([`Inline::Unflushed`]: the session flushes
/// with its own waker, so the no-op waker here is never the one left waiting).
impl<T> InlineWrite for Locked<T>
where
    T: Sink<Outbound> + Unpin + Send,
{
    fn try_write(&self, frame: Bytes) -> Inline {
        // This runs on the dispatcher's task: a panic in transport code must cost this one
        // connection (its session meets the failure), not the node's fan-out.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_now(frame)))
            .unwrap_or(Inline::Failed)
    }

    fn try_write_queued(&self, frames: &mut VecDeque<Bytes>) -> Flushed {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_queued(frames)))
            .unwrap_or(Flushed::Failed)
    }
}

impl<T: Sink<Outbound> + Unpin> Locked<T> {
    fn write_now(&self, frame: Bytes) -> Inline {
        let mut transport = match self.0.try_lock() {
            Ok(transport) => transport,
            Err(TryLockError::WouldBlock) => return Inline::Busy(frame),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        let mut transport = Pin::new(&mut *transport);
        let mut cx = Context::from_waker(Waker::noop());
        match transport.as_mut().poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Inline::Failed,
            Poll::Pending => return Inline::Busy(frame),
        }
        if transport
            .as_mut()
            .start_send(Outbound::Text(frame))
            .is_err()
        {
            return Inline::Failed;
        }
        match transport.poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Inline::Written,
            Poll::Ready(Err(_)) => Inline::Failed,
            Poll::Pending => Inline::Unflushed,
        }
    }
}

impl<T: Sink<Outbound> + Unpin> Locked<T> {
    fn write_queued(&self, frames: &mut VecDeque<Bytes>) -> Flushed {
        let mut transport = match self.0.try_lock() {
            Ok(transport) => transport,
            Err(TryLockError::WouldBlock) => return Flushed::Busy,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        let mut transport = Pin::new(&mut *transport);
        let mut cx = Context::from_waker(Waker::noop());
        while !frames.is_empty() {
            match transport.as_mut().poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Flushed::Failed,
                // Backed up: the session flushes, then writes the rest.
                Poll::Pending => return Flushed::Unflushed,
            }
            let Some(frame) = frames.pop_front() else {
                break;
            };
            if transport
                .as_mut()
                .start_send(Outbound::Text(frame))
                .is_err()
            {
                return Flushed::Failed;
            }
        }
        match transport.poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Flushed::Written,
            Poll::Ready(Err(_)) => Flushed::Failed,
            Poll::Pending => Flushed::Unflushed,
        }
    }
}

/// A stream and a sink used as one transport (see [`run`](super::run)).
pub(super) struct Duplex<S, K> {
    pub(super) inbound: S,
    pub(super) outbound: K,
}

impl<S: Stream + Unpin, K: Unpin> Stream for Duplex<S, K> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.inbound).poll_next(cx)
    }
}

impl<S: Unpin, K: Sink<Outbound> + Unpin> Sink<Outbound> for Duplex<S, K> {
    type Error = K::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outbound) -> Result<(), K::Error> {
        Pin::new(&mut self.outbound).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), K::Error>> {
        Pin::new(&mut self.outbound).poll_close(cx)
    }
}
