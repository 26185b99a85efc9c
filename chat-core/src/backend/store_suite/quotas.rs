//! Users' quotas counted by the backend for every node, held to the same answers on every
//! backend: a bucket per user and limit, taken after the `clientMsgId` check and before
//! anything is stored or published.

use std::time::Duration;

use bytes::Bytes;

use super::{create, presence::until_marker};
use crate::{
    backend::{
        broker::{Charge, Dedup, DirectSent, Envelope, NewDirect, NewRoomMessage, Origin, Topic},
        store::Visibility,
        Backend,
    },
    error::BackendError,
    limits::{Limit, Quota},
    protocol::{RoomId, User, UserId},
};

/// `Err(OverQuota)` for `limit` with a wait within `most`, or a panic saying what came.
fn assert_over<T: std::fmt::Debug>(result: Result<T, BackendError>, limit: Limit, most: Duration) {
    match result {
        Err(BackendError::OverQuota {
            limit: over,
            retry_after,
        }) => {
            assert_eq!(over, limit);
            assert!(
                retry_after > Duration::ZERO && retry_after <= most,
                "{retry_after:?}"
            );
        }
        other => panic!("expected over the quota of {limit}, got {other:?}"),
    }
}

pub(crate) async fn quotas_are_taken_per_user_before_anything_is_done(backend: &mut Backend) {
    let (ann, bob) = (UserId::new("ann"), UserId::new("bob"));
    let rooms = &backend.rooms;

    // A bucket of 2 a minute: two, then the next one is due within 30 s.
    let creations = Quota::per_minute(Limit::RoomCreations, 2);
    rooms.take_quota(&ann, creations).await.unwrap();
    rooms.take_quota(&ann, creations).await.unwrap();
    assert_over(
        rooms.take_quota(&ann, creations).await,
        Limit::RoomCreations,
        Duration::from_secs(30),
    );
    // Another user, or another limit of the same user, has a bucket of its own.
    rooms.take_quota(&bob, creations).await.unwrap();
    let joins = Quota::per_second(Limit::Joins, 1, 1);
    rooms.take_quota(&ann, joins).await.unwrap();
    assert_over(
        rooms.take_quota(&ann, joins).await,
        Limit::Joins,
        Duration::from_secs(1),
    );

    // Room messages: 1 a second, 2 at once. The third is refused, and neither stored nor
    // published; a retry of a message that went out costs nothing and is the first copy.
    let r = RoomId::new("q");
    create(backend, &[("q", 1, Visibility::Public)]).await;
    let topic = Topic::Room(r.clone());
    backend.broker.subscribe(vec![topic.clone()]).await.unwrap();
    let origin = Origin {
        node: backend.broker.node_id(),
        conn: Some(1),
    };
    let messages = Quota::per_second(Limit::Messages, 1, 2);
    let message = |client_msg_id: &str| NewRoomMessage {
        origin,
        room: r.clone(),
        from: User::new("ann", "Ann"),
        body: "hi".into(),
        ts: 10,
        dedup: Some(Dedup {
            client_msg_id: client_msg_id.into(),
            window: Duration::from_secs(60),
        }),
        quota: Some(messages),
    };
    let broker = backend.broker.clone();
    let first = broker.publish_room_message(message("m1")).await.unwrap();
    broker.publish_room_message(message("m2")).await.unwrap();
    assert_over(
        broker.publish_room_message(message("m3")).await,
        Limit::Messages,
        Duration::from_secs(1),
    );
    let retried = broker.publish_room_message(message("m1")).await.unwrap();
    assert_eq!(
        retried.id, first.id,
        "a retry is the first copy, over the quota or not"
    );
    assert_eq!(
        until_marker(backend, &topic).await.len(),
        2,
        "published twice"
    );
    let page = backend.history.page(&r, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 2, "stored twice");
    // The host's own sends (no quota) are not counted.
    let mut host = message("h1");
    host.quota = None;
    broker.publish_room_message(host).await.unwrap();
    assert_eq!(
        until_marker(backend, &topic).await.len(),
        1,
        "the host's send"
    );

    // Direct messages: 1 at once; the second is refused before it is published.
    let directs = Quota::per_second(Limit::Directs, 1, 1);
    let to_bob = Topic::User(bob.clone());
    broker.subscribe(vec![to_bob.clone()]).await.unwrap();
    let direct = || NewDirect {
        envelope: Envelope {
            origin,
            topic: to_bob.clone(),
            frame: Bytes::from_static(b"{}"),
        },
        copy_to: None,
        dedup: None,
        hold: None,
        keep: None,
        charge: Some(Charge {
            user: &ann,
            quota: directs,
        }),
    };
    assert_eq!(
        broker.publish_direct(direct()).await.unwrap(),
        DirectSent::Published(1)
    );
    assert_over(
        broker.publish_direct(direct()).await,
        Limit::Directs,
        Duration::from_secs(1),
    );
    assert_eq!(
        until_marker(backend, &to_bob).await.len(),
        1,
        "published once"
    );
}

pub(crate) async fn open_sockets_are_counted_within_the_max(backend: &mut Backend) {
    let ann = UserId::new("ann");
    let node = backend.broker.node_id();
    let presence = &backend.presence;
    // This node's count is the truth: recorded as given, checked against the max.
    assert!(presence
        .count_sockets(&ann, node, 3, Some(3))
        .await
        .unwrap());
    assert!(!presence
        .count_sockets(&ann, node, 4, Some(3))
        .await
        .unwrap());
    // A refusal recorded nothing, and a close brings the count down.
    assert!(presence
        .count_sockets(&ann, node, 3, Some(3))
        .await
        .unwrap());
    assert!(presence.count_sockets(&ann, node, 0, None).await.unwrap());
    assert!(presence
        .count_sockets(&ann, node, 1, Some(1))
        .await
        .unwrap());
    // Another user has a count of their own.
    let bob = UserId::new("bob");
    assert!(presence
        .count_sockets(&bob, node, 1, Some(1))
        .await
        .unwrap());
}
