//! The engine's metrics, through the [`metrics`] facade: the host installs the recorder
//! (chat-tower's `metrics::install_prometheus`, or any `metrics` exporter) **before** it
//! builds the chat; the engine never installs one. Without a recorder every handle is a
//! no-op. All names start with `roomcast_`; the table is in `docs/operations.md`.
//!
//! Cost on the hot path: the handles are registered once per process (the first
//! [`Chat`](crate::Chat) built) and cached here, so a counter is one atomic add on a cached
//! handle: no label lookup, no formatting. A room message delivered to N local connections
//! costs one add of N (per envelope, not per delivery) and one latency sample. Gauges
//! (connections, rooms, subscriptions, queue depth) are not kept up on the hot path at all:
//! [`Chat::record_gauges`](crate::Chat::record_gauges) reads them from the node when the
//! host renders the metrics.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::{error::Limit, session::SessionEnd};

/// The cached handles.
pub(crate) struct Metrics {
    pub(crate) room_messages: Counter,
    pub(crate) direct_messages: Counter,
    /// Direct messages held for a recipient with no connection (also counted in
    /// `direct_messages`), and held ones published when the recipient came back.
    pub(crate) directs_held: Counter,
    pub(crate) directs_released: Counter,
    /// Room messages stored in the history archive, and those it could not take (only the
    /// PostgreSQL archive counts them).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) archived: Counter,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) archive_dropped: Counter,
    pub(crate) deliveries: Counter,
    pub(crate) publish_errors_room: Counter,
    pub(crate) publish_errors_direct: Counter,
    pub(crate) broker_reconnects: Counter,
    pub(crate) resyncs_reconnect: Counter,
    pub(crate) resyncs_replay: Counter,
    pub(crate) resyncs_truncated: Counter,
    pub(crate) resyncs_overloaded: Counter,
    pub(crate) frames_paced: Counter,
    pub(crate) connections_opened: Counter,
    rate_limited: [Counter; 6],
    closed: [Counter; 9],
    pub(crate) delivery_latency: Histogram,
    pub(crate) connections: Gauge,
    pub(crate) room_memberships: Gauge,
    pub(crate) rooms: Gauge,
    pub(crate) subscriptions: Gauge,
    pub(crate) queued_frames: Gauge,
    pub(crate) queue_max: Gauge,
    pub(crate) draining: Gauge,
    pub(crate) runtime_tasks: Gauge,
}

/// The `reason` label of `roomcast_connections_closed_total`, in [`SessionEnd`] order.
const CLOSE_REASONS: [&str; 9] = [
    "client_closed",
    "shutdown",
    "slow_consumer",
    "revoked",
    "removed",
    "too_large",
    "idle",
    "send_failed",
    "draining",
];

/// The `limit` label of `roomcast_rate_limited_total`, in [`Limit`] order.
const LIMITS: [&str; 6] = [
    "messages",
    "joins",
    "directs",
    "room_creations",
    "connections",
    "guests",
];

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The handles, registered with the recorder installed now on first use.
pub(crate) fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::register)
}

impl Metrics {
    fn register() -> Self {
        Self {
            room_messages: counter!("roomcast_messages_total", "kind" => "room"),
            direct_messages: counter!("roomcast_messages_total", "kind" => "direct"),
            directs_held: counter!("roomcast_directs_held_total"),
            directs_released: counter!("roomcast_directs_released_total"),
            archived: counter!("roomcast_archived_total"),
            archive_dropped: counter!("roomcast_archive_dropped_total"),
            deliveries: counter!("roomcast_deliveries_total"),
            publish_errors_room: counter!("roomcast_publish_errors_total", "kind" => "room"),
            publish_errors_direct: counter!("roomcast_publish_errors_total", "kind" => "direct"),
            broker_reconnects: counter!("roomcast_broker_reconnects_total"),
            resyncs_reconnect: counter!("roomcast_resyncs_total", "reason" => "broker_reconnected"),
            resyncs_replay: counter!("roomcast_resyncs_total", "reason" => "replay_overflow"),
            resyncs_truncated: counter!("roomcast_resyncs_total", "reason" => "replay_truncated"),
            resyncs_overloaded: counter!("roomcast_resyncs_total", "reason" => "node_overloaded"),
            frames_paced: counter!("roomcast_frames_paced_total"),
            connections_opened: counter!("roomcast_connections_opened_total"),
            rate_limited: LIMITS
                .map(|limit| counter!("roomcast_rate_limited_total", "limit" => limit)),
            closed: CLOSE_REASONS
                .map(|reason| counter!("roomcast_connections_closed_total", "reason" => reason)),
            delivery_latency: histogram!("roomcast_delivery_latency_seconds"),
            connections: gauge!("roomcast_connections"),
            room_memberships: gauge!("roomcast_room_memberships"),
            rooms: gauge!("roomcast_rooms_local"),
            subscriptions: gauge!("roomcast_subscriptions"),
            queued_frames: gauge!("roomcast_outgoing_queued_frames"),
            queue_max: gauge!("roomcast_outgoing_queue_max"),
            draining: gauge!("roomcast_draining"),
            runtime_tasks: gauge!("roomcast_runtime_tasks"),
        }
    }

    /// Counts a request refused by a per-user limit.
    pub(crate) fn rate_limited(&self, limit: Limit) {
        let i = match limit {
            Limit::Messages => 0,
            Limit::Joins => 1,
            Limit::Directs => 2,
            Limit::RoomCreations => 3,
            Limit::Connections => 4,
            Limit::Guests => 5,
        };
        self.rate_limited[i].increment(1);
    }

    /// Counts a connection that ended, by why.
    pub(crate) fn closed(&self, end: SessionEnd) {
        let i = match end {
            SessionEnd::ClientClosed => 0,
            SessionEnd::Shutdown => 1,
            SessionEnd::SlowConsumer => 2,
            SessionEnd::Revoked => 3,
            SessionEnd::Removed => 4,
            SessionEnd::TooLarge => 5,
            SessionEnd::Idle => 6,
            SessionEnd::SendFailed => 7,
            SessionEnd::Draining => 8,
        };
        self.closed[i].increment(1);
    }
}

/// The `ts` (Unix epoch milliseconds) of a frame whose last member is `"ts":<digits>` (room
/// and direct messages, system events): a few byte comparisons from the end, no parsing of
/// the rest. `None` for other frames.
pub(crate) fn frame_ts(frame: &[u8]) -> Option<i64> {
    let body = frame.strip_suffix(b"}")?;
    let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let (head, tail) = body.split_at(body.len() - digits);
    if !head.ends_with(b"\"ts\":") {
        return None;
    }
    tail.iter().try_fold(0i64, |n, d| {
        n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::frame_ts;

    #[test]
    fn ts_is_read_from_the_frame_tail() {
        assert_eq!(
            frame_ts(br#"{"type":"message","id":"1-0","room":"r","from":{"id":"u","name":"U"},"body":"hi","ts":1700000000123}"#),
            Some(1_700_000_000_123)
        );
        assert_eq!(frame_ts(br#"{"type":"resync","reason":"x"}"#), None);
        assert_eq!(frame_ts(br#"{"type":"x","body":"ts","n":12}"#), None);
        assert_eq!(frame_ts(b""), None);
    }
}
