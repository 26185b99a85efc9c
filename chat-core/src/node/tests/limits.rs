//! Per-user limits counted for every node of a memory cluster (`shared_user_limits`): two
//! nodes, one user with connections on both.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use super::FailingPresence;
use crate::{
    backend::{memory::MemoryCluster, store::Visibility},
    hooks::DefaultPolicy,
    protocol::SendMessageFrame,
    Caller, Chat, ChatConfig, Connection, Error, Limit, User,
};

/// `connected` is the user's connection limit refusing one more.
fn assert_connection_refused(connected: &Result<Connection, Error>) {
    assert!(
        matches!(
            connected,
            Err(Error::RateLimited {
                limit: Limit::Connections,
                ..
            })
        ),
        "{connected:?}"
    );
}

fn node(cluster: &MemoryCluster, config: &ChatConfig) -> Chat {
    Chat::with_policy(cluster.node(), config.clone(), Arc::new(DefaultPolicy))
}

#[tokio::test]
async fn a_users_limits_count_on_every_node_of_the_cluster() {
    let config = ChatConfig {
        max_connections_per_user: 2,
        user_messages_per_second: 1,
        user_messages_burst: 2,
        ..ChatConfig::default()
    };
    let cluster = MemoryCluster::new();
    let (a, b) = (node(&cluster, &config), node(&cluster, &config));
    let ann = User::new("ann", "Ann");
    let caller = Caller::from(ann.clone());
    let room = a
        .create_room(&caller, Some("r".into()), Visibility::Public)
        .await
        .unwrap()
        .room_id;

    // Open WebSockets: two on one node, and none more on the other.
    let mut on_a = a.connect(ann.clone()).await.unwrap();
    let second = a.connect(ann.clone()).await.unwrap();
    let refused = b.connect(ann.clone()).await;
    assert_connection_refused(&refused);
    // One closes: the other node has a slot.
    let mut second = second;
    second.close().await;
    let mut on_b = b.connect(ann.clone()).await.unwrap();

    // Room messages: a burst of two for both nodes together.
    on_a.join(&room, None).await.unwrap();
    on_b.join(&room, None).await.unwrap();
    let say = |body: &str| SendMessageFrame {
        room: room.clone(),
        body: body.into(),
        client_msg_id: None,
    };
    on_a.send_message(say("one")).await.unwrap();
    on_a.send_message(say("two")).await.unwrap();
    let refused = on_b.send_message(say("three")).await;
    assert!(
        matches!(
            refused,
            Err(Error::RateLimited {
                limit: Limit::Messages,
                ..
            })
        ),
        "{refused:?}"
    );

    // Per node only: the other node's bucket is its own.
    let local = ChatConfig {
        shared_user_limits: false,
        ..config
    };
    let c = node(&cluster, &local);
    let mut on_c = c.connect(ann.clone()).await.unwrap();
    on_c.join(&room, None).await.unwrap();
    on_c.send_message(say("elsewhere")).await.unwrap();
}

#[tokio::test]
async fn a_close_whose_socket_record_failed_is_recorded_again_so_the_user_can_connect() {
    let config = ChatConfig {
        max_connections_per_user: 1,
        ..ChatConfig::default()
    };
    let cluster = MemoryCluster::new();
    let mut backend = cluster.node();
    let failing = FailingPresence::new(backend.presence.clone());
    backend.presence = failing.clone();
    let a = Chat::with_policy(backend, config.clone(), Arc::new(DefaultPolicy));
    let b = node(&cluster, &config);
    let ann = User::new("ann", "Ann");

    let mut on_a = a.connect(ann.clone()).await.unwrap();
    // The close's record fails twice (the close, then the first retry): the backend still
    // counts ann's socket on `a`, which would refuse her everywhere.
    failing.socket_records.left.store(2, Ordering::SeqCst);
    on_a.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let on_b = loop {
        match b.connect(ann.clone()).await {
            Ok(conn) => break conn,
            Err(Error::RateLimited {
                limit: Limit::Connections,
                ..
            }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("ann is still refused: {other:?}"),
        }
    };
    // The close, a failed retry, the retry that landed.
    assert!(failing.socket_records.tries() >= 3);
    assert_eq!(failing.socket_records.left.load(Ordering::SeqCst), 0);
    // Her one socket is on `b` now: `a` refuses a second one.
    let refused = a.connect(ann.clone()).await;
    assert_connection_refused(&refused);
    drop(on_b);
}
