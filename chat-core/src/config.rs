//! [`ChatConfig`]: limits and timings, each with a documented default.

use std::time::Duration;

use crate::protocol::User;

/// Limits and timings of the chat engine. Start from [`ChatConfig::default()`] and change what
/// you need; every default is stated on its field.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Longest message body, in characters (Unicode scalar values). Default 4,000.
    pub max_body_chars: usize,
    /// Largest WebSocket message a client may send, in bytes; a larger one closes the connection
    /// with close code 1009. Default 64 KiB.
    pub max_frame_bytes: usize,
    /// Longest `clientMsgId`, in bytes; longer ones are a `bad_frame`. Default 128.
    pub max_client_msg_id: usize,
    /// Frames that may wait in one connection's outgoing queue. A connection whose queue is
    /// full when a frame arrives is closed with close code 4008 (slow consumer) rather than
    /// letting server memory grow. Default 1,024.
    pub outgoing_queue: usize,
    /// Write coalescing: the shortest period of the node's flush tick. A frame for a
    /// connection that was written less than a period ago waits for the next tick (at most a
    /// period) and leaves with whatever is queued for it meanwhile: one syscall and one TCP
    /// segment instead of one each. The first frame after a quiet spell is written at once.
    /// `Duration::ZERO` writes as frames come (no tick). Default 2 ms.
    pub write_coalesce: Duration,
    /// The longest period of the flush tick. The period starts at `write_coalesce` and
    /// switches to this while the batches it releases hold 1.5 frames or more on average
    /// (connections receiving frames faster than the period: heavy fan-out, where writes are
    /// most of the CPU); it switches back when they hold fewer than 1.25, and a quiet spell
    /// resets it. Set it to `write_coalesce` (or less) for a fixed period: this default
    /// applies whatever `write_coalesce` is. Longer trades latency for CPU under heavy
    /// fan-out; light traffic keeps the shortest period's latency (figures in
    /// `docs/perf.md`, "Write coalescing"). Default 8 ms.
    pub write_coalesce_max: Duration,
    /// How often the server pings an idle connection. Default 20 s.
    pub ping_interval: Duration,
    /// A connection from which nothing (not even a pong) arrived for this long is closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// Sustained frames per second one connection may send. Default 20.
    pub rate_per_second: u32,
    /// Frames one connection may send in a burst above the sustained rate. Default 40.
    pub rate_burst: u32,
    /// Messages per history page when the request names no limit. Default 50.
    pub history_page_default: usize,
    /// Largest history page. Default 200.
    pub history_page_max: usize,
    /// Rooms one connection may have joined at once. Default 100.
    pub max_rooms_per_connection: usize,
    /// Members a room may have. A user who is not a member yet is refused with `room_full`
    /// (REST 409, WebSocket `error`) once a room has this many, by `join-room` and by a
    /// WebSocket `join` (the host's `Chat::add_member` is not capped). With rooms that expire
    /// when idle (the backend's `room_ttl`), this bounds what a room's member set holds over
    /// its life; members leave with `DELETE /rooms/{roomId}/members/me`. Default 10,000.
    pub max_members_per_room: usize,
    /// Who server-side messages come from when the host names no sender
    /// ([`crate::Chat::to_room`], [`crate::Chat::to_user`]): clients see it as the `from` of
    /// those messages. Pick an id that none of your users has. Default
    /// `{"id": "system", "name": "System"}`.
    pub system_user: User,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_body_chars: 4_000,
            max_frame_bytes: 64 * 1024,
            max_client_msg_id: 128,
            outgoing_queue: 1_024,
            write_coalesce: Duration::from_millis(2),
            write_coalesce_max: Duration::from_millis(8),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            rate_per_second: 20,
            rate_burst: 40,
            history_page_default: 50,
            history_page_max: 200,
            max_rooms_per_connection: 100,
            max_members_per_room: 10_000,
            system_user: User::new("system", "System"),
        }
    }
}
