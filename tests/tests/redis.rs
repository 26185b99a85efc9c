//! Several instances on one real redis-server (started by the test on a free port): one chat.

use std::time::{Duration, Instant};

use chat_tower::chat_core::backend::redis::RedisConfig;
use roomcast_tests::{redis_instance, redis_server::RedisServer, Client, DemoProcess, Server};
use serde_json::json;

async fn three(redis: &RedisServer) -> (Server, Server, Server) {
    (
        redis_instance(redis, RedisConfig::default()).await,
        redis_instance(redis, RedisConfig::default()).await,
        redis_instance(redis, RedisConfig::default()).await,
    )
}

/// `name`, joined to `room` through `server` (REST), with its WebSocket in the room.
async fn joined(server: &Server, room: &str, name: &str) -> Client {
    let joined = server.api.join_room(room, name).await;
    let mut client = Client::connect(server.addr, joined["websocketUrl"].as_str().unwrap()).await;
    client.join(room).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_are_one_chat() {
    let redis = RedisServer::start().await;
    let (a, b, c) = three(&redis).await;
    let room = a.api.create_room("everywhere").await;
    let alice_join = a.api.join_room(&room, "alice").await;
    let (alice_user, alice_token) = (
        alice_join["user"].clone(),
        alice_join["token"].as_str().unwrap(),
    );
    let mut alice = a.tab(alice_token, &room).await;
    let (mut bob, bob_user) = b.guest_in_room(&room, "bob").await;
    assert_eq!(alice.expect("system").await["user"], bob_user);
    let (mut carol, carol_user) = c.guest_in_room(&room, "carol").await;
    for client in [&mut alice, &mut bob] {
        let joined = client.expect("system").await;
        assert_eq!(
            (joined["event"].as_str(), &joined["user"]),
            (Some("user_joined"), &carol_user)
        );
    }

    // Room messages: each reaches the two others exactly once, never its sender.
    let ack = alice.say(&room, "from A").await;
    for client in [&mut bob, &mut carol] {
        let m = client.expect("message").await;
        assert_eq!(
            (m["id"].clone(), m["from"].clone()),
            (ack["id"].clone(), alice_user.clone())
        );
    }
    bob.say(&room, "from B").await;
    carol.say(&room, "from C").await;
    assert_eq!(alice.expect("message").await["body"], "from B");
    assert_eq!(alice.expect("message").await["body"], "from C");
    assert_eq!(carol.expect("message").await["body"], "from B");
    assert_eq!(bob.expect("message").await["body"], "from C");
    for client in [&mut alice, &mut bob, &mut carol] {
        client.barrier(&room).await;
    }

    // Direct messages across instances.
    alice
        .send(json!({"type": "direct", "to": carol_user["id"], "body": "A to C"}))
        .await;
    alice.expect("ack").await;
    let dm = carol.expect("direct").await;
    assert_eq!(
        (dm["body"].as_str(), &dm["from"]),
        (Some("A to C"), &alice_user)
    );
    carol
        .send(json!({"type": "direct", "to": bob_user["id"], "body": "C to B"}))
        .await;
    carol.expect("ack").await;
    assert_eq!(bob.expect("direct").await["body"], "C to B");

    // Presence is the same on every instance.
    for server in [&a, &b, &c] {
        let (_, rooms) = server.api.get("/rooms").await;
        assert_eq!(rooms["rooms"][0]["online"], 3, "{rooms}");
        let (_, details) = server.api.get(&format!("/rooms/{room}")).await;
        // The creator (instance a's "tester", offline) and the three who joined.
        let members = details["members"].as_array().unwrap();
        assert_eq!(members.len(), 4, "{details}");
        assert_eq!(members.iter().filter(|m| m["online"] == true).count(), 3);
    }

    // Alice opens a second tab on C with the token A issued: nobody hears of it, and it
    // receives what others say.
    let (status, _) = a
        .api
        .anonymous()
        .post(&format!("/join-room/{room}"), None)
        .await;
    assert_eq!(status, 401, "an anonymous join without a name is refused");
    let mut alice_on_c = c.tab(alice_token, &room).await;
    for client in [&mut bob, &mut carol, &mut alice] {
        client.barrier(&room).await;
    }
    bob.say(&room, "to both tabs").await;
    assert_eq!(alice_on_c.expect("message").await["body"], "to both tabs");
    assert_eq!(carol.expect("message").await["body"], "to both tabs");
    assert_eq!(alice.expect("message").await["body"], "to both tabs");
    alice_on_c.say(&room, "from the second tab").await;
    // Everyone else, Alice's first tab included, sees it.
    for client in [&mut bob, &mut carol, &mut alice] {
        assert_eq!(
            client.expect("message").await["body"],
            "from the second tab"
        );
    }

    // Leaving: the last connection of a user anywhere sends one user_left.
    drop(alice_on_c);
    carol.close().await;
    for client in [&mut alice, &mut bob] {
        let left = client.expect("system").await;
        assert_eq!(
            (left["event"].as_str(), &left["user"]),
            (Some("user_left"), &carol_user)
        );
    }
    alice.barrier(&room).await;
    bob.barrier(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connections_stay_constant_as_clients_grow() {
    let redis = RedisServer::start().await;
    let mut inspect = redis.conn().await;
    let (a, b, c) = three(&redis).await;
    let servers = [&a, &b, &c];
    let baseline = redis.connected_clients(&mut inspect).await;
    assert_eq!(baseline, 6, "two connections per instance");
    let rooms = [a.api.create_room("r1").await, a.api.create_room("r2").await];
    let mut clients = Vec::new();
    let mut counts = Vec::new();
    let mut ready = 0;
    for target in [10, 200] {
        while clients.len() < target {
            let i = clients.len();
            let server = servers[i % 3];
            let room = &rooms[i % 2];
            let joined = server.api.join_room(room, &format!("user{i}")).await;
            let mut client =
                Client::connect(server.addr, joined["websocketUrl"].as_str().unwrap()).await;
            client.send(json!({"type": "join", "room": room})).await;
            clients.push(client);
        }
        // Every client has its `joined` (so its subscriptions are in place) before counting.
        for client in &mut clients[ready..] {
            client.drain_until("joined").await;
        }
        ready = clients.len();
        counts.push(redis.connected_clients(&mut inspect).await);
    }
    println!("redis connections: {baseline} with no clients, {counts:?} with 10 and 200 clients");
    assert_eq!(counts, vec![baseline, baseline]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_script_call_per_room_message_whatever_the_room_size() {
    let redis = RedisServer::start().await;
    let (a, b, c) = three(&redis).await;
    let room = a.api.create_room("counted").await;
    let mut clients = Vec::new();
    for (i, server) in [&a, &b, &c].iter().cycle().take(12).enumerate() {
        let joined = server.api.join_room(&room, &format!("u{i}")).await;
        let mut client =
            Client::connect(server.addr, joined["websocketUrl"].as_str().unwrap()).await;
        client.join(&room).await;
        clients.push(client);
    }
    // Every `user_joined` published before the count starts, and none left in flight (each
    // client sees the arrivals of everyone who joined after it).
    let names: Vec<String> = (0..clients.len()).map(|i| format!("u{i}")).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.await_arrivals(&room, &names[i + 1..]).await;
    }
    redis.reset_stats().await;
    let messages = 30;
    for i in 0..messages {
        let n = clients.len();
        clients[i % n].say(&room, &format!("m{i}")).await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let expected = (0..messages).filter(|m| m % 12 != i).count();
        for _ in 0..expected {
            client.expect("message").await;
        }
    }
    let calls = redis.command_calls().await;
    println!("commandstats over {messages} room messages: {calls:?}");
    assert_eq!(
        calls.get("evalsha").copied().unwrap_or(0),
        messages as u64,
        "{calls:?}"
    );
    // Inside the script: one XADD and one PUBLISH each.
    assert_eq!(
        calls.get("publish").copied().unwrap_or(0),
        messages as u64,
        "{calls:?}"
    );
    assert_eq!(
        calls.get("xadd").copied().unwrap_or(0),
        messages as u64,
        "{calls:?}"
    );
}

/// The per-user message limit for every instance is a bucket in Redis, taken inside the
/// publish script with three calls (TIME, GET, SET); a user who keeps sending takes several
/// tokens at a time, which the instance spends on the next messages (`redis/lease.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_senders_quota_is_taken_from_redis_a_few_tokens_at_a_time() {
    let redis = RedisServer::start().await;
    let (a, b, _c) = three(&redis).await;
    let room = a.api.create_room("leased").await;
    let mut ann = joined(&a, &room, "ann").await;
    let mut bob = joined(&b, &room, "bob").await;
    ann.await_arrivals(&room, &["bob".to_owned()]).await;
    redis.reset_stats().await;
    let messages = 24;
    for i in 0..messages {
        ann.say(&room, &format!("m{i}")).await;
    }
    for i in 0..messages {
        let message = bob.expect("message").await;
        assert_eq!(message["body"], format!("m{i}"));
    }
    let calls = redis.command_calls().await;
    println!("commandstats over {messages} room messages of one sender: {calls:?}");
    assert_eq!(calls.get("publish").copied(), Some(messages), "{calls:?}");
    // Leases of 1, 2, 4, 8, 8 tokens cover 23 messages: six TIMEs here, a few more if this
    // host stalls for the lease's second between two sends; one per message without leases.
    let time = calls.get("time").copied().unwrap_or(0);
    assert!((1..=messages / 2).contains(&time), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_tokens_work_on_every_instance() {
    let redis = RedisServer::start().await;
    let (a, b, c) = three(&redis).await;
    let room = a.api.create_room("history").await;
    // A token issued by A opens a WebSocket on B.
    let joined = a.api.join_room(&room, "alice").await;
    let mut alice_on_b = b.tab(joined["token"].as_str().unwrap(), &room).await;
    let (mut bob_on_c, _) = c.guest_in_room(&room, "bob").await;
    alice_on_b.expect("system").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let sender = if i % 2 == 0 {
            &mut alice_on_b
        } else {
            &mut bob_on_c
        };
        ids.push(sender.say(&room, &format!("h{i}")).await["id"].clone());
    }
    let field = |messages: &[serde_json::Value], name: &str| -> Vec<serde_json::Value> {
        messages.iter().map(|m| m[name].clone()).collect()
    };
    for server in [&b, &c, &a] {
        let (page, before) = server.api.history(&room, "limit=4").await;
        assert_eq!(field(&page, "body"), vec!["h3", "h4", "h5", "h6"]);
        assert_eq!(field(&page, "id"), ids[3..].to_vec());
        let before = before.unwrap();
        let (older, next) = server
            .api
            .history(&room, &format!("limit=4&before={before}"))
            .await;
        assert_eq!(field(&older, "id"), ids[..3].to_vec());
        assert!(next.is_none());
        assert_eq!(older[0]["type"], "message");
    }
    let (status, _) = b
        .api
        .get(&format!("/rooms/{room}/messages?before=not-an-id"))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_conversation() {
    let mut redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("outage").await;
    let (mut alice, _) = a.guest_in_room(&room, "alice").await;
    let (mut bob, _) = b.guest_in_room(&room, "bob").await;
    alice.expect("system").await;
    alice.say(&room, "before").await;
    assert_eq!(bob.expect("message").await["body"], "before");

    redis.kill().await;
    alice
        .send(json!({"type": "message", "room": room, "body": "during", "clientMsgId": "d"}))
        .await;
    let err = alice.expect_error("unavailable").await;
    assert_eq!(err["clientMsgId"], "d");

    let restarted = Instant::now();
    redis.restart().await;
    // B's node tells its clients that messages may have been missed once its subscriptions
    // are back; the WebSocket never closed.
    let resync = bob.expect("resync").await;
    let resubscribed = restarted.elapsed();
    println!("resubscribed {resubscribed:?} after redis restarted: {resync}");
    assert!(resubscribed < Duration::from_secs(5), "{resubscribed:?}");
    // Alice's node resynced too (it may have been before or after her error reply).
    alice.drain_until("resync").await;
    alice.say(&room, "after").await;
    assert_eq!(bob.expect("message").await["body"], "after");
    bob.say(&room, "and back").await;
    assert_eq!(alice.expect("message").await["body"], "and back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_leaves_presence_within_the_ttl_once() {
    let redis = RedisServer::start().await;
    let ttl = RedisConfig {
        presence_ttl: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    let a = redis_instance(&redis, ttl.clone()).await;
    let b = redis_instance(&redis, ttl).await;
    let doomed =
        DemoProcess::start(&["--redis-url", &redis.url(), "--presence-ttl-secs", "1"]).await;
    let room = a.api.create_room("crash").await;
    let (mut alice, _) = a.guest_in_room(&room, "alice").await;
    let (mut carol, _) = b.guest_in_room(&room, "carol").await;
    alice.expect("system").await;
    let joined = doomed.api.join_room(&room, "bob").await;
    let token = joined["token"].as_str().unwrap();
    let mut bob1 = Client::connect(doomed.addr, &format!("/ws?token={token}")).await;
    bob1.join(&room).await;
    let mut bob2 = Client::connect(doomed.addr, &format!("/ws?token={token}")).await;
    bob2.join(&room).await;
    for client in [&mut alice, &mut carol] {
        assert_eq!(client.expect("system").await["user"], joined["user"]);
    }
    let (_, rooms) = a.api.get("/rooms").await;
    assert_eq!(rooms["rooms"][0]["online"], 3);

    let killed = Instant::now();
    doomed.kill().await;
    for client in [&mut alice, &mut carol] {
        let left = client.expect("system").await;
        assert_eq!(
            (left["event"].as_str(), &left["user"]),
            (Some("user_left"), &joined["user"])
        );
    }
    println!("user_left {:?} after SIGKILL (ttl 1 s)", killed.elapsed());
    alice.barrier(&room).await;
    carol.barrier(&room).await;
    let (_, rooms) = b.api.get("/rooms").await;
    assert_eq!(rooms["rooms"][0]["online"], 2);
    drop((bob1, bob2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_since_across_instances_misses_nothing() {
    let redis = RedisServer::start().await;
    let a = roomcast_tests::redis_instance_with(
        &redis,
        RedisConfig::default(),
        roomcast_tests::unlimited(),
    )
    .await;
    let b = roomcast_tests::redis_instance_with(
        &redis,
        RedisConfig::default(),
        roomcast_tests::unlimited(),
    )
    .await;
    roomcast_tests::since_replay_scenario(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_is_one_redis_round_trip_and_copies_only_where_a_tab_listens() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("dm").await;
    let alice_join = a.api.join_room(&room, "alice").await;
    let alice_token = alice_join["token"].as_str().unwrap().to_owned();
    let mut alice = a.tab(&alice_token, &room).await;
    let (mut bob, bob_user) = b.guest_in_room(&room, "bob").await;
    alice.expect("system").await;
    let dm = |i: &str| json!({"type": "direct", "to": bob_user["id"], "body": i});

    // Alice's only connection sent it: one script call, one PUBLISH (no copy for nobody).
    redis.reset_stats().await;
    for i in 0..10 {
        alice.send(dm(&format!("d{i}"))).await;
        alice.expect("ack").await;
        assert_eq!(bob.expect("direct").await["body"], format!("d{i}"));
    }
    let calls = redis.command_calls().await;
    println!("commandstats over 10 direct messages, one tab: {calls:?}");
    assert_eq!(calls.get("evalsha").copied().unwrap_or(0), 10, "{calls:?}");
    assert_eq!(calls.get("publish").copied().unwrap_or(0), 10, "{calls:?}");

    // A second tab on the other instance: it gets the copy (another node listens).
    let mut alice_on_b = b.tab(&alice_token, &room).await;
    alice.send(dm("to both tabs")).await;
    let ack = alice.expect("ack").await;
    let copy = alice_on_b.expect("direct").await;
    assert_eq!(copy["id"], ack["id"]);
    assert_eq!(copy["body"], "to both tabs");
    assert_eq!(bob.expect("direct").await["id"], ack["id"]);
    alice_on_b.close().await;

    // A second tab on the same instance: it gets the copy (the sender has others here), and
    // the tab that sent it does not.
    let mut alice_on_a = a.tab(&alice_token, &room).await;
    alice.send(dm("same node")).await;
    let ack = alice.expect("ack").await;
    assert_eq!(alice_on_a.expect("direct").await["id"], ack["id"]);
    assert_eq!(bob.expect("direct").await["id"], ack["id"]);
    alice.barrier(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_to_someone_offline_is_held_in_redis_and_reaches_them_on_any_instance() {
    let redis = RedisServer::start().await;
    let config = chat_tower::chat_core::ChatConfig {
        held_directs_per_user: 3,
        ..Default::default()
    };
    let a =
        roomcast_tests::redis_instance_with(&redis, RedisConfig::default(), config.clone()).await;
    let b = roomcast_tests::redis_instance_with(&redis, RedisConfig::default(), config).await;
    let room = a.api.create_room("held").await;
    let alice_join = a.api.join_room(&room, "alice").await;
    let alice_token = alice_join["token"].as_str().unwrap().to_owned();
    let mut alice = a.tab(&alice_token, &room).await;
    let mut alice_on_b = b.tab(&alice_token, &room).await;
    let bob_join = b.api.join_room(&room, "bob").await;
    let bob_token = bob_join["token"].as_str().unwrap().to_owned();
    let dm = |body: &str| json!({"type": "direct", "to": bob_join["user"]["id"], "body": body, "clientMsgId": body});

    // Bob has never connected: held, one script call each; Alice's other tab sees them.
    redis.reset_stats().await;
    let mut acks = Vec::new();
    for body in ["one", "two", "three"] {
        alice.send(dm(body)).await;
        let ack = alice.expect("ack").await;
        assert_eq!(ack["held"], true, "{ack}");
        assert_eq!(alice_on_b.expect("direct").await["id"], ack["id"]);
        acks.push(ack);
    }
    let calls = redis.command_calls().await;
    assert_eq!(calls.get("evalsha").copied().unwrap_or(0), 3, "{calls:?}");
    // A retry is the first one again (held, as it said); past the cap, refused and reported.
    alice.send(dm("one")).await;
    let again = alice.expect("ack").await;
    assert_eq!(
        (&again["id"], &again["held"]),
        (&acks[0]["id"], &json!(true))
    );
    alice.send(dm("four")).await;
    let err = alice.expect_error("inbox_full").await;
    assert_eq!(err["clientMsgId"], "four");

    // Bob connects on the other instance than Alice's first tab: every held message, in order.
    let mut bob = Client::connect(b.addr, &format!("/ws?token={bob_token}")).await;
    for ack in &acks {
        let held = bob.expect("direct").await;
        assert_eq!((&held["id"], &held["ts"]), (&ack["id"], &ack["ts"]));
    }
    // Released once, from Redis too: Bob's tab on A gets none of them; live from now on.
    let mut bob_on_a = Client::connect(a.addr, &format!("/ws?token={bob_token}")).await;
    alice.send(dm("live")).await;
    let ack = alice.expect("ack").await;
    assert!(ack.get("held").is_none(), "{ack}");
    for tab in [&mut bob, &mut bob_on_a] {
        assert_eq!(tab.expect("direct").await["id"], ack["id"]);
    }
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*held*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "nothing held any more: {keys:?}");
    alice.barrier(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_are_kept_per_conversation_and_read_from_any_instance() {
    let redis = RedisServer::start().await;
    let (a, b, c) = three(&redis).await;
    let room = a.api.create_room("dm history").await;
    let alice = a.api.join_room(&room, "alice").await;
    let bob = b.api.join_room(&room, "bob").await;
    let carol = a.api.join_room(&room, "carol").await;
    let token = |joined: &serde_json::Value| joined["token"].as_str().unwrap().to_owned();
    let mut alice_ws = a.tab(&token(&alice), &room).await;
    let mut bob_ws = b.tab(&token(&bob), &room).await;
    alice_ws.expect("system").await;
    let dm = |to: &serde_json::Value, body: &str| json!({"type": "direct", "to": to["user"]["id"], "body": body});
    let mut ids = Vec::new();
    for (i, body) in ["hi bob", "hi alice", "lunch?", "to carol, offline"]
        .iter()
        .enumerate()
    {
        let (from, to) = match i {
            1 => (&mut bob_ws, &alice),
            3 => (&mut alice_ws, &carol),
            _ => (&mut alice_ws, &bob),
        };
        from.send(dm(to, body)).await;
        ids.push(from.expect("ack").await["id"].clone());
        if i < 3 {
            let other = if i == 1 { &mut alice_ws } else { &mut bob_ws };
            assert_eq!(other.expect("direct").await["body"], *body);
        }
    }
    // The same conversation for both, from either instance, newest page first.
    let path = |peer: &serde_json::Value, query: &str| {
        format!(
            "/directs/{}/messages{query}",
            peer["user"]["id"].as_str().unwrap()
        )
    };
    let (status, page) = a
        .api
        .with_token(&token(&alice))
        .get(&path(&bob, "?limit=2"))
        .await;
    assert_eq!(status, 200, "{page}");
    let bodies = |page: &serde_json::Value| -> Vec<String> {
        let messages = page["messages"].as_array().unwrap();
        messages
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(bodies(&page), ["hi alice", "lunch?"]);
    assert_eq!(page["messages"][0]["type"], "direct");
    assert_eq!(page["messages"][0]["from"], bob["user"]);
    assert_eq!(page["messages"][1]["id"], ids[2]);
    assert_eq!(page["nextBefore"], ids[1]);
    let before = format!("?limit=2&before={}", ids[1].as_str().unwrap());
    let (status, older) = b
        .api
        .with_token(&token(&bob))
        .get(&path(&alice, &before))
        .await;
    assert_eq!(status, 200, "{older}");
    assert_eq!(bodies(&older), ["hi bob"]);
    assert_eq!(older["nextBefore"], serde_json::Value::Null);
    // A held message is kept too; carol reads it before she ever connects.
    let (_, carols) = b
        .api
        .with_token(&token(&carol))
        .get(&path(&alice, ""))
        .await;
    assert_eq!(bodies(&carols), ["to carol, offline"]);
    // Nobody reads a conversation they are not in: bob's with carol is his own (empty).
    let (_, none) = a.api.with_token(&token(&bob)).get(&path(&carol, "")).await;
    assert_eq!(none["messages"], json!([]));
    // Bad cursors and limits are 400 problems, never 5xx; no identity is 401.
    for query in [
        "?before=17",
        "?before=",
        "?limit=0",
        "?limit=201",
        "?limit=x",
    ] {
        let (status, problem) = a
            .api
            .with_token(&token(&alice))
            .get(&path(&bob, query))
            .await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
    let (status, _) = a.api.anonymous().get(&path(&bob, "")).await;
    assert_eq!(status, 401);

    // Each user's conversations, most recent first, read from any instance: the other user
    // (named as the chat saw them) and the last message either way.
    let listed = |page: &serde_json::Value| -> Vec<(String, String, String)> {
        let conversations = page["conversations"].as_array().unwrap();
        conversations
            .iter()
            .map(|c| {
                (
                    c["user"]["id"].as_str().unwrap().to_owned(),
                    c["user"]["name"].as_str().unwrap().to_owned(),
                    c["lastMessage"]["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let id = |joined: &serde_json::Value| joined["user"]["id"].as_str().unwrap().to_owned();
    let (status, alices) = c.api.with_token(&token(&alice)).get("/directs").await;
    assert_eq!(status, 200, "{alices}");
    assert_eq!(
        listed(&alices),
        [
            (id(&carol), "carol".into(), "to carol, offline".into()),
            (id(&bob), "bob".into(), "lunch?".into()),
        ]
    );
    assert_eq!(alices["nextBefore"], serde_json::Value::Null);
    assert_eq!(alices["conversations"][1]["lastMessage"]["id"], ids[2]);
    let (_, first) = b
        .api
        .with_token(&token(&alice))
        .get("/directs?limit=1")
        .await;
    assert_eq!(listed(&first), listed(&alices)[..1]);
    let next = first["nextBefore"].as_str().unwrap().to_owned();
    let (_, second) = a
        .api
        .with_token(&token(&alice))
        .get(&format!("/directs?limit=1&before={}", urlencode(&next)))
        .await;
    assert_eq!(listed(&second), listed(&alices)[1..]);
    assert_eq!(second["nextBefore"], serde_json::Value::Null);
    let (_, bobs) = a.api.with_token(&token(&bob)).get("/directs").await;
    assert_eq!(
        listed(&bobs),
        [(id(&alice), "alice".into(), "lunch?".into())]
    );
    for query in [
        "?before=17",
        "?before=",
        "?before=x:y",
        "?limit=0",
        "?limit=201",
    ] {
        let (status, problem) = a
            .api
            .with_token(&token(&alice))
            .get(&format!("/directs{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {problem}");
    }
    let (status, _) = a.api.anonymous().get("/directs").await;
    assert_eq!(status, 401);
    alice_ws.barrier(&room).await;
}

/// A query value, percent-encoded.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// While the recipient's instance resubscribes after losing its Pub/Sub connection, the
/// recipient looks offline and a direct message to them is held: the instance releases it to
/// the open connection once it is back (with the `resync`), not only to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_while_the_recipients_instance_resubscribes_reaches_the_open_connection() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("r").await;
    let (mut alice, _) = a.guest_in_room(&room, "alice").await;
    let bob_join = b.api.join_room(&room, "bob").await;
    let bob_token = bob_join["token"].as_str().unwrap().to_owned();
    let mut bob = b.tab(&bob_token, &room).await;
    alice.expect("system").await;
    let mut conn = redis.conn().await;
    // Keep the Pub/Sub connections out: no new client is admitted (the two that are killed
    // next cannot come back), then kill them. Bob looks offline now.
    let clients = redis.connected_clients(&mut conn).await + 1;
    let set_max = |max: u64| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxclients")
            .arg(max)
            .to_owned()
    };
    let _: () = set_max(clients - 2).query_async(&mut conn).await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 2, "one Pub/Sub connection per instance");
    let held = "sent while bob's instance was unsubscribed".to_owned();
    alice
        .send(json!({"type": "direct", "to": bob_join["user"]["id"], "body": held}))
        .await;
    let ack = loop {
        let frame = alice.next().await;
        if frame["type"] == "ack" {
            break frame;
        }
    };
    assert_eq!(ack["held"], true, "{ack}");
    // Let them back in: Bob's instance resubscribes and releases what was held meanwhile.
    let _: () = set_max(10_000).query_async(&mut conn).await.unwrap();
    // Bob's open tab gets it (after its resync), within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the held {held:?} never reached the open tab"
        );
        let frame = bob.next().await;
        if frame["type"] == "direct" && frame["body"] == held.as_str() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_since_past_what_redis_keeps_says_resync() {
    let redis = RedisServer::start().await;
    // 5 messages a room (Redis trims about 100 at a time): 400 leave the first ones gone.
    let config = RedisConfig {
        history_per_room: 5,
        ..RedisConfig::default()
    };
    let a =
        roomcast_tests::redis_instance_with(&redis, config.clone(), roomcast_tests::unlimited())
            .await;
    let b = roomcast_tests::redis_instance_with(&redis, config, roomcast_tests::unlimited()).await;
    let room = a.api.create_room("trimmed").await;
    let (mut alice, _) = a.guest_in_room(&room, "alice").await;
    let bob_join = b.api.join_room(&room, "bob").await;
    let token = bob_join["token"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for i in 0..400 {
        ids.push(alice.say(&room, &format!("m{i}")).await["id"].clone());
    }
    // Bob last saw the first message: what came right after it is gone from Redis. He gets
    // what Redis still has, then a `resync` (reload the history: REST pages go on into an
    // archive where there is one), not a replay that looks whole.
    let mut bob = Client::connect(b.addr, &format!("/ws?token={token}")).await;
    bob.send(json!({"type": "join", "room": room, "since": ids[0]}))
        .await;
    bob.expect("joined").await;
    let mut replayed = 0;
    loop {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("message") => replayed += 1,
            Some("resync") => {
                assert_eq!(frame["reason"], "replay_truncated", "{frame}");
                break;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert!((1..399).contains(&replayed), "{replayed}");
    // From a message Redis still holds, the replay is whole and says nothing more.
    let mut carol = Client::connect(
        b.addr,
        &format!(
            "/ws?token={}",
            b.api.join_room(&room, "carol").await["token"]
                .as_str()
                .unwrap()
        ),
    )
    .await;
    carol
        .send(json!({"type": "join", "room": room, "since": ids[396]}))
        .await;
    carol.expect("joined").await;
    for want in &ids[397..] {
        assert_eq!(&carol.expect("message").await["id"], want);
    }
    alice.say(&room, "after").await;
    let next = carol.next().await;
    assert_eq!(next["body"], "after", "{next}");
}
