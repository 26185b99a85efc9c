//! Contract v2 access control: identities and tokens, private rooms and invites, paginated
//! lists, and the policy hooks, over REST and the WebSocket alike; several instances on one
//! real Redis.

use std::time::Duration;

use chat_tower::{
    chat_core::{
        backend::redis::RedisConfig,
        hooks::{Decision, Hooks, MessageEvent, Moderation, RoomEvent},
        Caller, User,
    },
    ChatBuilder, TokenSigner,
};
use roomcast_tests::{redis_instance, redis_server::RedisServer, Api, Client, Server};
use serde_json::{json, Value};

/// A page of `GET /rooms` as the room ids it lists.
async fn listed(api: &Api) -> Vec<String> {
    let (status, page) = api.get("/rooms?limit=200").await;
    assert_eq!(status, 200, "{page}");
    page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["roomId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_endpoint_but_the_documents_needs_a_valid_token() {
    let secret = b"a secret shared by nobody else".to_vec();
    let server = Server::start(ChatBuilder::new().token_secret(secret.clone())).await;
    let room = server.api.create_room("r").await;
    let valid = server.api.token.clone().unwrap();
    let forged = {
        let (payload, sig) = valid.split_once('.').unwrap();
        // Another user's name in the claims, the old signature.
        let claims = String::from_utf8(
            base64_decode(payload), //
        )
        .unwrap()
        .replace("tester", "admin");
        format!("{}.{sig}", base64_encode(claims.as_bytes()))
    };
    let truncated = valid[..valid.len() - 4].to_owned();
    let expired = TokenSigner::new(secret.clone(), Duration::ZERO)
        .issue(&Caller::guest(User::new("u-old", "old")))
        .0;
    let other_chat = TokenSigner::new(b"another chat".to_vec(), Duration::from_secs(60))
        .issue(&Caller::guest(User::new("u", "u")))
        .0;
    let invite = TokenSigner::new(secret, Duration::from_secs(60))
        .invite(&room.as_str().into(), Duration::from_secs(60))
        .0;
    // Expiry has a one-second resolution.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let anonymous = server.api.anonymous();
    let apis = [
        ("anonymous", anonymous.clone()),
        ("forged", anonymous.with_token(&forged)),
        ("truncated", anonymous.with_token(&truncated)),
        ("expired", anonymous.with_token(&expired)),
        ("another chat's", anonymous.with_token(&other_chat)),
        ("an invite as a token", anonymous.with_token(&invite)),
    ];
    for (what, api) in &apis {
        let requests = [
            api.post("/create-room", None).await,
            api.get("/rooms").await,
            api.get(&format!("/rooms/{room}")).await,
            api.get(&format!("/rooms/{room}/members")).await,
            api.get(&format!("/rooms/{room}/messages")).await,
            api.post(&format!("/rooms/{room}/invites"), None).await,
            api.delete(&format!("/rooms/{room}/members/me")).await,
            api.post(&format!("/join-room/{room}"), None).await,
        ];
        for (status, problem) in requests {
            assert_eq!(status, 401, "{what}: {problem}");
            assert_eq!(problem["code"], "unauthorized", "{what}: {problem}");
        }
        let path = match &api.token {
            Some(token) => format!("/ws?token={token}"),
            None => "/ws".to_owned(),
        };
        let ws = Client::try_connect(server.addr, &path, &[]);
        assert_eq!(ws.await.err(), Some(401), "{what} WebSocket");
    }
    // A REST token in the query string is not read (it would land in access logs).
    let (status, _) = anonymous.get(&format!("/rooms?token={valid}")).await;
    assert_eq!(status, 401);
    // The documents are public; the valid token works everywhere.
    assert_eq!(anonymous.get("/openapi.json").await.0, 200);
    assert_eq!(anonymous.get("/asyncapi.json").await.0, 200);
    assert_eq!(server.api.get("/rooms").await.0, 200);
    assert!(
        Client::try_connect(server.addr, &format!("/ws?token={valid}"), &[])
            .await
            .is_ok()
    );
    let bearer = Client::try_connect(
        server.addr,
        "/ws",
        &[("authorization", &format!("Bearer {valid}"))],
    )
    .await;
    assert!(
        bearer.is_ok(),
        "the WebSocket takes Authorization: Bearer too"
    );
}

#[tokio::test]
async fn guests_get_a_token_for_a_clean_name() {
    let server = Server::start(ChatBuilder::new()).await;
    let api = server.api.anonymous();
    let (status, guest) = api.post("/guests", Some(json!({"name": "  Zoë  "}))).await;
    assert_eq!(status, 201, "{guest}");
    assert_eq!(guest["user"]["name"], "Zoë");
    assert!(guest["expiresAt"].as_str().unwrap().ends_with('Z'));
    // NFC: "e" + combining diaeresis is stored as "ë".
    let (_, decomposed) = api
        .post("/guests", Some(json!({"name": "Zoe\u{308}"})))
        .await;
    assert_eq!(decomposed["user"]["name"], "Zoë");
    for bad in [
        "",
        "   ",
        "a\u{202E}b",
        "zero\u{200B}width",
        "tab\there",
        "\u{E000}",
        &"x".repeat(33),
    ] {
        let (status, problem) = api.post("/guests", Some(json!({ "name": bad }))).await;
        assert_eq!(status, 422, "{bad:?}: {problem}");
    }
    let (status, _) = server
        .api
        .post("/create-room", Some(json!({"name": "evil\u{202E}gpj.exe"})))
        .await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn lists_page_newest_first_and_bad_cursors_are_400() {
    let server = Server::start(ChatBuilder::new()).await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(server.api.create_room(&format!("room {i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/rooms?limit=2&cursor={c}"),
            None => "/rooms?limit=2".into(),
        };
        let (status, page) = server.api.get(&query).await;
        assert_eq!(status, 200, "{page}");
        let rooms = page["rooms"].as_array().unwrap();
        assert!(rooms.len() <= 2);
        seen.extend(
            rooms
                .iter()
                .map(|r| r["roomId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made, "every room once, newest first");
    for bad in [
        "/rooms?cursor=garbage",
        "/rooms?limit=0",
        "/rooms?limit=201",
        "/rooms?limit=x",
    ] {
        assert_eq!(server.api.get(bad).await.0, 400, "{bad}");
    }
    // Members page too: the creator and three guests.
    let room = &made[0];
    for name in ["a", "b", "c"] {
        server.api.join_room(room, name).await;
    }
    let (_, first) = server
        .api
        .get(&format!("/rooms/{room}/members?limit=3"))
        .await;
    assert_eq!(first["members"].as_array().unwrap().len(), 3);
    let next = first["nextCursor"].as_str().unwrap();
    let (_, second) = server
        .api
        .get(&format!("/rooms/{room}/members?limit=3&cursor={next}"))
        .await;
    assert_eq!(second["members"][0]["name"], "c");
    assert_eq!(second["nextCursor"], Value::Null);
    assert_eq!(
        server
            .api
            .get(&format!("/rooms/{room}/members?cursor=nope"))
            .await
            .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_rooms_exist_only_for_members_and_invites_work_on_every_instance() {
    let redis = RedisServer::start().await;
    let a = redis_instance(&redis, RedisConfig::default()).await;
    let b = redis_instance(&redis, RedisConfig::default()).await;
    let (alice, alice_user) = a.api.guest("alice").await;
    let (bob, _) = b.api.guest("bob").await;
    let room = alice.create_room_with("secret plans", "private").await;
    let public = alice.create_room("lobby").await;

    // To bob the private room does not exist: not listed, not readable, not joinable.
    assert_eq!(listed(&bob).await, vec![public.clone()]);
    for path in [
        format!("/rooms/{room}"),
        format!("/rooms/{room}/members"),
        format!("/rooms/{room}/messages"),
    ] {
        let (status, problem) = bob.get(&path).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("room_not_found")),
            "{path}"
        );
    }
    assert_eq!(
        bob.post(&format!("/rooms/{room}/invites"), None).await.0,
        404
    );
    assert_eq!(bob.post(&format!("/join-room/{room}"), None).await.0, 404);
    let (_, bob_join_public) = bob.post(&format!("/join-room/{public}"), None).await;
    let bob_token = bob_join_public["token"].as_str().unwrap().to_owned();
    let mut bob_ws = Client::connect(b.addr, &format!("/ws?token={bob_token}")).await;
    bob_ws.send(json!({"type": "join", "room": room})).await;
    bob_ws.expect_error("room_not_found").await;

    // An invite for another room admits nobody here; alice's invite (made on A) works on B.
    let (status, other_invite) = alice.post(&format!("/rooms/{public}/invites"), None).await;
    assert_eq!(status, 201);
    let (status, _) = bob
        .post(
            &format!("/join-room/{room}"),
            Some(json!({"invite": other_invite["invite"]})),
        )
        .await;
    assert_eq!(status, 404, "an invite to another room");
    let (status, invite) = alice.post(&format!("/rooms/{room}/invites"), None).await;
    assert_eq!(status, 201, "{invite}");
    let (status, joined) = bob
        .post(
            &format!("/join-room/{room}"),
            Some(json!({"invite": invite["invite"]})),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    let mut listed_to_bob = listed(&bob).await;
    listed_to_bob.sort();
    let mut both = vec![room.clone(), public.clone()];
    both.sort();
    assert_eq!(listed_to_bob, both);

    // Members talk across instances.
    let alice_token = alice.token.clone().unwrap();
    let mut alice_ws = Client::connect(a.addr, &format!("/ws?token={alice_token}")).await;
    alice_ws.join(&room).await;
    bob_ws.join(&room).await;
    alice_ws.expect("system").await;
    let said = bob_ws.say(&room, "in on it").await;
    let heard = alice_ws.expect("message").await;
    assert_eq!(heard["id"], said["id"]);
    let (status, details) = bob.get(&format!("/rooms/{room}")).await;
    assert_eq!((status, &details["memberCount"]), (200, &json!(2)));
    assert_eq!(details["visibility"], "private");

    // Leaving for good: gone from bob's list, and the room is gone for him again.
    bob_ws.send(json!({"type": "leave", "room": room})).await;
    bob_ws.expect("left").await;
    assert_eq!(
        bob.delete(&format!("/rooms/{room}/members/me")).await.0,
        204
    );
    assert_eq!(
        bob.delete(&format!("/rooms/{room}/members/me")).await.0,
        404
    );
    assert_eq!(listed(&bob).await, vec![public.clone()]);
    assert_eq!(bob.get(&format!("/rooms/{room}")).await.0, 404);
    bob_ws.send(json!({"type": "join", "room": room})).await;
    bob_ws.expect_error("room_not_found").await;
    let _ = alice_user;
}

#[tokio::test]
async fn the_hooks_decide_over_rest_and_the_websocket_alike() {
    let policy = Hooks::new()
        .on_create_room(|event, _chat| async move {
            if event.caller.guest && event.name.starts_with("official") {
                Decision::Deny("only staff name rooms official".into())
            } else {
                Decision::Allow
            }
        })
        .on_join(|event: RoomEvent, _chat| async move {
            if event.room.name == "no guests" && event.caller.guest {
                Decision::Deny("log in to join".into())
            } else {
                Decision::Allow
            }
        })
        .on_read(|event: RoomEvent, _chat| async move {
            if event.room.name == "sealed" {
                Decision::Deny("sealed".into())
            } else {
                Decision::Allow
            }
        })
        .on_moderate(|event: MessageEvent, _chat| async move {
            if event.body.contains("spam") {
                Moderation::Reject("no spam".into())
            } else {
                Moderation::Rewrite(event.body.replace("darn", "d**n"))
            }
        });
    let server = Server::start(ChatBuilder::new().policy(policy)).await;
    let (status, problem) = server
        .api
        .post("/create-room", Some(json!({"name": "official news"})))
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let no_guests = server.api.create_room("no guests").await;
    let sealed = server.api.create_room("sealed").await;
    let open = server.api.create_room("open").await;

    // Join: refused over REST and over the WebSocket alike.
    let (guest, _) = server.api.guest("guest").await;
    let (status, problem) = guest.post(&format!("/join-room/{no_guests}"), None).await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (403, Some("forbidden: log in to join"))
    );
    let token = guest.token.clone().unwrap();
    let mut ws = Client::connect(server.addr, &format!("/ws?token={token}")).await;
    ws.send(json!({"type": "join", "room": no_guests})).await;
    assert_eq!(
        ws.expect_error("forbidden").await["message"],
        "forbidden: log in to join"
    );

    // Read: refused as "no such room".
    assert_eq!(guest.get(&format!("/rooms/{sealed}")).await.0, 404);
    assert_eq!(guest.get(&format!("/rooms/{sealed}/messages")).await.0, 404);

    // Moderation: rewritten, or refused with its reason.
    let (listener, _) = server.guest_in_room(&open, "listener").await;
    let mut listener = listener;
    ws.join(&open).await;
    listener.expect("system").await;
    ws.say(&open, "oh darn").await;
    assert_eq!(listener.expect("message").await["body"], "oh d**n");
    ws.send(json!({"type": "message", "room": open, "body": "buy spam", "clientMsgId": "s"}))
        .await;
    let refused = ws.expect_error("forbidden").await;
    assert_eq!(
        (refused["clientMsgId"].as_str(), refused["message"].as_str()),
        (Some("s"), Some("forbidden: no spam"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_hold_on_every_instance_after_redis_loses_its_data() {
    let redis = RedisServer::start().await;
    let ttl = RedisConfig {
        presence_ttl: Duration::from_secs(1),
        ..RedisConfig::default()
    };
    let a = redis_instance(&redis, ttl.clone()).await;
    let b = redis_instance(&redis, ttl.clone()).await;
    let (alice, _) = a.api.guest("alice").await;
    let token = alice.token.clone().unwrap();
    assert_eq!(b.api.with_token(&token).get("/rooms").await.0, 200);

    let mut conn = redis.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // The running instances write the secret back at their next heartbeat.
    let mut restored = false;
    for _ in 0..50 {
        let secret: Option<String> = redis::cmd("GET")
            .arg("roomcast:secret")
            .query_async(&mut conn)
            .await
            .unwrap();
        if secret.is_some() {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restored, "no instance wrote the secret back");
    // An instance started now (b restarting) signs and accepts the same tokens.
    drop(b);
    let b2 = redis_instance(&redis, ttl).await;
    for server in [&a, &b2] {
        let api = server.api.with_token(&token);
        assert_eq!(api.get("/rooms").await.0, 200);
        assert!(
            Client::try_connect(server.addr, &format!("/ws?token={token}"), &[])
                .await
                .is_ok()
        );
    }
    let (b2_guest, _) = b2.api.guest("bea").await;
    let b2_token = b2_guest.token.unwrap();
    assert_eq!(a.api.with_token(&b2_token).get("/rooms").await.0, 200);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
