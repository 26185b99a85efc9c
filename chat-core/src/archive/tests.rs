//! The wrappers of [`Backend::with_archive`] over the memory backend and an archive in a
//! vector: every published message handed over once, pages that cross from the backend's
//! history into the archive in order, and a shorter page (not the end) when the archive fails.

use std::sync::{Arc, Mutex};

use super::{Archive, Archived, ArchivedDirect};
use crate::{
    backend::{
        broker::{NewRoomMessage, Origin},
        history::HistoryPage,
        memory::MemoryCluster,
        Reply,
    },
    error::BackendError,
    protocol::{MessageId, RoomId, User, UserId},
};

/// Messages by their (numeric, memory backend) ids, direct messages by their UUIDs; `down`
/// fails every read.
#[derive(Default)]
struct Vector {
    kept: Mutex<Vec<(u64, Archived)>>,
    directs: Mutex<Vec<ArchivedDirect>>,
    down: std::sync::atomic::AtomicBool,
}

impl Archive for Vector {
    fn keep(&self, message: Archived) {
        let id = message.id.as_str().parse().unwrap();
        self.kept.lock().unwrap().push((id, message));
    }

    fn keep_direct(&self, message: ArchivedDirect) {
        self.directs.lock().unwrap().push(message);
    }

    fn direct_page<'a>(
        &'a self,
        users: (&'a UserId, &'a UserId),
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            let kept = self.directs.lock().unwrap();
            let mut older: Vec<&ArchivedDirect> = kept
                .iter()
                .filter(|m| (&m.users.0, &m.users.1) == users)
                .filter(|m| before.is_none_or(|b| m.id.as_str() < b.as_str()))
                .collect();
            older.sort_by(|x, y| x.id.as_str().cmp(y.id.as_str()));
            let start = older.len().saturating_sub(limit);
            Ok(HistoryPage {
                next_before: (start > 0).then(|| older[start].id.clone()),
                messages: older[start..].iter().map(|m| m.frame.clone()).collect(),
            })
        })
    }

    fn page<'a>(
        &'a self,
        room: &'a RoomId,
        before: Option<&'a MessageId>,
        limit: usize,
    ) -> Reply<'a, HistoryPage> {
        Box::pin(async move {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(BackendError::Archive("down".into()));
            }
            let before: u64 = match before {
                Some(before) => before
                    .as_str()
                    .parse()
                    .map_err(|_| BackendError::InvalidCursor)?,
                None => u64::MAX,
            };
            let kept = self.kept.lock().unwrap();
            let mut older: Vec<&(u64, Archived)> = kept
                .iter()
                .filter(|(id, m)| *id < before && m.room == *room)
                .collect();
            older.sort_by_key(|(id, _)| *id);
            let start = older.len().saturating_sub(limit);
            Ok(HistoryPage {
                next_before: (start > 0).then(|| MessageId::new(older[start].0.to_string())),
                messages: older[start..]
                    .iter()
                    .map(|(_, m)| m.frame.clone())
                    .collect(),
            })
        })
    }
}

fn ids(page: &HistoryPage) -> Vec<String> {
    page.messages
        .iter()
        .map(|frame| crate::protocol::wire::message_key(frame).unwrap().1)
        .collect()
}

#[tokio::test]
async fn pages_go_on_from_the_archive_and_a_failing_archive_shortens_the_page() {
    let archive = Arc::new(Vector::default());
    let backend = MemoryCluster::with_history_per_room(3)
        .node()
        .with_archive(archive.clone());
    let room = RoomId::new("r");
    let origin = Origin {
        node: backend.broker.node_id(),
        conn: None,
    };
    for ts in 1..=10 {
        let message = NewRoomMessage {
            origin,
            room: room.clone(),
            from: User::new("ann", "Ann"),
            body: format!("m{ts}"),
            ts,
            dedup: None,
            quota: None,
        };
        backend.broker.publish_room_message(message).await.unwrap();
    }
    assert_eq!(
        archive.kept.lock().unwrap().len(),
        10,
        "each handed over once"
    );
    let history = &backend.history;
    let all: Vec<String> = (1..=10).map(|n| n.to_string()).collect();
    // The backend keeps 8, 9, 10: a page of 5 takes 2 from the archive, then pages on there.
    let newest = history.page(&room, None, 5).await.unwrap();
    assert_eq!(ids(&newest), all[5..]);
    let next = newest.next_before.clone().unwrap();
    let older = history.page(&room, Some(&next), 5).await.unwrap();
    assert_eq!((ids(&older), older.next_before), (all[..5].to_vec(), None));
    // The frames are the backend's, byte for byte.
    let backend_page = history.page(&room, None, 3).await.unwrap();
    let frame = archive.kept.lock().unwrap()[9].1.frame.clone();
    assert_eq!(backend_page.messages[2], frame);

    // A page as long as what the backend has still points on into the archive.
    let exact = history.page(&room, None, 3).await.unwrap();
    assert_eq!(exact.next_before, Some(MessageId::new("8")));
    let after_exact = history
        .page(&room, exact.next_before.as_ref(), 3)
        .await
        .unwrap();
    assert_eq!(ids(&after_exact), all[4..7]);

    // The archive fails: the backend's part, and a cursor that fails in turn.
    archive
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let short = history.page(&room, None, 5).await.unwrap();
    assert_eq!(ids(&short), all[7..]);
    assert_eq!(short.next_before, Some(MessageId::new("8")));
    let err = history.page(&room, short.next_before.as_ref(), 5).await;
    assert!(matches!(err, Err(BackendError::Archive(_))), "{err:?}");
}

#[tokio::test]
async fn a_room_the_backend_no_longer_has_is_read_from_the_archive() {
    let archive = Arc::new(Vector::default());
    let backend = MemoryCluster::default()
        .node()
        .with_archive(archive.clone());
    // Archived long ago; the backend has nothing of the room any more.
    let room = RoomId::new("quiet");
    for id in 1..=4u64 {
        archive.keep(Archived {
            room: room.clone(),
            id: MessageId::new(id.to_string()),
            frame: crate::protocol::wire::room_message(
                &id.to_string(),
                &room,
                &User::new("ann", "Ann"),
                "old",
                1,
            ),
        });
    }
    let history = &backend.history;
    let newest = history.page(&room, None, 3).await.unwrap();
    assert_eq!(ids(&newest), ["2", "3", "4"]);
    assert_eq!(newest.next_before, Some(MessageId::new("2")));
    let rest = history
        .page(&room, newest.next_before.as_ref(), 3)
        .await
        .unwrap();
    assert_eq!((ids(&rest), rest.next_before), (vec!["1".to_owned()], None));
    // A room neither has is empty, not an error.
    let none = history.page(&RoomId::new("new"), None, 3).await.unwrap();
    assert!(none.messages.is_empty() && none.next_before.is_none());
}

#[tokio::test]
async fn direct_messages_the_backend_kept_are_archived_and_paged_on() {
    use crate::backend::broker::{DirectSent, Envelope, Keep, NewDirect, Topic};
    use crate::protocol::{DirectMessage, ServerFrame};

    let archive = Arc::new(Vector::default());
    let backend = MemoryCluster::with_history_per_room(3)
        .node()
        .with_archive(archive.clone());
    let (ann, bob, cid) = (UserId::new("ann"), UserId::new("bob"), UserId::new("cid"));
    backend
        .broker
        .subscribe(vec![Topic::User(bob.clone())])
        .await
        .unwrap();
    let mut ids = Vec::new();
    // Ann writes to Bob (connected) five times, and once to Cid (nowhere, not held: the
    // backend keeps nothing, and neither does the archive).
    for (n, to) in [&bob, &bob, &bob, &bob, &bob, &cid].into_iter().enumerate() {
        let id = MessageId::new(uuid::Uuid::now_v7().to_string());
        let frame = ServerFrame::Direct(DirectMessage {
            id: id.clone(),
            from: User::new("ann", "Ann"),
            to: to.clone(),
            body: format!("d{n}"),
            ts: 1,
        })
        .encode();
        let sent = backend
            .broker
            .publish_direct(NewDirect {
                envelope: Envelope {
                    origin: Origin {
                        node: backend.broker.node_id(),
                        conn: None,
                    },
                    topic: Topic::User(to.clone()),
                    frame,
                },
                copy_to: None,
                dedup: None,
                hold: None,
                keep: Some(Keep {
                    from: &ann,
                    to,
                    id: &id,
                    ts: 1,
                    listed: 10,
                }),
                charge: None,
            })
            .await
            .unwrap();
        if *to == bob {
            assert_eq!(sent, DirectSent::Published(1));
            ids.push(id.as_str().to_owned());
        } else {
            assert_eq!(sent, DirectSent::Published(0));
        }
    }
    assert_eq!(
        archive.directs.lock().unwrap().len(),
        5,
        "the kept ones, once"
    );
    let direct_ids = |page: &HistoryPage| -> Vec<String> {
        page.messages
            .iter()
            .map(|f| crate::protocol::wire::direct_key(f).unwrap())
            .collect()
    };
    // The backend keeps 3 of the conversation: a page of 4 takes one from the archive, from
    // either side of the conversation.
    let history = &backend.history;
    let newest = history.direct_page(&bob, &ann, None, 4).await.unwrap();
    assert_eq!(direct_ids(&newest), ids[1..]);
    let rest = history
        .direct_page(&ann, &bob, newest.next_before.as_ref(), 4)
        .await
        .unwrap();
    assert_eq!(
        (direct_ids(&rest), rest.next_before),
        (ids[..1].to_vec(), None)
    );
    let none = history.direct_page(&ann, &cid, None, 4).await.unwrap();
    assert!(none.messages.is_empty());
}
