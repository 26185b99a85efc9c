//! [`Leases`]: a node's share of its senders' message quotas, taken from Redis a few tokens at a
//! time.
//!
//! The per-user message limit counted for every node is a GCRA bucket in Redis, taken inside
//! the append-and-publish script: a `TIME`, a `GET` and a `SET` of the eight calls a message
//! costs there. A user who keeps sending takes several tokens in one call (`take_tokens`,
//! `gcra.lua`) and this node spends the rest on the user's next messages without asking Redis:
//! 1 token, then 2, 4 and up to [`MAX_LEASE`] while each lease is used up within
//! [`VALIDITY`]; back to 1 when one is not. So an occasional sender costs what it did (one
//! token per message, nothing left over), and a steady one a quarter of the quota's calls or
//! less.
//!
//! What it changes for the limit: every message still takes a token of the user's one bucket
//! before it is published, but up to [`MAX_LEASE`] - 1 of them up to [`VALIDITY`] before it
//! is sent (a lease not used by then is dropped: the user's budget, not extra). A lease never
//! holds more than the user may still send through this node ([`Quota::lease`]: the node's
//! own limit, checked first, would refuse the rest while their tokens sat here), one lease
//! call per user is in flight at a time (the user's other messages meanwhile take one token
//! each), and near the bucket's end the script leases no more than half of what is left, then
//! one at a time, so that the user's tabs on other instances are not refused while this node
//! holds the last tokens. A retry of a message that went out (same `clientMsgId`) spends a
//! leased token, where the script would have charged nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{limits::Quota, protocol::UserId, sync::lock};

/// The most tokens one call takes.
pub(super) const MAX_LEASE: u32 = 8;

/// How long leased tokens may be spent.
pub(super) const VALIDITY: Duration = Duration::from_secs(1);

/// Past this many users, a new lease first drops the expired ones.
const SWEEP_PAST: usize = 1_024;

/// The tokens this node holds per user (only while they are valid).
#[derive(Debug, Default)]
pub(super) struct Leases {
    users: Mutex<LeaseMap>,
}

#[derive(Debug, Default)]
struct LeaseMap {
    leases: HashMap<UserId, Lease>,
    /// The map's size after the last sweep: the next one is due at twice this (and past
    /// [`SWEEP_PAST`]), so sweeping costs O(1) per lease.
    swept: usize,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// Tokens left to spend.
    tokens: u32,
    /// Tokens the last call asked for.
    size: u32,
    /// When the tokens stop being spendable.
    until: Instant,
    /// A call for more than one token is in flight.
    asking: bool,
}

impl Leases {
    /// Spends one of `user`'s leased tokens: `Ok` if there was one, else `Err` with how many
    /// tokens to ask the bucket for (at most `quota`'s burst / 4 and [`Quota::lease`], at least
    /// 1). Every `Err` is to be answered by [`Leases::took`], with 0 if the call failed.
    pub(super) fn spend(&self, user: &UserId, quota: &Quota, now: Instant) -> Result<(), u32> {
        let most = (quota.burst / 4)
            .clamp(1, MAX_LEASE)
            .min(quota.lease.max(1));
        let mut map = lock(&self.users);
        let Some(lease) = map.leases.get_mut(user) else {
            return Err(1);
        };
        if now < lease.until && lease.tokens > 0 {
            lease.tokens -= 1;
            return Ok(());
        }
        if lease.asking {
            return Err(1);
        }
        // Used up in time: the next lease is twice as large; expired with tokens left: one.
        let size = if now < lease.until {
            lease.size.saturating_mul(2)
        } else {
            1
        }
        .clamp(1, most);
        lease.asking = size > 1;
        Err(size)
    }

    /// A call that asked for `wanted` tokens of `user`'s bucket took `taken` (one of them for
    /// the message it published; 0 if it failed, or was over the quota or a retry).
    pub(super) fn took(&self, user: &UserId, wanted: u32, taken: u32, now: Instant) {
        let mut map = lock(&self.users);
        if wanted > 1 {
            if let Some(lease) = map.leases.get_mut(user) {
                lease.asking = false;
            }
        }
        if taken == 0 {
            return;
        }
        if map.leases.len() >= SWEEP_PAST.max(2 * map.swept) {
            map.leases
                .retain(|_, lease| now < lease.until || lease.asking);
            map.swept = map.leases.len();
        }
        let lease = Lease {
            tokens: taken - 1,
            size: wanted,
            until: now + VALIDITY,
            asking: false,
        };
        match map.leases.get_mut(user) {
            // Tokens left that are still valid (taken by concurrent single-token calls they
            // are not): both are the user's.
            Some(old) if now < old.until => {
                old.tokens += lease.tokens;
                old.size = old.size.max(wanted);
                old.until = lease.until;
            }
            Some(old) => {
                old.tokens = lease.tokens;
                old.size = wanted;
                old.until = lease.until;
            }
            None => {
                map.leases.insert(user.clone(), lease);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limit;

    /// A room message's quota whose sender has plenty left on this node.
    fn messages(burst: u32) -> Quota {
        Quota {
            lease: u32::MAX,
            ..Quota::per_second(Limit::Messages, 20, burst)
        }
    }

    /// Spends `n` messages' tokens as the publish path does, counting the calls to Redis (with
    /// a bucket that always has tokens).
    fn send(leases: &Leases, user: &UserId, quota: &Quota, n: usize, now: Instant) -> Vec<u32> {
        let mut calls = Vec::new();
        for _ in 0..n {
            if let Err(want) = leases.spend(user, quota, now) {
                calls.push(want);
                leases.took(user, want, want, now);
            }
        }
        calls
    }

    #[test]
    fn a_steady_sender_leases_1_2_4_then_the_most_and_an_occasional_one_a_token_at_a_time() {
        let leases = Leases::default();
        let ann = UserId::new("ann");
        let t0 = Instant::now();
        // Burst 40: leases of up to 8; 40 messages in 8 calls instead of 40 (7 tokens left).
        let calls = send(&leases, &ann, &messages(40), 40, t0);
        assert_eq!(calls, vec![1, 2, 4, 8, 8, 8, 8, 8]);
        // A pause past the validity: the tokens left are dropped, and it starts over at 1.
        let later = t0 + VALIDITY;
        assert_eq!(send(&leases, &ann, &messages(40), 1, later), vec![1]);
        // One message per validity period: one token per message, never more.
        for i in 2..6 {
            let at = t0 + VALIDITY * i;
            assert_eq!(send(&leases, &ann, &messages(40), 1, at), vec![1]);
        }
    }

    #[test]
    fn small_bursts_are_not_leased_and_users_do_not_share() {
        let leases = Leases::default();
        let (ann, bob) = (UserId::new("ann"), UserId::new("bob"));
        let t0 = Instant::now();
        // Burst 4 or less: a token per call, as without leases.
        assert_eq!(send(&leases, &ann, &messages(4), 5, t0), vec![1; 5]);
        // Burst 12: leases of up to 3.
        assert_eq!(send(&leases, &bob, &messages(12), 9, t0), vec![1, 2, 3, 3]);
        // Ann's lease is hers: Bob's tokens do not serve her.
        leases.took(&bob, 3, 3, t0);
        assert_eq!(leases.spend(&ann, &messages(40), t0), Err(2));
    }

    #[test]
    fn a_partial_lease_is_what_the_bucket_gave_and_a_retry_takes_nothing() {
        let leases = Leases::default();
        let ann = UserId::new("ann");
        let t0 = Instant::now();
        let quota = messages(40);
        // Asked for 8, the bucket near its end gave 2: one for the message, one left.
        leases.took(&ann, 8, 2, t0);
        assert_eq!(leases.spend(&ann, &quota, t0), Ok(()));
        assert_eq!(leases.spend(&ann, &quota, t0), Err(8));
        // A retry of a message that went out took no token: nothing is leased.
        leases.took(&ann, 8, 0, t0);
        assert_eq!(leases.spend(&ann, &quota, t0), Err(8));
    }

    #[test]
    fn a_lease_holds_no_more_than_the_node_lets_the_sender_use_and_one_is_asked_at_a_time() {
        let leases = Leases::default();
        let ann = UserId::new("ann");
        let t0 = Instant::now();
        let mut quota = messages(40);
        assert_eq!(send(&leases, &ann, &quota, 3, t0), vec![1, 2]);
        // The sender has 2 tokens left on this node: a lease of 3 at most (one for this
        // message), not 4.
        quota.lease = 3;
        assert_eq!(leases.spend(&ann, &quota, t0), Err(3));
        // While that call is out, the sender's other messages ask for one token each...
        assert_eq!(leases.spend(&ann, &messages(40), t0), Err(1));
        leases.took(&ann, 1, 1, t0);
        // ...and once it is back, its tokens are spent before anything is asked again.
        leases.took(&ann, 3, 3, t0);
        assert_eq!(leases.spend(&ann, &messages(40), t0), Ok(()));
        assert_eq!(leases.spend(&ann, &messages(40), t0), Ok(()));
        assert_eq!(leases.spend(&ann, &messages(40), t0), Err(6));
        // A call that failed leaves nothing held, and the next message asks again.
        leases.took(&ann, 6, 0, t0);
        assert_eq!(leases.spend(&ann, &messages(40), t0), Err(6));
    }

    #[test]
    fn expired_leases_are_swept_as_the_map_grows() {
        let leases = Leases::default();
        let t0 = Instant::now();
        for i in 0..SWEEP_PAST {
            leases.took(&UserId::new(format!("u{i}")), 2, 2, t0);
        }
        let later = t0 + VALIDITY;
        leases.took(&UserId::new("last"), 2, 2, later);
        assert_eq!(lock(&leases.users).leases.len(), 1);
    }
}
