//! [`Alarm`]: what is raised on a connection from outside its session.

use std::{
    sync::atomic::{AtomicU8, Ordering},
    task::{Context, Poll, Waker},
};

use futures_util::task::AtomicWaker;

/// Why a connection must end, raised from outside its session (the chat is shutting down, its
/// queue overflowed, the host revoked or removed its user), and, apart from those, the chores
/// due (a keepalive ping, rooms to leave).
///
/// The session polls it on every turn of its loop, so a poll is a load and an uncontended
/// waker registration, never a lock (see `docs/perf.md`, "Alarm").
#[derive(Debug, Default)]
pub(crate) struct Alarm {
    raised: AtomicU8,
    waker: AtomicWaker,
    /// The chores due ([`Alarm::PING`], [`Alarm::EVICTED`]), taken by the session. Apart from
    /// the end causes: they are taken, not sticky, and have their own waker so that taking
    /// them never leaves the end signal unregistered.
    chores: AtomicU8,
    chore_waker: AtomicWaker,
}

impl Alarm {
    /// The chat is shutting down.
    pub(crate) const SHUTDOWN: u8 = 1;
    /// The outgoing queue overflowed.
    pub(crate) const SLOW: u8 = 2;
    /// The host revoked the user's access (close 4401).
    pub(crate) const REVOKED: u8 = 4;
    /// The host removed the user (close 4403).
    pub(crate) const REMOVED: u8 = 8;
    /// The chat is draining: close 1012, "reconnect elsewhere".
    pub(crate) const DRAIN: u8 = 16;

    /// Chore: a keepalive ping is due (the node's keepalive sweep).
    pub(crate) const PING: u8 = 1;
    /// Chore: the hub took the connection out of rooms whose membership ended (see
    /// `Hub::control`); the connection must leave them.
    pub(crate) const EVICTED: u8 = 2;

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
        self.chore(Self::PING);
    }

    /// A chore is due: wakes the session.
    pub(crate) fn chore(&self, chore: u8) {
        self.chores.fetch_or(chore, Ordering::AcqRel);
        self.chore_waker.wake();
    }

    /// Takes `chore` if it is due (for a caller that does it outside the session's loop).
    pub(crate) fn take_chore(&self, chore: u8) -> bool {
        self.chores.load(Ordering::Acquire) & chore != 0
            && self.chores.fetch_and(!chore, Ordering::AcqRel) & chore != 0
    }

    /// Ready (and taken) with the chores due once any is. `registered` is the caller's record
    /// of the waker it left here: while the task's waker is unchanged, a poll is one atomic
    /// swap.
    pub(crate) fn poll_chores(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<Waker>,
    ) -> Poll<u8> {
        let chores = self.chores.swap(0, Ordering::AcqRel);
        if chores != 0 {
            // Waking took the waker out: register again on the next poll.
            *registered = None;
            return Poll::Ready(chores);
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        self.chore_waker.register(cx.waker());
        *registered = Some(cx.waker().clone());
        match self.chores.swap(0, Ordering::AcqRel) {
            0 => Poll::Pending,
            chores => {
                *registered = None;
                Poll::Ready(chores)
            }
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
