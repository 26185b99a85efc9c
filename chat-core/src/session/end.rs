//! Why a session ends, and the signal that ends it from outside.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use crate::fanout::{Alarm, Outbox};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed, or its transport ended.
    ClientClosed,
    /// The chat is shutting down (close 1001).
    Shutdown,
    /// The client's queue overflowed (close 4008).
    SlowConsumer,
    /// The host revoked the user's access (close 4401).
    Revoked,
    /// The host removed the user (close 4403).
    Removed,
    /// A frame over the size limit (close 1009).
    TooLarge,
    /// Nothing arrived for the idle timeout (close 1008).
    Idle,
    /// Sending to the client failed.
    SendFailed,
    /// The instance is draining (close 1012: reconnect, to another instance).
    Draining,
}

/// A future that completes when a connection must end for a reason outside it:
/// [`SessionEnd::Shutdown`], [`SessionEnd::Removed`], [`SessionEnd::Revoked`] or
/// [`SessionEnd::SlowConsumer`] (the first of these wins if several are raised). It can be polled again after completing. Made by
/// [`Connection::end_signal`](crate::Connection::end_signal).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct EndSignal {
    outbox: Arc<Outbox>,
    /// The waker last registered with the alarm. The alarm only gives it up when it is raised,
    /// so while the task's waker is the same, a poll is just a load of the raised causes.
    registered: Option<Waker>,
}

impl EndSignal {
    pub(crate) fn new(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            registered: None,
        }
    }
}

impl Future for EndSignal {
    type Output = SessionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let this = self.get_mut();
        let poll = match &this.registered {
            Some(waker) if waker.will_wake(cx.waker()) => match this.outbox.alarm.raised() {
                0 => Poll::Pending,
                raised => Poll::Ready(raised),
            },
            _ => {
                this.registered = Some(cx.waker().clone());
                this.outbox.alarm.poll_raised(cx)
            }
        };
        poll.map(|raised| {
            if raised & Alarm::DRAIN != 0 {
                SessionEnd::Draining
            } else if raised & Alarm::SHUTDOWN != 0 {
                SessionEnd::Shutdown
            } else if raised & Alarm::REMOVED != 0 {
                SessionEnd::Removed
            } else if raised & Alarm::REVOKED != 0 {
                SessionEnd::Revoked
            } else {
                SessionEnd::SlowConsumer
            }
        })
    }
}
