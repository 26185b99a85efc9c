//! Bounded growth (issue 15): big rooms cost a page, idle rooms expire, history is capped by
//! count and age, rooms are capped in members. Two instances on one real Redis where it
//! matters, and the memory backend alike.

use std::time::{Duration, Instant};

use chat_tower::{
    chat_core::{
        backend::{
            memory::{MemoryCluster, MemoryConfig},
            redis::RedisConfig,
        },
        ChatConfig, RoomId, User,
    },
    ChatBuilder,
};
use roomcast_tests::eventually;
use roomcast_tests::{
    redis_instance, redis_instance_with,
    redis_server::{pttl, RedisServer},
    unlimited, Client, DemoProcess, Server,
};
use serde_json::{json, Value};

/// The key of a room's `what` under the default prefix.
fn key(room: &str, what: &str) -> String {
    format!("roomcast:room:{{{room}}}:{what}")
}

/// The room ids of the first page of `GET /rooms` (limit 200).
async fn listed(server: &Server) -> Vec<String> {
    let (status, page) = server.api.get("/rooms?limit=200").await;
    assert_eq!(status, 200, "{page}");
    page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["roomId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_8100_members_answers_details_and_joins_on_both_instances() {
    let redis = RedisServer::start().await;
    let a = redis_instance_with(&redis, RedisConfig::default(), unlimited()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), unlimited()).await;
    let room = a.api.create_room("stadium").await;
    let room_id = RoomId::new(room.as_str());

    // 8,099 more members through the store (the creator is the first), 500 at a time.
    let chat = a.handle.chat();
    let ids: Vec<String> = (0..8_099).map(|i| format!("fan-{i:05}")).collect();
    for chunk in ids.chunks(500) {
        let adds = chunk.iter().map(|id| {
            let user = User::new(id.as_str(), id.as_str());
            let room = &room_id;
            async move { chat.add_member(room, &user).await.unwrap() }
        });
        futures_util::future::join_all(adds).await;
    }
    // 8,000 of them online (counted as the presence scripts count them).
    let mut conn = redis.conn().await;
    let mut online = redis::cmd("HSET");
    online.arg(key(&room, "online"));
    for id in &ids[..8_000] {
        online.arg(id).arg(1);
    }
    let () = online.query_async(&mut conn).await.unwrap();

    // Details: the count and the first 100, in join order, with their presence; fast on
    // both instances (the bar: under a second, where it was a 503 for good).
    for server in [&a, &b] {
        let started = Instant::now();
        let (status, details) = server.api.get(&format!("/rooms/{room}")).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{details}");
        assert!(took < Duration::from_secs(1), "details took {took:?}");
        assert_eq!(details["memberCount"], 8_100);
        let members = details["members"].as_array().unwrap();
        assert_eq!(members.len(), 100);
        assert_eq!(members[0]["name"], "tester");
        assert_eq!(members[0]["online"], false);
        // Then the first batch of fans (in the order their concurrent joins landed), all
        // online.
        for fan in &members[1..] {
            let n = fan_number(fan);
            assert!(n < 500, "{fan}");
            assert_eq!(fan["online"], true, "{fan}");
        }
    }
    // A later page: members past the first 8,000 are offline, the flags say so.
    let (status, page) = b.api.get(&format!("/rooms/{room}/members?limit=200")).await;
    assert_eq!(status, 200, "{page}");
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    assert_eq!(page["members"].as_array().unwrap().len(), 200);
    let mut cursor = Some(cursor);
    let mut last = Value::Null;
    while let Some(c) = cursor.take() {
        let (_, page) = b
            .api
            .get(&format!("/rooms/{room}/members?limit=200&cursor={c}"))
            .await;
        last = page["members"].as_array().unwrap().last().unwrap().clone();
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    // The last batch joined last, and is offline.
    assert!(fan_number(&last) >= 8_000, "{last}");
    assert_eq!(last["online"], false);

    // WebSocket joins on both instances: at most 100 online members, and the total.
    let (mut ann, _) = guest_joined(&a, &room, "ann").await;
    assert_eq!(ann.0["members"].as_array().unwrap().len(), 100);
    assert_eq!(ann.0["onlineCount"], 8_001);
    let (mut bob, bob_user) = guest_joined(&b, &room, "bob").await;
    assert_eq!(bob.0["members"].as_array().unwrap().len(), 100);
    assert_eq!(bob.0["onlineCount"], 8_002);
    // And the room works: Ann hears Bob arrive and speak, across instances.
    let arrived = ann.1.expect("system").await;
    assert_eq!(arrived["user"], bob_user);
    bob.1.say(&room, "hello, stadium").await;
    assert_eq!(ann.1.expect("message").await["body"], "hello, stadium");
}

/// The number in a seeded member's id (`fan-00042` → 42).
fn fan_number(member: &Value) -> usize {
    member["id"].as_str().unwrap()["fan-".len()..]
        .parse()
        .unwrap()
}

/// `Server::guest_in_room` that keeps the `joined` frame: `((joined, client), user)`.
async fn guest_joined(server: &Server, room: &str, name: &str) -> ((Value, Client), Value) {
    let joined = server.api.join_room(room, name).await;
    let url = joined["websocketUrl"].as_str().unwrap();
    let mut client = Client::connect(server.addr, url).await;
    let frame = client.join(room).await;
    ((frame, client), joined["user"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_expire_on_redis_with_their_keys_while_active_rooms_stay() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(3);
    let config = || RedisConfig {
        room_ttl: ttl,
        // A heartbeat every 500 ms: it keeps the rooms with users in them alive.
        presence_ttl: Duration::from_millis(1_500),
        ..RedisConfig::default()
    };
    let a = redis_instance(&redis, config()).await;
    let b = redis_instance(&redis, config()).await;
    let mut conn = redis.conn().await;

    // The idle room had a member and a message; then nobody is left.
    let idle = a.api.create_room("idle").await;
    let (mut visitor, _) = b.guest_in_room(&idle, "visitor").await;
    visitor.say(&idle, "anyone?").await;
    visitor.close().await;
    // The active room keeps a user online (and said something once).
    let active = a.api.create_room("active").await;
    let (mut stayer, _) = b.guest_in_room(&active, "stayer").await;
    stayer.say(&active, "still here").await;

    // Every key of a room carries the room TTL.
    for what in ["info", "members", "order", "log"] {
        for room in [&idle, &active] {
            let ttl_ms = pttl(&mut conn, key(room, what)).await;
            assert!(ttl_ms > 0 && ttl_ms <= 3_000, "{what}: PTTL {ttl_ms}");
        }
    }
    // Presence too: the users' counts and each node's connections in the room.
    let conns: Vec<String> = redis::cmd("KEYS")
        .arg(key(&active, "conns:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(conns.len(), 1, "the stayer's node: {conns:?}");
    for presence_key in conns.iter().cloned().chain([key(&active, "online")]) {
        let ttl_ms = pttl(&mut conn, &presence_key).await;
        assert!(
            ttl_ms > 0 && ttl_ms <= 3_000,
            "{presence_key}: PTTL {ttl_ms}"
        );
    }
    assert!(listed(&a).await.contains(&idle));
    // So do the nodes' room sets (for the reaper), from the next heartbeat on.
    eventually("the node room sets carry a TTL", || {
        let mut conn = conn.clone();
        async move {
            let sets: Vec<String> = redis::cmd("KEYS")
                .arg("roomcast:node:*:rooms")
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut all = !sets.is_empty();
            for set in sets {
                let ttl_ms = pttl(&mut conn, &set).await;
                all &= ttl_ms > 0;
            }
            all
        }
    })
    .await;

    // The idle room goes: keys, details on both instances.
    let idle_keys: Vec<String> = ["info", "members", "order", "log", "online"]
        .iter()
        .map(|what| key(&idle, what))
        .collect();
    eventually("the idle room's keys expire", || {
        let (keys, mut conn) = (idle_keys.clone(), conn.clone());
        async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    // Nothing else of it is left but the visitor's sent `clientMsgId`, which goes with the
    // dedup window (2 minutes) rather than the room: no node's connections, nothing without
    // a TTL.
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("roomcast:room:{{{idle}}}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for leftover in &left {
        assert!(leftover.contains(":sent:"), "{leftover} outlived its room");
        let ttl_ms = pttl(&mut conn, leftover).await;
        assert!(ttl_ms > 0 && ttl_ms <= 120_000, "{leftover}: PTTL {ttl_ms}");
    }
    for server in [&a, &b] {
        let (status, body) = server.api.get(&format!("/rooms/{idle}")).await;
        assert_eq!(status, 404, "{body}");
        let (status, _) = server.api.get(&format!("/rooms/{idle}/messages")).await;
        assert_eq!(status, 404);
    }
    // Listing: not listed, and the index keeps no ghost of it once listed.
    assert!(!listed(&b).await.contains(&idle));
    let index: Vec<String> = redis::cmd("ZRANGE")
        .arg("roomcast:rooms:public")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!index.iter().any(|k| k.contains(&idle)), "{index:?}");
    assert_eq!(index.len(), 1, "the active room only: {index:?}");

    // The active room outlives its TTL (its user is online: the heartbeat refreshes it).
    let since = Instant::now();
    while since.elapsed() < ttl + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for server in [&a, &b] {
        let (status, details) = server.api.get(&format!("/rooms/{active}")).await;
        assert_eq!(status, 200, "{details}");
        assert!(listed(server).await.contains(&active));
    }
    let ttl_ms = pttl(&mut conn, key(&active, "info")).await;
    assert!(ttl_ms > 0, "PTTL {ttl_ms}");
    // Its presence too: the node's connections and the count, still there and with a TTL.
    for presence_key in conns.iter().cloned().chain([key(&active, "online")]) {
        let ttl_ms = pttl(&mut conn, &presence_key).await;
        assert!(ttl_ms > 0, "{presence_key}: PTTL {ttl_ms}");
    }
    let (history, _) = a.api.history(&active, "").await;
    assert_eq!(history.len(), 1);
    stayer.say(&active, "and still").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_expire_in_memory_while_active_rooms_stay() {
    let cluster = MemoryCluster::with_config(MemoryConfig {
        room_ttl: Duration::from_secs(2),
        ..MemoryConfig::default()
    });
    let server = Server::start(ChatBuilder::new().backend(cluster.node())).await;
    let idle = server.api.create_room("idle").await;
    let (mut visitor, _) = server.guest_in_room(&idle, "visitor").await;
    visitor.say(&idle, "anyone?").await;
    visitor.close().await;
    let active = server.api.create_room("active").await;
    let (mut stayer, _) = server.guest_in_room(&active, "stayer").await;
    assert!(listed(&server).await.contains(&idle));

    eventually("the idle room expires", || async {
        server.api.get(&format!("/rooms/{idle}")).await.0 == 404
    })
    .await;
    let since = Instant::now();
    assert!(!listed(&server).await.contains(&idle));
    let (status, _) = server.api.get(&format!("/rooms/{idle}/messages")).await;
    assert_eq!(status, 404);
    // Joining it is joining a room that does not exist.
    let (status, _) = server
        .api
        .anonymous()
        .post(&format!("/join-room/{idle}"), Some(json!({"user": "late"})))
        .await;
    assert_eq!(status, 404);

    while since.elapsed() < Duration::from_millis(2_500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, details) = server.api.get(&format!("/rooms/{active}")).await;
    assert_eq!(status, 200, "{details}");
    assert!(listed(&server).await.contains(&active));
    stayer.say(&active, "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_capped_by_count_and_age_on_redis_and_in_memory() {
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    // Small stream nodes, so that the approximate trims (`~`) show at small counts.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(10)
        .query_async(&mut conn)
        .await
        .unwrap();
    let config = || RedisConfig {
        history_per_room: 10,
        history_max_age: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    let a = redis_instance_with(&redis, config(), unlimited()).await;
    let b = redis_instance_with(&redis, config(), unlimited()).await;
    let room = a.api.create_room("log").await;
    let (mut ann, _) = a.guest_in_room(&room, "ann").await;
    for i in 0..30 {
        ann.say(&room, &format!("m{i}")).await;
    }
    // Count: about 10 kept (MAXLEN ~: whole stream nodes), the newest last.
    let len: usize = redis::cmd("XLEN")
        .arg(key(&room, "log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((10..20).contains(&len), "XLEN {len}");
    let (page, _) = b.api.history(&room, "limit=200").await;
    assert_eq!(page.len(), len);
    assert_eq!(page.last().unwrap()["body"], "m29");

    // Age: once older than a second, nothing is served, on either instance.
    eventually("old history is not served", || async {
        b.api.history(&room, "limit=200").await.0.is_empty()
    })
    .await;
    assert!(a.api.history(&room, "limit=200").await.0.is_empty());
    // The next message trims the old entries (XTRIM MINID ~) and is the only one served.
    ann.say(&room, "fresh").await;
    let len: usize = redis::cmd("XLEN")
        .arg(key(&room, "log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(len < 10, "old entries trimmed: XLEN {len}");
    let (page, _) = b.api.history(&room, "limit=200").await;
    let bodies: Vec<&Value> = page.iter().map(|m| &m["body"]).collect();
    assert_eq!(bodies, [&json!("fresh")]);

    // Memory: exact count, and the same age rule.
    let cluster = MemoryCluster::with_config(MemoryConfig {
        history_per_room: 10,
        history_max_age: Duration::from_secs(1),
        ..MemoryConfig::default()
    });
    let memory = Server::start(
        ChatBuilder::new()
            .config(unlimited())
            .backend(cluster.node()),
    )
    .await;
    let room = memory.api.create_room("log").await;
    let (mut bea, _) = memory.guest_in_room(&room, "bea").await;
    for i in 0..30 {
        bea.say(&room, &format!("m{i}")).await;
    }
    let (page, _) = memory.api.history(&room, "limit=200").await;
    assert_eq!(page.len(), 10);
    assert_eq!(page[0]["body"], "m20");
    eventually("old history is not served (memory)", || async {
        memory.api.history(&room, "limit=200").await.0.is_empty()
    })
    .await;
    bea.say(&room, "fresh").await;
    let (page, _) = memory.api.history(&room, "limit=200").await;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["body"], "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_new_members_with_room_full_on_both_instances() {
    let redis = RedisServer::start().await;
    let chat = || ChatConfig {
        max_members_per_room: 3,
        ..ChatConfig::default()
    };
    let a = redis_instance_with(&redis, RedisConfig::default(), chat()).await;
    let b = redis_instance_with(&redis, RedisConfig::default(), chat()).await;
    let room = a.api.create_room("small").await;
    let ann = a.api.join_room(&room, "ann").await;
    let _bob = b.api.join_room(&room, "bob").await;

    // A fourth member: 409 room_full over REST, an error frame over the WebSocket.
    let (status, problem) = b
        .api
        .anonymous()
        .post(&format!("/join-room/{room}"), Some(json!({"user": "carl"})))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "room_full");
    let (dora_api, _) = a.api.guest("dora").await;
    let token = dora_api.token.clone().unwrap();
    let mut dora = Client::connect(a.addr, &format!("/ws?token={token}")).await;
    dora.send(json!({"type": "join", "room": room})).await;
    dora.expect_error("room_full").await;
    let (status, details) = b.api.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200);
    assert_eq!(details["memberCount"], 3);

    // Members come back as they like; a member who leaves makes room.
    let ann_api = a.api.with_token(ann["token"].as_str().unwrap());
    let mut ann_ws = Client::connect(b.addr, ann["websocketUrl"].as_str().unwrap()).await;
    ann_ws.join(&room).await;
    let (status, _) = ann_api.delete(&format!("/rooms/{room}/members/me")).await;
    assert_eq!(status, 204);
    dora.send(json!({"type": "join", "room": room})).await;
    assert_eq!(dora.expect("joined").await["room"], room.as_str());
}

/// Every instance down for longer than four presence TTLs (a whole-cluster restart): the
/// first instance back still reaps the dead one's users (its room set lives as long as its
/// rooms' presence keys), so nobody stays online in a room that lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reap_after_a_long_outage_of_every_instance_leaves_nobody_online() {
    let redis = RedisServer::start().await;
    let doomed =
        DemoProcess::start(&["--redis-url", &redis.url(), "--presence-ttl-secs", "0.3"]).await;
    let room = doomed.api.create_room("restart").await;
    let joined = doomed.api.join_room(&room, "bob").await;
    let token = joined["token"].as_str().unwrap();
    let mut bob = Client::connect(doomed.addr, &format!("/ws?token={token}")).await;
    bob.join(&room).await;
    let bob_id = joined["user"]["id"].as_str().unwrap().to_owned();
    let mut conn = redis.conn().await;
    let count: Option<i64> = redis::cmd("HGET")
        .arg(key(&room, "online"))
        .arg(&bob_id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, Some(1));
    // Killed once it has beaten with Bob in the room (its room set has its TTL by then).
    eventually("the doomed node's room set carries its TTL", || {
        let mut conn = conn.clone();
        async move {
            let sets: Vec<String> = redis::cmd("KEYS")
                .arg("roomcast:node:*:rooms")
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut ttl_ms = -1;
            if let [set] = sets.as_slice() {
                ttl_ms = pttl(&mut conn, set).await;
            }
            ttl_ms > 0
        }
    })
    .await;
    doomed.kill().await;
    // The outage: nobody beats or reaps for five presence TTLs.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let back = redis_instance(
        &redis,
        RedisConfig {
            presence_ttl: Duration::from_millis(300),
            ..RedisConfig::default()
        },
    )
    .await;
    eventually("bob is offline after the reap", || async {
        let (status, details) = back.api.get(&format!("/rooms/{room}")).await;
        assert_eq!(status, 200, "{details}");
        details["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["online"] == false)
    })
    .await;
    let conns: Vec<String> = redis::cmd("KEYS")
        .arg(key(&room, "conns:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(conns.is_empty(), "{conns:?}");
    drop(bob);
}

/// One instance on `redis` with `config`, and one in memory with the same room TTL (the time
/// after which idle rooms and unseen users are gone).
async fn expiring(redis: &RedisServer, config: RedisConfig) -> (Server, Server) {
    let cluster = MemoryCluster::with_config(MemoryConfig {
        room_ttl: config.room_ttl,
        ..MemoryConfig::default()
    });
    let in_memory = Server::start(ChatBuilder::new().backend(cluster.node())).await;
    (redis_instance(redis, config).await, in_memory)
}

/// A direct message from `from` to `to` answered with the error `code`.
/// A direct message to `to`, who is known and offline: held for them.
async fn direct_held(from: &mut Client, to: &Value) {
    from.send(json!({"type": "direct", "to": to["id"], "body": "there?"}))
        .await;
    let ack = from.expect("ack").await;
    assert_eq!(ack["held"], true, "{ack}");
}

async fn direct_refused(from: &mut Client, to: &Value, code: &str) {
    from.send(json!({"type": "direct", "to": to["id"], "body": "there?"}))
        .await;
    from.expect_error(code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_not_seen_for_the_room_ttl_is_forgotten_on_redis_and_in_memory() {
    let ttl = Duration::from_secs(2);
    let redis = RedisServer::start().await;
    let (on_redis, in_memory) = expiring(
        &redis,
        RedisConfig {
            room_ttl: ttl,
            presence_ttl: Duration::from_millis(1_000),
            ..RedisConfig::default()
        },
    )
    .await;
    let mut conn = redis.conn().await;

    for server in [&on_redis, &in_memory] {
        // Alice stays online (so the room stays); carol joined once and never connected.
        let room = server.api.create_room("lobby").await;
        let (mut alice, _) = server.guest_in_room(&room, "alice").await;
        let carol_joined = server.api.join_room(&room, "carol").await;
        let carol = carol_joined["user"].clone();
        // A guest who only ever got a token.
        let (status, dave) = server
            .api
            .anonymous()
            .post("/guests", Some(json!({"name": "dave"})))
            .await;
        assert_eq!(status, 201, "{dave}");
        direct_held(&mut alice, &carol).await;
        let seen = Instant::now();

        if std::ptr::eq(server, &on_redis) {
            // One key per user with the room TTL, no hash of every user ever seen.
            for user in [&carol, &dave["user"]] {
                let seen_key = format!("roomcast:user:{{{}}}:seen", user["id"].as_str().unwrap());
                let ttl_ms = pttl(&mut conn, &seen_key).await;
                assert!(ttl_ms > 0 && ttl_ms <= 2_000, "{seen_key}: PTTL {ttl_ms}");
            }
            let hash: bool = redis::cmd("EXISTS")
                .arg("roomcast:users")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(!hash, "the old hash of every user is not written");
        }

        while seen.elapsed() < ttl + Duration::from_millis(300) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Carol is still a member of the room alice keeps alive, but the chat has not seen
        // her for the TTL: she is unknown again, like an id it never saw.
        direct_refused(&mut alice, &carol, "user_not_found").await;
        if std::ptr::eq(server, &on_redis) {
            // A user that a version before the per-user keys recorded (the hash of every
            // user seen, still read after an upgrade) is offline, not unknown: held.
            let carol_id = carol["id"].as_str().unwrap();
            let _: () = redis::cmd("HSET")
                .arg("roomcast:users")
                .arg(carol_id)
                .arg("carol")
                .query_async(&mut conn)
                .await
                .unwrap();
            direct_held(&mut alice, &carol).await;
            let _: () = redis::cmd("DEL")
                .arg("roomcast:users")
                .query_async(&mut conn)
                .await
                .unwrap();
            direct_refused(&mut alice, &carol, "user_not_found").await;
        }
        // Seen again (she joins once more): offline, not unknown (held).
        let (status, body) = server
            .api
            .with_token(carol_joined["token"].as_str().unwrap())
            .post(&format!("/join-room/{room}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        direct_held(&mut alice, &carol).await;
        alice.barrier(&room).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_who_shared_only_a_room_that_expired_may_not_message_each_other() {
    let ttl = Duration::from_secs(2);
    let redis = RedisServer::start().await;
    let (on_redis, in_memory) = expiring(
        &redis,
        RedisConfig {
            room_ttl: ttl,
            ..RedisConfig::default()
        },
    )
    .await;
    let mut conn = redis.conn().await;

    for server in [&on_redis, &in_memory] {
        let room = server.api.create_room("once").await;
        let a = server.api.join_room(&room, "alice").await;
        let b = server.api.join_room(&room, "bob").await;
        // Both online, in no room: nothing keeps the room alive.
        let mut alice = Client::connect(server.addr, a["websocketUrl"].as_str().unwrap()).await;
        let mut bob = Client::connect(server.addr, b["websocketUrl"].as_str().unwrap()).await;
        let joined = Instant::now();
        // Members of one room: the default policy lets them message each other.
        alice
            .send(json!({"type": "direct", "to": b["user"]["id"], "body": "hi"}))
            .await;
        alice.expect("ack").await;
        assert_eq!(bob.expect("direct").await["body"], "hi");

        while joined.elapsed() < ttl + Duration::from_millis(300) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The room expired: they share nothing any more.
        direct_refused(&mut alice, &b["user"], "forbidden").await;
        direct_refused(&mut bob, &a["user"], "forbidden").await;
        if std::ptr::eq(server, &on_redis) {
            // The expired room's entry left both users' indexes on the way.
            for user in [&a["user"], &b["user"]] {
                let index = format!("roomcast:user:{{{}}}:rooms", user["id"].as_str().unwrap());
                let left: usize = redis::cmd("ZCARD")
                    .arg(&index)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(left, 0, "{index}");
            }
        }
    }
}
