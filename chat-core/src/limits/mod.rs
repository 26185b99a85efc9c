//! Per-user limits on a node: every connection of a user on this node shares them.
//!
//! - `bucket`: the token bucket ([`bucket::Rate`], [`bucket::Bucket`]) on tokio's clock;
//! - `shared`: [`SharedLimits`], the buckets a memory backend keeps for all its nodes: guests
//!   created per client address (no user to key them on, `RoomStore::admit_guest`) and each
//!   user's [`Quota`]s (`RoomStore::take_quota`, and inside the publish of a room or direct
//!   message).
//!
//! A user's limits are checked twice: here, on the node (cheap, and a flood never reaches the
//! backend), then, with [`crate::ChatConfig::shared_user_limits`], by the backend for every
//! node at once ([`Quota`]: in Redis, by Redis's clock, in the script that publishes a
//! message, or one call for a join or a room creation), so that a user with connections on
//! several instances gets the limits once, not once per instance.
//!
//! [`UserLimits`] holds, per user id, one bucket per [`Limit`] that refills (messages, joins,
//! direct messages, room creations) and the count of the user's open connections, in one
//! 32-byte [`Entry`] keyed by a 64-bit keyed hash of the user id (40 bytes a user in the
//! map, no allocation of its own: in an idle node every connected user has one). Two user
//! ids of a node whose hashes collide would share their limits; the hash is SipHash with a
//! key random per node, so nobody can aim at that, and by chance it is about n²/2^65 for
//! n users (1e-8 for a million). It is
//! sharded (a std mutex per shard, never held across an `.await`) so that users do not
//! contend with each other, and bounded: an entry whose buckets are all full again and that
//! has no open connection is no different from no entry, and goes at the shard's next sweep
//! (at most every [`SWEEP_EVERY`], done by whoever uses the shard then; no task of its own).
//!
//! Why not `governor`: its keyed limiter refuses or admits a cost up front, while a join with
//! `since` learns its cost (what it replays) only after reading the history, so it is charged
//! afterwards as a debt; and one entry per user for all five limits is one lookup and one
//! eviction rule rather than five maps. The bucket is a few lines on tokio's clock, which
//! the tests pause.

pub(crate) mod bucket;
mod shared;

pub(crate) use self::shared::{client_block, SharedLimits};

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

use self::bucket::{Bucket, Rate};
use crate::{config::ChatConfig, error::Error, protocol::UserId, sync::lock};

/// Which per-user limit a request ran into (in [`Error::RateLimited`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// Room messages: [`ChatConfig::user_messages_per_second`].
    Messages,
    /// Joins, over the WebSocket and REST: [`ChatConfig::user_joins_per_second`].
    Joins,
    /// Direct messages: [`ChatConfig::user_directs_per_second`].
    Directs,
    /// Room creation: [`ChatConfig::user_rooms_per_minute`].
    RoomCreations,
    /// Open WebSockets: [`ChatConfig::max_connections_per_user`].
    Connections,
    /// Guests created from one client address (`POST /guests`):
    /// [`ChatConfig::guests_per_minute`]. Per address, not per user, and counted for every
    /// node on the backend.
    Guests,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Messages => "room messages",
            Self::Joins => "joins",
            Self::Directs => "direct messages",
            Self::RoomCreations => "room creations",
            Self::Connections => "open connections",
            Self::Guests => "guests from one address",
        })
    }
}

/// One per-user [`Limit`] as a backend counts it for every node at once: one every `interval`,
/// `burst` at once after a quiet spell (a token bucket; Redis keeps it as GCRA, the key holding
/// the bucket's "theoretical arrival time", by Redis's clock, so the instances' clocks do not
/// matter). Made from [`crate::ChatConfig`]'s per-user limits, the same rates each node checks
/// on its own first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Which limit (also which of the user's buckets).
    pub limit: Limit,
    /// The time one token is worth.
    pub interval: Duration,
    /// Tokens at once, after a quiet spell (at least 1).
    pub burst: u32,
    /// The most tokens one message may take, for itself and the node's next ones (a backend
    /// may lease them: the Redis one does for room messages, `backend/redis/lease.rs`). 1 from
    /// the constructors; for a room message, one more than the tokens its sender has left on
    /// this node, so that a lease never holds tokens the node's own limit will not let the
    /// sender use.
    pub lease: u32,
}

impl Quota {
    /// `per_second` sustained, `burst` at once.
    pub fn per_second(limit: Limit, per_second: u32, burst: u32) -> Self {
        Self {
            limit,
            interval: Duration::from_secs(1) / per_second.max(1),
            burst: burst.max(1),
            lease: 1,
        }
    }

    /// `per_minute` a minute, all of them at once after a quiet minute.
    pub fn per_minute(limit: Limit, per_minute: u32) -> Self {
        Self {
            limit,
            interval: Duration::from_secs(60) / per_minute.max(1),
            burst: per_minute.max(1),
            lease: 1,
        }
    }

    /// How far ahead of now the bucket's arrival time may run: `interval × (burst − 1)`.
    pub fn tolerance(&self) -> Duration {
        self.interval * self.burst.max(1).saturating_sub(1)
    }

    pub(crate) fn rate(&self) -> Rate {
        Rate::every(self.interval, self.burst)
    }
}

/// The limits that refill, in the order of [`Entry::buckets`].
const REFILLING: [Limit; 4] = [
    Limit::Messages,
    Limit::Joins,
    Limit::Directs,
    Limit::RoomCreations,
];

/// How often a shard drops the entries of users who are idle again.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What a refused connection is told to wait (`Retry-After`): a connection limit frees no
/// slot on a schedule, so this is a pace for retries rather than a promise.
pub(crate) const CONNECTION_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Shards of the registry: enough that users on different cores rarely share a lock.
const SHARDS: usize = 16;

/// The node's registry of per-user limits.
#[derive(Debug)]
pub(crate) struct UserLimits {
    rates: [Rate; 4],
    /// The same limits for the backend to count for every node, in the order of `REFILLING`
    /// (`None`: [`crate::ChatConfig::shared_user_limits`] is off).
    quotas: Option<[Quota; 4]>,
    max_connections: u32,
    replay_per_token: usize,
    hasher: std::collections::hash_map::RandomState,
    /// What the entries' stamps count from.
    epoch: Instant,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug)]
struct Shard {
    users: HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>,
    swept: Instant,
}

/// A user's limits: 32 bytes.
#[derive(Debug)]
struct Entry {
    /// When the buckets were last refilled: nanoseconds since [`UserLimits::epoch`] (8 bytes
    /// where an `Instant` is 16; a u64 of nanoseconds lasts 584 years).
    refilled: u64,
    buckets: [Bucket; 4],
    connections: u32,
}

/// The map's keys are hashes already (SipHash, keyed per node): they are their own hash.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); fold anything else in anyway.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl UserLimits {
    pub(crate) fn new(config: &ChatConfig) -> Self {
        let now = Instant::now();
        Self {
            rates: [
                Rate::per_second(config.user_messages_per_second, config.user_messages_burst),
                Rate::per_second(config.user_joins_per_second, config.user_joins_burst),
                Rate::per_second(config.user_directs_per_second, config.user_directs_burst),
                Rate::per_minute(config.user_rooms_per_minute),
            ],
            quotas: config.shared_user_limits.then(|| {
                [
                    Quota::per_second(
                        Limit::Messages,
                        config.user_messages_per_second,
                        config.user_messages_burst,
                    ),
                    Quota::per_second(
                        Limit::Joins,
                        config.user_joins_per_second,
                        config.user_joins_burst,
                    ),
                    Quota::per_second(
                        Limit::Directs,
                        config.user_directs_per_second,
                        config.user_directs_burst,
                    ),
                    Quota::per_minute(Limit::RoomCreations, config.user_rooms_per_minute),
                ]
            }),
            max_connections: u32::try_from(config.max_connections_per_user.max(1))
                .unwrap_or(u32::MAX),
            replay_per_token: config.join_replay_per_token.max(1),
            hasher: Default::default(),
            epoch: now,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        users: HashMap::default(),
                        swept: now,
                    })
                })
                .collect(),
        }
    }

    /// `user`'s key in the registry.
    fn key(&self, user: &UserId) -> u64 {
        self.hasher.hash_one(user)
    }

    /// Runs `f` on the entry of the user with `key` (made if missing) once its buckets are
    /// refilled to now, sweeping the shard first when it is due.
    fn with_entry<T>(&self, key: u64, f: impl FnOnce(&mut Entry) -> T) -> T {
        let now = Instant::now();
        let stamp =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        // The shard from bits the map's own bucket index does not use (it takes the low ones).
        let index = ((key >> 32) as usize) % self.shards.len();
        let mut shard = lock(&self.shards[index]);
        let rates = &self.rates;
        if now.saturating_duration_since(shard.swept) >= SWEEP_EVERY {
            shard.swept = now;
            shard.users.retain(|_, entry| {
                entry.refill(rates, stamp);
                !entry.is_idle(rates)
            });
        }
        let entry = shard
            .users
            .entry(key)
            .or_insert_with(|| Entry::new(rates, stamp));
        entry.refill(rates, stamp);
        f(entry)
    }

    /// Takes one token of `limit` (one of the refilling ones) for `user`.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with how long to wait, when the user has none left.
    pub(crate) fn check(&self, user: &UserId, limit: Limit) -> Result<(), Error> {
        self.take(user, limit).map(|_| ())
    }

    /// As [`UserLimits::check`], and returns the whole tokens `user` has left after it
    /// (`u32::MAX` for the limits that do not refill): how far a quota lease may reach.
    pub(crate) fn take(&self, user: &UserId, limit: Limit) -> Result<u32, Error> {
        let Some(i) = REFILLING.iter().position(|l| *l == limit) else {
            return Ok(u32::MAX);
        };
        let rate = self.rates[i];
        self.with_entry(self.key(user), |entry| {
            let bucket = &mut entry.buckets[i];
            bucket.take(rate, 1).map(|()| bucket.left())
        })
        .map_err(|retry_after| {
            crate::metrics::metrics().rate_limited(limit);
            Error::RateLimited { limit, retry_after }
        })
    }

    /// `limit` as the backend counts it for every node, if it does
    /// ([`crate::ChatConfig::shared_user_limits`]; only the limits that refill).
    pub(crate) fn quota(&self, limit: Limit) -> Option<Quota> {
        let i = REFILLING.iter().position(|l| *l == limit)?;
        self.quotas.map(|quotas| quotas[i])
    }

    /// Charges `user`'s joins for a replay of `replayed` messages, after the fact: one token
    /// per [`ChatConfig::join_replay_per_token`] of them, as a debt if need be.
    pub(crate) fn charge_replay(&self, user: &UserId, replayed: usize) {
        let cost = u32::try_from(replayed / self.replay_per_token).unwrap_or(u32::MAX);
        if cost == 0 {
            return;
        }
        let rate = self.rates[1];
        self.with_entry(self.key(user), |entry| entry.buckets[1].charge(rate, cost));
    }

    /// Counts a new connection of `user`; the permit uncounts it when dropped.
    ///
    /// # Errors
    /// [`Error::RateLimited`] ([`Limit::Connections`]) when the user has the most open.
    pub(crate) fn open(self: &Arc<Self>, user: &UserId) -> Result<ConnectionPermit, Error> {
        let max = self.max_connections;
        let key = self.key(user);
        let admitted = self.with_entry(key, |entry| {
            let admitted = entry.connections < max;
            if admitted {
                entry.connections += 1;
            }
            admitted
        });
        if !admitted {
            crate::metrics::metrics().rate_limited(Limit::Connections);
            return Err(Error::RateLimited {
                limit: Limit::Connections,
                retry_after: CONNECTION_RETRY_AFTER,
            });
        }
        Ok(ConnectionPermit {
            limits: self.clone(),
            key,
        })
    }

    /// Users with an entry now (tests: eviction).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).users.len()).sum()
    }
}

impl Entry {
    fn new(rates: &[Rate; 4], stamp: u64) -> Self {
        Self {
            refilled: stamp,
            buckets: rates.map(Bucket::full),
            connections: 0,
        }
    }

    /// Refills every bucket for the time since the last refill (`stamp`: nanoseconds since
    /// the registry's epoch).
    fn refill(&mut self, rates: &[Rate; 4], stamp: u64) {
        let elapsed = Duration::from_nanos(stamp.saturating_sub(self.refilled));
        self.refilled = self.refilled.max(stamp);
        for (bucket, rate) in self.buckets.iter_mut().zip(rates) {
            bucket.refill(*rate, elapsed);
        }
    }

    /// No open connection and every bucket full (refilled already): the same as no entry.
    fn is_idle(&self, rates: &[Rate; 4]) -> bool {
        self.connections == 0
            && self
                .buckets
                .iter()
                .zip(rates)
                .all(|(bucket, rate)| bucket.is_full(*rate))
    }
}

/// One open connection of a user, counted until this is dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<UserLimits>,
    /// The user's key in the registry (no copy of the id).
    key: u64,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.with_entry(self.key, |entry| {
            entry.connections = entry.connections.saturating_sub(1);
        });
    }
}

#[cfg(test)]
mod tests;
