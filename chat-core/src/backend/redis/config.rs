//! [`RedisConfig`]: the Redis backend's settings.

use std::time::Duration;

impl RedisConfig {
    /// `room_ttl` in milliseconds, for `PEXPIRE` (at least 1).
    pub(super) fn room_ttl_ms(&self) -> u64 {
        u64::try_from(self.room_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, i64::MAX as u64 / 2)
    }

    /// How often a message's script gives its room's keys the room TTL again and trims the
    /// history by age, per node and room (the messages between skip that upkeep): a tenth of
    /// the shorter of `room_ttl` and `history_max_age`, at most a minute. Neither needs a
    /// finer grain, and the upkeep is most of the script's work (7 calls of 12).
    pub(super) fn upkeep_period(&self) -> Duration {
        (self.room_ttl.min(self.history_max_age) / 10).min(Duration::from_secs(60))
    }

    /// The oldest stream id still served (`history_max_age` ago), as `ms-0`.
    pub(super) fn oldest_entry(&self) -> String {
        let age = i64::try_from(self.history_max_age.as_millis()).unwrap_or(i64::MAX);
        format!("{}-0", crate::protocol::now_ms().saturating_sub(age).max(0))
    }
}

/// Settings of the Redis backend, each with a documented default.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Prefix of every key and channel. Default `roomcast`.
    pub prefix: String,
    /// How long a node's presence outlives its last heartbeat: the users of a crashed node
    /// leave presence (and `user_left` is sent) within about this long. A node beats, and
    /// reconciles its presence with Redis, every third of it; a reaper's claim on a dead node
    /// lasts this long (a reap that stopped half-way is finished by the next reaper after
    /// that). Default 15 s.
    pub presence_ttl: Duration,
    /// Room messages kept per room (approximately: `MAXLEN ~`). Default 1,000.
    pub history_per_room: usize,
    /// Every key of a room carries this TTL, refreshed by activity: its creation, a join, a
    /// message, a connection entering or leaving, and (while anybody is online in it) the
    /// node heartbeat. A room with nobody online and no activity for this long is gone with
    /// its members and history. Default 7 days: a week covers a weekly meeting's room and
    /// weekends, while a room made and abandoned (or by a flood) is gone within a week. Keep
    /// it well above the heartbeat period (`presence_ttl / 3`).
    pub room_ttl: Duration,
    /// Room messages older than this are not served, and are trimmed at the next message
    /// (`XTRIM MINID ~`). Default 30 days.
    pub history_max_age: Duration,
    /// Events (pushed messages) the node's channel to its dispatcher holds; past it, they
    /// are dropped and their rooms get `resync` (see `backend::events`). Default 65,536.
    pub event_queue: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "roomcast".into(),
            presence_ttl: Duration::from_secs(15),
            history_per_room: 1_000,
            room_ttl: Duration::from_secs(7 * 24 * 3600),
            history_max_age: Duration::from_secs(30 * 24 * 3600),
            event_queue: crate::backend::events::DEFAULT_EVENT_QUEUE,
        }
    }
}
