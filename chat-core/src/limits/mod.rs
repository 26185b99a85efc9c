//! Per-user limits on a node: every connection of a user on this node shares them.
//!
//! - `bucket`: the token bucket ([`bucket::Rate`], [`bucket::Bucket`]) on tokio's clock.
//!
//! [`UserLimits`] holds, per user id, one bucket per [`Limit`] that refills (messages, joins,
//! direct messages, room creations) and the count of the user's open connections. It is
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

use std::{
    collections::HashMap,
    hash::BuildHasher,
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
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Messages => "room messages",
            Self::Joins => "joins",
            Self::Directs => "direct messages",
            Self::RoomCreations => "room creations",
            Self::Connections => "open connections",
        })
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
    max_connections: usize,
    replay_per_token: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug)]
struct Shard {
    users: HashMap<UserId, Entry>,
    swept: Instant,
}

#[derive(Debug)]
struct Entry {
    buckets: [Bucket; 4],
    connections: usize,
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
            max_connections: config.max_connections_per_user.max(1),
            replay_per_token: config.join_replay_per_token.max(1),
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        users: HashMap::new(),
                        swept: now,
                    })
                })
                .collect(),
        }
    }

    /// Runs `f` on `user`'s entry (made if missing), sweeping the shard first when it is due.
    fn with_entry<T>(&self, user: &UserId, f: impl FnOnce(&mut Entry, Instant) -> T) -> T {
        let now = Instant::now();
        let index = (self.hasher.hash_one(user) as usize) % self.shards.len();
        let mut shard = lock(&self.shards[index]);
        if now.saturating_duration_since(shard.swept) >= SWEEP_EVERY {
            shard.swept = now;
            let rates = self.rates;
            shard.users.retain(|_, entry| !entry.is_idle(&rates, now));
        }
        let entry = match shard.users.get_mut(user) {
            Some(entry) => entry,
            None => shard
                .users
                .entry(user.clone())
                .or_insert_with(|| Entry::new(&self.rates, now)),
        };
        f(entry, now)
    }

    /// Takes one token of `limit` (one of the refilling ones) for `user`.
    ///
    /// # Errors
    /// [`Error::RateLimited`] with how long to wait, when the user has none left.
    pub(crate) fn check(&self, user: &UserId, limit: Limit) -> Result<(), Error> {
        let Some(i) = REFILLING.iter().position(|l| *l == limit) else {
            return Ok(());
        };
        let rate = self.rates[i];
        self.with_entry(user, |entry, now| entry.buckets[i].take(rate, 1, now))
            .map_err(|retry_after| Error::RateLimited { limit, retry_after })
    }

    /// Charges `user`'s joins for a replay of `replayed` messages, after the fact: one token
    /// per [`ChatConfig::join_replay_per_token`] of them, as a debt if need be.
    pub(crate) fn charge_replay(&self, user: &UserId, replayed: usize) {
        let cost = u32::try_from(replayed / self.replay_per_token).unwrap_or(u32::MAX);
        if cost == 0 {
            return;
        }
        let rate = self.rates[1];
        self.with_entry(user, |entry, now| entry.buckets[1].charge(rate, cost, now));
    }

    /// Counts a new connection of `user`; the permit uncounts it when dropped.
    ///
    /// # Errors
    /// [`Error::RateLimited`] ([`Limit::Connections`]) when the user has the most open.
    pub(crate) fn open(self: &Arc<Self>, user: &UserId) -> Result<ConnectionPermit, Error> {
        let max = self.max_connections;
        let admitted = self.with_entry(user, |entry, _| {
            let admitted = entry.connections < max;
            if admitted {
                entry.connections += 1;
            }
            admitted
        });
        if !admitted {
            return Err(Error::RateLimited {
                limit: Limit::Connections,
                retry_after: CONNECTION_RETRY_AFTER,
            });
        }
        Ok(ConnectionPermit {
            limits: self.clone(),
            user: user.clone(),
        })
    }

    /// Users with an entry now (tests: eviction).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).users.len()).sum()
    }
}

impl Entry {
    fn new(rates: &[Rate; 4], now: Instant) -> Self {
        Self {
            buckets: rates.map(|rate| Bucket::full(rate, now)),
            connections: 0,
        }
    }

    /// No open connection and every bucket full: the same as no entry.
    fn is_idle(&mut self, rates: &[Rate; 4], now: Instant) -> bool {
        self.connections == 0
            && self
                .buckets
                .iter_mut()
                .zip(rates)
                .all(|(bucket, rate)| bucket.is_full(*rate, now))
    }
}

/// One open connection of a user, counted until this is dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limits: Arc<UserLimits>,
    user: UserId,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.with_entry(&self.user, |entry, _| {
            entry.connections = entry.connections.saturating_sub(1);
        });
    }
}

#[cfg(test)]
mod tests;
