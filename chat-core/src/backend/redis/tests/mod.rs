//! Tests of the Redis backend against a real `redis-server` (one per test, on a free port):
//! the store suite (`backend::store_suite`), the same order as the memory store, the keys
//! a membership leaves, and a room too big to read whole.

mod server;

use redis::AsyncCommands;
use server::TestRedis;

use crate::{
    backend::{
        store::{RoomInfo, Visibility},
        store_suite::room_pages,
        Backend,
    },
    protocol::{RoomId, User, UserId},
};

async fn fresh() -> (TestRedis, Backend) {
    let redis = TestRedis::start().await;
    let backend = redis.backend().await;
    (redis, backend)
}

crate::backend::store_suite::store_tests!(fresh());

/// Creates `room` (public, named after its id) in `backend`'s store.
async fn public_room(backend: &Backend, room: &RoomId) {
    backend
        .rooms
        .create(RoomInfo {
            room_id: room.clone(),
            name: room.as_str().into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            visibility: Visibility::Public,
            owner: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_in_the_same_order_as_memory() {
    let (_redis, redis) = fresh().await;
    let memory = Backend::memory();
    let ann = User::new("ann", "Ann");
    // Many rooms in few instants (ties), created out of order, a third private.
    for i in 0..60u32 {
        let id = format!("room-{:02}", (i * 37) % 60);
        let room = RoomInfo {
            room_id: RoomId::new(id.as_str()),
            name: id.clone(),
            created_at: format!("2026-01-01T00:00:0{}.5Z", i % 4),
            visibility: if i % 3 == 0 {
                Visibility::Private
            } else {
                Visibility::Public
            },
            owner: None,
        };
        for backend in [&redis, &memory] {
            backend.rooms.create(room.clone()).await.unwrap();
            if i % 2 == 0 {
                backend.rooms.add_member(&room.room_id, &ann).await.unwrap();
            }
        }
    }
    for (viewer, limit) in [("ann", 7), ("bob", 5), ("ann", 60)] {
        let (r, m) = (
            room_pages(&redis, viewer, limit).await.concat(),
            room_pages(&memory, viewer, limit).await.concat(),
        );
        assert_eq!(r, m);
        let mut unique = r.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), r.len(), "no room twice");
    }
}

#[tokio::test]
async fn removing_the_last_membership_leaves_no_user_keys() {
    let (redis, backend) = fresh().await;
    for (id, visibility) in [("p", Visibility::Public), ("s", Visibility::Private)] {
        let room = RoomInfo {
            room_id: RoomId::new(id),
            name: id.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            visibility,
            owner: None,
        };
        backend.rooms.create(room).await.unwrap();
        backend
            .rooms
            .add_member(&RoomId::new(id), &User::new("u", "U"))
            .await
            .unwrap();
    }
    let mut conn = redis.conn().await;
    let user_keys = ["roomcast:user:{u}:rooms", "roomcast:user:{u}:private"];
    let cards: (usize, usize) = redis::pipe()
        .zcard(user_keys[0])
        .zcard(user_keys[1])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(cards, (2, 1));
    for id in ["p", "s"] {
        assert!(backend
            .rooms
            .remove_member(&RoomId::new(id), &UserId::new("u"))
            .await
            .unwrap());
    }
    let left: usize = conn.exists(&user_keys[..]).await.unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_big_room_pages_and_reads_whole_past_lua_bounds() {
    let (_redis, backend) = fresh().await;
    let room = RoomId::new("big");
    let info = RoomInfo {
        room_id: room.clone(),
        name: "big".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        visibility: Visibility::Public,
        owner: None,
    };
    backend.rooms.create(info).await.unwrap();
    // More than Lua's unpack takes at once (about 8,000).
    let n = 9_000;
    let users: Vec<User> = (0..n).map(|i| User::new(format!("u{i:05}"), "x")).collect();
    for chunk in users.chunks(500) {
        let adds = chunk.iter().map(|u| backend.rooms.add_member(&room, u));
        for added in futures_util::future::join_all(adds).await {
            assert!(added.unwrap());
        }
    }
    assert_eq!(backend.rooms.member_count(&room).await.unwrap(), n);
    let page = backend.rooms.members(&room, None, 3).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let next = backend
        .rooms
        .members(&room, page.next.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(next.items.len(), 2);
    let all = backend
        .rooms
        .members(&room, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!((all.items.len(), all.next), (n, None));
    assert!(all.items.iter().all(|u| u.name == "x"));
    // Online: past the small-hash encoding, HSCAN returns some at a time; the limit holds.
    let node = backend.broker.node_id();
    let enters = users[..300]
        .iter()
        .zip(1..)
        .map(|(u, conn)| backend.presence.enter(&room, u, node, conn));
    futures_util::future::join_all(enters).await;
    let (some, total) = backend.presence.online(&room, 100).await.unwrap();
    assert_eq!((some.len(), total), (100, 300));
    assert!(
        some.windows(2).all(|w| w[0].id < w[1].id),
        "distinct, by id"
    );
}

#[tokio::test]
async fn expired_rooms_leave_no_short_pages_and_no_ghosts_in_the_indexes() {
    let (redis, backend) = fresh().await;
    let ann = User::new("ann", "Ann");
    for i in 0..12u32 {
        let room = RoomInfo {
            room_id: RoomId::new(format!("r{i:02}")),
            name: format!("r{i:02}"),
            created_at: format!("2026-01-01T00:00:{i:02}Z"),
            visibility: if i % 4 == 0 {
                Visibility::Private
            } else {
                Visibility::Public
            },
            owner: None,
        };
        backend.rooms.create(room.clone()).await.unwrap();
        backend.rooms.add_member(&room.room_id, &ann).await.unwrap();
    }
    // Expire most of them as their TTL would (every key of the room gone), without telling
    // the indexes: eight of the twelve, public and private, at the head and in the middle.
    let mut conn = redis.conn().await;
    let expired = ["r11", "r10", "r09", "r08", "r07", "r04", "r03", "r00"];
    for id in expired {
        for what in ["info", "members", "order"] {
            let _: i64 = conn
                .del(format!("roomcast:room:{{{id}}}:{what}"))
                .await
                .unwrap();
        }
    }
    // Pages of 2: full but the last, whatever ghosts they met.
    let pages = room_pages(&backend, "ann", 2).await;
    assert_eq!(pages, [vec!["r06", "r05"], vec!["r02", "r01"]]);
    // And the indexes keep none of them.
    let public: Vec<String> = conn.zrange("roomcast:rooms:public", 0, -1).await.unwrap();
    let private: Vec<String> = conn
        .zrange("roomcast:user:{ann}:private", 0, -1)
        .await
        .unwrap();
    for key in public.iter().chain(&private) {
        assert!(!expired.iter().any(|id| key.contains(id)), "{key}");
    }
    assert_eq!(public.len() + private.len(), 4);
    // A batch of the user's rooms skips (and drops) them too.
    let rooms = backend
        .rooms
        .user_rooms(&UserId::new("ann"), 3)
        .await
        .unwrap();
    assert_eq!(rooms.len(), 3);
    assert!(rooms.iter().all(|r| !expired.contains(&r.as_str())));
    let all = backend
        .rooms
        .user_rooms(&UserId::new("ann"), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
}

/// Heal's presence keys under growth's expiry: a node's connections and the users' counts
/// carry the room TTL when entered and when the reconcile restores them, and neither the
/// reconcile, a late exit nor a reap brings back keys of a room that expired.
#[tokio::test]
async fn presence_carries_the_room_ttl_and_nothing_resurrects_an_expired_room() {
    use std::time::Duration;

    use super::{heartbeat, presence, RedisBackend, RedisConfig};
    use crate::backend::broker::{Envelope, NodeId, Origin, Topic};

    let redis = TestRedis::start().await;
    let config = RedisConfig {
        room_ttl: Duration::from_secs(60),
        ..RedisConfig::default()
    };
    let node = RedisBackend::connect(&redis.url, config).await.unwrap();
    let shared = node.shared.clone();
    let backend = node.into_backend();
    let id = shared.node;
    let room = RoomId::new("r");
    let ann = User::new("ann", "Ann");
    public_room(&backend, &room).await;
    backend.rooms.add_member(&room, &ann).await.unwrap();
    assert!(backend.presence.enter(&room, &ann, id, 1).await.unwrap());

    let mut conn = redis.conn().await;
    let conns = format!("roomcast:room:{{r}}:conns:{id}");
    let online = "roomcast:room:{r}:online".to_owned();
    let room_ttl = |conn: &mut redis::aio::MultiplexedConnection, key: String| {
        let mut conn = conn.clone();
        async move {
            let ttl: i64 = conn.pttl(&key).await.unwrap();
            assert!(ttl > 0 && ttl <= 60_000, "{key}: PTTL {ttl}");
        }
    };
    for key in [&conns, &online] {
        room_ttl(&mut conn, key.clone()).await;
    }

    // Lost (as if Redis lost them): the reconcile restores them, with the room TTL.
    let _: () = conn.del(&[&conns, &online]).await.unwrap();
    let mut cmd = shared.cmd.clone();
    heartbeat::reconcile(&shared, &mut cmd).await.unwrap();
    let held: Option<String> = conn.hget(&conns, 1).await.unwrap();
    assert_eq!(held.as_deref(), Some("ann"));
    let count: Option<i64> = conn.hget(&online, "ann").await.unwrap();
    assert_eq!(count, Some(1));
    for key in [&conns, &online] {
        room_ttl(&mut conn, key.clone()).await;
    }

    // The room expired (every key of it gone) while the node still has Ann: the reconcile
    // restores nothing into it, a late exit and a reap of a dead node write nothing back.
    let all: Vec<String> = conn.keys("roomcast:room:{r}*").await.unwrap();
    let _: () = conn.del(&all).await.unwrap();
    for _ in 0..2 {
        heartbeat::reconcile(&shared, &mut cmd).await.unwrap();
        let left: Vec<String> = conn.keys("roomcast:room:{r}*").await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
    // And the node's rooms no longer list it (so the reconcile leaves it be from now on).
    let listed: bool = conn
        .sismember(format!("roomcast:node:{{{id}}}:rooms"), "r")
        .await
        .unwrap();
    assert!(!listed);
    let user_left = Envelope {
        origin: Origin {
            node: id,
            conn: None,
        },
        topic: Topic::Room(room.clone()),
        frame: bytes::Bytes::from_static(b"{}"),
    };
    assert!(!backend
        .presence
        .exit(&room, &ann, id, 1, user_left)
        .await
        .unwrap());
    let dead = NodeId::random();
    let dead_conns = format!("roomcast:room:{{r}}:conns:{dead}");
    let _: () = conn.hset(&dead_conns, 7, "bob").await.unwrap();
    presence::sync_room(
        &shared,
        &mut cmd,
        &room,
        dead,
        &[],
        presence::SyncBy::Reaper {
            deadline: crate::protocol::now_ms(),
        },
    )
    .await
    .unwrap();
    let left: Vec<String> = conn.keys("roomcast:room:{r}*").await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A room message's script call is built by hand (`RedisNode::eval`): it still loads the
/// script when Redis lost it (NOSCRIPT after a restart or SCRIPT FLUSH), and names the keys
/// the rest of the backend uses: the stream, the keys the room TTL is refreshed on, and the
/// `sent` record of an idempotent send, which a retry then finds.
#[tokio::test]
async fn a_room_message_reloads_a_lost_script_and_names_the_room_keys() {
    use std::time::Duration;

    use super::{RedisBackend, RedisConfig};
    use crate::backend::broker::{Dedup, NewRoomMessage, Origin};

    let redis = TestRedis::start().await;
    let config = RedisConfig {
        room_ttl: Duration::from_secs(60),
        ..RedisConfig::default()
    };
    let node = RedisBackend::connect(&redis.url, config).await.unwrap();
    let id = node.shared.node;
    let backend = node.into_backend();
    let room = RoomId::new("r");
    let ann = User::new("ann", "Ann");
    public_room(&backend, &room).await;
    backend.rooms.add_member(&room, &ann).await.unwrap();
    assert!(backend.presence.enter(&room, &ann, id, 1).await.unwrap());
    let message = |client_msg_id: Option<&str>| NewRoomMessage {
        origin: Origin {
            node: id,
            conn: None,
        },
        room: room.clone(),
        from: ann.clone(),
        body: "hi".into(),
        ts: 1_000,
        dedup: client_msg_id.map(|c| Dedup {
            client_msg_id: c.into(),
            window: Duration::from_secs(30),
        }),
        quota: None,
    };

    let mut conn = redis.conn().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let first = backend
        .broker
        .publish_room_message(message(Some("c.1")))
        .await
        .unwrap();

    let log = "roomcast:room:{r}:log";
    let len: usize = conn.xlen(log).await.unwrap();
    assert_eq!(len, 1);
    for key in [
        log.to_owned(),
        "roomcast:room:{r}:info".to_owned(),
        "roomcast:room:{r}:members".to_owned(),
        "roomcast:room:{r}:order".to_owned(),
        "roomcast:room:{r}:online".to_owned(),
        format!("roomcast:room:{{r}}:conns:{id}"),
    ] {
        let ttl: i64 = conn.pttl(&key).await.unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key}: PTTL {ttl}");
    }
    let sent: Option<String> = conn.get("roomcast:room:{r}:sent:3:ann:c.1").await.unwrap();
    assert_eq!(sent, Some(format!("{} 1000", first.id.as_str())));
    let ttl: i64 = conn.pttl("roomcast:room:{r}:sent:3:ann:c.1").await.unwrap();
    assert!(ttl > 0 && ttl <= 30_000, "sent: PTTL {ttl}");

    // The retry finds the first send; a message without a client id is a new one.
    let again = backend
        .broker
        .publish_room_message(message(Some("c.1")))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    let other = backend
        .broker
        .publish_room_message(message(None))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let len: usize = conn.xlen(log).await.unwrap();
    assert_eq!(len, 2);
}

/// The heartbeat has its own task: a reconcile that cannot go on (here: stuck behind an enter
/// that holds the presence gate; in the 100,000-connection run, thousands of rooms on a
/// saturated Redis) does not stop the beat that keeps the node from being reaped.
#[tokio::test]
async fn a_stuck_reconcile_does_not_stop_the_heartbeat() {
    use std::time::Duration;

    use super::{RedisBackend, RedisConfig};

    let redis = TestRedis::start().await;
    let config = RedisConfig {
        // A beat (and a reconcile round) every 200 ms.
        presence_ttl: Duration::from_millis(600),
        ..RedisConfig::default()
    };
    let node = RedisBackend::connect(&redis.url, config).await.unwrap();
    let shared = node.shared.clone();
    let backend = node.into_backend();
    let room = RoomId::new("r");
    let ann = User::new("ann", "Ann");
    public_room(&backend, &room).await;
    assert!(backend
        .presence
        .enter(&room, &ann, shared.node, 1)
        .await
        .unwrap());

    // An enter in flight, for three presence TTLs: every reconcile waits for it.
    let held = shared.gate.read().await;
    let mut conn = redis.conn().await;
    let node_id = shared.node.to_string();
    let score = |conn: &mut redis::aio::MultiplexedConnection| {
        let (mut conn, node_id) = (conn.clone(), node_id.clone());
        async move {
            let score: Option<f64> = conn.zscore("roomcast:nodes", &node_id).await.unwrap();
            score.unwrap_or(0.0)
        }
    };
    // Beats every 200 ms: over 2.4 s, at least a few land (none would, were the beat in the
    // reconcile's loop); counted over the whole run, not per window, for a loaded machine.
    let mut last = score(&mut conn).await;
    let mut advanced = 0;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = score(&mut conn).await;
        if now > last {
            advanced += 1;
        }
        last = now;
    }
    assert!(
        advanced >= 3,
        "the heartbeat stopped: {advanced} of 8 windows"
    );
    drop(held);
}

/// A node that a reaper took for dead while it was alive (cut off from Redis for longer than
/// the presence TTL): the reap tells the others its users left and marks the node in the same
/// step; the node's reconcile restores its connections and announces back, once, the users it
/// restored who were counted nowhere else (not one who still had a connection on another
/// node, whom the reap did not announce as gone), counting its own connections before its
/// beat lists it again.
#[tokio::test]
async fn a_node_reaped_while_alive_announces_back_the_users_the_reap_announced_gone() {
    use std::time::Duration;

    use futures_util::StreamExt;

    use super::{heartbeat, reaper, RedisBackend, RedisConfig};

    let redis = TestRedis::start().await;
    // Long enough that no timer of the nodes' own runs during the test (only the first
    // round, at connect).
    let config = RedisConfig {
        presence_ttl: Duration::from_secs(60),
        ..RedisConfig::default()
    };
    let a = RedisBackend::connect(&redis.url, config.clone())
        .await
        .unwrap();
    let b = RedisBackend::connect(&redis.url, config).await.unwrap();
    let (node_a, node_b) = (a.shared.clone(), b.shared.clone());
    let (backend_a, backend_b) = (a.into_backend(), b.into_backend());
    let room = RoomId::new("r");
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    public_room(&backend_a, &room).await;
    for user in [&ann, &bob] {
        backend_a.rooms.add_member(&room, user).await.unwrap();
    }
    // Ann on node a only; Bob on a and on b.
    let (a_id, b_id) = (node_a.node, node_b.node);
    assert!(backend_a
        .presence
        .enter(&room, &ann, a_id, 1)
        .await
        .unwrap());
    assert!(backend_a
        .presence
        .enter(&room, &bob, a_id, 2)
        .await
        .unwrap());
    assert!(!backend_b
        .presence
        .enter(&room, &bob, b_id, 3)
        .await
        .unwrap());

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut listener = client.get_async_pubsub().await.unwrap();
    listener
        .subscribe(node_a.keys.room_channel(&room))
        .await
        .unwrap();
    let mut published = listener.into_on_message();
    let mut next_system = async || {
        let message = tokio::time::timeout(Duration::from_secs(2), published.next())
            .await
            .ok()??;
        let payload: Vec<u8> = message.get_payload().ok()?;
        let text = String::from_utf8_lossy(&payload).into_owned();
        let event = ["user_left", "user_joined"]
            .into_iter()
            .find(|e| text.contains(&format!("\"event\":\"{e}\"")))?;
        let user = ["ann", "bob"]
            .into_iter()
            .find(|u| text.contains(&format!("\"id\":\"{u}\"")))?;
        Some((event, user))
    };

    // Node a looks dead (its beat two minutes old); node b reaps it.
    let mut conn = redis.conn().await;
    let old = crate::protocol::now_ms() - 120_000;
    let _: () = conn
        .zadd("roomcast:nodes", a_id.to_string(), old)
        .await
        .unwrap();
    reaper::reap_dead_nodes(&node_b, &mut node_b.cmd.clone())
        .await
        .unwrap();
    assert_eq!(next_system().await, Some(("user_left", "ann")));
    let mark: bool = conn
        .exists(format!("roomcast:node:{{{a_id}}}:reaped"))
        .await
        .unwrap();
    assert!(mark, "the reap marks the node");

    // Node a was alive: its reconcile (before its beat lists it again, even) restores its
    // connections and, the mark being there, announces Ann back; then clears the mark.
    let mut cmd_a = node_a.cmd.clone();
    heartbeat::reconcile(&node_a, &mut cmd_a).await.unwrap();
    assert_eq!(next_system().await, Some(("user_joined", "ann")));
    let mark: bool = conn
        .exists(format!("roomcast:node:{{{a_id}}}:reaped"))
        .await
        .unwrap();
    assert!(!mark, "a whole reconcile clears the mark");
    heartbeat::heartbeat(&node_a, &mut cmd_a).await.unwrap();
    let counts: (Option<i64>, Option<i64>) = (
        conn.hget("roomcast:room:{r}:online", "ann").await.unwrap(),
        conn.hget("roomcast:room:{r}:online", "bob").await.unwrap(),
    );
    assert_eq!(counts, (Some(1), Some(2)));

    // Once: the next rounds say nothing.
    for _ in 0..2 {
        heartbeat::heartbeat(&node_a, &mut cmd_a).await.unwrap();
        heartbeat::reconcile(&node_a, &mut cmd_a).await.unwrap();
    }
    // And a reaper that read the dead list before node a beat again does nothing.
    let stale = super::presence::sync_room(
        &node_b,
        &mut node_b.cmd.clone(),
        &room,
        a_id,
        &[],
        super::presence::SyncBy::Reaper { deadline: old },
    )
    .await
    .unwrap();
    assert_eq!(stale, (0, 0));
    assert_eq!(next_system().await, None);
    let held: Option<String> = conn
        .hget(format!("roomcast:room:{{r}}:conns:{a_id}"), 1)
        .await
        .unwrap();
    assert_eq!(held.as_deref(), Some("ann"));
}

#[tokio::test]
async fn share_a_room_skips_expired_rooms_within_its_bound() {
    let (redis, backend) = fresh().await;
    let (ann, bob) = (User::new("ann", "Ann"), User::new("bob", "Bob"));
    for id in ["gone", "live"] {
        let room = RoomId::new(id);
        public_room(&backend, &room).await;
        for user in [&ann, &bob] {
            backend.rooms.add_member(&room, user).await.unwrap();
        }
    }
    let share = || backend.rooms.share_a_room(&ann.id, &bob.id);
    let mut conn = redis.conn().await;
    let expire = |id: &'static str| {
        let mut conn = conn.clone();
        async move {
            for what in ["info", "members", "order"] {
                let _: i64 = conn
                    .del(format!("roomcast:room:{{{id}}}:{what}"))
                    .await
                    .unwrap();
            }
        }
    };
    expire("gone").await;
    assert!(share().await.unwrap(), "the live room is shared");
    expire("live").await;
    assert!(!share().await.unwrap(), "expired rooms are not");
    for user in ["ann", "bob"] {
        let left: usize = conn
            .zcard(format!("roomcast:user:{{{user}}}:rooms"))
            .await
            .unwrap();
        assert_eq!(left, 0, "{user}'s index dropped them");
    }
    // Past the bound (both in more rooms than are read one by one), a common entry counts
    // without the check: the work stays bounded.
    let entries: Vec<(i64, String)> = (0..1_001)
        .map(|i| (0, format!("00000000000001700000|filler-{i:04}")))
        .collect();
    for user in ["ann", "bob"] {
        let _: usize = conn
            .zadd_multiple(format!("roomcast:user:{{{user}}}:rooms"), &entries)
            .await
            .unwrap();
    }
    assert!(share().await.unwrap());
}

/// A `join` with `since` whose messages right after it the stream's length cap trimmed: the
/// replay says it is not the whole story (the join sends `resync`), while one from a message
/// the stream still holds does not.
#[tokio::test]
async fn a_replay_from_a_trimmed_message_says_so() {
    use super::{RedisBackend, RedisConfig};
    use crate::backend::broker::{NewRoomMessage, Origin};

    let redis = TestRedis::start().await;
    let config = RedisConfig {
        history_per_room: 5,
        ..RedisConfig::default()
    };
    let node = RedisBackend::connect(&redis.url, config).await.unwrap();
    let id = node.shared.node;
    let backend = node.into_backend();
    let room = RoomId::new("r");
    public_room(&backend, &room).await;
    let mut ids = Vec::new();
    // `MAXLEN ~` trims whole blocks of about 100: 400 messages leave a trimmed start.
    for i in 0..400 {
        let message = NewRoomMessage {
            origin: Origin {
                node: id,
                conn: None,
            },
            room: room.clone(),
            from: User::new("ann", "Ann"),
            body: format!("m{i}"),
            ts: crate::protocol::now_ms(),
            dedup: None,
            quota: None,
        };
        ids.push(
            backend
                .broker
                .publish_room_message(message)
                .await
                .unwrap()
                .id,
        );
    }
    let (replay, more) = backend.history.after(&room, &ids[0], 1_000).await.unwrap();
    assert!(more, "the replay from a trimmed message says it has a hole");
    assert!(replay.len() < 399, "{}", replay.len());
    let (replay, more) = backend
        .history
        .after(&room, &ids[395], 1_000)
        .await
        .unwrap();
    assert_eq!((replay.len(), more), (4, false));
}
