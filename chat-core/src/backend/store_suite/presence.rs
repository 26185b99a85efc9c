//! Presence that heals and idempotent sends, held to the same answers on every backend: exits
//! per connection are idempotent and announce `user_left` once, in the same step; a
//! `clientMsgId` sent again within the window is not published again.

use std::time::Duration;

use bytes::Bytes;

use super::{create, user_left};
use crate::{
    backend::{
        broker::{
            BrokerEvent, Dedup, DirectDedup, DirectSent, Envelope, Hold, Keep, NewDirect,
            NewRoomMessage, Origin, SenderCopy, Topic,
        },
        store::Visibility,
        Backend,
    },
    protocol::{MessageId, RoomId, User, UserId},
};

/// The frames published to this node's subscriptions until `marker` (published last), in
/// order: what was published before it, and nothing else.
pub(super) async fn until_marker(backend: &mut Backend, topic: &Topic) -> Vec<Bytes> {
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
        quota: None,
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
                .publish_direct(NewDirect {
                    envelope,
                    copy_to: None,
                    dedup: Some(check),
                    hold: None,
                    keep: None,
                    charge: None,
                })
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
        held: false,
    };
    assert_eq!(send(direct("d2"), 3).await, duplicate);
}

/// A direct message to a known user with no subscriber is held (at most `max`, and
/// `max_per_sender` from one sender; the sender's copy still published), and a release
/// publishes the held ones in order, once, without those past their age; an unknown user's is
/// not held.
pub(crate) async fn directs_are_held_and_released_once(backend: &mut Backend) {
    let node = backend.broker.node_id();
    let origin = Origin { node, conn: None };
    let (ann, bob, cyd) = (UserId::new("ann"), UserId::new("bob"), UserId::new("cyd"));
    let nobody = UserId::new("nobody");
    backend
        .rooms
        .remember_user(&User::new("bob", "Bob"))
        .await
        .unwrap();
    let ann_topic = Topic::User(ann.clone());
    let broker = backend.broker.clone();
    broker.subscribe(vec![ann_topic.clone()]).await.unwrap();
    let now = crate::protocol::now_ms();
    let hour = Duration::from_secs(3600);
    // Sends `n` from `from` to `to`, sent at `ts` and held for `max_age`.
    let send = |from: &UserId, to: &UserId, n: u8, ts: i64, max_age: Duration| {
        let broker = broker.clone();
        let (from, to) = (from.clone(), to.clone());
        let copy = (from == ann).then(|| SenderCopy {
            topic: ann_topic.clone(),
            here: true,
        });
        async move {
            let envelope = Envelope {
                origin,
                topic: Topic::User(to.clone()),
                frame: Bytes::from(format!("{{\"n\":{n}}}")),
            };
            let hold = Hold {
                to: &to,
                from: &from,
                max: 3,
                max_per_sender: 2,
                guest: false,
                max_from_guests: 3,
                max_age,
                ts,
            };
            broker
                .publish_direct(NewDirect {
                    envelope,
                    copy_to: copy,
                    dedup: None,
                    hold: Some(hold),
                    keep: None,
                    charge: None,
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(send(&ann, &bob, 1, now, hour).await, DirectSent::Held);
    // Already past its age when released: held (there is room), never delivered.
    let old = send(&ann, &bob, 2, now - 10_000, Duration::from_secs(1)).await;
    assert_eq!(old, DirectSent::Held);
    let third = send(&ann, &bob, 3, now, hour).await;
    assert_eq!(
        third,
        DirectSent::InboxFull,
        "at most `max_per_sender` from Ann"
    );
    assert_eq!(send(&cyd, &bob, 4, now, hour).await, DirectSent::Held);
    let fourth = send(&cyd, &bob, 5, now, hour).await;
    assert_eq!(fourth, DirectSent::InboxFull, "at most `max` in all");
    let unknown = send(&ann, &nobody, 6, now, hour).await;
    assert_eq!(
        unknown,
        DirectSent::Published(0),
        "an unknown user's is not held"
    );
    let frames = |ns: &[u8]| -> Vec<Bytes> {
        ns.iter()
            .map(|n| Bytes::from(format!("{{\"n\":{n}}}")))
            .collect()
    };
    assert_eq!(
        until_marker(backend, &ann_topic).await,
        frames(&[1, 2]),
        "the sender's copies of the held messages only"
    );

    let bob_topic = Topic::User(bob.clone());
    broker.subscribe(vec![bob_topic.clone()]).await.unwrap();
    assert_eq!(broker.release_held(&bob).await.unwrap(), 2);
    assert_eq!(
        until_marker(backend, &bob_topic).await,
        frames(&[1, 4]),
        "the held messages in order, not the one past its age"
    );
    assert_eq!(broker.release_held(&bob).await.unwrap(), 0, "once");
    // Held ones past their age take no room: the oldest are dropped when one more comes.
    let dan = UserId::new("dan");
    backend
        .rooms
        .remember_user(&User::new("dan", "Dan"))
        .await
        .unwrap();
    let expired = send(&ann, &dan, 10, now - 10_000, Duration::from_secs(1)).await;
    assert_eq!(expired, DirectSent::Held);
    for n in [11, 12] {
        assert_eq!(
            send(&ann, &dan, n, now, hour).await,
            DirectSent::Held,
            "{n}"
        );
    }
    assert_eq!(send(&ann, &dan, 13, now, hour).await, DirectSent::InboxFull);
    // Subscribed now: published, not held; and the counts per sender went with the release.
    assert_eq!(
        send(&ann, &bob, 7, now, hour).await,
        DirectSent::Published(1)
    );
    broker.unsubscribe(vec![bob_topic.clone()]).await.unwrap();
    for n in [8, 9] {
        assert_eq!(send(&ann, &bob, n, now, hour).await, DirectSent::Held);
    }
}

/// Guests, who cost nothing to make, hold at most their share of a recipient's inbox
/// altogether; a user the host identified still finds room. The guest mark survives the
/// pruning of expired entries and the release.
pub(crate) async fn guests_hold_only_their_share_of_an_inbox(backend: &mut Backend) {
    let origin = Origin {
        node: backend.broker.node_id(),
        conn: None,
    };
    let bob = UserId::new("bob");
    backend
        .rooms
        .remember_user(&User::new("bob", "Bob"))
        .await
        .unwrap();
    let broker = backend.broker.clone();
    let now = crate::protocol::now_ms();
    let hour = Duration::from_secs(3600);
    let send = |from: &str, guest: bool, n: u8, ts: i64, max_age: Duration| {
        let broker = broker.clone();
        let (from, to) = (UserId::new(from), bob.clone());
        async move {
            let envelope = Envelope {
                origin,
                topic: Topic::User(to.clone()),
                frame: Bytes::from(format!("{{\"n\":{n}}}")),
            };
            let hold = Hold {
                to: &to,
                from: &from,
                max: 4,
                max_per_sender: 2,
                guest,
                max_from_guests: 2,
                max_age,
                ts,
            };
            let direct = NewDirect {
                envelope,
                copy_to: None,
                dedup: None,
                hold: Some(hold),
                keep: None,
                charge: None,
            };
            broker.publish_direct(direct).await.unwrap()
        }
    };
    // A guest's, already past its age: it takes no room once the next one comes.
    let expired = send("g0", true, 0, now - 10_000, Duration::from_secs(1)).await;
    assert_eq!(expired, DirectSent::Held);
    assert_eq!(send("g1", true, 1, now, hour).await, DirectSent::Held);
    assert_eq!(send("g2", true, 2, now, hour).await, DirectSent::Held);
    let third = send("g3", true, 3, now, hour).await;
    assert_eq!(third, DirectSent::InboxFull, "the guests' share is 2");
    assert_eq!(send("ann", false, 4, now, hour).await, DirectSent::Held);
    assert_eq!(send("ann", false, 5, now, hour).await, DirectSent::Held);
    let full = send("cyd", false, 6, now, hour).await;
    assert_eq!(full, DirectSent::InboxFull, "4 in all");

    let bob_topic = Topic::User(bob.clone());
    broker.subscribe(vec![bob_topic.clone()]).await.unwrap();
    assert_eq!(broker.release_held(&bob).await.unwrap(), 4);
    let frames: Vec<Bytes> = [1, 2, 4, 5]
        .iter()
        .map(|n| Bytes::from(format!("{{\"n\":{n}}}")))
        .collect();
    assert_eq!(until_marker(backend, &bob_topic).await, frames);
}

/// Direct messages that reached their recipient (or are held for them) are kept per
/// conversation, whoever sent them, read newest page first and oldest first within a page;
/// one that reached nobody is not; a cursor that is not a direct message id is refused.
pub(crate) async fn directs_are_kept_per_conversation(backend: &mut Backend) {
    let node = backend.broker.node_id();
    let (ann, bob, cyd) = (UserId::new("ann"), UserId::new("bob"), UserId::new("cyd"));
    let broker = backend.broker.clone();
    broker
        .subscribe(vec![Topic::User(ann.clone()), Topic::User(bob.clone())])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, (from, to)) in [(&ann, &bob), (&bob, &ann), (&ann, &bob), (&ann, &cyd)]
        .into_iter()
        .enumerate()
    {
        let id = MessageId::new(uuid::Uuid::now_v7().to_string());
        let envelope = Envelope {
            origin: Origin { node, conn: None },
            topic: Topic::User(to.clone()),
            frame: Bytes::from(format!("{{\"n\":{i}}}")),
        };
        let keep = Keep {
            from,
            to,
            id: &id,
            ts: crate::protocol::now_ms(),
            listed: 10,
        };
        let direct = NewDirect {
            envelope,
            copy_to: None,
            dedup: None,
            hold: None,
            keep: Some(keep),
            charge: None,
        };
        broker.publish_direct(direct).await.unwrap();
        ids.push(id);
    }
    let history = &backend.history;
    let frames = |page: &crate::backend::history::HistoryPage| -> Vec<String> {
        let text = |f: &Bytes| String::from_utf8(f.to_vec()).unwrap();
        page.messages.iter().map(text).collect()
    };
    let newest = history.direct_page(&bob, &ann, None, 2).await.unwrap();
    assert_eq!(frames(&newest), ["{\"n\":1}", "{\"n\":2}"]);
    assert_eq!(newest.next_before.as_ref(), Some(&ids[1]));
    let older = history
        .direct_page(&ann, &bob, newest.next_before.as_ref(), 2)
        .await
        .unwrap();
    assert_eq!(frames(&older), ["{\"n\":0}"]);
    assert_eq!(older.next_before, None);
    // Cyd never connected: the message reached nobody and is not kept.
    let none = history.direct_page(&cyd, &ann, None, 10).await.unwrap();
    assert!(none.messages.is_empty());
    for bad in [
        "",
        "17",
        "1795946218367-0",
        "019AD5E2-7C1A-7B3E-9F40-2D6C8E1A5B37",
    ] {
        let err = history
            .direct_page(&ann, &bob, Some(&MessageId::new(bad)), 2)
            .await
            .unwrap_err();
        assert!(
            matches!(err, crate::error::BackendError::InvalidCursor),
            "{bad}: {err}"
        );
    }
}
