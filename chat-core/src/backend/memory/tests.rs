//! Tests of the memory backend: history paging, pub/sub reach, direct copies, presence, and
//! the store suite (`backend::store_suite`).

use bytes::Bytes;

use super::*;
use crate::{
    backend::broker::{
        BrokerEvent, DirectSent, Envelope, NewRoomMessage, Origin, SenderCopy, Topic,
    },
    error::BackendError,
    protocol::{MessageId, RoomId, User, UserId},
};
fn msg(backend: &Backend, room: &RoomId, body: &str) -> NewRoomMessage {
    NewRoomMessage {
        origin: Origin {
            node: backend.broker.node_id(),
            conn: None,
        },
        room: room.clone(),
        from: User::new("u", "U"),
        body: body.into(),
        ts: 1,
        dedup: None,
        quota: None,
    }
}

#[tokio::test]
async fn history_pages_back_and_caps_the_ring() {
    let cluster = MemoryCluster::with_history_per_room(5);
    let node = cluster.node();
    let room = RoomId::new("r");
    for i in 0..8 {
        node.broker
            .publish_room_message(msg(&node, &room, &format!("m{i}")))
            .await
            .unwrap();
    }
    let page = node.history.page(&room, None, 3).await.unwrap();
    assert_eq!(page.messages.len(), 3);
    assert!(std::str::from_utf8(&page.messages[2])
        .unwrap()
        .contains("\"m7\""));
    let next = page.next_before.unwrap();
    assert_eq!(next.as_str(), "6");
    let page = node.history.page(&room, Some(&next), 3).await.unwrap();
    // Only 5 are kept (ids 4..=8): the page before id 6 is ids 4 and 5, and nothing older.
    assert_eq!(page.messages.len(), 2);
    assert!(page.next_before.is_none());
    let bad = node
        .history
        .page(&room, Some(&MessageId::new("x")), 3)
        .await;
    assert!(matches!(bad, Err(BackendError::InvalidCursor)));
    let (after, more) = node
        .history
        .after(&room, &MessageId::new("6"), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    assert!(!more);
    // Right after the oldest kept's predecessor: nothing is missing.
    let (after, more) = node
        .history
        .after(&room, &MessageId::new("3"), 10)
        .await
        .unwrap();
    assert_eq!((after.len(), more), (5, false));
    // Further back the cap dropped what came right after (id 3): the replay has a hole, and
    // says so (the join then sends `resync`).
    let (after, more) = node
        .history
        .after(&room, &MessageId::new("2"), 10)
        .await
        .unwrap();
    assert_eq!((after.len(), more), (5, true));
}

#[tokio::test]
async fn publish_reaches_each_subscribed_node_once() {
    let cluster = MemoryCluster::new();
    let (a, b, c) = (cluster.node(), cluster.node(), cluster.node());
    let room = RoomId::new("r");
    let mut rx_b = b.events;
    b.broker
        .subscribe(vec![Topic::Room(room.clone())])
        .await
        .unwrap();
    b.broker
        .subscribe(vec![Topic::Room(room.clone())])
        .await
        .unwrap();
    let _ = c;
    let sent = a
        .broker
        .publish_room_message(msg(&a, &room, "hi"))
        .await
        .unwrap();
    assert_eq!(sent.id.as_str(), "1");
    let Some(BrokerEvent::Envelope(env)) = rx_b.recv().await else {
        panic!("no envelope")
    };
    assert_eq!(env.origin.node, a.broker.node_id());
    assert!(rx_b.try_recv().is_none());
}

#[tokio::test]
async fn a_direct_copy_goes_only_where_another_tab_can_get_it() {
    let cluster = MemoryCluster::new();
    let (a, b) = (cluster.node(), cluster.node());
    let (sender, recipient) = (
        Topic::User(UserId::new("ann")),
        Topic::User(UserId::new("bob")),
    );
    let (mut rx_a, mut rx_b) = (a.events, b.events);
    // Ann is connected on A, Bob on B.
    a.broker.subscribe(vec![sender.clone()]).await.unwrap();
    b.broker.subscribe(vec![recipient.clone()]).await.unwrap();
    let send = |here: bool| {
        let envelope = Envelope {
            origin: Origin {
                node: a.broker.node_id(),
                conn: Some(1),
            },
            topic: recipient.clone(),
            frame: Bytes::from_static(b"{}"),
        };
        let copy = SenderCopy {
            topic: sender.clone(),
            here,
        };
        a.broker.publish_direct(crate::backend::broker::NewDirect {
            envelope,
            copy_to: Some(copy),
            dedup: None,
            hold: None,
            keep: None,
            charge: None,
        })
    };
    let topics = |rx: &mut crate::backend::Events| {
        let mut topics = Vec::new();
        while let Some(BrokerEvent::Envelope(env)) = rx.try_recv() {
            topics.push(env.topic);
        }
        topics
    };
    // Ann's only connection sent it: no copy.
    assert_eq!(send(false).await.unwrap(), DirectSent::Published(1));
    assert_eq!(topics(&mut rx_a), vec![]);
    assert_eq!(topics(&mut rx_b), vec![recipient.clone()]);
    // Another of Ann's connections on A: the copy, to A.
    assert_eq!(send(true).await.unwrap(), DirectSent::Published(1));
    assert_eq!(topics(&mut rx_a), vec![sender.clone()]);
    assert_eq!(topics(&mut rx_b), vec![recipient.clone()]);
    // Another of Ann's connections on B: the copy, to both nodes listening.
    b.broker.subscribe(vec![sender.clone()]).await.unwrap();
    assert_eq!(send(false).await.unwrap(), DirectSent::Published(1));
    assert_eq!(topics(&mut rx_a), vec![sender.clone()]);
    assert_eq!(topics(&mut rx_b), vec![recipient.clone(), sender.clone()]);
}

#[tokio::test]
async fn presence_counts_users_not_connections() {
    let cluster = MemoryCluster::new();
    let (a, b) = (cluster.node(), cluster.node());
    let room = RoomId::new("r");
    let ann = User::new("ann", "Ann");
    let (na, nb) = (a.broker.node_id(), b.broker.node_id());
    let left = || Envelope {
        origin: Origin {
            node: na,
            conn: None,
        },
        topic: Topic::Room(room.clone()),
        frame: Bytes::from_static(b"{}"),
    };
    assert!(a.presence.enter(&room, &ann, na, 1).await.unwrap());
    assert!(!b.presence.enter(&room, &ann, nb, 1).await.unwrap());
    assert!(!a.presence.enter(&room, &ann, na, 2).await.unwrap());
    assert_eq!(
        a.presence
            .online_counts(std::slice::from_ref(&room))
            .await
            .unwrap(),
        vec![1]
    );
    assert!(!a.presence.exit(&room, &ann, na, 1, left()).await.unwrap());
    assert!(!a.presence.exit(&room, &ann, na, 2, left()).await.unwrap());
    assert_eq!(cluster.remove_node(nb), vec![(room.clone(), ann.clone())]);
    assert_eq!(a.presence.online(&room, 10).await.unwrap(), (vec![], 0));
}

#[tokio::test]
async fn sent_client_ids_expire() {
    let mut sent = dedup::Sent::default();
    let key = |id: &str| dedup::key(&UserId::new("u"), Topic::Room(RoomId::new("r")), id);
    let window = std::time::Duration::from_millis(30);
    sent.remember(key("a"), (MessageId::new("1"), 1, true), window);
    assert_eq!(sent.get(&key("a")), Some((MessageId::new("1"), 1, true)));
    assert_eq!(sent.get(&key("b")), None);
    tokio::time::sleep(window * 2).await;
    // Expired entries go as new ones come: bounded by what was sent within the window.
    sent.remember(key("b"), (MessageId::new("2"), 2, false), window);
    assert_eq!(sent.get(&key("a")), None);
    assert_eq!(sent.len(), 1);
}

crate::backend::store_suite::store_tests!(async { ((), Backend::memory()) });

/// Known users do not pile up: one not seen for the room TTL is unknown, and the sweep (run
/// as the store is used, `remember_user` included) drops it from the map.
#[tokio::test]
async fn users_not_seen_for_the_room_ttl_are_forgotten_and_swept() {
    let cluster = MemoryCluster::with_config(MemoryConfig {
        room_ttl: std::time::Duration::from_millis(300),
        ..MemoryConfig::default()
    });
    let backend = cluster.node();
    for i in 0..50 {
        let user = User::new(format!("guest-{i}").as_str(), "g");
        backend.rooms.remember_user(&user).await.unwrap();
    }
    assert!(backend
        .rooms
        .user_known(&UserId::new("guest-7"))
        .await
        .unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!backend
        .rooms
        .user_known(&UserId::new("guest-7"))
        .await
        .unwrap());
    // The next use of the store sweeps: only the one seen since is left.
    backend
        .rooms
        .remember_user(&User::new("late", "l"))
        .await
        .unwrap();
    let users = &crate::sync::lock(&cluster.inner.rooms).users;
    assert_eq!(users.len(), 1, "{:?}", users.keys().collect::<Vec<_>>());
    assert!(users.contains_key(&UserId::new("late")));
}
