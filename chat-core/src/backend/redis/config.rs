//! [`RedisConfig`]: the Redis backend's settings.

use std::time::Duration;

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
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "roomcast".into(),
            presence_ttl: Duration::from_secs(15),
            history_per_room: 1_000,
        }
    }
}
