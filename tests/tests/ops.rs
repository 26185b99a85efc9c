//! Operations (issue 16), against demo-server processes (each has its own metrics recorder):
//! the metrics move with traffic, `/healthz` and `/readyz` across a Redis restart, and the
//! drain on SIGTERM (1012, presence cleaned once, a bounded exit, a client that reconnects to
//! the other instance with `since` and misses nothing).

use std::time::{Duration, Instant};

use chat_tower::{ops, ChatBuilder};
use roomcast_tests::eventually;
use roomcast_tests::{redis_server::RedisServer, serve, Api, Client, DemoProcess};
use serde_json::{json, Value};

/// Demo flags that lift the per-user limits and the flood guard (a test that sends fast).
const UNLIMITED: [&str; 6] = [
    "--user-messages-per-second",
    "100000",
    "--user-messages-burst",
    "100000",
    "--frame-burst",
    "100000",
];

/// `GET /metrics` as text.
async fn scrape(api: &Api) -> String {
    let res = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The value of the sample `series` (a name, with its labels as rendered) in `text`; 0 when
/// absent (a series that never moved).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

async fn status(api: &Api, path: &str) -> u16 {
    api.http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_metrics_move_with_traffic() {
    let demo = DemoProcess::start(&[
        "--user-messages-per-second",
        "1",
        "--user-messages-burst",
        "5",
    ])
    .await;
    let before = scrape(&demo.api).await;
    assert!(
        before.contains("# TYPE roomcast_messages_total counter"),
        "{before}"
    );
    assert_eq!(sample(&before, "roomcast_connections"), 0.0);

    let room = demo.api.create_room("metrics").await;
    let joined = demo.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    let joined = demo.api.join_room(&room, "bob").await;
    let mut bob = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    bob.join(&room).await;
    alice.expect("system").await;

    for i in 0..5 {
        alice.say(&room, &format!("m{i}")).await;
    }
    for _ in 0..5 {
        bob.expect("message").await;
    }
    // The burst is spent: the next one is refused and counted.
    alice
        .send(json!({"type": "message", "room": room, "body": "over", "clientMsgId": "over"}))
        .await;
    alice.expect_error("rate_limited").await;

    let text = scrape(&demo.api).await;
    assert_eq!(
        sample(&text, r#"roomcast_messages_total{kind="room"}"#),
        5.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"roomcast_rate_limited_total{limit="messages"}"#),
        1.0
    );
    assert_eq!(sample(&text, "roomcast_connections"), 2.0);
    assert_eq!(sample(&text, "roomcast_connections_opened_total"), 2.0);
    assert_eq!(sample(&text, "roomcast_room_memberships"), 2.0);
    assert_eq!(sample(&text, "roomcast_rooms_local"), 1.0);
    // A room topic and two user topics.
    assert_eq!(sample(&text, "roomcast_subscriptions"), 3.0);
    // Bob got 5 messages; bob's join reached alice (a system message).
    assert!(sample(&text, "roomcast_deliveries_total") >= 6.0, "{text}");
    // One latency sample per delivered envelope that carries a `ts`.
    assert!(
        sample(&text, "roomcast_delivery_latency_seconds_count") >= 6.0,
        "{text}"
    );
    assert_eq!(sample(&text, "roomcast_draining"), 0.0);

    bob.close().await;
    eventually("bob's close counted, gauges down", || async {
        let text = scrape(&demo.api).await;
        sample(
            &text,
            r#"roomcast_connections_closed_total{reason="client_closed"}"#,
        ) == 1.0
            && sample(&text, "roomcast_connections") == 1.0
            && sample(&text, "roomcast_room_memberships") == 1.0
            && sample(&text, "roomcast_subscriptions") == 2.0
    })
    .await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_problems_name_it() {
    let demo = DemoProcess::start(&[]).await;
    let res = demo
        .api
        .http
        .get(format!("{}/rooms/nope", demo.api.base))
        .bearer_auth(demo.api.token.as_deref().unwrap())
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["requestId"], "trace-me-42", "{problem}");
    assert_eq!(problem["code"], "room_not_found");

    // A header that is not a short plain token is replaced, not echoed.
    let res = demo
        .api
        .http
        .get(format!("{}/healthz", demo.api.base))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test]
async fn readyz_fails_during_a_redis_outage_and_recovers_after_it() {
    let mut redis = RedisServer::start().await;
    let demo = DemoProcess::start(&["--redis-url", &redis.url()]).await;
    // A connection, so the instance has subscriptions to restore.
    let room = demo.api.create_room("ready").await;
    let joined = demo.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    assert_eq!(status(&demo.api, "/readyz").await, 200);
    assert_eq!(status(&demo.api, "/healthz").await, 200);

    redis.kill().await;
    eventually("/readyz 503 while Redis is down", || async {
        status(&demo.api, "/readyz").await == 503
    })
    .await;
    assert_eq!(
        status(&demo.api, "/healthz").await,
        200,
        "alive whatever Redis does"
    );
    let res = demo
        .api
        .http
        .get(format!("{}/readyz", demo.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["code"], "not_ready", "{problem}");

    redis.restart().await;
    eventually("/readyz 200 again after Redis is back", || async {
        status(&demo.api, "/readyz").await == 200
    })
    .await;
    // The client heard about the gap, and the metrics counted it.
    alice.drain_until("resync").await;
    let text = scrape(&demo.api).await;
    assert!(
        sample(&text, "roomcast_broker_reconnects_total") >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"roomcast_resyncs_total{reason="broker_reconnected"}"#
        ) >= 1.0,
        "{text}"
    );
    // And the instance works again (Redis came back empty: a new room), its pushes coming
    // through the restored Pub/Sub connection.
    let room = demo.api.create_room("again").await;
    let joined = demo.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    let joined = demo.api.join_room(&room, "bob").await;
    let mut bob = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    bob.join(&room).await;
    alice.drain_until_quiet(&room).await;
    bob.say(&room, "back").await;
    assert_eq!(alice.drain_until("message").await["body"], "back");
}

/// The `user_left` events for `user` that `client` receives before `marker` (said by
/// `talker` in `room`): everything delivered so far, without sleeping.
async fn left_events_before_marker(
    client: &mut Client,
    talker: &mut Client,
    room: &str,
    user: &Value,
    marker: &str,
) -> usize {
    talker.say(room, marker).await;
    let mut left = 0;
    loop {
        let frame = client.next().await;
        if frame["type"] == "message" && frame["body"] == marker {
            return left;
        }
        if frame["type"] == "system"
            && frame["event"] == "user_left"
            && frame["user"]["id"] == user["id"]
        {
            left += 1;
        }
    }
}

#[tokio::test]
async fn a_drain_closes_with_1012_cleans_presence_once_and_exits_in_time() {
    let redis = RedisServer::start().await;
    let args = ["--redis-url", &redis.url(), "--drain-timeout-secs", "3"];
    let a = DemoProcess::start(&args).await;
    let b = DemoProcess::start(&args).await;
    let room = b.api.create_room("drain").await;
    // Alice: one connection, on A. Bob: a tab on A and a tab on B. Carol watches on B.
    let alice_join = a.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(a.addr, alice_join["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    let bob_join = b.api.join_room(&room, "bob").await;
    let bob_token = bob_join["token"].as_str().unwrap().to_owned();
    let mut bob_a = Client::connect(a.addr, &format!("/ws?token={bob_token}")).await;
    bob_a.join(&room).await;
    let mut bob_b = Client::connect(b.addr, &format!("/ws?token={bob_token}")).await;
    bob_b.join(&room).await;
    let carol_join = b.api.join_room(&room, "carol").await;
    let mut carol = Client::connect(b.addr, carol_join["websocketUrl"].as_str().unwrap()).await;
    carol.join(&room).await;
    carol.drain_until_quiet(&room).await;
    bob_b.drain_until_quiet(&room).await;

    let started = Instant::now();
    let terminated = tokio::spawn(a.terminate());
    assert_eq!(alice.expect_close().await, 1012);
    assert_eq!(bob_a.expect_close().await, 1012);
    let exit = terminated.await.unwrap();
    assert!(exit.success(), "{exit:?}");
    // Bounded: the drain timeout (3 s) and the second the demo allows the HTTP side, with
    // slack for a loaded machine; `terminate` itself gives up after 10 s.
    assert!(started.elapsed() < Duration::from_secs(10));

    // Alice had no other connection: left once. Bob is still on B: not left at all.
    let alice_user = &alice_join["user"];
    let bob_user = &bob_join["user"];
    let mut carol_events = Vec::new();
    bob_b.say(&room, "after").await;
    loop {
        let frame = carol.next().await;
        if frame["type"] == "message" && frame["body"] == "after" {
            break;
        }
        carol_events.push(frame);
    }
    let left = |user: &Value| {
        carol_events
            .iter()
            .filter(|f| f["event"] == "user_left" && f["user"]["id"] == user["id"])
            .count()
    };
    assert_eq!(left(alice_user), 1, "{carol_events:?}");
    assert_eq!(left(bob_user), 0, "{carol_events:?}");
    // Nothing more arrives later either (a retried or reaped exit would announce again).
    assert_eq!(
        left_events_before_marker(&mut carol, &mut bob_b, &room, alice_user, "later").await,
        0
    );
    // Presence: Alice offline, Bob online.
    let (_, details) = b.api.get(&format!("/rooms/{room}")).await;
    let online = |user: &Value| {
        details["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == user["id"] && m["online"] == true)
    };
    assert!(!online(alice_user), "{details}");
    assert!(online(bob_user), "{details}");
}

#[tokio::test]
async fn a_client_closed_by_a_drain_reconnects_elsewhere_and_misses_nothing() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let mut args = vec!["--redis-url", &url, "--drain-timeout-secs", "3"];
    args.extend(UNLIMITED);
    let a = DemoProcess::start(&args).await;
    let b = DemoProcess::start(&args).await;
    let room = b.api.create_room("roll").await;
    let alice_join = b.api.join_room(&room, "alice").await;
    let mut alice = Client::connect(b.addr, alice_join["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    let bob_join = a.api.join_room(&room, "bob").await;
    let token = bob_join["token"].as_str().unwrap().to_owned();
    let mut bob = Client::connect(a.addr, &format!("/ws?token={token}")).await;
    bob.join(&room).await;
    alice.drain_until_quiet(&room).await;

    // Alice talks the whole time; A is drained under Bob in the middle of it.
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let room_for_alice = room.clone();
    let talker = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..300 {
            let id = alice.say(&room_for_alice, &format!("m{i}")).await["id"].clone();
            let _ = sent_tx.send(());
            ids.push(id);
        }
        ids
    });
    for _ in 0..30 {
        sent_rx.recv().await.unwrap();
    }
    let drained = tokio::spawn(a.terminate());
    let mut seen = Vec::new();
    let code = loop {
        // Bob reads until the server closes; what it had queued came first.
        match tokio::time::timeout(Duration::from_secs(10), bob.next_or_close()).await {
            Ok(Ok(frame)) if frame["type"] == "message" => seen.push(frame["id"].clone()),
            Ok(Ok(_)) => {}
            Ok(Err(code)) => break code,
            Err(_) => panic!("no close from the draining instance"),
        }
    };
    assert_eq!(code, 1012);
    assert!(drained.await.unwrap().success());
    // As the browser client does on 1012: reconnect (the load balancer picks B) and rejoin
    // with `since` = the last message seen.
    let mut bob = Client::connect(b.addr, &format!("/ws?token={token}")).await;
    let mut join = json!({"type": "join", "room": room});
    if let Some(last) = seen.last() {
        join["since"] = last.clone();
    }
    bob.send(join).await;
    bob.drain_until("joined").await;
    let sent = talker.await.unwrap();
    while seen.len() < sent.len() {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["id"].clone()),
            Some("system") => {}
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(
        seen, sent,
        "every message exactly once, in order, across the drain"
    );
}

#[tokio::test]
async fn a_drained_instance_refuses_websockets_and_is_not_ready() {
    let (router, chat) = ChatBuilder::new().build();
    let addr = serve(router.merge(ops::health(chat.clone()))).await;
    let api = Api::new(format!("http://{addr}"));
    let (api, _) = api.guest("tester").await;
    let room = api.create_room("drain").await;
    let joined = api.join_room(&room, "alice").await;
    let token = joined["token"].as_str().unwrap().to_owned();
    let mut alice = Client::connect(addr, &format!("/ws?token={token}")).await;
    alice.join(&room).await;
    assert_eq!(status(&api, "/readyz").await, 200);

    let drain = tokio::spawn({
        let chat = chat.clone();
        async move { chat.drain().await }
    });
    assert_eq!(alice.expect_close().await, 1012);
    assert!(drain.await.unwrap(), "drained before the timeout");
    assert_eq!(chat.chat().local_connections(), 0);

    // The HTTP side still answers (a host stops it after the drain): no new WebSocket, and
    // not ready, so that a load balancer sends nobody here.
    assert_eq!(
        Client::try_connect(addr, &format!("/ws?token={token}"), &[])
            .await
            .err(),
        Some(503)
    );
    assert_eq!(status(&api, "/readyz").await, 503);
    assert_eq!(status(&api, "/healthz").await, 200);
}
