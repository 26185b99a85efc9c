//! No ghosts, no duplicates (issue 15), on two instances sharing one real redis-server:
//! presence heals after a write stall, a half-finished reap and lost or stale keys (nobody
//! stays online, nobody is announced twice), and a `clientMsgId` sent again is published
//! once, even after a stalled Redis ran the first send although the sender was told
//! `unavailable`.
//!
//! Some tests write Redis keys directly to simulate what only a crash or lost data leaves
//! behind; they use the backend's key layout (`chat_core::backend::redis`, module docs) under
//! the default prefix.

use std::time::{Duration, Instant};

use chat_tower::chat_core::backend::redis::RedisConfig;
use redis::aio::MultiplexedConnection;
use roomcast_tests::eventually;
use roomcast_tests::{
    redis_instance,
    redis_server::{pttl, RedisServer},
    Api, Client, Server,
};
use serde_json::{json, Value};

const PREFIX: &str = "roomcast";

/// A short TTL: heartbeats (and reconciles, and reaps) every 300 ms.
fn fast_ttl() -> RedisConfig {
    RedisConfig {
        presence_ttl: Duration::from_millis(900),
        ..RedisConfig::default()
    }
}

/// Whether `user` is listed online among the members of `room` (`GET /rooms/{id}`).
async fn is_online(api: &Api, room: &str, user: &Value) -> bool {
    let (status, details) = api.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200, "{details}");
    details["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == user["id"] && m["online"] == true)
}

/// `talker` says `marker` in `room`; returns what `observer` received before it, `resync`s
/// left out (a stalled Redis may make an instance resubscribe). A frame published before the
/// marker is delivered before it: this is "everything so far", without sleeping.
async fn frames_before_marker(
    talker: &mut Client,
    observer: &mut Client,
    room: &str,
    marker: &str,
) -> Vec<Value> {
    talker.say(room, marker).await;
    let mut frames = Vec::new();
    loop {
        let frame = observer.next().await;
        if frame["type"] == "message" && frame["body"] == marker {
            return frames;
        }
        if frame["type"] != "resync" {
            frames.push(frame);
        }
    }
}

/// The next frame that is not a `resync`.
async fn next_not_resync(client: &mut Client) -> Value {
    loop {
        let frame = client.next().await;
        if frame["type"] != "resync" {
            return frame;
        }
    }
}

fn system(event: &str, room: &str, user: &Value) -> (String, String, Value) {
    (event.to_owned(), room.to_owned(), user.clone())
}

fn as_system(frame: &Value) -> (String, String, Value) {
    assert_eq!(frame["type"], "system", "{frame}");
    (
        frame["event"].as_str().unwrap().to_owned(),
        frame["room"].as_str().unwrap().to_owned(),
        frame["user"].clone(),
    )
}

async fn cmd(conn: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn).await.unwrap()
}

fn node_of(server: &Server) -> String {
    server.handle.chat().node_id().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_during_a_write_stall_is_announced_once_after_it() {
    let redis = RedisServer::start().await;
    // Longer than the stall: nobody's heartbeat expires during it.
    let config = RedisConfig {
        presence_ttl: Duration::from_secs(6),
        ..RedisConfig::default()
    };
    let a = redis_instance(&redis, config.clone()).await;
    let b = redis_instance(&redis, config).await;
    let room = a.api.create_room("stall").await;
    let (mut observer, _) = b.guest_in_room(&room, "observer").await;
    let (mut talker, _) = b.guest_in_room(&room, "talker").await;
    observer.expect("system").await;
    let (leaver, leaver_user) = a.guest_in_room(&room, "leaver").await;
    for client in [&mut observer, &mut talker] {
        assert_eq!(
            as_system(&client.expect("system").await),
            system("user_joined", &room, &leaver_user)
        );
    }

    let mut conn = redis.conn().await;
    cmd(&mut conn, &["CLIENT", "PAUSE", "2500", "WRITE"]).await;
    let paused = Instant::now();
    leaver.close().await;

    let left = next_not_resync(&mut observer).await;
    assert_eq!(as_system(&left), system("user_left", &room, &leaver_user));
    println!("user_left {:?} after the pause began", paused.elapsed());
    eventually("the leaver is offline", || async {
        !is_online(&b.api, &room, &leaver_user).await
            && !is_online(&a.api, &room, &leaver_user).await
    })
    .await;
    // Once: the exit's retries that landed after the first one changed nothing, and nobody
    // was announced again (no second user_joined either).
    let rest = frames_before_marker(&mut talker, &mut observer, &room, "after the stall").await;
    let talker_saw = talker.next().await;
    assert_eq!(
        as_system(&talker_saw),
        system("user_left", &room, &leaver_user)
    );
    assert!(rest.is_empty(), "more after user_left: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_finished_reap_is_finished_by_the_next_reaper() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, fast_ttl()).await;
    let b = redis_instance(&redis, fast_ttl()).await;
    let (done_room, rest_room) = (
        a.api.create_room("reaped").await,
        a.api.create_room("not yet").await,
    );
    // Ghost: a member of both rooms whose only connections were on a node that died.
    let ghost = a.api.join_room(&done_room, "ghost").await;
    let ghost_api = a.api.with_token(ghost["token"].as_str().unwrap());
    let (status, body) = ghost_api
        .post(&format!("/join-room/{rest_room}"), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    let ghost_user = ghost["user"].clone();
    let ghost_id = ghost_user["id"].as_str().unwrap();
    let (mut observer, _) = b.guest_in_room(&done_room, "observer").await;
    observer.join(&rest_room).await;
    let (mut talker, _) = a.guest_in_room(&done_room, "talker").await;
    talker.join(&rest_room).await;
    observer.expect("system").await; // the talker joined the first room
    observer.expect("system").await; // and the second

    // The dead node as its reaper left it when it stopped half-way: the first room reaped
    // (the node's connections gone, its user_left sent then), the second not yet, the node
    // still listed with its rooms, and the reaper's claim not expired yet.
    let dead = uuid::Uuid::new_v4().simple().to_string();
    let mut conn = redis.conn().await;
    let _: () = redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(format!("{PREFIX}:room:{{{rest_room}}}:conns:{dead}"))
        .arg(7)
        .arg(ghost_id)
        .cmd("HINCRBY")
        .arg(format!("{PREFIX}:room:{{{rest_room}}}:online"))
        .arg(ghost_id)
        .arg(1)
        .cmd("SADD")
        .arg(format!("{PREFIX}:node:{{{dead}}}:rooms"))
        .arg(&done_room)
        .arg(&rest_room)
        .cmd("SET")
        .arg(format!("{PREFIX}:node:{{{dead}}}:reaper"))
        .arg("a reaper that died")
        .arg("PX")
        .arg(600)
        .cmd("ZADD")
        .arg(format!("{PREFIX}:nodes"))
        .arg(0)
        .arg(&dead)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(is_online(&a.api, &rest_room, &ghost_user).await);

    // Once the claim expired, the next reaper finishes: user_left in the second room only.
    eventually("the dead node is forgotten", || {
        let mut conn = conn.clone();
        let dead = dead.clone();
        async move {
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(format!("{PREFIX}:nodes"))
                .arg(&dead)
                .query_async(&mut conn)
                .await
                .unwrap();
            score.is_none()
        }
    })
    .await;
    assert!(!is_online(&b.api, &rest_room, &ghost_user).await);
    let mut seen = Vec::new();
    for room in [&done_room, &rest_room] {
        let frames = frames_before_marker(&mut talker, &mut observer, room, room).await;
        seen.extend(frames.iter().map(as_system));
    }
    assert_eq!(seen, vec![system("user_left", &rest_room, &ghost_user)]);
    // Nothing of the dead node is left but the reap's mark (for the node's beat, should it
    // come back after all), which goes with the room TTL.
    let leftovers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{dead}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mark = format!("{PREFIX}:node:{{{dead}}}:reaped");
    assert_eq!(leftovers, vec![mark.clone()]);
    let ttl_ms = pttl(&mut conn, &mark).await;
    assert!(ttl_ms > 0, "PTTL {ttl_ms}");
}

/// Two instances with a short TTL on a fresh Redis, a room, an observer in it on b, and a
/// user in it on a whose `user_joined` the observer got.
struct Watched {
    redis: RedisServer,
    a: Server,
    b: Server,
    room: String,
    observer: Client,
    client: Client,
    user: Value,
}

async fn watched(room_name: &str, user_name: &str) -> Watched {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, fast_ttl()).await;
    let b = redis_instance(&redis, fast_ttl()).await;
    let room = a.api.create_room(room_name).await;
    let (mut observer, _) = b.guest_in_room(&room, "observer").await;
    let (client, user) = a.guest_in_room(&room, user_name).await;
    assert_eq!(
        as_system(&observer.expect("system").await),
        system("user_joined", &room, &user)
    );
    Watched {
        redis,
        a,
        b,
        room,
        observer,
        client,
        user,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_restores_lost_presence_and_removes_stale_presence() {
    let Watched {
        redis,
        a,
        b,
        room,
        mut observer,
        client: mut kept,
        user: kept_user,
    } = watched("reconciled", "kept").await;
    let kept_id = kept_user["id"].as_str().unwrap();
    let node = node_of(&a);
    let conns = format!("{PREFIX}:room:{{{room}}}:conns:{node}");
    let online = format!("{PREFIX}:room:{{{room}}}:online");
    let mut conn = redis.conn().await;

    // Lost: every key that says the kept user is here, as if Redis lost them.
    let _: () = redis::pipe()
        .atomic()
        .del(&conns)
        .hdel(&online, kept_id)
        .del(format!("{PREFIX}:node:{{{node}}}:rooms"))
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the kept user is online again", || {
        is_online(&b.api, &room, &kept_user)
    })
    .await;
    let count: i64 = redis::cmd("HGET")
        .arg(&online)
        .arg(kept_id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 1, "counted once");

    // Stale: a connection of this node that it does not have (a member who is not here).
    let stale = a.api.join_room(&room, "stale").await;
    let stale_user = stale["user"].clone();
    let _: () = redis::pipe()
        .atomic()
        .hset(&conns, 999_999, stale_user["id"].as_str().unwrap())
        .hincr(&online, stale_user["id"].as_str().unwrap(), 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the stale user is offline", || async {
        !is_online(&b.api, &room, &stale_user).await
    })
    .await;
    // What the observer got meanwhile: the stale user's user_left, and no second user_joined
    // for the restored one.
    let frames = frames_before_marker(&mut kept, &mut observer, &room, "reconciled").await;
    let seen: Vec<_> = frames.iter().map(as_system).collect();
    assert_eq!(seen, vec![system("user_left", &room, &stale_user)]);
    assert!(is_online(&b.api, &room, &kept_user).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_being_reaped_announces_its_users_again() {
    let Watched {
        redis,
        a,
        b,
        room,
        mut observer,
        client: mut back,
        user: back_user,
    } = watched("reaped-alive", "back").await;
    let node = node_of(&a);
    let mut conn = redis.conn().await;

    // What another node's reaper leaves of instance a when a was cut off for longer than the
    // presence TTL (its user_left went out then): a is no longer listed, nothing says its
    // users are here, and the reap's mark says it told the others they left (the reap itself
    // is run for real in chat-core's `a_node_reaped_while_alive_...` test). Instance a never
    // stopped: its user is still connected.
    let _: () = redis::pipe()
        .atomic()
        .zrem(format!("{PREFIX}:nodes"), &node)
        .del(format!("{PREFIX}:room:{{{room}}}:conns:{node}"))
        .hdel(
            format!("{PREFIX}:room:{{{room}}}:online"),
            back_user["id"].as_str().unwrap(),
        )
        .del(format!("{PREFIX}:node:{{{node}}}:rooms"))
        .set(format!("{PREFIX}:node:{{{node}}}:reaped"), 1)
        .query_async(&mut conn)
        .await
        .unwrap();

    // Its next heartbeat finds it was reaped; its reconcile restores the user and, since the
    // others were told the user left, tells them the user is back: once.
    assert_eq!(
        as_system(&next_not_resync(&mut observer).await),
        system("user_joined", &room, &back_user)
    );
    assert!(is_online(&b.api, &room, &back_user).await);
    let frames = frames_before_marker(&mut back, &mut observer, &room, "still here").await;
    assert!(frames.is_empty(), "announced more than once: {frames:?}");
    // And the heartbeats after it say nothing more.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let frames = frames_before_marker(&mut back, &mut observer, &room, "and still").await;
    assert!(frames.is_empty(), "{frames:?}");
}

/// Sends a frame and returns the sender's reply (`ack` or `error`), `resync`s left out.
async fn send_for_reply(client: &mut Client, frame: Value) -> Value {
    client.send(frame).await;
    loop {
        let reply = next_not_resync(client).await;
        if reply["type"] == "ack" || reply["type"] == "error" {
            return reply;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_msg_id_sent_again_is_published_once() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("retries").await;
    let (mut ann, _) = a.guest_in_room(&room, "ann").await;
    let (mut carl, _) = a.guest_in_room(&room, "carl").await;
    let (mut bob, bob_user) = b.guest_in_room(&room, "bob").await;
    for _ in 0..2 {
        ann.expect("system").await;
    }
    carl.expect("system").await;
    let message = json!({"type": "message", "room": room, "body": "once", "clientMsgId": "c-1"});
    let first = send_for_reply(&mut ann, message.clone()).await;
    let again = send_for_reply(&mut ann, message.clone()).await;
    assert_eq!(first["type"], "ack", "{first}");
    assert_eq!((&again["id"], &again["ts"]), (&first["id"], &first["ts"]));
    assert_eq!(again["clientMsgId"], "c-1");
    // Another user's same clientMsgId is another message.
    let other = send_for_reply(&mut carl, message).await;
    assert_ne!(other["id"], first["id"]);

    let direct =
        json!({"type": "direct", "to": bob_user["id"], "body": "psst", "clientMsgId": "c-1"});
    let first_direct = send_for_reply(&mut ann, direct.clone()).await;
    let again_direct = send_for_reply(&mut ann, direct.clone()).await;
    assert_eq!(first_direct["type"], "ack", "{first_direct}");
    assert_eq!(again_direct["id"], first_direct["id"]);
    let other_direct = send_for_reply(&mut carl, direct).await;
    assert_ne!(other_direct["id"], first_direct["id"]);

    let frames = frames_before_marker(&mut ann, &mut bob, &room, "end").await;
    let got: Vec<(&str, &Value)> = frames
        .iter()
        .map(|f| (f["type"].as_str().unwrap(), &f["id"]))
        .collect();
    assert_eq!(
        got,
        vec![
            ("message", &first["id"]),
            ("message", &other["id"]),
            ("direct", &first_direct["id"]),
            ("direct", &other_direct["id"]),
        ]
    );
    let (history, _) = a.api.history(&room, "limit=10").await;
    let once: Vec<&Value> = history.iter().filter(|m| m["body"] == "once").collect();
    assert_eq!(once.len(), 2, "ann's and carl's: {history:?}");
    assert_eq!(once[0]["id"], first["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_stalled_redis_finds_the_first_copy() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let room = a.api.create_room("stalled").await;
    let (mut ann, _) = a.guest_in_room(&room, "ann").await;
    let (mut bob, _) = b.guest_in_room(&room, "bob").await;
    ann.expect("system").await;

    // Redis sleeps 1 s, past the 500 ms response timeout; the send goes in while it sleeps.
    let probe = redis.conn().await;
    let answers = |probe: &MultiplexedConnection| {
        let mut probe = probe.clone();
        async move {
            let ping = redis::cmd("PING");
            let ping = ping.query_async::<String>(&mut probe);
            tokio::time::timeout(Duration::from_millis(50), ping)
                .await
                .is_ok_and(|pong| pong.is_ok())
        }
    };
    let mut sleeper = redis.conn().await;
    tokio::spawn(async move {
        // Its reply may time out on the client's side: the sleep happens all the same.
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1)
            .query_async(&mut sleeper)
            .await;
    });
    eventually("redis is asleep", || async { !answers(&probe).await }).await;
    let message = json!({"type": "message", "room": room, "body": "stalled", "clientMsgId": "s-1"});
    let reply = send_for_reply(&mut ann, message.clone()).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    assert_eq!(reply["clientMsgId"], "s-1", "{reply}");
    eventually("redis is awake", || answers(&probe)).await;

    // The script ran when Redis woke up; the retry gets its ack, nothing is sent again.
    let ack = send_for_reply(&mut ann, message).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (history, _) = a.api.history(&room, "limit=10").await;
    let copies: Vec<&Value> = history.iter().filter(|m| m["body"] == "stalled").collect();
    assert_eq!(copies.len(), 1, "{history:?}");
    assert_eq!(copies[0]["id"], ack["id"]);
    let frames = frames_before_marker(&mut ann, &mut bob, &room, "awake").await;
    let bodies: Vec<&Value> = frames.iter().map(|f| &f["body"]).collect();
    assert_eq!(bodies, vec![&json!("stalled")]);
    assert_eq!(frames[0]["id"], ack["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_step_with_redis_reconciles_with_reads_only() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, fast_ttl()).await;
    let b = redis_instance(&redis, fast_ttl()).await;
    let room = a.api.create_room("quiet").await;
    let (_ann, _) = a.guest_in_room(&room, "ann").await;
    let (_bob, _) = b.guest_in_room(&room, "bob").await;
    redis.reset_stats().await;
    // Two beats of each node (ZADD), each followed by its reconcile of the room.
    eventually("two heartbeats per node", || async {
        redis
            .command_calls()
            .await
            .get("zadd")
            .copied()
            .unwrap_or(0)
            >= 5
    })
    .await;
    let calls = redis.command_calls().await;
    assert!(calls.get("hgetall").copied().unwrap_or(0) >= 2, "{calls:?}");
    for write in ["evalsha", "eval", "hset", "hdel", "hincrby", "publish"] {
        assert_eq!(calls.get(write), None, "{write} while in step: {calls:?}");
    }
}
