//! [`Alarm`]: what is raised on a connection from outside its session.

use std::{
    sync::atomic::{AtomicBool, AtomicU8, Ordering},
    task::{Context, Poll, Waker},
};

use futures_util::task::AtomicWaker;

/// Why a connection must end, raised from outside its session (the chat is shutting down, or
/// its queue overflowed), and, apart from those, whether a keepalive ping is due.
///
/// The session polls it on every turn of its loop, so a poll is a load and an uncontended
/// waker registration, never a lock (see `docs/perf.md`, "Alarm").
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    raised: AtomicU8,
    waker: AtomicWaker,
    /// A keepalive ping is due (raised by the node's keepalive sweep, taken by the session).
    /// Apart from the end causes: it is taken, not sticky, and has its own waker so that
    /// taking it never leaves the end signal unregistered.
    ping: AtomicBool,
    ping_waker: AtomicWaker,
}

impl Alarm {
    /// The chat is shutting down.
    pub(crate) const SHUTDOWN: u8 = 1;
    /// The outgoing queue overflowed.
    pub(crate) const SLOW: u8 = 2;

    /// Raises `cause` (idempotent) and wakes the session.
    pub(crate) fn raise(&self, cause: u8) {
        self.raised.fetch_or(cause, Ordering::AcqRel);
        self.waker.wake();
    }

    /// What has been raised so far (0: nothing).
    pub(crate) fn raised(&self) -> u8 {
        self.raised.load(Ordering::Acquire)
    }

    /// A ping is due: wakes the session.
    pub(crate) fn ping(&self) {
        self.ping.store(true, Ordering::Release);
        self.ping_waker.wake();
    }

    /// Ready (and taken) once a ping is due. `registered` is the caller's record of the waker
    /// it left here: while the task's waker is unchanged, a poll is one atomic swap.
    pub(crate) fn poll_ping(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<Waker>,
    ) -> Poll<()> {
        if self.ping.swap(false, Ordering::AcqRel) {
            // Waking took the waker out: register again on the next poll.
            *registered = None;
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.ping_waker.register(cx.waker());
        *registered = Some(cx.waker().clone());
        if self.ping.swap(false, Ordering::AcqRel) {
            *registered = None;
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ready with the raised causes once anything is raised.
    pub(crate) fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<u8> {
        match self.raised() {
            0 => {
                self.waker.register(cx.waker());
                match self.raised() {
                    0 => Poll::Pending,
                    raised => Poll::Ready(raised),
                }
            }
            raised => Poll::Ready(raised),
        }
    }
}
