//! Presence that heals and idempotent sends, held to the same answers on every backend: exits
//! per connection are idempotent and announce `user_left` once, in the same step; a
//! `clientMsgId` sent again within the window is not published again.

use std::time::Duration;

use bytes::Bytes;

use super::{create, user_left};
use crate::{
    backend::{
        broker::{
            BrokerEvent, Dedup, DirectDedup, DirectSent, Envelope, Hold, NewRoomMessage, Origin,
            SenderCopy, Topic,
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
                .publish_direct(envelope, None, Some(check), None)
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

/// A direct message to a known user with no subscriber is held (at most `max`, the sender's
/// copy still published, its `clientMsgId` remembered), and a release publishes the held ones
/// in order, once, without those past their age; an unknown user's is not held.
pub(crate) async fn directs_are_held_and_released_once(backend: &mut Backend) {
    let node = backend.broker.node_id();
    let origin = Origin { node, conn: None };
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    backend.rooms.remember_user(&bob).await.unwrap();
    let ann_topic = Topic::User(ann.id.clone());
    backend
        .broker
        .subscribe(vec![ann_topic.clone()])
        .await
        .unwrap();
    let envelope = |to: &UserId, body: &'static str| Envelope {
        origin,
        topic: Topic::User(to.clone()),
        frame: Bytes::from_static(body.as_bytes()),
    };
    let copy = || SenderCopy {
        topic: ann_topic.clone(),
        here: true,
    };
    let hour = Duration::from_secs(3600);
    let hold = |to: &'static UserId, ts: i64, max_age: Duration| Hold {
        to,
        max: 2,
        max_age,
        ts,
    };
    static BOB: std::sync::LazyLock<UserId> = std::sync::LazyLock::new(|| UserId::new("bob"));
    static NOBODY: std::sync::LazyLock<UserId> = std::sync::LazyLock::new(|| UserId::new("nobody"));
    let now = crate::protocol::now_ms();
    let broker = backend.broker.clone();
    let sent = broker
        .publish_direct(
            envelope(&BOB, "{\"n\":1}"),
            Some(copy()),
            None,
            Some(hold(&BOB, now, hour)),
        )
        .await
        .unwrap();
    assert_eq!(sent, DirectSent::Held);
    // Already past its age when released: held (the list has room), never delivered.
    let sent = broker
        .publish_direct(
            envelope(&BOB, "{\"n\":2}"),
            None,
            None,
            Some(hold(&BOB, now - 10_000, Duration::from_secs(1))),
        )
        .await
        .unwrap();
    assert_eq!(sent, DirectSent::Held);
    let sent = broker
        .publish_direct(
            envelope(&BOB, "{\"n\":3}"),
            None,
            None,
            Some(hold(&BOB, now, hour)),
        )
        .await
        .unwrap();
    assert_eq!(sent, DirectSent::InboxFull, "at most `max` wait");
    let sent = broker
        .publish_direct(
            envelope(&NOBODY, "{\"n\":4}"),
            None,
            None,
            Some(hold(&NOBODY, now, hour)),
        )
        .await
        .unwrap();
    assert_eq!(
        sent,
        DirectSent::Published(0),
        "an unknown user's is not held"
    );
    assert_eq!(
        until_marker(backend, &ann_topic).await,
        vec![Bytes::from_static(b"{\"n\":1}")],
        "the sender's copy of the held message only"
    );

    let bob_topic = Topic::User(bob.id.clone());
    backend
        .broker
        .subscribe(vec![bob_topic.clone()])
        .await
        .unwrap();
    assert_eq!(backend.broker.release_held(&bob.id, hour).await.unwrap(), 1);
    assert_eq!(
        until_marker(backend, &bob_topic).await,
        vec![Bytes::from_static(b"{\"n\":1}")],
        "the held message, not the one past its age"
    );
    assert_eq!(
        backend.broker.release_held(&bob.id, hour).await.unwrap(),
        0,
        "released once"
    );
    // Subscribed now: published, not held.
    let sent = broker
        .publish_direct(
            envelope(&BOB, "{\"n\":5}"),
            None,
            None,
            Some(hold(&BOB, now, hour)),
        )
        .await
        .unwrap();
    assert_eq!(sent, DirectSent::Published(1));
}
