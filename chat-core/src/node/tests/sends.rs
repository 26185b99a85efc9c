//! Server-side sends and typed history, on an in-memory chat.

use std::time::Duration;

use crate::node::*;
use crate::{
    backend::{memory::MemoryCluster, store::Visibility},
    protocol::{MessageId, RoomId, SendDirectFrame, User, UserId},
};

async fn chat_with_room(config: ChatConfig) -> (Chat, RoomId) {
    let chat = Chat::new(MemoryCluster::new().node(), config);
    let owner = Caller::member(User::new("owner", "Owner"));
    let room = chat
        .create_room(&owner, Some("r".into()), Visibility::Public)
        .await
        .unwrap()
        .room_id;
    (chat, room)
}

#[tokio::test]
async fn room_sends_come_from_the_system_user_or_the_named_bot_and_are_kept_in_history() {
    let (chat, room) = chat_with_room(ChatConfig::default()).await;
    let system = chat
        .to_room(&room)
        .send("maintenance at noon")
        .await
        .unwrap();
    assert_eq!(system.from, User::new("system", "System"));
    let bot = User::new("bot", "Bot");
    let from_bot = chat.to_room(&room).send_as(&bot, "beep").await.unwrap();
    assert_eq!(
        (from_bot.from.clone(), from_bot.room.clone()),
        (bot, room.clone())
    );
    // The deprecated shape still works.
    let old = chat
        .send_to_room(&room, User::new("old", "Old"), "legacy".into())
        .await
        .unwrap();

    let page = chat.to_room(&room).history(None, 50).await.unwrap();
    assert_eq!(page.messages, vec![system.clone(), from_bot, old]);
    assert_eq!(page.next_before, None);
    // Paging backwards: the newest one, then the rest.
    let newest = chat.room_history(&room, None, 1).await.unwrap();
    assert_eq!(newest.messages.len(), 1);
    let before = newest.next_before.unwrap();
    let older = chat.room_history(&room, Some(&before), 50).await.unwrap();
    assert_eq!(older.messages.first(), Some(&system));
}

#[tokio::test]
async fn the_system_user_is_configurable() {
    let config = ChatConfig {
        system_user: User::new("acme", "Acme HQ"),
        ..ChatConfig::default()
    };
    let (chat, room) = chat_with_room(config).await;
    let message = chat.to_room(&room).send("hello").await.unwrap();
    assert_eq!(message.from, User::new("acme", "Acme HQ"));
}

#[tokio::test]
async fn server_side_sends_are_checked_like_clients_bodies() {
    let (chat, room) = chat_with_room(ChatConfig::default()).await;
    let missing = RoomId::new("no-such-room");
    let err = chat.to_room(&missing).send("hi").await.unwrap_err();
    assert!(matches!(err, Error::RoomNotFound(_)), "{err}");
    let err = chat.to_room(&room).send(" \u{200b} ").await.unwrap_err();
    assert!(matches!(err, Error::EmptyBody), "{err}");
    let long = "x".repeat(chat.config().max_body_chars + 1);
    let err = chat.to_room(&room).send(long).await.unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err}");
    let err = chat.room_history(&missing, None, 10).await.unwrap_err();
    assert!(matches!(err, Error::RoomNotFound(_)), "{err}");
    let bogus = MessageId::new("not-an-id");
    let err = chat
        .room_history(&room, Some(&bogus), 10)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadCursor), "{err}");
}

#[tokio::test]
async fn direct_sends_reach_a_connected_user_and_tell_offline_from_unknown() {
    let (chat, _room) = chat_with_room(ChatConfig::default()).await;
    let dana = User::new("dana", "Dana");
    let mut conn = chat.connect(dana.clone()).await.unwrap();
    let ack = chat
        .to_user(&dana.id)
        .send("your export is ready")
        .await
        .unwrap();
    assert!(!ack.id.as_str().is_empty());
    chat.to_user(&dana.id)
        .send_as(&User::new("bot", "Bot"), "beep")
        .await
        .unwrap();
    conn.close().await;
    let ghost = UserId::new("ghost");
    let err = chat.to_user(&ghost).send("boo").await.unwrap_err();
    assert!(matches!(err, Error::UserNotFound(_)), "{err}");
    // Held for a known user who is offline; with holding off, refused.
    let ack = chat.to_user(&dana.id).send("gone?").await.unwrap();
    assert!(ack.held, "{ack:?}");
    let config = ChatConfig {
        held_directs_per_user: 0,
        ..ChatConfig::default()
    };
    let (chat, _room) = chat_with_room(config).await;
    chat.connect(dana.clone()).await.unwrap().close().await;
    let err = chat.to_user(&dana.id).send("gone?").await.unwrap_err();
    assert!(matches!(err, Error::RecipientOffline(_)), "{err}");
}

/// The `type`, `body` and `id` of a frame.
fn direct_of(frame: &[u8]) -> (String, String, String) {
    let value: serde_json::Value = serde_json::from_slice(frame).unwrap();
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    (field("type"), field("body"), field("id"))
}

/// Guests hold at most `held_directs_from_guests` of an offline user's inbox altogether; a
/// user the host identified still gets a message held.
#[tokio::test]
async fn guests_hold_only_their_share_of_an_offline_users_inbox() {
    let config = ChatConfig {
        held_directs_per_user: 4,
        held_directs_from_guests: 2,
        ..ChatConfig::default()
    };
    let (chat, room) = chat_with_room(config).await;
    let bob = User::new("bob", "Bob");
    let guests = ["g1", "g2", "g3"].map(|id| Caller::guest(User::new(id, id)));
    let ann = Caller::member(User::new("ann", "Ann"));
    for caller in guests.iter().chain([&ann, &Caller::member(bob.clone())]) {
        chat.join_room(caller, &room, false).await.unwrap();
    }
    chat.connect(bob.clone()).await.unwrap().close().await;
    let dm = |body: &str| SendDirectFrame {
        to: bob.id.clone(),
        body: body.into(),
        client_msg_id: None,
    };
    for (i, guest) in guests.iter().enumerate() {
        let mut tab = chat.connect(guest.clone()).await.unwrap();
        let sent = tab.send_direct(dm("from a guest")).await;
        match i {
            0 | 1 => assert!(sent.unwrap().held),
            _ => assert!(matches!(sent, Err(Error::InboxFull(_))), "{sent:?}"),
        }
    }
    let mut ann_tab = chat.connect(ann).await.unwrap();
    assert!(ann_tab.send_direct(dm("from ann")).await.unwrap().held);
}

#[tokio::test]
async fn held_directs_reach_the_recipients_next_connection_once_in_order_and_within_the_cap() {
    let config = ChatConfig {
        held_directs_per_user: 3,
        ..ChatConfig::default()
    };
    let (chat, room) = chat_with_room(config).await;
    let ann = User::new("ann", "Ann");
    let bob = User::new("bob", "Bob");
    for user in [&ann, &bob] {
        chat.join_room(&Caller::member(user.clone()), &room, false)
            .await
            .unwrap();
    }
    chat.connect(bob.clone()).await.unwrap().close().await;
    let mut ann_tab = chat.connect(ann.clone()).await.unwrap();
    let mut ann_other = chat.connect(ann.clone()).await.unwrap();
    let send = |body: &str, client_msg_id: &str| SendDirectFrame {
        to: bob.id.clone(),
        body: body.into(),
        client_msg_id: Some(client_msg_id.into()),
    };
    let mut acks = Vec::new();
    for (i, body) in ["one", "two", "three"].into_iter().enumerate() {
        let ack = ann_tab
            .send_direct(send(body, &format!("c{i}")))
            .await
            .unwrap();
        assert!(ack.held, "{ack:?}");
        acks.push(ack);
    }
    // A retry is the same message, not held twice.
    let again = ann_tab.send_direct(send("one", "c0")).await.unwrap();
    assert_eq!((&again.id, again.ts), (&acks[0].id, acks[0].ts));
    assert!(
        again.held,
        "a retry's ack says it is held, as the first one's did"
    );
    let err = ann_tab.send_direct(send("four", "c3")).await.unwrap_err();
    assert!(matches!(err, Error::InboxFull(_)), "{err}");
    // Ann's other tab saw what she sent, as it would have for a delivered message.
    for (ack, body) in acks.iter().zip(["one", "two", "three"]) {
        let frame = ann_other.next_frame().await.unwrap();
        assert_eq!(
            direct_of(&frame),
            ("direct".into(), body.into(), ack.id.as_str().into())
        );
    }

    let mut bob_conn = chat.connect(bob.clone()).await.unwrap();
    // Nothing before the connection says it can deliver (a session does when it starts).
    assert!(bob_conn.try_next_frame().is_none());
    bob_conn.release_held().await;
    for (ack, body) in acks.iter().zip(["one", "two", "three"]) {
        let frame = tokio::time::timeout(Duration::from_secs(5), bob_conn.next_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            direct_of(&frame),
            ("direct".into(), body.into(), ack.id.as_str().into())
        );
    }
    // Released once: a second connection gets nothing, and Bob is reached live now.
    let mut bob_again = chat.connect(bob.clone()).await.unwrap();
    bob_again.release_held().await;
    let live = ann_tab.send_direct(send("live", "c4")).await.unwrap();
    assert!(!live.held);
    for conn in [&mut bob_conn, &mut bob_again] {
        let frame = tokio::time::timeout(Duration::from_secs(5), conn.next_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(direct_of(&frame).1, "live");
    }
}
