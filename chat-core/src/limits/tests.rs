//! The node's per-user limits, on tokio's paused clock.

use std::{sync::Arc, time::Duration};

use super::*;

fn user(id: &str) -> UserId {
    UserId::from(id)
}

fn limits(config: ChatConfig) -> Arc<UserLimits> {
    Arc::new(UserLimits::new(&config))
}

/// How many of `n` checks in a row pass.
fn passes(limits: &UserLimits, who: &UserId, limit: Limit, n: usize) -> usize {
    (0..n).filter(|_| limits.check(who, limit).is_ok()).count()
}

#[tokio::test(start_paused = true)]
async fn the_defaults_are_the_documented_ones() {
    let limits = limits(ChatConfig::default());
    let alice = user("alice");
    assert_eq!(passes(&limits, &alice, Limit::Messages, 100), 40);
    assert_eq!(passes(&limits, &alice, Limit::Joins, 100), 20);
    assert_eq!(passes(&limits, &alice, Limit::Directs, 100), 20);
    assert_eq!(passes(&limits, &alice, Limit::RoomCreations, 100), 10);
    let permits: Vec<_> = (0..40).filter_map(|_| limits.open(&alice).ok()).collect();
    assert_eq!(permits.len(), 32);
}

#[tokio::test(start_paused = true)]
async fn one_users_limit_is_theirs_alone_and_says_how_long_to_wait() {
    let limits = limits(ChatConfig::default());
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(passes(&limits, &alice, Limit::Messages, 40), 40);
    let Err(Error::RateLimited { limit, retry_after }) = limits.check(&alice, Limit::Messages)
    else {
        panic!("the 41st message passed");
    };
    assert_eq!(limit, Limit::Messages);
    // 20 a second: the next token is 50 ms away.
    assert!(retry_after.abs_diff(Duration::from_millis(50)) < Duration::from_micros(1));
    // Bob, and alice's other limits, are untouched.
    assert_eq!(passes(&limits, &bob, Limit::Messages, 40), 40);
    assert_eq!(passes(&limits, &alice, Limit::Directs, 20), 20);
    tokio::time::advance(retry_after).await;
    assert!(limits.check(&alice, Limit::Messages).is_ok());
    assert!(limits.check(&alice, Limit::Messages).is_err());
    // A second refills 20, not more.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(passes(&limits, &alice, Limit::Messages, 40), 20);
}

#[tokio::test(start_paused = true)]
async fn room_creation_is_ten_a_minute() {
    let limits = limits(ChatConfig::default());
    let alice = user("alice");
    assert_eq!(passes(&limits, &alice, Limit::RoomCreations, 10), 10);
    let err = limits.check(&alice, Limit::RoomCreations).unwrap_err();
    assert!(err.retry_after().unwrap().abs_diff(Duration::from_secs(6)) < Duration::from_micros(1));
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(passes(&limits, &alice, Limit::RoomCreations, 20), 9);
}

#[tokio::test(start_paused = true)]
async fn a_replay_is_charged_one_join_per_fifty_messages() {
    let limits = limits(ChatConfig::default());
    let (alice, bob) = (user("alice"), user("bob"));
    // Alice's join replays 500 messages: 10 tokens more; Bob's replays 49: nothing more.
    assert!(limits.check(&alice, Limit::Joins).is_ok());
    limits.charge_replay(&alice, 500);
    assert!(limits.check(&bob, Limit::Joins).is_ok());
    limits.charge_replay(&bob, 49);
    assert_eq!(passes(&limits, &alice, Limit::Joins, 20), 9);
    assert_eq!(passes(&limits, &bob, Limit::Joins, 20), 19);
    // A replay bigger than the burst is a debt: the joins wait until it is paid.
    tokio::time::advance(Duration::from_secs(10)).await;
    limits.charge_replay(&alice, 50 * 50);
    let err = limits.check(&alice, Limit::Joins).unwrap_err();
    // From -20 (the debt's floor) to 1: 2.1 s at 10 a second.
    assert!(
        err.retry_after()
            .unwrap()
            .abs_diff(Duration::from_millis(2_100))
            < Duration::from_micros(1)
    );
}

#[tokio::test(start_paused = true)]
async fn connections_are_counted_until_their_permit_goes() {
    let config = ChatConfig {
        max_connections_per_user: 2,
        ..ChatConfig::default()
    };
    let limits = limits(config);
    let alice = user("alice");
    let first = limits.open(&alice).unwrap();
    let _second = limits.open(&alice).unwrap();
    let Err(Error::RateLimited { limit, retry_after }) = limits.open(&alice) else {
        panic!("a third connection was let in");
    };
    assert_eq!(
        (limit, retry_after),
        (Limit::Connections, CONNECTION_RETRY_AFTER)
    );
    assert!(limits.open(&user("bob")).is_ok());
    drop(first);
    assert!(limits.open(&alice).is_ok());
}

#[tokio::test(start_paused = true)]
async fn idle_users_are_evicted_and_connected_or_limited_ones_kept() {
    let limits = limits(ChatConfig::default());
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    for i in 0..1_000 {
        limits
            .check(&user(&format!("u{i}")), Limit::Messages)
            .unwrap();
    }
    let _connected = limits.open(&alice).unwrap();
    // Carol used her whole quota of rooms: it takes a minute to come back.
    assert_eq!(passes(&limits, &carol, Limit::RoomCreations, 10), 10);
    limits.check(&bob, Limit::Messages).unwrap();
    assert_eq!(limits.len(), 1_003);
    // After a sweep period every shard is due; using one sweeps it (2,000 new users touch
    // all 16 shards but with a chance of about 1e-55).
    tokio::time::advance(SWEEP_EVERY).await;
    let probes = 2_000;
    for i in 0..probes {
        let _ = limits.check(&user(&format!("probe{i}")), Limit::Directs);
    }
    let left = limits.len();
    // Alice (connected) and Carol (not refilled) stay, beside the fresh probes; the 1,001
    // users who are idle again went.
    assert_eq!(left, 2 + probes, "{left} entries left");
    // Carol's quota came back by 10 s' worth (1.7 rooms), not whole as a new entry's would.
    assert_eq!(passes(&limits, &carol, Limit::RoomCreations, 10), 1);
    let permits: Vec<_> = (0..40).filter_map(|_| limits.open(&alice).ok()).collect();
    assert_eq!(permits.len(), 31, "alice's open connection was forgotten");
}

#[test]
fn an_entry_is_32_bytes_and_a_permit_16() {
    // What an idle node pays per connected user (beside the map's slack) and per connection.
    assert_eq!(std::mem::size_of::<Entry>(), 32);
    assert_eq!(std::mem::size_of::<ConnectionPermit>(), 16);
}

#[tokio::test(start_paused = true)]
async fn guests_are_limited_per_address_an_ipv6_client_by_its_64_and_idle_addresses_swept() {
    let guests = SharedLimits::default();
    let per_minute = ChatConfig::default().guests_per_minute;
    let ip = |s: &str| client_block(s.parse::<std::net::IpAddr>().unwrap());
    let passes = |address: &str, n: usize| {
        (0..n)
            .filter(|_| guests.check(ip(address), per_minute).is_ok())
            .count()
    };
    // The documented default: 30 at once, then one every 2 s.
    assert_eq!(passes("198.51.100.1", 40), 30);
    let Err(retry_after) = guests.check(ip("198.51.100.1"), per_minute) else {
        panic!("not limited");
    };
    assert!(retry_after <= Duration::from_secs(2), "{retry_after:?}");
    // Another address has its own; an IPv4-mapped IPv6 one is the IPv4 one.
    assert_eq!(passes("198.51.100.2", 1), 1);
    assert_eq!(passes("::ffff:198.51.100.1", 1), 0);
    // An IPv6 client counts by its /64.
    assert_eq!(passes("2001:db8::1", 20) + passes("2001:db8::2:3", 20), 30);
    assert_eq!(passes("2001:db8:0:1::1", 1), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(passes("198.51.100.1", 5), 1);
    // A minute later every bucket is full again: the next sweep drops them all but the one
    // that checks.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(passes("203.0.113.1", 1), 1);
    assert_eq!(guests.len(), 1);
}
