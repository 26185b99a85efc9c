//! The node's background tasks: the dispatcher (the one consumer of the broker's events),
//! the flush tick (coalesced writes) and the keepalive sweep.

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;

use crate::{
    backend::{
        broker::{BrokerEvent, Envelope, Origin},
        events::Missed,
        Events,
    },
    config::ChatConfig,
    fanout::{FlushTick, Hub},
    protocol::{ResyncFrame, ServerFrame},
};

/// The keepalive sweep is spread over this many slices of the ping interval, so that the
/// node's connections are not all pinged at the same moment.
const KEEPALIVE_SLICES: u64 = 16;

/// The node's tasks; dropping this aborts them.
pub(super) struct Tasks {
    dispatcher: JoinHandle<()>,
    /// The node's flush tick and its task, when writes are coalesced.
    tick: Option<(Arc<FlushTick>, JoinHandle<()>)>,
    keepalive: JoinHandle<()>,
}

impl Tasks {
    /// Spawns the node's tasks on the current tokio runtime.
    pub(super) fn spawn(hub: &Arc<Hub>, events: Events, config: &ChatConfig) -> Self {
        let dispatcher = tokio::spawn(dispatch(hub.clone(), events));
        let tick = (!config.write_coalesce.is_zero()).then(|| {
            let tick = FlushTick::new(config.write_coalesce, config.write_coalesce_max);
            (tick.clone(), tokio::spawn(tick.run()))
        });
        let keepalive = tokio::spawn(keepalive(hub.clone(), config.ping_interval));
        Self {
            dispatcher,
            tick,
            keepalive,
        }
    }

    /// The flush tick, when writes are coalesced.
    pub(super) fn tick(&self) -> Option<&Arc<FlushTick>> {
        self.tick.as_ref().map(|(tick, _)| tick)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.dispatcher.abort();
        if let Some((tick, task)) = self.tick.take() {
            task.abort();
            tick.stop();
        }
        self.keepalive.abort();
    }
}

/// The node's keepalive sweep: every `ping_interval`, each local connection is told once
/// that a ping is due (its session then checks the idle timeout and pings the client). One
/// timer per node rather than one per connection, so an idle connection holds no timer entry
/// and its session has one branch less to poll. A connection's first ping comes within one
/// interval of its connect.
async fn keepalive(hub: Arc<Hub>, ping_interval: Duration) {
    let slices = KEEPALIVE_SLICES;
    let every = (ping_interval / slices as u32).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for slice in (0..slices).cycle() {
        tick.tick().await;
        hub.ping_slice(slice, slices);
    }
}

/// The node's dispatcher: the one consumer of the broker's event stream.
async fn dispatch(hub: Arc<Hub>, mut events: Events) {
    while let Some(event) = events.recv().await {
        // Before the event: what overflowed gets its `resync` ahead of later frames.
        if let Some(missed) = events.take_missed() {
            resync_missed(&hub, missed);
        }
        match event {
            BrokerEvent::Envelope(envelope) => {
                // Inline writes to idle connections while keeping up; with a backlog, the
                // connections' own tasks write (on every core) and this only queues.
                hub.deliver(&envelope, events.is_empty());
            }
            // Its own variant: frames never pay for it.
            BrokerEvent::Control(control) => hub.control(&control),
            BrokerEvent::Reconnected => {
                let frame = ServerFrame::Resync(ResyncFrame {
                    reason: "broker_reconnected".into(),
                })
                .encode();
                hub.broadcast_all(&frame);
            }
        }
    }
}

/// The `resync` (reason `node_overloaded`) for what the node's full event channel dropped,
/// and the host's orders it kept aside (see `backend::events`).
fn resync_missed(hub: &Hub, missed: Missed) {
    let frame = ServerFrame::Resync(ResyncFrame {
        reason: "node_overloaded".into(),
    })
    .encode();
    if missed.all {
        hub.broadcast_all(&frame);
    } else {
        for topic in missed.topics {
            let envelope = Envelope {
                origin: Origin {
                    node: hub.node(),
                    conn: None,
                },
                topic,
                frame: frame.clone(),
            };
            hub.deliver(&envelope, false);
        }
    }
    for control in missed.controls {
        hub.control(&control);
    }
}
