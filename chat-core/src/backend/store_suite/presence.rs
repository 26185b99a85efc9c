//! Presence that heals and idempotent sends, held to the same answers on every backend: exits
//! per connection are idempotent and announce `user_left` once, in the same step; a
//! `clientMsgId` sent again within the window is not published again.

use std::time::Duration;

use bytes::Bytes;

use super::{create, user_left};
use crate::{
    backend::{
        broker::{
            BrokerEvent, Dedup, DirectDedup, DirectSent, Envelope, NewRoomMessage, Origin, Topic,
        },
        store::Visibility,
        Backend,
    },
    protocol::{MessageId, RoomId, User, UserId},
};

/// The frames published to this node's subscriptions until `marker` (published last), in
/// order: what was published before it, and nothing else.
async fn until_marker(backend: &mut Backend, topic: &Topic) -> Vec<Bytes> {
    let origin = Origin {
        node: backend.broker.node_id(),
        conn: None,
    };
    let marker = Bytes::from_static(b"{\"marker\":1}");
    let envelope = Envelope {
        origin,
        topic: topic.clone(),
        frame: marker.clone(),
    };
    backend.broker.publish(envelope).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), backend.events.recv())
            .await
            .expect("the marker within 5 s")
            .expect("events open");
        if let BrokerEvent::Envelope(envelope) = event {
            if envelope.frame == marker {
                return frames;
            }
            frames.push(envelope.frame);
        }
    }
}

pub(crate) async fn exits_are_idempotent_and_announce_once(backend: &mut Backend) {
    let r = RoomId::new("r");
    create(backend, &[("r", 1, Visibility::Public)]).await;
    let topic = Topic::Room(r.clone());
    backend.broker.subscribe(vec![topic.clone()]).await.unwrap();
    let node = backend.broker.node_id();
    let ann = User::new("ann", "Ann");
    backend.rooms.add_member(&r, &ann).await.unwrap();
    let presence = backend.presence.clone();
    assert!(presence.enter(&r, &ann, node, 1).await.unwrap());
    assert!(
        !presence.enter(&r, &ann, node, 1).await.unwrap(),
        "counted once"
    );
    assert!(
        !presence.enter(&r, &ann, node, 2).await.unwrap(),
        "a second tab"
    );
    let left = user_left(backend, &ann, &r);
    assert!(!presence
        .exit(&r, &ann, node, 1, left.clone())
        .await
        .unwrap());
    assert!(!presence
        .exit(&r, &ann, node, 1, left.clone())
        .await
        .unwrap());
    assert_eq!(
        presence.online(&r, 9).await.unwrap().1,
        1,
        "tab 2 is still in"
    );
    assert!(until_marker(backend, &topic).await.is_empty());
    // The last connection: `user_left` in the same step, once however often it is retried.
    assert!(presence
        .exit(&r, &ann, node, 2, left.clone())
        .await
        .unwrap());
    assert!(!presence
        .exit(&r, &ann, node, 2, left.clone())
        .await
        .unwrap());
    assert_eq!(until_marker(backend, &topic).await, vec![left.frame]);
    assert_eq!(presence.online(&r, 9).await.unwrap(), (vec![], 0));
}

pub(crate) async fn sends_are_deduplicated(backend: &mut Backend) {
    let r = RoomId::new("r");
    create(backend, &[("r", 1, Visibility::Public)]).await;
    let topic = Topic::Room(r.clone());
    backend.broker.subscribe(vec![topic.clone()]).await.unwrap();
    let origin = Origin {
        node: backend.broker.node_id(),
        conn: Some(1),
    };
    let dedup = Dedup {
        client_msg_id: "c1".into(),
        window: Duration::from_secs(60),
    };
    let message = |from: &User, ts: i64| NewRoomMessage {
        origin,
        room: r.clone(),
        from: from.clone(),
        body: "hi".into(),
        ts,
        dedup: Some(dedup.clone()),
    };
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    let broker = backend.broker.clone();
    let first = broker
        .publish_room_message(message(&ann, 10))
        .await
        .unwrap();
    let again = broker
        .publish_room_message(message(&ann, 20))
        .await
        .unwrap();
    assert_eq!(
        (&again.id, again.ts),
        (&first.id, 10),
        "the first one's id and ts"
    );
    let other = broker
        .publish_room_message(message(&bob, 30))
        .await
        .unwrap();
    assert_ne!(other.id, first.id, "another sender's id is another message");
    assert_eq!(
        until_marker(backend, &topic).await.len(),
        2,
        "published once each"
    );
    let page = backend.history.page(&r, None, 10).await.unwrap();
    assert_eq!(page.messages.len(), 2, "stored once each");

    // Direct: only what reached the recipient is remembered.
    let to = UserId::new("bob");
    let direct = |id: &'static str| {
        let envelope = Envelope {
            origin,
            topic: Topic::User(to.clone()),
            frame: Bytes::from_static(b"{}"),
        };
        (envelope, MessageId::new(id))
    };
    let send = |(envelope, id): (Envelope, MessageId), ts: i64| {
        let broker = broker.clone();
        let (to, dedup, from) = (to.clone(), dedup.clone(), ann.id.clone());
        async move {
            let check = DirectDedup {
                from: &from,
                to: &to,
                dedup: &dedup,
                id: &id,
                ts,
            };
            broker
                .publish_direct(envelope, None, Some(check))
                .await
                .unwrap()
        }
    };
    assert_eq!(send(direct("d0"), 1).await, DirectSent::Published(0));
    backend
        .broker
        .subscribe(vec![Topic::User(to.clone())])
        .await
        .unwrap();
    assert_eq!(send(direct("d1"), 2).await, DirectSent::Published(1));
    let duplicate = DirectSent::Duplicate {
        id: MessageId::new("d1"),
        ts: 2,
    };
    assert_eq!(send(direct("d2"), 3).await, duplicate);
}
