//! The wrappers of [`Backend::with_archive`] over the memory backend and an archive in a
//! vector: every published message handed over once, pages that cross from the backend's
//! history into the archive in order, and a shorter page (not the end) when the archive fails.

use std::sync::{Arc, Mutex};

use super::{Archive, Archived};
use crate::{
    backend::{
        broker::{NewRoomMessage, Origin},
        history::HistoryPage,
        memory::MemoryCluster,
        Reply,
    },
    error::BackendError,
    protocol::{MessageId, RoomId, User},
};

/// Messages by their (numeric, memory backend) ids; `down` fails every read.
#[derive(Default)]
struct Vector {
    kept: Mutex<Vec<(u64, Archived)>>,
    down: std::sync::atomic::AtomicBool,
}

impl Archive for Vector {
    fn keep(&self, message: Archived) {
        let id = message.id.as_str().parse().unwrap();
        self.kept.lock().unwrap().push((id, message));
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
