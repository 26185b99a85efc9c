//! One instance, in memory, over real sockets: the delivery rules of contract v1.

use chat_tower::ChatBuilder;
use roomcast_tests::{Client, Server};
use serde_json::json;

async fn room_with_two() -> (
    Server,
    String,
    Client,
    serde_json::Value,
    Client,
    serde_json::Value,
) {
    let server = Server::start(ChatBuilder::new()).await;
    let room = server.api.create_room("lobby").await;
    let (mut alice, alice_user) = server.guest_in_room(&room, "alice").await;
    let (bob, bob_user) = server.guest_in_room(&room, "bob").await;
    let joined = alice.expect("system").await;
    assert_eq!(joined["event"], "user_joined");
    assert_eq!(joined["user"], bob_user);
    (server, room, alice, alice_user, bob, bob_user)
}

#[tokio::test]
async fn two_users_chat_with_ack_and_no_echo() {
    let (_server, room, mut alice, alice_user, mut bob, _) = room_with_two().await;
    let ack = alice.say(&room, "hello bob").await;
    let message = bob.expect("message").await;
    assert_eq!(message["body"], "hello bob");
    assert_eq!(message["room"], room.as_str());
    assert_eq!(message["from"], alice_user);
    assert_eq!(message["id"], ack["id"]);
    assert_eq!(message["ts"], ack["ts"]);
    // Bob has it, so the fan-out that would have echoed it to Alice is done: Alice's next
    // frame must be the barrier's reply, not her own message.
    alice.barrier(&room).await;
    bob.say(&room, "hi alice").await;
    assert_eq!(alice.expect("message").await["body"], "hi alice");
    bob.barrier(&room).await;
}

#[tokio::test]
async fn joined_lists_the_members_online() {
    let (server, room, _alice, alice_user, _bob, bob_user) = room_with_two().await;
    let (_carol, carol_user) = {
        let joined = server.api.join_room(&room, "carol").await;
        let mut client =
            Client::connect(server.addr, joined["websocketUrl"].as_str().unwrap()).await;
        let reply = client.join(&room).await;
        let members = reply["members"].as_array().unwrap();
        for user in [&alice_user, &bob_user, &joined["user"]] {
            assert!(members.contains(user), "{user} missing from {reply}");
        }
        assert_eq!(members.len(), 3);
        (client, joined["user"].clone())
    };
    let (status, details) = server.api.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200);
    // The room's creator (the api's "tester", offline) and the three who joined.
    let members = details["members"].as_array().unwrap();
    assert_eq!((members.len(), &details["memberCount"]), (4, &json!(4)));
    let online: Vec<_> = members.iter().filter(|m| m["online"] == true).collect();
    assert_eq!(online.len(), 3, "{details}");
    assert!(online.iter().any(|m| m["id"] == carol_user["id"]));
}

#[tokio::test]
async fn second_tab_receives_and_system_events_are_per_user() {
    let (server, room, mut alice, alice_user, mut bob, bob_user) = room_with_two().await;
    // A third user with two tabs: one user_joined, then nothing for the second tab.
    let bob_join = server.api.join_room(&room, "bob2").await;
    let bob2_user = bob_join["user"].clone();
    let token = bob_join["token"].as_str().unwrap().to_owned();
    let mut bob2_tab1 = server.tab(&token, &room).await;
    assert_eq!(alice.expect("system").await["user"], bob2_user);
    assert_eq!(bob.expect("system").await["user"], bob2_user);
    let mut bob2_tab2 = server.tab(&token, &room).await;
    // The second tab of the same user: nobody hears about it.
    alice.barrier(&room).await;
    bob.barrier(&room).await;
    bob2_tab1.barrier(&room).await;

    // A message from tab 1 reaches tab 2 (same user, other connection) and the others.
    let ack = bob2_tab1.say(&room, "from tab 1").await;
    for client in [&mut bob2_tab2, &mut alice, &mut bob] {
        let message = client.expect("message").await;
        assert_eq!(message["id"], ack["id"]);
        assert_eq!(message["from"], bob2_user);
    }
    bob2_tab1.barrier(&room).await;

    // Closing one tab: no user_left. Closing the last: exactly one.
    bob2_tab2.close().await;
    alice.barrier(&room).await;
    bob2_tab1.send(json!({"type": "leave", "room": room})).await;
    assert_eq!(bob2_tab1.expect("left").await["room"], room.as_str());
    let left = alice.expect("system").await;
    assert_eq!(left["event"], "user_left");
    assert_eq!(left["user"], bob2_user);
    assert!(left["ts"].is_i64());
    assert_eq!(bob.expect("system").await["event"], "user_left");
    alice.barrier(&room).await;
    bob.barrier(&room).await;

    // A disconnect counts as leaving.
    bob.close().await;
    let left = alice.expect("system").await;
    assert_eq!(
        (left["event"].as_str(), &left["user"]),
        (Some("user_left"), &bob_user)
    );
    let _ = alice_user;
}

#[tokio::test]
async fn direct_messages_both_ways_and_to_the_senders_other_tabs() {
    let (server, room, mut alice, alice_user, mut bob, bob_user) = room_with_two().await;
    let (status, rooms) = server.api.get("/rooms").await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"][0]["online"], 2);
    alice
        .send(json!({"type": "direct", "to": bob_user["id"], "body": "psst", "clientMsgId": "d1"}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["clientMsgId"], "d1");
    let dm = bob.expect("direct").await;
    assert_eq!(dm["body"], "psst");
    assert_eq!(dm["from"], alice_user);
    assert_eq!(dm["to"], bob_user["id"]);
    assert_eq!(dm["id"], ack["id"]);
    bob.send(json!({"type": "direct", "to": alice_user["id"], "body": "back"}))
        .await;
    let ack = bob.expect("ack").await;
    assert!(ack.get("clientMsgId").is_none());
    assert_eq!(alice.expect("direct").await["body"], "back");
    alice.barrier(&room).await;
    bob.barrier(&room).await;
}

#[tokio::test]
async fn direct_message_reaches_every_tab_of_both_users() {
    let server = Server::start(ChatBuilder::new()).await;
    let room = server.api.create_room("dm").await;
    let a = server.api.join_room(&room, "ann").await;
    let b = server.api.join_room(&room, "ben").await;
    let (ta, tb) = (a["token"].as_str().unwrap(), b["token"].as_str().unwrap());
    let mut ann1 = server.tab(ta, &room).await;
    let mut ann2 = server.tab(ta, &room).await;
    let mut ben1 = server.tab(tb, &room).await;
    let mut ben2 = server.tab(tb, &room).await;
    for c in [&mut ann1, &mut ann2] {
        assert_eq!(c.expect("system").await["event"], "user_joined");
    }
    ann1.send(json!({"type": "direct", "to": b["user"]["id"], "body": "x"}))
        .await;
    ann1.expect("ack").await;
    for c in [&mut ben1, &mut ben2, &mut ann2] {
        let dm = c.expect("direct").await;
        assert_eq!(dm["body"], "x");
        assert_eq!(dm["from"], a["user"]);
    }
    ann1.barrier(&room).await;
}

#[tokio::test]
async fn direct_to_someone_offline_is_held_for_them_and_to_a_stranger_refused() {
    let (server, room, mut alice, alice_user, _bob, _) = room_with_two().await;
    let carol = server.api.join_room(&room, "carol").await;
    alice
        .send(json!({"type": "direct", "to": carol["user"]["id"], "body": "there?", "clientMsgId": "c9"}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(
        (&ack["clientMsgId"], &ack["held"]),
        (&json!("c9"), &json!(true))
    );
    // Carol's first connection gets it, before anything else, as it was sent.
    let carol_token = carol["token"].as_str().unwrap();
    let mut carol_tab = Client::connect(server.addr, &format!("/ws?token={carol_token}")).await;
    let held = carol_tab.expect("direct").await;
    assert_eq!(
        (&held["id"], &held["body"], &held["from"], &held["ts"]),
        (&ack["id"], &json!("there?"), &alice_user, &ack["ts"])
    );
    // Once: her next tab does not get it again, and she is reached live now.
    let mut carol_again = Client::connect(server.addr, &format!("/ws?token={carol_token}")).await;
    alice
        .send(json!({"type": "direct", "to": carol["user"]["id"], "body": "live"}))
        .await;
    let ack = alice.expect("ack").await;
    assert!(ack.get("held").is_none(), "{ack}");
    for tab in [&mut carol_tab, &mut carol_again] {
        assert_eq!(tab.expect("direct").await["body"], "live");
    }
    // Someone who shares no room with alice, or nobody at all: the default policy refuses
    // both alike, so a stranger learns nothing about which ids exist.
    alice
        .send(json!({"type": "direct", "to": "nobody-by-this-id", "body": "hm"}))
        .await;
    alice.expect_error("forbidden").await;
}

#[tokio::test]
async fn a_client_cannot_set_from_or_id() {
    let (_server, room, mut alice, alice_user, mut bob, _) = room_with_two().await;
    alice
        .send(json!({"type": "message", "room": room, "body": "spoof",
            "from": {"id": "admin", "name": "Admin"}, "id": "999", "ts": 1}))
        .await;
    let ack = alice.expect("ack").await;
    let message = bob.expect("message").await;
    assert_eq!(message["from"], alice_user);
    assert_eq!(message["id"], ack["id"]);
    assert_ne!(message["ts"], 1);
}

#[tokio::test]
async fn every_request_error_code_and_the_connection_carries_on() {
    let config = chat_tower::chat_core::ChatConfig {
        max_body_chars: 10,
        user_messages_per_second: 1,
        user_messages_burst: 30,
        ..Default::default()
    };
    let server = Server::start(ChatBuilder::new().config(config)).await;
    let room = server.api.create_room("errors").await;
    let other_room = server.api.create_room_with("members only", "private").await;
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;

    alice.send_text("this is not json").await;
    alice.expect_error("bad_frame").await;
    alice.send(json!({"type": "teleport", "room": room})).await;
    alice.expect_error("bad_frame").await;
    alice.send(json!({"type": "message", "room": room})).await;
    alice.expect_error("bad_frame").await;
    alice.send_binary(vec![0, 159, 146, 150]).await;
    alice.expect_error("bad_frame").await;
    alice
        .send(json!({"type": "message", "room": room, "body": "x", "clientMsgId": "c".repeat(500)}))
        .await;
    alice.expect_error("bad_frame").await;

    alice
        .send(json!({"type": "message", "room": other_room, "body": "hi", "clientMsgId": "n"}))
        .await;
    assert_eq!(alice.expect_error("not_in_room").await["clientMsgId"], "n");
    alice
        .send(json!({"type": "leave", "room": other_room}))
        .await;
    alice.expect_error("not_in_room").await;
    alice
        .send(json!({"type": "join", "room": "no-such-room"}))
        .await;
    alice.expect_error("room_not_found").await;
    alice
        .send(json!({"type": "join", "room": "8a1c1c4e-7a0e-4a43-9a57-1d5d1f0b5a3e"}))
        .await;
    alice.expect_error("room_not_found").await;
    // Not a member of the private room: to alice it does not exist.
    alice
        .send(json!({"type": "join", "room": other_room}))
        .await;
    alice.expect_error("room_not_found").await;
    alice
        .send(json!({"type": "join", "room": room, "since": "not-an-id"}))
        .await;
    alice.expect_error("bad_frame").await;
    alice
        .send(json!({"type": "message", "room": room, "body": "  \n\t "}))
        .await;
    alice.expect_error("empty_body").await;
    alice
        .send(json!({"type": "message", "room": room, "body": "0123456789A"}))
        .await;
    alice.expect_error("body_too_large").await;
    // Ten characters, more than ten bytes: the limit counts characters.
    alice
        .send(json!({"type": "message", "room": room, "body": "ééééééééé✓"}))
        .await;
    alice.expect("ack").await;
    alice
        .send(json!({"type": "direct", "to": "ghost", "body": ""}))
        .await;
    alice.expect_error("empty_body").await;
    // A direct message to someone who shares no room with alice: the default policy says no.
    alice
        .send(json!({"type": "direct", "to": "ghost", "body": "boo"}))
        .await;
    alice.expect_error("forbidden").await;

    // Still fine after all that.
    alice.say(&room, "ok").await;

    // Burst of 30 messages, then 1/s: the rest of a fast burst is rate limited, each
    // answered with how long to wait.
    let mut limited = 0;
    for i in 0..40 {
        alice.send(json!({"type": "message", "room": room, "body": format!("b{i}"), "clientMsgId": format!("b{i}")})).await;
    }
    for _ in 0..40 {
        let frame = alice.next().await;
        match frame["type"].as_str() {
            Some("ack") => {}
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited");
                assert!(frame["clientMsgId"].as_str().unwrap().starts_with('b'));
                assert!(frame["retryAfterMs"].as_u64().unwrap() > 0, "{frame}");
                limited += 1;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert!(limited >= 10, "only {limited} of 40 rate limited");
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009_and_others_carry_on() {
    let config = chat_tower::chat_core::ChatConfig {
        max_frame_bytes: 1024,
        ..Default::default()
    };
    let server = Server::start(ChatBuilder::new().config(config)).await;
    let room = server.api.create_room("big").await;
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;
    let (mut bob, _) = server.guest_in_room(&room, "bob").await;
    alice.expect("system").await;
    bob.send_text("x".repeat(4096)).await;
    assert_eq!(bob.expect_close().await, 1009);
    assert_eq!(alice.expect("system").await["event"], "user_left");
    alice.say(&room, "still here").await;
}

#[tokio::test]
async fn garbage_never_hurts_the_server_or_other_users() {
    let config = chat_tower::chat_core::ChatConfig {
        rate_per_second: 100_000,
        rate_burst: 100_000,
        ..Default::default()
    };
    let server = Server::start(ChatBuilder::new().config(config)).await;
    let room = server.api.create_room("fuzz").await;
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;
    let (mut mallory, _) = server.guest_in_room(&room, "mallory").await;
    alice.expect("system").await;
    let nasty: Vec<String> = vec![
        "".into(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "{\"type\":null}".into(),
        "{\"type\":\"join\",\"room\":{\"$gt\":1}}".into(),
        "{\"type\":\"message\",\"room\":\"r\",\"body\":123}".into(),
        "{\"type\":\"direct\",\"to\":[],\"body\":\"x\"}".into(),
        "\u{0}\u{1}\u{fffd}".into(),
        "{".repeat(5000),
        "[".repeat(10_000),
        format!("{{\"type\":\"join\",\"room\":\"{}\"}}", "r".repeat(60_000)),
        "{\"type\":\"join\",\"room\":\"a\",\"since\":\"-1\"}".into(),
        "9".repeat(400),
    ];
    for text in nasty {
        mallory.send_text(text).await;
        let frame = mallory.next().await;
        assert_eq!(frame["type"], "error", "{frame}");
        assert!(["bad_frame", "room_not_found"].contains(&frame["code"].as_str().unwrap()));
    }
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200 {
        let len = (seed % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        mallory.send_binary(bytes.clone()).await;
        mallory.expect_error("bad_frame").await;
        mallory
            .send_text(String::from_utf8_lossy(&bytes).into_owned())
            .await;
        mallory.expect_error("bad_frame").await;
    }
    alice.say(&room, "unharmed").await;
    assert_eq!(mallory.expect("message").await["body"], "unharmed");
}

#[tokio::test]
async fn unavailable_is_reported_when_the_broker_is_down() {
    use roomcast_tests::failing::FlakyBroker;
    let (backend, switch) = FlakyBroker::memory();
    let server = Server::start(ChatBuilder::new().backend(backend)).await;
    let room = server.api.create_room("flaky").await;
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;
    let (mut bob, bob_user) = server.guest_in_room(&room, "bob").await;
    alice.expect("system").await;
    switch.set_down(true);
    alice
        .send(json!({"type": "message", "room": room, "body": "lost?", "clientMsgId": "u1"}))
        .await;
    let err = alice.expect_error("unavailable").await;
    assert_eq!(err["clientMsgId"], "u1");
    alice
        .send(json!({"type": "direct", "to": bob_user["id"], "body": "lost?"}))
        .await;
    alice.expect_error("unavailable").await;
    switch.set_down(false);
    alice.say(&room, "back").await;
    assert_eq!(bob.expect("message").await["body"], "back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_since_replays_everything_missed_exactly_once_in_order() {
    let server = Server::start(ChatBuilder::new().config(roomcast_tests::unlimited())).await;
    roomcast_tests::since_replay_scenario(&server, &server).await;
}

/// A held message is released to the connection that opens next; if that connection dies
/// just then (here a handshake the client gave up on), the message is not gone: it is in the
/// conversation's history, where the recipient's client reads it.
#[tokio::test]
async fn a_held_message_released_to_a_connection_that_died_is_still_in_the_history() {
    use tokio::io::AsyncWriteExt;
    let (server, room, mut alice, alice_user, _bob, _) = room_with_two().await;
    let carol = server.api.join_room(&room, "carol").await;
    let carol_token = carol["token"].as_str().unwrap();
    alice
        .send(json!({"type": "direct", "to": carol["user"]["id"], "body": "held one"}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["held"], true);
    // Carol's phone starts a handshake and loses the network.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?token={carol_token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    drop(tcp);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let path = format!("/directs/{}/messages", alice_user["id"].as_str().unwrap());
    let (status, page) = server.api.with_token(carol_token).get(&path).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["id"], ack["id"]);
    assert_eq!(page["messages"][0]["body"], "held one");
}
