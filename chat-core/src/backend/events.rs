//! A node's event stream: the bounded channel from its broker (the memory cluster's publish,
//! the Redis Pub/Sub reader) to its dispatcher.
//!
//! # Overflow
//! The sender never waits: the memory broker sends under its pub/sub lock, and Redis pushes
//! arrive on the redis crate's connection task, which must keep reading (a Pub/Sub client that
//! stops reading is disconnected by Redis once its output buffer passes
//! `client-output-buffer-limit pubsub`, 32 MB hard / 8 MB for 60 s by default, and then
//! *every* topic of the node misses messages until the resubscription). So when the channel is
//! full, the event is dropped and recorded instead:
//! - an envelope: its topic joins the node's *missed* topics (past [`MISSED_TOPICS_MAX`]
//!   topics, the node marks everything missed);
//! - a [`Control`] (the host's order about a user): kept aside, in full, and applied later (a
//!   revocation is never lost);
//! - a [`BrokerEvent::Reconnected`]: everything missed.
//!
//! The dispatcher takes the record ([`Events::take_missed`]) before it handles each event, and
//! sends `resync` (reason `node_overloaded`) to the local connections of every missed topic
//! (all of them if everything was missed): their clients reload the history, so no message is
//! silently lost. A topic's `resync` comes before any later frame of that topic: the record is
//! made before the sender's next event can enter the channel, and the channel is read in order.
//! The events in the channel at that moment are delivered after the `resync` (a client may see
//! one of them twice: in the reloaded history and live; ids tell).

use std::{
    collections::HashSet,
    mem,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::broker::{BrokerEvent, Control, Topic};
use crate::sync::lock;

/// Events a node's channel holds unless its backend is configured otherwise (the memory
/// cluster's `MemoryConfig::event_queue`, `RedisConfig::event_queue`). Default 65,536: at
/// about 100 bytes of envelope per event, a few MB at most; a dispatcher that only moves
/// frames into connection queues drains it in a few milliseconds.
pub const DEFAULT_EVENT_QUEUE: usize = 65_536;

/// Missed topics recorded one by one; past this, everything is marked missed.
pub const MISSED_TOPICS_MAX: usize = 1_024;

/// A node's bounded event channel: the [`EventSender`] for the broker and the [`Events`] for
/// the dispatcher. `capacity` is at least 1.
pub fn channel(capacity: usize) -> (EventSender, Events) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let missed = Arc::new(Record::default());
    (
        EventSender {
            tx,
            missed: missed.clone(),
        },
        Events { rx, missed },
    )
}

/// What overflowed, shared by the two ends.
#[derive(Default)]
struct Record {
    /// Set with `missed`; lets the dispatcher skip the lock while nothing overflowed.
    any: AtomicBool,
    missed: Mutex<Missed>,
}

/// What a node's dispatcher missed because its channel was full (see the module docs).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missed {
    /// Topics whose frames were dropped.
    pub topics: HashSet<Topic>,
    /// Everything may have been missed: `resync` every local connection.
    pub all: bool,
    /// The host's orders that did not fit, in the order they came.
    pub controls: Vec<Control>,
}

/// The broker's end of a node's event channel. Cheap to clone; never waits.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<BrokerEvent>,
    missed: Arc<Record>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender").finish_non_exhaustive()
    }
}

/// The node (its dispatcher) is gone: nobody reads the events any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed;

impl EventSender {
    /// Hands `event` to the dispatcher, or records it as missed if the channel is full.
    ///
    /// # Errors
    /// [`Closed`] once the receiving end is dropped.
    pub fn send(&self, event: BrokerEvent) -> Result<(), Closed> {
        match self.tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Closed),
            Err(TrySendError::Full(event)) => {
                let mut missed = lock(&self.missed.missed);
                match event {
                    BrokerEvent::Envelope(envelope) => {
                        if !missed.all {
                            missed.topics.insert(envelope.topic);
                            if missed.topics.len() > MISSED_TOPICS_MAX {
                                missed.topics.clear();
                                missed.all = true;
                            }
                        }
                    }
                    BrokerEvent::Control(control) => missed.controls.push(control),
                    BrokerEvent::Reconnected => {
                        missed.topics.clear();
                        missed.all = true;
                    }
                }
                self.missed.any.store(true, Ordering::Release);
                drop(missed);
                tracing::warn!("node event queue full: dropped an event (its rooms get resync)");
                Ok(())
            }
        }
    }
}

/// The dispatcher's end of a node's event channel.
pub struct Events {
    rx: mpsc::Receiver<BrokerEvent>,
    missed: Arc<Record>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<BrokerEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<BrokerEvent> {
        self.rx.try_recv().ok()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Events waiting: the dispatcher's backlog.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// What was dropped since the last call, if anything (see the module docs).
    pub fn take_missed(&self) -> Option<Missed> {
        if !self.missed.any.swap(false, Ordering::Acquire) {
            return None;
        }
        Some(mem::take(&mut *lock(&self.missed.missed)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{
        backend::broker::{ControlAction, Envelope, NodeId, Origin},
        protocol::{RoomId, UserId},
    };

    fn envelope(room: &str) -> BrokerEvent {
        BrokerEvent::Envelope(Envelope {
            origin: Origin {
                node: NodeId::random(),
                conn: None,
            },
            topic: Topic::Room(RoomId::new(room)),
            frame: Bytes::from_static(b"{}"),
        })
    }

    #[tokio::test]
    async fn a_full_channel_records_what_it_dropped_and_keeps_controls() {
        let (tx, mut rx) = channel(2);
        tx.send(envelope("a")).unwrap();
        tx.send(envelope("a")).unwrap();
        assert_eq!(rx.take_missed(), None);
        // Full: these are recorded, not queued.
        tx.send(envelope("b")).unwrap();
        tx.send(envelope("b")).unwrap();
        let revoke = Control {
            user: UserId::new("u"),
            action: ControlAction::Revoke,
        };
        tx.send(BrokerEvent::Control(revoke.clone())).unwrap();
        let missed = rx.take_missed().unwrap();
        assert_eq!(
            missed.topics,
            HashSet::from([Topic::Room(RoomId::new("b"))])
        );
        assert!(!missed.all);
        assert_eq!(missed.controls, vec![revoke]);
        assert_eq!(rx.take_missed(), None, "taken once");
        // The two that fitted are still delivered, in order.
        assert!(matches!(rx.recv().await, Some(BrokerEvent::Envelope(_))));
        assert!(matches!(rx.try_recv(), Some(BrokerEvent::Envelope(_))));
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn too_many_missed_topics_or_a_reconnect_mean_everything() {
        let (tx, rx) = channel(1);
        tx.send(envelope("first")).unwrap();
        for i in 0..=MISSED_TOPICS_MAX {
            tx.send(envelope(&i.to_string())).unwrap();
        }
        let missed = rx.take_missed().unwrap();
        assert!(missed.all);
        assert!(missed.topics.is_empty(), "bounded: no list kept once all");
        tx.send(BrokerEvent::Reconnected).unwrap();
        assert!(rx.take_missed().unwrap().all);
    }

    #[tokio::test]
    async fn a_closed_channel_says_so() {
        let (tx, rx) = channel(1);
        drop(rx);
        assert_eq!(tx.send(envelope("a")), Err(Closed));
    }
}
