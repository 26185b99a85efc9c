//! The node's tests: the host's controls (`access`), per-user limits for every node
//! (`limits`), failed presence exits retried (`presence`) and server-side sends (`sends`).

mod access;
mod limits;
mod overflow;
mod presence;
mod sends;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use crate::{
    backend::{
        broker::{ConnId, Envelope, NodeId},
        store::PresenceStore,
        Reply,
    },
    error::BackendError,
    protocol::{RoomId, UserId},
    User,
};

/// A presence store whose next few exits, and next few records of open WebSockets, fail
/// (doing nothing); everything else goes to `inner`.
struct FailingPresence {
    inner: Arc<dyn PresenceStore>,
    exits: Failures,
    socket_records: Failures,
}

/// How many of the next calls fail, and how many were made.
#[derive(Default)]
struct Failures {
    left: AtomicUsize,
    tries: AtomicUsize,
}

impl Failures {
    /// Counts a call; whether it fails.
    fn fail(&self) -> bool {
        self.tries.fetch_add(1, Ordering::SeqCst);
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn tries(&self) -> usize {
        self.tries.load(Ordering::SeqCst)
    }
}

impl FailingPresence {
    fn new(inner: Arc<dyn PresenceStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            exits: Failures::default(),
            socket_records: Failures::default(),
        })
    }
}

fn down<'a, T: Send + 'a>() -> Reply<'a, T> {
    Box::pin(async { Err(BackendError::Unavailable("down".into())) })
}

impl PresenceStore for FailingPresence {
    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
    ) -> Reply<'a, bool> {
        self.inner.enter(room, user, node, conn)
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
        left: Envelope,
    ) -> Reply<'a, bool> {
        if self.exits.fail() {
            return down();
        }
        self.inner.exit(room, user, node, conn, left)
    }

    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)> {
        self.inner.online(room, limit)
    }

    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>> {
        self.inner.are_online(room, users)
    }

    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>> {
        self.inner.online_counts(rooms)
    }

    fn count_sockets<'a>(
        &'a self,
        user: &'a UserId,
        node: NodeId,
        open: usize,
        max: Option<usize>,
    ) -> Reply<'a, bool> {
        if self.socket_records.fail() {
            return down();
        }
        self.inner.count_sockets(user, node, open, max)
    }
}
