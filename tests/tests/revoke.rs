//! The host ending a user's access (`ChatHandle::revoke_user`, `remove_user`,
//! `remove_member`): in effect on every instance within a second, two instances on one real
//! Redis.

use std::time::{Duration, Instant};

use chat_tower::chat_core::{backend::redis::RedisConfig, RoomId, User, UserId};
use roomcast_tests::{redis_instance, redis_server::RedisServer, Api, Client, Server};
use serde_json::{json, Value};

/// The contract's promise: every instance within a second.
const WITHIN: Duration = Duration::from_secs(1);

/// Two instances on one Redis, and a public room on them (created by `a`'s tester).
async fn two_instances() -> (RedisServer, Server, Server, String) {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("r").await;
    (redis, a, b, room)
}

/// Two instances, a room, and Ann (a host user) in it on `b`.
struct Scene {
    _redis: RedisServer,
    a: Server,
    b: Server,
    room: String,
    ann: User,
    token: String,
    ann_b: Client,
}

impl Scene {
    async fn new() -> Self {
        let (_redis, a, b, room) = two_instances().await;
        let ann = User::new("ann", "Ann");
        let (token, ann_b) = host_user_in_room(&b, &ann, &room).await;
        Self {
            _redis,
            a,
            b,
            room,
            ann,
            token,
            ann_b,
        }
    }

    /// Its parts, to use side by side.
    fn parts(&mut self) -> (&Server, &Server, &String, &User, &String, &mut Client) {
        let Self {
            a,
            b,
            room,
            ann,
            token,
            ann_b,
            ..
        } = self;
        (a, b, room, ann, token, ann_b)
    }
}

/// A host user with a token from `server`'s handle, joined to `room` over REST and connected
/// (and joined) over the WebSocket on `server`.
async fn host_user_in_room(server: &Server, user: &User, room: &str) -> (String, Client) {
    let token = server.handle.issue_token(user);
    let api = server.api.with_token(&token);
    let (status, body) = api.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{body}");
    let client = server.tab(&token, room).await;
    (token, client)
}

/// Whether `token` is accepted by `server`, over REST and for a WebSocket upgrade (both
/// must agree).
async fn accepted(server: &Server, token: &str) -> bool {
    let (status, body) = server.api.with_token(token).get("/rooms").await;
    let ws = Client::try_connect(server.addr, &format!("/ws?token={token}"), &[]).await;
    match (status, ws) {
        (200, Ok(client)) => {
            client.close().await;
            true
        }
        (401, Err(401)) => {
            assert_eq!(body["code"], "unauthorized", "{body}");
            false
        }
        (status, ws) => panic!("REST {status} {body}, WebSocket {:?}", ws.err()),
    }
}

/// Reads frames until the system message `event` about `user`; returns what came before.
async fn until_system(client: &mut Client, event: &str, user: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let frame = client.next().await;
        if frame["type"] == "system" && frame["event"] == event && frame["user"]["id"] == user {
            return before;
        }
        before.push(frame);
    }
}

#[tokio::test]
async fn revocation_closes_on_every_instance_with_4401_and_voids_earlier_tokens_only() {
    let mut scene = Scene::new().await;
    let (a, b, room, ann, token, ann_b) = scene.parts();
    let (mut bo_b, _) = b.guest_in_room(room, "bo").await;
    assert!(accepted(a, token).await && accepted(b, token).await);

    let start = Instant::now();
    a.handle.revoke_user(&ann.id).await.unwrap();
    assert_eq!(ann_b.expect_close().await, 4401);
    assert!(
        start.elapsed() < WITHIN,
        "closed after {:?}",
        start.elapsed()
    );
    until_system(&mut bo_b, "user_left", "ann").await;
    for server in [&a, &b] {
        assert!(!accepted(server, token).await, "the old token still works");
    }

    // The user logs in again: a token issued now works everywhere.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh = b.handle.issue_token(ann);
    for server in [&a, &b] {
        assert!(accepted(server, &fresh).await, "the new token is refused");
    }
    let mut again = a.tab(&fresh, room).await;
    bo_b.say(room, "welcome back").await;
    assert_eq!(again.drain_until("message").await["body"], "welcome back");
}

#[tokio::test]
async fn removal_closes_on_every_instance_with_4403_and_ends_the_memberships() {
    let mut scene = Scene::new().await;
    let (a, b, room, ann, token, ann_b) = scene.parts();
    let mut ann_a = a.tab(token, room).await;

    let start = Instant::now();
    a.handle.remove_user(&ann.id).await.unwrap();
    assert_eq!(ann_b.expect_close().await, 4403);
    assert_eq!(ann_a.expect_close().await, 4403);
    assert!(
        start.elapsed() < WITHIN,
        "closed after {:?}",
        start.elapsed()
    );
    for server in [&a, &b] {
        assert!(
            !accepted(server, token).await,
            "a removed user's token works"
        );
    }
    assert!(!listed_members(&b.api, room)
        .await
        .contains(&"ann".to_owned()));
}

/// The member ids `GET /rooms/{room}` lists.
async fn listed_members(api: &Api, room: &str) -> Vec<String> {
    let (status, details) = api.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200, "{details}");
    let members = details["members"].as_array().unwrap();
    members
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_removed_member_leaves_the_room_on_the_other_instance_and_the_others_hear_it() {
    let mut scene = Scene::new().await;
    let (a, b, room, ann, token, ann_b) = scene.parts();
    let (mut bo_a, bo) = a.guest_in_room(room, "bo").await;
    let bo_id = bo["id"].as_str().unwrap();
    until_system(ann_b, "user_joined", bo_id).await;
    assert!(listed_members(&a.api, room)
        .await
        .contains(&"ann".to_owned()));

    let start = Instant::now();
    let room_id = RoomId::new(room.as_str());
    assert!(a.handle.remove_member(&room_id, &ann.id).await.unwrap());
    assert_eq!(ann_b.next().await, json!({"type": "left", "room": room}));
    assert!(start.elapsed() < WITHIN, "left after {:?}", start.elapsed());
    until_system(&mut bo_a, "user_left", "ann").await;
    for server in [&a, &b] {
        assert!(!listed_members(&server.api, room)
            .await
            .contains(&"ann".to_owned()));
    }

    // Nothing more from the room: the server's direct message after Bo's room message is
    // the next thing Ann gets (both reach her instance in the order they were published).
    bo_a.say(room, "after").await;
    let host = User::new("host", "Host");
    let chat = a.handle.chat();
    chat.send_direct(host, ann.id.clone(), "marker".into())
        .await
        .unwrap();
    let next = ann_b.next().await;
    assert_eq!(
        (next["type"].as_str(), next["body"].as_str()),
        (Some("direct"), Some("marker"))
    );
    // Her token still works (a membership ended, not her access).
    assert!(accepted(b, token).await);
}

#[tokio::test]
async fn fan_out_is_unchanged_around_controls() {
    let (_redis, a, b, room) = two_instances().await;
    let (mut ann_a, ann) = a.guest_in_room(&room, "ann").await;
    let (mut bo_b, bo) = b.guest_in_room(&room, "bo").await;
    until_system(&mut ann_a, "user_joined", bo["id"].as_str().unwrap()).await;
    let (ann_id, bo_id) = (ann["id"].as_str().unwrap(), bo["id"].as_str().unwrap());

    // A control that changes nothing for Bo (a room he is not in) on his topic.
    let elsewhere = RoomId::new("not-his-room");
    let removed = a
        .handle
        .remove_member(&elsewhere, &UserId::new(bo_id))
        .await;
    assert!(!removed.unwrap());
    for n in 0..3 {
        let body = format!("m{n}");
        ann_a.say(&room, &body).await;
        let got = bo_b.next().await;
        assert_eq!(
            (got["type"].as_str(), got["body"].as_str()),
            (Some("message"), Some(&*body))
        );
    }
    ann_a
        .send(json!({"type": "direct", "to": bo_id, "body": "psst", "clientMsgId": "d"}))
        .await;
    assert_eq!(ann_a.drain_until("ack").await["clientMsgId"], "d");
    let got = bo_b.next().await;
    assert_eq!(
        (got["type"].as_str(), got["from"]["id"].as_str()),
        (Some("direct"), Some(ann_id))
    );
    bo_b.barrier(&room).await;
}
