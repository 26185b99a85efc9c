//! [`GuestLimits`]: how many guests one client address may create, for the memory backend
//! (all its nodes share one); the Redis backend keeps the same buckets in Redis.

use std::{
    collections::{hash_map::RandomState, HashMap},
    hash::BuildHasher,
    net::IpAddr,
    sync::Mutex,
    time::Duration,
};

use tokio::time::Instant;

use super::{
    bucket::{Bucket, Rate},
    SWEEP_EVERY,
};
use crate::sync::lock;

/// Per client address, a bucket of guest creations ([`crate::ChatConfig::guests_per_minute`]).
///
/// Without it, guest mode hands out identities without end, and every per-user limit is per
/// identity: a client that makes a guest per message has no limit at all. An IPv6 client is
/// counted by its /64 prefix (what one subscriber is given), an IPv4-mapped one as IPv4
/// ([`client_block`], applied by the node). One mutex: guests are made a few times a second
/// at most, never per message.
/// An entry that is full again is no different from none and goes at the next sweep (at most
/// every [`SWEEP_EVERY`], by whoever checks then).
#[derive(Debug)]
pub(crate) struct GuestLimits {
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Keyed hash of the address (prefix) → when its bucket was last refilled, and the bucket.
    addresses: HashMap<u64, (Instant, Bucket)>,
    swept: Instant,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            state: Mutex::new(State {
                addresses: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl GuestLimits {
    /// Takes one guest creation from `block`'s bucket: `per_minute` a minute, all at once if
    /// it made none in the last minute.
    ///
    /// # Errors
    /// How long until one is due, when the bucket has none left.
    pub(crate) fn check(&self, block: IpAddr, per_minute: u32) -> Result<(), Duration> {
        let rate = Rate::per_minute(per_minute);
        let key = self.hasher.hash_one(block);
        let now = Instant::now();
        let mut state = lock(&self.state);
        if now.saturating_duration_since(state.swept) >= SWEEP_EVERY {
            state.swept = now;
            state.addresses.retain(|_, (stamp, bucket)| {
                bucket.refill(rate, now.saturating_duration_since(*stamp));
                *stamp = now;
                !bucket.is_full(rate)
            });
        }
        let (stamp, bucket) = state
            .addresses
            .entry(key)
            .or_insert_with(|| (now, Bucket::full(rate)));
        bucket.refill(rate, now.saturating_duration_since(*stamp));
        *stamp = now;
        bucket.take(rate, 1)
    }

    /// Addresses with an entry (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).addresses.len()
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
