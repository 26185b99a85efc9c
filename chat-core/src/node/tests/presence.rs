//! A presence exit that fails is retried until it lands, and `user_left` goes out once: two
//! nodes on one memory cluster, the leaving node's presence store failing its first exits.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_channel::mpsc as fmpsc;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use crate::{
    backend::{
        broker::{ConnId, Envelope, NodeId},
        memory::MemoryCluster,
        store::{PresenceStore, Visibility},
        Reply,
    },
    error::BackendError,
    protocol::{RoomId, SendMessageFrame, UserId},
    session::{run, Outbound},
    Caller, Chat, ChatConfig, User,
};

const WAIT: Duration = Duration::from_secs(5);

/// A presence store whose next `failures` exits fail (without doing anything).
struct FailingExits {
    inner: Arc<dyn PresenceStore>,
    failures: AtomicUsize,
    tries: AtomicUsize,
}

impl PresenceStore for FailingExits {
    fn enter<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
    ) -> Reply<'a, bool> {
        self.inner.enter(room, user, node, conn)
    }

    fn exit<'a>(
        &'a self,
        room: &'a RoomId,
        user: &'a User,
        node: NodeId,
        conn: ConnId,
        left: Envelope,
    ) -> Reply<'a, bool> {
        self.tries.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Box::pin(async { Err(BackendError::Unavailable("down".into())) });
        }
        self.inner.exit(room, user, node, conn, left)
    }

    fn online<'a>(&'a self, room: &'a RoomId, limit: usize) -> Reply<'a, (Vec<User>, usize)> {
        self.inner.online(room, limit)
    }

    fn are_online<'a>(&'a self, room: &'a RoomId, users: &'a [UserId]) -> Reply<'a, Vec<bool>> {
        self.inner.are_online(room, users)
    }

    fn online_counts<'a>(&'a self, rooms: &'a [RoomId]) -> Reply<'a, Vec<usize>> {
        self.inner.online_counts(rooms)
    }
}

async fn frame(out: &mut fmpsc::UnboundedReceiver<Outbound>) -> Value {
    loop {
        match tokio::time::timeout(WAIT, out.next()).await.unwrap() {
            Some(Outbound::Text(bytes)) => return serde_json::from_slice(&bytes).unwrap(),
            Some(Outbound::Ping) => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_exit_is_retried_until_it_lands_and_announced_once() {
    let cluster = MemoryCluster::new();
    let mut backend = cluster.node();
    let failing = Arc::new(FailingExits {
        inner: backend.presence.clone(),
        failures: AtomicUsize::new(3),
        tries: AtomicUsize::new(0),
    });
    backend.presence = failing.clone();
    let a = Chat::new(backend, ChatConfig::default());
    let b = Chat::new(cluster.node(), ChatConfig::default());
    let owner = Caller::member(User::new("owner", "Owner"));
    let room = b
        .create_room(&owner, Some("r".into()), Visibility::Public)
        .await
        .unwrap()
        .room_id;
    let (ann, bo) = (User::new("ann", "Ann"), User::new("bo", "Bo"));
    for user in [&ann, &bo] {
        b.add_member(&room, user).await.unwrap();
    }
    let mut watcher = b.connect(bo.clone()).await.unwrap();
    watcher.join(&room, None).await.unwrap();
    let (tx, mut out) = fmpsc::unbounded::<Outbound>();
    let _session = tokio::spawn(run(watcher, stream::pending(), tx));
    assert_eq!(frame(&mut out).await["type"], "joined");
    let mut leaver = a.connect(ann.clone()).await.unwrap();
    leaver.join(&room, None).await.unwrap();
    assert_eq!(frame(&mut out).await["event"], "user_joined");

    leaver.close().await;
    let left = frame(&mut out).await;
    assert_eq!(
        (left["event"].as_str(), left["user"]["id"].as_str()),
        (Some("user_left"), Some("ann"))
    );
    // The first try and two retries failed (backoff 100, 200 ms); the third retry landed.
    assert_eq!(failing.tries.load(Ordering::SeqCst), 4);
    assert_eq!(b.backend().presence.online(&room, 9).await.unwrap().1, 1);
    // Nothing else before a message sent after it: user_left once.
    let mut talker = a.connect(ann.clone()).await.unwrap();
    talker.join(&room, None).await.unwrap();
    assert_eq!(frame(&mut out).await["event"], "user_joined");
    let said = SendMessageFrame {
        room: room.clone(),
        body: "after".into(),
        client_msg_id: None,
    };
    talker.send_message(said).await.unwrap();
    assert_eq!(frame(&mut out).await["body"], "after");
}
