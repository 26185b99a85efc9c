//! The host's controls over the memory backend: two nodes on one cluster, sessions over
//! channels.

use std::{sync::Arc, time::Duration};

use futures_channel::mpsc as fmpsc;
use futures_util::{stream, StreamExt};
use serde_json::Value;

use crate::{
    backend::{memory::MemoryCluster, store::Visibility},
    hooks::DefaultPolicy,
    protocol::{close_code, RoomId, SendDirectFrame, SendMessageFrame},
    session::{run, Outbound, SessionEnd},
    Caller, Chat, ChatConfig, User, UserId,
};

const WAIT: Duration = Duration::from_secs(5);
const TTL: Duration = Duration::from_secs(60);

fn node(cluster: &MemoryCluster) -> Chat {
    Chat::with_policy(
        cluster.node(),
        ChatConfig::default(),
        Arc::new(DefaultPolicy),
    )
}

/// A user's session on `chat`, joined to `room`: what it writes, and how it ended.
struct Served {
    out: fmpsc::UnboundedReceiver<Outbound>,
    end: tokio::task::JoinHandle<SessionEnd>,
}

impl Served {
    async fn start(chat: &Chat, user: &User, room: &RoomId) -> Self {
        chat.add_member(room, user).await.unwrap();
        let mut conn = chat.connect(user.clone()).await.unwrap();
        conn.join(room, None).await.unwrap();
        let (tx, mut out) = fmpsc::unbounded::<Outbound>();
        let end = tokio::spawn(run(conn, stream::pending(), tx));
        let joined = Self::frame_of(&mut out).await;
        assert_eq!(joined["type"], "joined", "{joined}");
        Self { out, end }
    }

    async fn frame_of(out: &mut fmpsc::UnboundedReceiver<Outbound>) -> Value {
        match tokio::time::timeout(WAIT, out.next()).await.unwrap() {
            Some(Outbound::Text(bytes)) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame, skipping `user_joined` of others.
    async fn frame(&mut self) -> Value {
        loop {
            let frame = Self::frame_of(&mut self.out).await;
            if frame["event"] != "user_joined" {
                return frame;
            }
        }
    }

    /// The close frame, after any frames (returned).
    async fn close(&mut self) -> (u16, Vec<Value>) {
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, self.out.next()).await.unwrap() {
                Some(Outbound::Close(code, _)) => return (code, frames),
                Some(Outbound::Text(bytes)) => frames.push(serde_json::from_slice(&bytes).unwrap()),
                Some(Outbound::Ping) => {}
                None => panic!("closed without a close frame"),
            }
        }
    }
}

async fn room(chat: &Chat) -> RoomId {
    let owner = Caller::member(User::new("owner", "Owner"));
    let info = chat.create_room(&owner, Some("r".into()), Visibility::Public);
    info.await.unwrap().room_id
}

#[tokio::test]
async fn revoking_closes_the_users_connections_on_every_node_with_4401() {
    let cluster = MemoryCluster::new();
    let (a, b) = (node(&cluster), node(&cluster));
    let room = room(&a).await;
    let (ann, bo) = (User::new("ann", "Ann"), User::new("bo", "Bo"));
    let mut ann_b = Served::start(&b, &ann, &room).await;
    let mut ann_a = Served::start(&a, &ann, &room).await;
    let mut bo_b = Served::start(&b, &bo, &room).await;

    assert_eq!(a.tokens_revoked_until(&ann.id).await.unwrap(), None);
    let before = crate::protocol::now_ms();
    a.revoke_user(&ann.id, TTL).await.unwrap();
    assert!(b.tokens_revoked_until(&ann.id).await.unwrap() >= Some(before));
    for served in [&mut ann_a, &mut ann_b] {
        assert_eq!(served.close().await.0, close_code::REVOKED);
    }
    assert_eq!(ann_b.end.await.unwrap(), SessionEnd::Revoked);
    assert_eq!(ann_a.end.await.unwrap(), SessionEnd::Revoked);
    // Bo stays, and sees Ann leave once (her last connection).
    let left = bo_b.frame().await;
    assert_eq!(
        (left["event"].as_str(), left["user"]["id"].as_str()),
        (Some("user_left"), Some("ann"))
    );

    // Ann comes back: a new connection works.
    let mut again = Served::start(&b, &ann, &room).await;
    let mut bo_conn = a.connect(bo.clone()).await.unwrap();
    bo_conn.join(&room, None).await.unwrap();
    let frame = SendMessageFrame {
        room: room.clone(),
        body: "welcome back".into(),
        client_msg_id: None,
    };
    bo_conn.send_message(frame).await.unwrap();
    assert_eq!(again.frame().await["body"], "welcome back");
}

#[tokio::test]
async fn removing_closes_with_4403_and_ends_the_memberships() {
    let cluster = MemoryCluster::new();
    let (a, b) = (node(&cluster), node(&cluster));
    let (r1, r2) = (room(&a).await, room(&a).await);
    let ann = User::new("ann", "Ann");
    let mut ann_b = Served::start(&b, &ann, &r1).await;
    a.add_member(&r2, &ann).await.unwrap();

    a.remove_user(&ann.id, TTL).await.unwrap();
    assert_eq!(ann_b.close().await.0, close_code::REMOVED);
    assert_eq!(ann_b.end.await.unwrap(), SessionEnd::Removed);
    let rooms = &a.backend().rooms;
    for room in [&r1, &r2] {
        assert!(!rooms.is_member(room, &ann.id).await.unwrap());
    }
    assert!(a.tokens_revoked_until(&ann.id).await.unwrap().is_some());
    // Nobody connected: the order reaches nobody, and that is no error.
    a.remove_user(&UserId::new("nobody"), TTL).await.unwrap();
}

#[tokio::test]
async fn a_removed_member_leaves_the_room_on_every_node_and_the_others_hear_it() {
    let cluster = MemoryCluster::new();
    let (a, b) = (node(&cluster), node(&cluster));
    let (room, other_room) = (room(&a).await, room(&a).await);
    let (ann, bo) = (User::new("ann", "Ann"), User::new("bo", "Bo"));
    let mut ann_b = Served::start(&b, &ann, &room).await;
    a.add_member(&other_room, &ann).await.unwrap();
    let mut bo_a = Served::start(&a, &bo, &room).await;
    // Bo and Ann still share a room after: direct messages stay allowed.
    a.add_member(&other_room, &bo).await.unwrap();
    let mut bo_conn = a.connect(bo.clone()).await.unwrap();
    bo_conn.join(&room, None).await.unwrap();

    assert!(a.remove_member(&room, &ann.id).await.unwrap());
    assert_eq!(
        ann_b.frame().await,
        serde_json::json!({"type": "left", "room": room})
    );
    let left = bo_a.frame().await;
    assert_eq!(
        (left["event"].as_str(), left["user"]["id"].as_str()),
        (Some("user_left"), Some("ann"))
    );
    assert!(!a.backend().rooms.is_member(&room, &ann.id).await.unwrap());
    assert!(a
        .backend()
        .rooms
        .is_member(&other_room, &ann.id)
        .await
        .unwrap());

    // Nothing more from the room reaches Ann; a direct message still does.
    let say = |body: &str| SendMessageFrame {
        room: room.clone(),
        body: body.into(),
        client_msg_id: None,
    };
    bo_conn.send_message(say("after")).await.unwrap();
    assert_eq!(bo_a.frame().await["body"], "after");
    let direct = SendDirectFrame {
        to: ann.id.clone(),
        body: "still here?".into(),
        client_msg_id: None,
    };
    bo_conn.send_direct(direct).await.unwrap();
    let next = ann_b.frame().await;
    assert_eq!(
        (next["type"].as_str(), next["body"].as_str()),
        (Some("direct"), Some("still here?"))
    );
    // A member no more.
    assert!(!a.remove_member(&room, &ann.id).await.unwrap());
}

#[tokio::test]
async fn a_control_reaches_only_the_nodes_of_the_users_connections() {
    let cluster = MemoryCluster::new();
    let (a, b) = (node(&cluster), node(&cluster));
    let room = room(&a).await;
    let ann = User::new("ann", "Ann");
    let _ann_b = Served::start(&b, &ann, &room).await;
    let control = crate::backend::broker::Control {
        user: ann.id.clone(),
        action: crate::backend::broker::ControlAction::Leave(room.clone()),
    };
    assert_eq!(
        a.backend()
            .broker
            .publish_control(control.clone())
            .await
            .unwrap(),
        1
    );
    let nobody = crate::backend::broker::Control {
        user: UserId::new("nobody"),
        ..control
    };
    assert_eq!(a.backend().broker.publish_control(nobody).await.unwrap(), 0);
}
