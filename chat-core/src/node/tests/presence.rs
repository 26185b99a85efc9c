//! A presence exit that fails is retried until it lands, and `user_left` goes out once: two
//! nodes on one memory cluster, the leaving node's presence store failing its first exits.

use std::{sync::atomic::Ordering, time::Duration};

use futures_channel::mpsc as fmpsc;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use super::FailingPresence;
use crate::{
    backend::{memory::MemoryCluster, store::Visibility},
    protocol::SendMessageFrame,
    session::{run, Outbound},
    Caller, Chat, ChatConfig, User,
};

const WAIT: Duration = Duration::from_secs(5);

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
    let failing = FailingPresence::new(backend.presence.clone());
    failing.exits.left.store(3, Ordering::SeqCst);
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
    assert_eq!(failing.exits.tries(), 4);
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
