//! Guests admitted per client address, held to the same answers on every backend: a bucket
//! of `per_minute`, full at first, shared by every node of the store.

use std::{net::IpAddr, time::Duration};

use crate::backend::Backend;

pub(crate) async fn guests_are_admitted_per_client_within_the_rate(backend: &mut Backend) {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let rooms = &backend.rooms;
    for _ in 0..3 {
        assert_eq!(
            rooms.admit_guest(ip("198.51.100.7"), 3).await.unwrap(),
            Ok(())
        );
    }
    // 3 a minute: the next one is due within 20 s.
    let Err(wait) = rooms.admit_guest(ip("198.51.100.7"), 3).await.unwrap() else {
        panic!("a fourth guest within the minute");
    };
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(20),
        "{wait:?}"
    );
    // Another client has its own bucket; a rate of 0 is read as 1.
    assert_eq!(
        rooms.admit_guest(ip("2001:db8::"), 3).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        rooms.admit_guest(ip("203.0.113.5"), 0).await.unwrap(),
        Ok(())
    );
    assert!(rooms
        .admit_guest(ip("203.0.113.5"), 0)
        .await
        .unwrap()
        .is_err());
}
