//! Per-user limits (issue 15) on real Redis: one user's connections share one budget on an
//! instance, a refusal says how long to wait and leaves the connection open, and nobody else
//! pays for one user's flood.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use chat_tower::chat_core::{backend::redis::RedisConfig, ChatConfig};
use roomcast_tests::{redis_instance_with, redis_server::RedisServer, unlimited, Client, Server};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

/// A guest on `server`: its token and user id.
async fn guest(server: &Server, name: &str) -> (String, String) {
    let (api, user) = server.api.guest(name).await;
    (api.token.unwrap(), user["id"].as_str().unwrap().to_owned())
}

/// `POST /create-room` as the holder of `token`: status, `Retry-After`, body.
async fn create_room(server: &Server, token: &str, name: &str) -> (u16, Option<String>, Value) {
    let res = server
        .api
        .http
        .post(format!("{}/create-room", server.api.base))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    if status == 429 {
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    (status, retry_after, res.json().await.unwrap())
}

/// Counts the room messages `client` receives before the one whose body is "last".
async fn messages_until_last(client: &mut Client) -> usize {
    let mut delivered = 0;
    loop {
        let frame = client.next().await;
        if frame["type"] != "message" {
            continue;
        }
        if frame["body"] == "last" {
            return delivered;
        }
        delivered += 1;
    }
}

/// Reads `client`'s frames until `n` replies (`ack` or `error`) have come; returns them
/// (room messages from others in between are skipped).
async fn replies(client: &mut Client, n: usize) -> Vec<Value> {
    let mut replies = Vec::new();
    while replies.len() < n {
        let frame = client.next().await;
        match frame["type"].as_str() {
            Some("ack" | "error") => replies.push(frame),
            Some("message" | "system") => {}
            _ => panic!("unexpected {frame}"),
        }
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sockets_of_one_user_share_one_message_budget_and_others_are_not_limited() {
    let redis = RedisServer::start().await;
    // Default limits: 20 messages a second, a burst of 40, per user.
    let a = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let room = a.api.create_room("flood").await;
    let (alice_token, _) = guest(&a, "alice").await;
    let (bob_token, _) = guest(&a, "bob").await;
    let (carol_token, _) = guest(&b, "carol").await;
    let mut carol = b.tab(&carol_token, &room).await;
    let mut bob = a.tab(&bob_token, &room).await;
    let mut tabs = Vec::new();
    for _ in 0..10 {
        tabs.push(a.tab(&alice_token, &room).await);
    }

    // 300 from Alice's ten tabs as fast as they go, Bob's 30 in between.
    let started = Instant::now();
    for i in 0..30 {
        for (t, tab) in tabs.iter_mut().enumerate() {
            let id = format!("a{t}-{i}");
            tab.send(json!({"type": "message", "room": room, "body": id, "clientMsgId": id}))
                .await;
        }
        let id = format!("b{i}");
        bob.send(json!({"type": "message", "room": room, "body": id, "clientMsgId": id}))
            .await;
    }
    let mut accepted = 0;
    for (t, tab) in tabs.iter_mut().enumerate() {
        let mut answered = BTreeSet::new();
        for reply in replies(tab, 30).await {
            let id = reply["clientMsgId"].as_str().unwrap().to_owned();
            assert!(id.starts_with(&format!("a{t}-")), "{reply}");
            if reply["type"] == "ack" {
                accepted += 1;
            } else {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                assert!(reply["retryAfterMs"].as_u64().unwrap() > 0, "{reply}");
            }
            answered.insert(id);
        }
        // Every frame answered, each once.
        assert_eq!(answered.len(), 30);
    }
    let took = started.elapsed();
    for reply in replies(&mut bob, 30).await {
        assert_eq!(
            reply["type"], "ack",
            "bob was limited by alice's flood: {reply}"
        );
    }
    // The burst, plus what 20 a second refilled while it lasted (not a timing assertion: the
    // bound grows with however long the machine took). Less by at most the 7 tokens a lease
    // may hold when the flood ends (`chat_core`'s `backend/redis/lease.rs`: a lease taken
    // while the tabs' other messages took single tokens can outlast the instance's own limit).
    let refilled = (took.as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        (40 - 7..=40 + refilled + 1).contains(&accepted),
        "{accepted} of 300 accepted in {took:?}"
    );

    // On the other instance, Carol gets exactly what was accepted: Bob's last message comes
    // after all of them in the room's order, so anything refused but published would show.
    bob.say(&room, "last").await;
    let delivered = messages_until_last(&mut carol).await;
    assert_eq!(delivered, accepted + 30);

    // The connections stay open: after the wait it names, Alice's tab sends again.
    for attempt in 0.. {
        let id = format!("after{attempt}");
        tabs[0]
            .send(json!({"type": "message", "room": room, "body": id, "clientMsgId": id}))
            .await;
        let reply = replies(&mut tabs[0], 1).await.remove(0);
        if reply["type"] == "ack" {
            break;
        }
        assert!(attempt < 3, "still refused: {reply}");
        let wait = reply["retryAfterMs"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eleventh_room_within_a_minute_is_429_with_retry_after_and_others_still_create() {
    let redis = RedisServer::start().await;
    let a = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let (alice, _) = guest(&a, "alice").await;
    for i in 0..10 {
        let (status, _, body) = create_room(&a, &alice, &format!("r{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, retry_after, body) = create_room(&a, &alice, "r10").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    // 10 a minute: the next room is due 6 s after the first.
    let seconds: u64 = retry_after.expect("no Retry-After").parse().unwrap();
    assert!((1..=6).contains(&seconds), "Retry-After: {seconds}");
    // Another user on the same instance is not limited by Alice's quota.
    let (bob, _) = guest(&a, "bob").await;
    assert_eq!(create_room(&a, &bob, "bob's").await.0, 201);
    // The quota counts for every instance: the same user on another instance is refused too.
    let (status, retry_after, body) = create_room(&b, &alice, "elsewhere").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some(), "{body}");
    // An instance configured with per-instance limits only has its own bucket.
    let local = ChatConfig {
        shared_user_limits: false,
        ..ChatConfig::default()
    };
    let c = redis_instance_with(&redis, RedisConfig::default(), local).await;
    assert_eq!(create_room(&c, &alice, "per instance").await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_tabs_on_two_instances_share_one_message_budget() {
    let redis = RedisServer::start().await;
    // Default limits: 20 messages a second, a burst of 40, per user. Each instance alone
    // would take all of the 30 it gets here (under its burst): what it refuses, the limit
    // counted for both refused.
    let a = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let room = a.api.create_room("spread").await;
    let (alice, _) = guest(&a, "alice").await;
    let (carol, _) = guest(&b, "carol").await;
    let mut carol = b.tab(&carol, &room).await;
    let mut tabs = [a.tab(&alice, &room).await, b.tab(&alice, &room).await];
    carol.drain_until_quiet(&room).await;

    let started = Instant::now();
    for i in 0..30 {
        for (t, tab) in tabs.iter_mut().enumerate() {
            let id = format!("t{t}-{i}");
            tab.send(json!({"type": "message", "room": room, "body": id, "clientMsgId": id}))
                .await;
        }
    }
    let mut accepted = 0;
    for tab in &mut tabs {
        for reply in replies(tab, 30).await {
            if reply["type"] == "ack" {
                accepted += 1;
            } else {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                assert!(reply["retryAfterMs"].as_u64().unwrap() > 0, "{reply}");
            }
        }
    }
    let took = started.elapsed();
    let refilled = (took.as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        (40..=(40 + refilled + 1).min(59)).contains(&accepted),
        "{accepted} of 60 accepted in {took:?} (60: counted per instance)"
    );

    // Carol gets exactly what was accepted, nothing refused.
    let (dave, _) = guest(&b, "dave").await;
    let mut last = b.tab(&dave, &room).await;
    last.say(&room, "last").await;
    let delivered = messages_until_last(&mut carol).await;
    assert_eq!(delivered, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_33rd_connection_of_a_user_is_429_on_any_instance_and_the_first_32_carry_on() {
    let redis = RedisServer::start().await;
    let a = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), ChatConfig::default()).await;
    let room = a.api.create_room("crowd").await;
    let (alice, _) = guest(&a, "alice").await;
    let mut tabs = Vec::new();
    for _ in 0..32 {
        let path = format!("/ws?token={alice}");
        tabs.push(Client::connect(a.addr, &path).await);
    }
    let url = format!("ws://{}/ws?token={alice}", a.addr);
    let Err(tungstenite::Error::Http(res)) = tokio_tungstenite::connect_async(url).await else {
        panic!("the 33rd connection was upgraded");
    };
    assert_eq!(res.status().as_u16(), 429);
    assert_eq!(res.headers()["retry-after"], "5");
    let problem: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
    assert_eq!(problem["code"], "rate_limited");

    // The 32 carry on: each answers a request, and one of them talks to Bob, who connects
    // on the other instance as usual.
    for tab in &mut tabs {
        tab.send(json!({"type": "leave", "room": room})).await;
        tab.expect_error("not_in_room").await;
    }
    let (bob, _) = guest(&b, "bob").await;
    let mut bob = b.tab(&bob, &room).await;
    tabs[0].join(&room).await;
    bob.expect("system").await;
    tabs[0].say(&room, "still here").await;
    assert_eq!(bob.expect("message").await["body"], "still here");
    // The limit counts for every instance: the other one refuses Alice too.
    assert_eq!(
        Client::try_connect(b.addr, &format!("/ws?token={alice}"), &[])
            .await
            .err(),
        Some(429)
    );

    // One closes: its slot is free again, on either instance (once the server has seen it
    // go).
    tabs.pop().unwrap().close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::try_connect(b.addr, &format!("/ws?token={alice}"), &[]).await {
            Ok(_) => break,
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("no slot after a close: {other:?}"),
        }
    }
}

/// Sends `n` plain joins of `room` in a row; how many passed before the first refusal, and
/// that refusal.
async fn joins_until_refused(client: &mut Client, room: &str, n: usize) -> (usize, Option<Value>) {
    for passed in 0..n {
        client.send(json!({"type": "join", "room": room})).await;
        let frame = loop {
            let frame = client.next().await;
            if matches!(frame["type"].as_str(), Some("joined" | "error")) {
                break frame;
            }
        };
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "rate_limited", "{frame}");
            assert!(frame["retryAfterMs"].as_u64().unwrap() > 0, "{frame}");
            return (passed, Some(frame));
        }
    }
    (n, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_since_that_replays_many_messages_costs_more_than_a_plain_join() {
    let redis = RedisServer::start().await;
    let a = redis_instance_with(&redis, RedisConfig::default(), unlimited()).await;
    // Joins: a burst of 20, refilled at 1 a second (slow, so that the counts below do not
    // depend on the machine's speed); one join more per 50 replayed messages.
    let slow_joins = ChatConfig {
        user_joins_per_second: 1,
        user_joins_burst: 20,
        ..unlimited()
    };
    let b = redis_instance_with(&redis, RedisConfig::default(), slow_joins).await;
    let room = a.api.create_room("backlog").await;
    let (alice, _) = guest(&a, "alice").await;
    let mut alice = a.tab(&alice, &room).await;
    for i in 0..500 {
        let id = format!("m{i}");
        alice
            .send(json!({"type": "message", "room": room, "body": id, "clientMsgId": id}))
            .await;
    }
    let acks = replies(&mut alice, 500).await;
    assert!(acks.iter().all(|r| r["type"] == "ack"));
    let first = acks[0]["id"].as_str().unwrap();

    // On the other instance, Bob catches up from the first message (499 replayed: 9 joins
    // more), Carol joins plainly. Then each re-joins until refused.
    let (bob, _) = guest(&b, "bob").await;
    let mut bob = Client::connect(b.addr, &format!("/ws?token={bob}")).await;
    let started = Instant::now();
    bob.send(json!({"type": "join", "room": room, "since": first}))
        .await;
    bob.expect("joined").await;
    for i in 1..500 {
        assert_eq!(bob.expect("message").await["body"], format!("m{i}"));
    }
    let (bob_passed, refusal) = joins_until_refused(&mut bob, &room, 25).await;
    let bob_took = started.elapsed();
    assert!(refusal.is_some());

    let (carol, _) = guest(&b, "carol").await;
    let mut carol = Client::connect(b.addr, &format!("/ws?token={carol}")).await;
    carol.join(&room).await;
    let (carol_passed, _) = joins_until_refused(&mut carol, &room, 25).await;

    // Carol: 20 - 1 = 19 left at least. Bob: 20 - 1 - 9 = 10, plus at most what refilled.
    assert!(carol_passed >= 19, "carol: {carol_passed}");
    let refilled = bob_took.as_secs() as usize + 1;
    assert!(
        bob_passed <= 10 + refilled,
        "bob: {bob_passed} after a replay of 499 ({bob_took:?})"
    );
    assert!(bob_passed < carol_passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_websocket_joins_share_one_budget_and_direct_messages_have_their_own() {
    let redis = RedisServer::start().await;
    // Joins: a burst of 3 at 1 a second, one join more per replayed message, so that one
    // replay of 9 leaves the user's joins a debt for seconds. Direct messages: a burst of 3.
    let config = ChatConfig {
        user_joins_per_second: 1,
        user_joins_burst: 3,
        join_replay_per_token: 1,
        user_directs_per_second: 1,
        user_directs_burst: 3,
        ..ChatConfig::default()
    };
    let a = redis_instance_with(&redis, RedisConfig::default(), config).await;
    let room = a.api.create_room("shared").await;
    let (alice, alice_id) = guest(&a, "alice").await;
    let mut alice = a.tab(&alice, &room).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(alice.say(&room, &format!("m{i}")).await["id"].clone());
    }

    // Bob's first join replays 9 messages: the REST join after it is refused, and so is a
    // WebSocket join: one budget.
    let (bob_token, _) = guest(&a, "bob").await;
    let mut bob = Client::connect(a.addr, &format!("/ws?token={bob_token}")).await;
    bob.send(json!({"type": "join", "room": room, "since": ids[0]}))
        .await;
    bob.expect("joined").await;
    for i in 1..10 {
        assert_eq!(bob.expect("message").await["body"], format!("m{i}"));
    }
    let res = a
        .api
        .http
        .post(format!("{}/join-room/{room}", a.api.base))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let seconds: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&seconds), "Retry-After: {seconds}");
    let (passed, refusal) = joins_until_refused(&mut bob, &room, 1).await;
    assert_eq!(
        passed, 0,
        "a WebSocket join passed after the REST join was refused"
    );
    assert!(refusal.unwrap()["retryAfterMs"].as_u64().unwrap() > 1_000);

    // Direct messages: a burst of 3 (plus what refilled meanwhile), the rest refused with
    // their clientMsgId; room messages are not held back by that.
    let started = Instant::now();
    for i in 0..6 {
        let id = format!("d{i}");
        bob.send(json!({"type": "direct", "to": alice_id, "body": id, "clientMsgId": id}))
            .await;
    }
    let answers = replies(&mut bob, 6).await;
    let refilled = started.elapsed().as_secs() as usize + 1;
    let acked = answers.iter().filter(|r| r["type"] == "ack").count();
    assert!((3..=3 + refilled).contains(&acked), "{answers:?}");
    for refused in answers.iter().filter(|r| r["type"] == "error") {
        assert_eq!(refused["code"], "rate_limited", "{refused}");
        assert!(refused["clientMsgId"].as_str().unwrap().starts_with('d'));
        assert!(refused["retryAfterMs"].as_u64().unwrap() > 0);
    }
    bob.say(&room, "room messages still go").await;
}

/// `POST /guests` on `server` as forwarded by a proxy on its host (`forwarded`: the
/// `X-Forwarded-For` it sends; none: the host's own process), or `POST /join-room/{room}` as a
/// v1 guest: status, `Retry-After`, body.
async fn new_guest(
    server: &Server,
    forwarded: Option<&str>,
    v1_room: Option<&str>,
) -> (u16, Option<String>, Value) {
    let (path, body) = match v1_room {
        Some(room) => (format!("/join-room/{room}"), json!({ "user": "v1" })),
        None => ("/guests".to_owned(), json!({ "name": "g" })),
    };
    let mut request = server
        .api
        .http
        .post(format!("{}{path}", server.api.base))
        .json(&body);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let res = request.send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, res.json().await.unwrap())
}

#[tokio::test]
async fn guests_are_limited_per_client_address_and_the_hosts_own_processes_are_not() {
    let config = ChatConfig {
        guests_per_minute: 3,
        ..ChatConfig::default()
    };
    let server = Server::start(chat_tower::ChatBuilder::new().config(config)).await;
    let client = Some("198.51.100.1");
    for _ in 0..3 {
        assert_eq!(new_guest(&server, client, None).await.0, 201);
    }
    let (status, retry_after, body) = new_guest(&server, client, None).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    // 3 a minute: the next one is due within 20 s.
    let seconds: u64 = retry_after.expect("no Retry-After").parse().unwrap();
    assert!((1..=20).contains(&seconds), "Retry-After: {seconds}");
    // What the client wrote itself, left of what the proxy saw, buys it nothing.
    let forged = new_guest(&server, Some("203.0.113.9, 198.51.100.1"), None).await;
    assert_eq!(forged.0, 429);
    // The v1 guest join makes a guest too: same limit.
    let (status, room) = server.api.post("/create-room", None).await;
    assert_eq!(status, 201);
    let room = room["roomId"].as_str().unwrap();
    assert_eq!(new_guest(&server, client, Some(room)).await.0, 429);
    // Another client is not limited by that one; an IPv6 client counts by its /64.
    assert_eq!(
        new_guest(&server, Some("198.51.100.2"), Some(room)).await.0,
        200
    );
    for host in ["2001:db8::1", "2001:db8::2", "[2001:db8::3]"] {
        assert_eq!(new_guest(&server, Some(host), None).await.0, 201);
    }
    assert_eq!(
        new_guest(&server, Some("2001:db8::ffff"), None).await.0,
        429
    );
    assert_eq!(
        new_guest(&server, Some("2001:db8:0:1::1"), None).await.0,
        201
    );
    // A process on the server's own host, not forwarded by a proxy (a load generator, the
    // tests themselves), is not limited.
    for _ in 0..10 {
        assert_eq!(new_guest(&server, None, None).await.0, 201);
    }
}

/// The guest limit is the client's, not each instance's: guests made on one instance count on
/// the others (the buckets are in Redis, timed by Redis's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_are_limited_per_client_address_across_instances() {
    let redis = RedisServer::start().await;
    let config = || ChatConfig {
        guests_per_minute: 3,
        ..ChatConfig::default()
    };
    let a = redis_instance_with(&redis, RedisConfig::default(), config()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), config()).await;
    let client = Some("198.51.100.20");
    assert_eq!(new_guest(&a, client, None).await.0, 201);
    assert_eq!(new_guest(&b, client, None).await.0, 201);
    assert_eq!(new_guest(&a, client, None).await.0, 201);
    for server in [&b, &a] {
        let (status, retry_after, body) = new_guest(server, client, None).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["code"], "rate_limited");
        let seconds: u64 = retry_after.expect("no Retry-After").parse().unwrap();
        assert!((1..=20).contains(&seconds), "Retry-After: {seconds}");
    }
    // Another client is not limited by that one, on either instance.
    assert_eq!(new_guest(&b, Some("198.51.100.21"), None).await.0, 201);
}
