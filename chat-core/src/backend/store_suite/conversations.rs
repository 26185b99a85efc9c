//! A user's list of conversations, held to the same answers on every backend: the other users
//! by their last kept direct message, most recent first, paged by a cursor that orders those
//! of one millisecond, within the cap, with the other user's name where the chat saw them.

use bytes::Bytes;

use crate::{
    backend::{
        broker::{Envelope, Keep, NewDirect, Origin, Topic},
        history::{ConversationCursor, ConversationPage},
        Backend,
    },
    protocol::{now_ms, MessageId, User, UserId},
};

/// Who is listed, in order, with the name and last frame of each.
fn listed(page: &ConversationPage) -> Vec<(String, Option<String>, String)> {
    page.conversations
        .iter()
        .map(|c| {
            (
                c.peer.as_str().to_owned(),
                c.peer_name.clone(),
                String::from_utf8(c.last.to_vec()).unwrap(),
            )
        })
        .collect()
}

pub(crate) async fn conversations_list_the_latest_first_within_the_cap(backend: &mut Backend) {
    let node = backend.broker.node_id();
    let [ann, bob, cyd, dan, eve] = ["ann", "bob", "cyd", "dan", "eve"].map(UserId::new);
    backend
        .rooms
        .remember_user(&User::new("bob", "Bob"))
        .await
        .unwrap();
    let broker = backend.broker.clone();
    let topics = [&ann, &bob, &cyd, &dan].map(|u| Topic::User(u.clone()));
    broker.subscribe(topics.to_vec()).await.unwrap();
    let t = now_ms() - 60_000;
    let send = |from: &UserId, to: &UserId, ts: i64, n: u32, listed: usize| {
        let broker = broker.clone();
        let (from, to) = (from.clone(), to.clone());
        async move {
            let id = MessageId::new(uuid::Uuid::now_v7().to_string());
            let envelope = Envelope {
                origin: Origin { node, conn: None },
                topic: Topic::User(to.clone()),
                frame: Bytes::from(format!("{{\"n\":{n}}}")),
            };
            let keep = Keep {
                from: &from,
                to: &to,
                id: &id,
                ts,
                listed,
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
        }
    };
    send(&ann, &bob, t, 1, 10).await;
    send(&cyd, &ann, t + 1, 2, 10).await;
    send(&ann, &dan, t + 1, 3, 10).await;
    send(&bob, &ann, t + 2, 4, 10).await;
    // Eve is offline and nothing is held for her: not kept, not listed.
    send(&ann, &eve, t + 3, 5, 10).await;
    // A late timestamp does not move a conversation back.
    send(&ann, &bob, t - 5, 6, 10).await;

    let history = backend.history.clone();
    let first = history.conversations(&ann, None, 2).await.unwrap();
    assert_eq!(
        listed(&first),
        [
            ("bob".into(), Some("Bob".into()), "{\"n\":6}".into()),
            // Cyd and Dan share a millisecond: the greater id first.
            ("dan".into(), None, "{\"n\":3}".into()),
        ]
    );
    let next = first.next_before.clone().unwrap();
    assert_eq!(
        next,
        ConversationCursor {
            at: t + 1,
            peer: dan.clone()
        }
    );
    assert_eq!(ConversationCursor::parse(&next.to_string()).unwrap(), next);
    let rest = history.conversations(&ann, Some(&next), 2).await.unwrap();
    assert_eq!(listed(&rest), [("cyd".into(), None, "{\"n\":2}".into())]);
    assert!(rest.next_before.is_none());
    // The other side lists it too.
    let bobs = history.conversations(&bob, None, 10).await.unwrap();
    assert_eq!(listed(&bobs), [("ann".into(), None, "{\"n\":6}".into())]);
    assert!(history
        .conversations(&eve, None, 10)
        .await
        .unwrap()
        .conversations
        .is_empty());

    // Listed at most 3: a fourth partner pushes out the least recent, Cyd (of the two at
    // t + 1, the smaller id goes first).
    broker
        .subscribe(vec![Topic::User(eve.clone())])
        .await
        .unwrap();
    send(&ann, &eve, t + 20, 7, 3).await;
    let capped = history.conversations(&ann, None, 10).await.unwrap();
    let order: Vec<String> = listed(&capped).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(order, ["eve", "bob", "dan"]);
    // Cyd still lists Ann: the cap is per user.
    let cyds = history.conversations(&cyd, None, 10).await.unwrap();
    assert_eq!(listed(&cyds), [("ann".into(), None, "{\"n\":2}".into())]);
}
