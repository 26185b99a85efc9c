//! The PostgreSQL history archive on real servers: room history pages back past what Redis
//! keeps, on every instance, with the same ids; the chat carries on while PostgreSQL is
//! stalled or down, history requests fail rather than hang or skip, and what was sent
//! meanwhile is archived once it is back; a room Redis lost is read from the archive.

use std::time::{Duration, Instant};

use chat_tower::{chat_core::backend::redis::RedisConfig, ChatBuilder};
use roomcast_tests::{
    postgres_server::PostgresServer, redis_server::RedisServer, unlimited, Client, Server,
};
use serde_json::{json, Value};

/// An instance on `redis` keeping 5 messages per room (Redis trims to about that, 100 at a
/// time), archiving into `pg`.
async fn instance(redis: &RedisServer, pg: &PostgresServer) -> Server {
    let config = RedisConfig {
        history_per_room: 5,
        ..RedisConfig::default()
    };
    let builder = ChatBuilder::new()
        .config(unlimited())
        .redis_with(&redis.url(), config)
        .await
        .unwrap()
        .postgres_archive(&pg.url())
        .await
        .unwrap();
    Server::start(builder).await
}

async fn archived(pg: &PostgresServer) -> i64 {
    let client = pg.client().await;
    let row = client
        .query_one("SELECT count(*) FROM roomcast_messages", &[])
        .await
        .unwrap();
    row.get(0)
}

/// Waits until the archive holds `n` messages.
async fn until_archived(pg: &PostgresServer, n: i64) {
    let started = Instant::now();
    loop {
        let have = archived(pg).await;
        if have == n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the archive holds {have} messages, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pages the room's history back from the newest, `limit` at a time: the ids, oldest first,
/// or the status of the first page that was not a 200.
async fn all_ids(
    server: &Server,
    token: &str,
    room: &str,
    limit: usize,
) -> Result<Vec<String>, u16> {
    paged_ids(server, token, &format!("/rooms/{room}/messages"), limit).await
}

/// [`all_ids`] of any history at `path` (a room's, a conversation's).
async fn paged_ids(
    server: &Server,
    token: &str,
    path: &str,
    limit: usize,
) -> Result<Vec<String>, u16> {
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..100 {
        let query = match &before {
            Some(id) => format!("?limit={limit}&before={id}"),
            None => format!("?limit={limit}"),
        };
        let (status, page) = server
            .api
            .with_token(token)
            .get(&format!("{path}{query}"))
            .await;
        if status != 200 {
            return Err(status);
        }
        let ids = page["messages"].as_array().unwrap();
        pages.push(
            ids.iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect(),
        );
        match &page["nextBefore"] {
            Value::String(next) => before = Some(next.clone()),
            _ => break,
        }
    }
    pages.reverse();
    Ok(pages.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_goes_on_from_the_archive_past_redis_on_every_instance_and_after_an_outage() {
    let redis = RedisServer::start().await;
    let mut pg = PostgresServer::start().await;
    let a = instance(&redis, &pg).await;
    let b = instance(&redis, &pg).await;
    let room = a.api.create_room("archived").await;
    let joined = a.api.join_room(&room, "alice").await;
    let token = joined["token"].as_str().unwrap().to_owned();
    let mut alice = Client::connect(a.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    let mut sent = Vec::new();
    for i in 0..250 {
        let ack = alice.say(&room, &format!("m{i}")).await;
        sent.push(ack["id"].as_str().unwrap().to_owned());
    }
    until_archived(&pg, 250).await;
    // Redis trimmed most of them: the pages cross from Redis into the archive.
    let mut conn = redis.conn().await;
    let kept: usize = redis::cmd("XLEN")
        .arg(format!("roomcast:room:{{{room}}}:log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(kept < 250, "Redis kept {kept}");
    for (server, limit) in [(&b, 200), (&a, 33), (&b, 7)] {
        assert_eq!(
            all_ids(server, &token, &room, limit).await,
            Ok(sent.clone())
        );
    }

    // PostgreSQL stalls (frozen, its connections open): messages still go out; a history
    // request that needs the archive fails after the statement's time limit, it does not
    // hang; once it thaws, what was sent meanwhile is archived.
    pg.pause();
    let ack = alice.say(&room, "during a stall").await;
    sent.push(ack["id"].as_str().unwrap().to_owned());
    let paged = tokio::time::timeout(Duration::from_secs(30), all_ids(&a, &token, &room, 200))
        .await
        .expect("history waits for a stalled archive");
    assert_eq!(paged, Err(503));
    pg.resume();
    until_archived(&pg, 251).await;
    assert_eq!(all_ids(&a, &token, &room, 200).await, Ok(sent.clone()));

    // PostgreSQL goes away: messages still go out and are acknowledged; the recent page is
    // served from Redis, and paging on into the archive is a 503, not the end of history.
    pg.stop().await;
    let outage = Instant::now();
    for i in 250..500 {
        let ack = alice.say(&room, &format!("m{i}")).await;
        sent.push(ack["id"].as_str().unwrap().to_owned());
    }
    let (status, page) = b
        .api
        .with_token(&token)
        .get(&format!("/rooms/{room}/messages?limit=200"))
        .await;
    assert_eq!(status, 200, "{page}");
    let last = page["messages"].as_array().unwrap().last().unwrap()["id"].clone();
    assert_eq!(last, sent[500].as_str());
    assert!(page["nextBefore"].is_string(), "{}", page["nextBefore"]);
    assert_eq!(all_ids(&b, &token, &room, 200).await, Err(503));

    // Down for four seconds: the writer backs off (it tries at 0.1, 0.3, 0.7, 1.5, 3.1 s, then
    // at 6.3 s), so it is still waiting when the pages below are asked.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(outage.elapsed())).await;

    // Back, but the writer has not caught up yet, and Redis has trimmed the first of the
    // messages sent meanwhile: the instance holding them answers 503 until it has, never a
    // history with a gap.
    pg.restart().await;
    // (Past the second in which requests share the writer's last failed connection attempt.)
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    loop {
        match all_ids(&a, &token, &room, 200).await {
            Err(503) => {}
            Ok(ids) => {
                assert_eq!(ids, sent, "a history with a gap");
                break;
            }
            Err(status) => panic!("{status}"),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What was sent meanwhile is archived (the writer kept its batch), once each.
    until_archived(&pg, 501).await;
    assert_eq!(all_ids(&a, &token, &room, 200).await, Ok(sent.clone()));

    // Redis loses the room's history (a restart without persistence, or an age cap passed):
    // the archive still has it, from the newest.
    let _: () = redis::cmd("DEL")
        .arg(format!("roomcast:room:{{{room}}}:log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(all_ids(&b, &token, &room, 64).await, Ok(sent));
    alice.barrier(&room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_go_on_from_the_archive_past_redis_on_every_instance() {
    let redis = RedisServer::start().await;
    let pg = PostgresServer::start().await;
    let a = instance(&redis, &pg).await;
    let b = instance(&redis, &pg).await;
    // Ann on A and Bob on B share a room (the default policy for direct messages).
    let room = a.api.create_room("shared").await;
    let (ann, bob) = (
        a.api.join_room(&room, "ann").await,
        b.api.join_room(&room, "bob").await,
    );
    let mut ann_ws = Client::connect(a.addr, ann["websocketUrl"].as_str().unwrap()).await;
    let mut bob_ws = Client::connect(b.addr, bob["websocketUrl"].as_str().unwrap()).await;
    ann_ws.join(&room).await;
    bob_ws.join(&room).await;
    ann_ws.await_arrivals(&room, &["bob".to_owned()]).await;
    let mut sent = Vec::new();
    for i in 0..40 {
        let (from, to, peer) = if i % 3 == 2 {
            (&mut bob_ws, &mut ann_ws, &ann)
        } else {
            (&mut ann_ws, &mut bob_ws, &bob)
        };
        from.send(json!({"type": "direct", "to": peer["user"]["id"], "body": format!("d{i}")}))
            .await;
        sent.push(from.expect("ack").await["id"].as_str().unwrap().to_owned());
        assert_eq!(to.expect("direct").await["body"], format!("d{i}"));
    }
    let started = Instant::now();
    loop {
        let row = pg
            .client()
            .await
            .query_one("SELECT count(*) FROM roomcast_messages_dm", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 40 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not archived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Redis keeps 5 of them; the rest come from the archive, for both users, on both
    // instances, in the order they were sent.
    let (ann_id, bob_id) = (
        ann["user"]["id"].as_str().unwrap(),
        bob["user"]["id"].as_str().unwrap(),
    );
    let (lo, hi) = if ann_id <= bob_id {
        (ann_id, bob_id)
    } else {
        (bob_id, ann_id)
    };
    let mut conn = redis.conn().await;
    let kept: usize = redis::cmd("ZCARD")
        .arg(format!("roomcast:dm:{{{}:{lo}:{hi}}}", lo.len()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 5);
    let ann_token = ann["token"].as_str().unwrap();
    let bob_token = bob["token"].as_str().unwrap();
    for (server, token, peer, limit) in [
        (&a, ann_token, bob_id, 200),
        (&b, bob_token, ann_id, 7),
        (&b, ann_token, bob_id, 5),
    ] {
        let path = format!("/directs/{peer}/messages");
        assert_eq!(
            paged_ids(server, token, &path, limit).await,
            Ok(sent.clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_may_be_any_name_that_fits_and_a_refusal_says_why() {
    use chat_tower::chat_core::{
        archive::{
            postgres::{ArchiveConfig, PostgresArchive},
            Archive, Archived,
        },
        error::BackendError,
        protocol::{MessageId, RoomId},
    };
    let pg = PostgresServer::start().await;
    let config = |table: &str| ArchiveConfig {
        table: table.into(),
        ..ArchiveConfig::default()
    };
    // A reserved word, and the longest name whose index name still fits.
    for table in ["order", &"t".repeat(52)] {
        let archive = PostgresArchive::connect(&pg.url(), config(table))
            .await
            .unwrap();
        let room = RoomId::new("r");
        archive.keep(Archived {
            room: room.clone(),
            // (A recent id: the age trim, which runs at once, deletes old ones.)
            id: MessageId::new(format!("{}-0", chat_tower::chat_core::protocol::now_ms())),
            frame: "{}".into(),
        });
        let started = Instant::now();
        while archive
            .page(&room, None, 10)
            .await
            .unwrap()
            .messages
            .is_empty()
        {
            assert!(started.elapsed() < Duration::from_secs(30), "{table}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let too_long = PostgresArchive::connect(&pg.url(), config(&"t".repeat(53))).await;
    assert!(
        matches!(too_long, Err(BackendError::Archive(_))),
        "{too_long:?}"
    );
    // A database refusal carries the server's own words, not only "db error".
    let refused = PostgresArchive::connect(&pg.url(), config("pg_class")).await;
    let Err(BackendError::Archive(why)) = refused else {
        panic!("{refused:?}");
    };
    assert!(why.contains("pg_class"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_database_refuses_is_dropped_alone_and_the_queue_is_bounded_in_bytes() {
    use chat_tower::chat_core::{
        archive::{
            postgres::{ArchiveConfig, PostgresArchive},
            Archive, Archived, ArchivedDirect,
        },
        protocol::{now_ms, MessageId, RoomId, UserId},
    };
    let pg = PostgresServer::start().await;
    let config = ArchiveConfig {
        queue_bytes: 4096,
        ..ArchiveConfig::default()
    };
    let archive = PostgresArchive::connect(&pg.url(), config).await.unwrap();
    let room = RoomId::new("r");
    let kept = |n: i64| Archived {
        room: room.clone(),
        id: MessageId::new(format!("{}-{n}", now_ms())),
        frame: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(180)).into(),
    };
    let direct = |from: &str| ArchivedDirect {
        users: (UserId::new(from), UserId::new("zed")),
        id: MessageId::new(uuid::Uuid::now_v7().to_string()),
        ts: now_ms(),
        frame: "{}".into(),
    };
    // A user id with a NUL, which a text column cannot hold (a host's identity may say
    // anything): PostgreSQL refuses the batch for its data. The messages beside it and after
    // it are archived all the same.
    archive.keep_direct(direct("bad\0id"));
    archive.keep_direct(direct("ann"));
    archive.keep(kept(1));
    let started = Instant::now();
    loop {
        let rooms = archive.page(&room, None, 10).await.unwrap().messages.len();
        let (ann, zed) = (UserId::new("ann"), UserId::new("zed"));
        let directs = archive
            .direct_page((&ann, &zed), None, 10)
            .await
            .unwrap()
            .messages
            .len();
        if (rooms, directs) == (1, 1) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "archived: {rooms} room messages, {directs} direct"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // While the database is stalled, what waits is bounded by its bytes (4 KiB here, about
    // 14 of these 200-byte frames with their ids), not only by the count (100,000): the rest
    // is dropped, and once it is back what was queued is written.
    pg.pause();
    for n in 2..=201 {
        archive.keep(kept(n));
    }
    pg.resume();
    let started = Instant::now();
    let mut last = 0;
    loop {
        let have = archived(&pg).await;
        if have > 1 && have == last {
            break;
        }
        last = have;
        assert!(started.elapsed() < Duration::from_secs(30), "{have}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!((2..=16).contains(&last), "{last} of 201 archived");
}
