//! [`SharedLimits`]: the buckets the memory backend keeps for all its nodes (the Redis backend
//! keeps the same ones in Redis): how many guests one client address may create, and each
//! user's limits counted for every node ([`Quota`]).

use std::{
    collections::{hash_map::RandomState, HashMap},
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::Mutex,
    time::Duration,
};

use tokio::time::Instant;

use super::{
    bucket::{Bucket, Rate},
    Quota, SWEEP_EVERY,
};
use crate::{protocol::UserId, sync::lock};

/// Buckets shared by every node of a memory backend: per client address, guest creations
/// ([`crate::ChatConfig::guests_per_minute`]), and per user and [`Quota`], what the user's
/// connections on all the nodes do.
///
/// Without the first, guest mode hands out identities without end, and every per-user limit is
/// per identity: a client that makes a guest per message has no limit at all. An IPv6 client
/// is counted by its /64 prefix (what one subscriber is given), an IPv4-mapped one as IPv4
/// ([`client_block`], applied by the node). One mutex: a memory backend's nodes share a
/// process, and each user's own node checked its bucket first (`super::UserLimits`).
/// An entry that is full again is no different from none and goes at the next sweep (at most
/// every [`SWEEP_EVERY`], by whoever checks then).
#[derive(Debug)]
pub(crate) struct SharedLimits {
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Keyed hash of what is counted → when its bucket was last refilled, the bucket, and its
    /// rate (for the sweep).
    buckets: HashMap<u64, (Instant, Bucket, Rate)>,
    swept: Instant,
}

impl Default for SharedLimits {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl SharedLimits {
    /// Takes one guest creation from `block`'s bucket: `per_minute` a minute, all at once if
    /// it made none in the last minute.
    ///
    /// # Errors
    /// How long until one is due, when the bucket has none left.
    pub(crate) fn check(&self, block: IpAddr, per_minute: u32) -> Result<(), Duration> {
        self.take((0u8, block), Rate::per_minute(per_minute))
    }

    /// Takes one of `user`'s `quota`.
    ///
    /// # Errors
    /// How long until one is due, when the user has none left.
    pub(crate) fn take_quota(&self, user: &UserId, quota: Quota) -> Result<(), Duration> {
        self.take((1u8, user, quota.limit), quota.rate())
    }

    fn take(&self, what: impl Hash, rate: Rate) -> Result<(), Duration> {
        let key = self.hasher.hash_one(what);
        let now = Instant::now();
        let mut state = lock(&self.state);
        if now.saturating_duration_since(state.swept) >= SWEEP_EVERY {
            state.swept = now;
            state.buckets.retain(|_, (stamp, bucket, rate)| {
                bucket.refill(*rate, now.saturating_duration_since(*stamp));
                *stamp = now;
                !bucket.is_full(*rate)
            });
        }
        let (stamp, bucket, _) = state
            .buckets
            .entry(key)
            .or_insert_with(|| (now, Bucket::full(rate), rate));
        bucket.refill(rate, now.saturating_duration_since(*stamp));
        *stamp = now;
        bucket.take(rate, 1)
    }

    /// Buckets kept now (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).buckets.len()
    }
}

/// What one client is counted by: an IPv4 address, or an IPv6 address's /64 prefix.
pub(crate) fn client_block(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}
