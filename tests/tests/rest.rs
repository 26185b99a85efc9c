//! The REST endpoints, problem+json errors, WebSocket admission, nesting and isolation.

use axum::{extract::State, routing::get, Router};
use chat_tower::{AllowedOrigins, ChatBuilder};
use roomcast_tests::{serve, Api, Client, Server};
use serde_json::json;

#[tokio::test]
async fn rooms_are_created_listed_and_described() {
    let server = Server::start(ChatBuilder::new()).await;
    let api = &server.api;
    let (status, room) = api
        .post("/create-room", Some(json!({"name": "General"})))
        .await;
    assert_eq!(status, 201);
    let id = room["roomId"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID string: {id}");
    assert_eq!(room["name"], "General");
    assert!(room["createdAt"].as_str().unwrap().contains('T'));
    let (status, unnamed) = api.post("/create-room", None).await;
    assert_eq!(status, 201);
    assert!(unnamed["name"].as_str().unwrap().starts_with("Room "));
    let (_, page) = api.get("/rooms").await;
    let rooms = page["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2);
    assert_eq!(page["nextCursor"], json!(null));
    // Newest first.
    assert_eq!(rooms[1]["roomId"], id);
    assert_eq!(rooms[1]["online"], 0);
    assert_eq!(rooms[1]["visibility"], "public");
    let (status, details) = api.get(&format!("/rooms/{id}")).await;
    assert_eq!(status, 200);
    let creator = json!({"id": room["owner"], "name": "tester", "online": false});
    assert_eq!(
        details["members"],
        json!([creator.clone()]),
        "the creator is a member"
    );
    assert_eq!(details["memberCount"], 1);
    let joined = api.join_room(id, "alice").await;
    assert_eq!(joined["roomId"], id);
    assert_eq!(joined["user"]["name"], "alice");
    assert!(joined["websocketUrl"]
        .as_str()
        .unwrap()
        .starts_with("/ws?token="));
    let (_, details) = api.get(&format!("/rooms/{id}")).await;
    assert_eq!(
        details["members"],
        json!([creator, {"id": joined["user"]["id"], "name": "alice", "online": false}])
    );
    assert_eq!(details["memberCount"], 2);
}

#[tokio::test]
async fn bad_requests_are_problems() {
    let server = Server::start(ChatBuilder::new()).await;
    let api = &server.api;
    let room = api.create_room("r").await;
    // `Api` asserts problem+json with type/title/status/detail on every error.
    assert_eq!(api.post_raw("/create-room", "{not json").await.0, 400);
    assert_eq!(
        api.post("/create-room", Some(json!({"name": ""}))).await.0,
        422
    );
    assert_eq!(
        api.post("/create-room", Some(json!({"name": "x".repeat(65)})))
            .await
            .0,
        422
    );
    assert_eq!(
        api.post("/create-room", Some(json!({"name": 5}))).await.0,
        422
    );
    assert_eq!(
        api.post("/join-room/nope", Some(json!({"user": "a"})))
            .await
            .0,
        404
    );
    // A v1 guest join (no identity) with a bad name.
    let anonymous = api.anonymous();
    assert_eq!(
        anonymous
            .post(&format!("/join-room/{room}"), Some(json!({"user": ""})))
            .await
            .0,
        422
    );
    assert_eq!(
        anonymous
            .post(
                &format!("/join-room/{room}"),
                Some(json!({"user": "y".repeat(33)}))
            )
            .await
            .0,
        422
    );
    assert_eq!(
        anonymous.post(&format!("/join-room/{room}"), None).await.0,
        401
    );
    assert_eq!(
        api.post_raw(&format!("/join-room/{room}"), "[").await.0,
        400
    );
    let (status, problem) = api.get("/rooms/8a1c1c4e-7a0e-4a43-9a57-1d5d1f0b5a3e").await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "room_not_found");
    assert_eq!(api.get("/rooms/nope/messages").await.0, 404);
    assert_eq!(
        api.get(&format!("/rooms/{room}/messages?limit=0")).await.0,
        400
    );
    assert_eq!(
        api.get(&format!("/rooms/{room}/messages?limit=201"))
            .await
            .0,
        400
    );
    assert_eq!(
        api.get(&format!("/rooms/{room}/messages?limit=abc"))
            .await
            .0,
        400
    );
    assert_eq!(
        api.get(&format!("/rooms/{room}/messages?before=xyz"))
            .await
            .0,
        400
    );
    let res = api
        .http
        .delete(format!("{}/rooms", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(100_000));
    let res = api
        .http
        .post(format!("{}/create-room", api.base))
        .bearer_auth(api.token.as_deref().unwrap())
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(api.post_raw("/create-room", "null").await.0, 201);
    let (status, page) = api.get(&format!("/rooms/{room}/messages")).await;
    assert_eq!(status, 200);
    assert_eq!(page, json!({"messages": [], "nextBefore": null}));
}

#[tokio::test]
async fn history_pages_oldest_first() {
    let server = Server::start(ChatBuilder::new().config(roomcast_tests::unlimited())).await;
    let room = server.api.create_room("h").await;
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(alice.say(&room, &format!("m{i}")).await["id"].clone());
    }
    let ids_of = |page: &[serde_json::Value]| -> Vec<serde_json::Value> {
        page.iter().map(|m| m["id"].clone()).collect()
    };
    let (page, next) = server.api.history(&room, "").await;
    assert_eq!(
        ids_of(&page),
        ids[70..].to_vec(),
        "default limit 50, newest page, oldest first"
    );
    let mut before = next.unwrap();
    let mut seen = page.len();
    loop {
        let (page, next) = server
            .api
            .history(&room, &format!("limit=30&before={before}"))
            .await;
        assert_eq!(
            ids_of(&page),
            ids[120 - seen - page.len()..120 - seen].to_vec()
        );
        seen += page.len();
        match next {
            Some(next) => before = next,
            None => break,
        }
    }
    assert_eq!(seen, 120);
}

#[tokio::test]
async fn websocket_admission() {
    let server = Server::start(ChatBuilder::new()).await;
    let room = server.api.create_room("r").await;
    let joined = server.api.join_room(&room, "alice").await;
    let token = joined["token"].as_str().unwrap();
    assert_eq!(
        Client::try_connect(server.addr, "/ws", &[]).await.err(),
        Some(401)
    );
    assert_eq!(
        Client::try_connect(server.addr, "/ws?token=forged.token", &[])
            .await
            .err(),
        Some(401)
    );
    let origin = [("origin", "http://evil.example")];
    assert_eq!(
        Client::try_connect(server.addr, &format!("/ws?token={token}"), &origin)
            .await
            .err(),
        Some(403)
    );
    let same = format!("http://{}", server.addr);
    let ok = Client::try_connect(
        server.addr,
        &format!("/ws?token={token}"),
        &[("origin", &same)],
    )
    .await;
    assert!(ok.is_ok());
    let bearer = format!("Bearer {token}");
    let mut by_header = Client::try_connect(server.addr, "/ws", &[("authorization", &bearer)])
        .await
        .ok()
        .unwrap();
    by_header.join(&room).await;
    // A plain GET without the upgrade is a problem, not a crash.
    let (status, _) = server.api.get(&format!("/ws?token={token}")).await;
    assert_eq!(status, 400);

    let open = Server::start(
        ChatBuilder::new().allowed_origins(AllowedOrigins::List(vec!["http://app.example".into()])),
    )
    .await;
    let room = open.api.create_room("r").await;
    let token = open.api.join_room(&room, "a").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(Client::try_connect(
        open.addr,
        &format!("/ws?token={token}"),
        &[("origin", "http://app.example")]
    )
    .await
    .is_ok());
}

#[derive(Clone)]
struct HostState {
    greeting: &'static str,
}

#[tokio::test]
async fn nested_under_a_prefix_in_a_host_app_with_its_own_state() {
    let (chat, _handle) = ChatBuilder::<HostState>::new().build();
    let app = Router::new()
        .route(
            "/",
            get(|State(s): State<HostState>| async move { s.greeting }),
        )
        .nest("/chat", chat)
        .with_state(HostState {
            greeting: "host home",
        });
    let addr = serve(app).await;
    let host = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(host, "host home");
    let (api, _) = Api::new(format!("http://{addr}/chat")).guest("host").await;
    let room = api.create_room("nested").await;
    let joined = api.join_room(&room, "alice").await;
    let url = joined["websocketUrl"].as_str().unwrap();
    assert!(url.starts_with("/chat/ws?token="), "{url}");
    let mut alice = Client::connect(addr, url).await;
    alice.join(&room).await;
    alice.say(&room, "from under /chat").await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["servers"][0]["url"], "/chat");
    assert!(doc["paths"]["/create-room"].is_object());
    let (status, asyncapi) = api.get("/asyncapi.json").await;
    assert_eq!(
        (status, asyncapi["asyncapi"].as_str()),
        (200, Some("3.1.0"))
    );
    // An unknown path under the prefix is the chat's problem; the host's `/` is still the host's.
    let (status, problem) = api.get("/no-such-path").await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn two_chats_in_one_process_share_nothing() {
    let one = Server::start(ChatBuilder::new()).await;
    let two = Server::start(ChatBuilder::new()).await;
    let room = one.api.create_room("only in one").await;
    assert_eq!(
        two.api.get("/rooms").await.1,
        json!({"rooms": [], "nextCursor": null})
    );
    assert_eq!(two.api.get(&format!("/rooms/{room}")).await.0, 404);
    assert_eq!(
        two.api
            .post(&format!("/join-room/{room}"), Some(json!({"user": "x"})))
            .await
            .0,
        404
    );
    // A token from one chat means nothing to the other (different secrets).
    let token = one.api.join_room(&room, "a").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        Client::try_connect(two.addr, &format!("/ws?token={token}"), &[])
            .await
            .err(),
        Some(401)
    );
}

#[tokio::test]
async fn a_host_identity_replaces_guest_names() {
    use chat_tower::{chat_core::User, FromExtension};
    #[derive(Clone)]
    struct LoggedIn(User);
    impl From<LoggedIn> for User {
        fn from(l: LoggedIn) -> User {
            l.0
        }
    }
    let (chat, handle) = ChatBuilder::new()
        .guests(false)
        .identity(FromExtension::<LoggedIn>::new())
        .build();
    // The host's "auth middleware": a header names the user.
    let app = chat.layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            if let Some(user) = req
                .headers()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            {
                req.extensions_mut()
                    .insert(LoggedIn(User::new(format!("id-{user}"), user)));
            }
            next.run(req).await
        },
    ));
    let addr = serve(app).await;
    let api = Api::new(format!("http://{addr}"));
    // No guests with a host identity: no `POST /guests`, no v1 guest join, nothing anonymous.
    let (status, _) = api.post("/guests", Some(json!({"name": "g"}))).await;
    assert_eq!(status, 404);
    assert_eq!(api.post("/create-room", None).await.0, 401);
    let res = api
        .http
        .post(format!("{}/create-room", api.base))
        .header("x-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let room = res.json::<serde_json::Value>().await.unwrap()["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.post(
            &format!("/join-room/{room}"),
            Some(json!({"user": "guest"}))
        )
        .await
        .0,
        401
    );
    // A token never beats the host's identity: carol's login with dave's token is refused.
    let daves = handle.issue_token(&User::new("id-dave", "dave"));
    let res = api
        .http
        .get(format!("{}/rooms", api.base))
        .header("x-user", "carol")
        .bearer_auth(&daves)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        Client::try_connect(addr, &format!("/ws?token={daves}"), &[("x-user", "carol")])
            .await
            .err(),
        Some(401)
    );
    let res = api
        .http
        .post(format!("{}/join-room/{room}", api.base))
        .header("x-user", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["user"], json!({"id": "id-carol", "name": "carol"}));
    let mut carol = Client::try_connect(addr, "/ws", &[("x-user", "carol")])
        .await
        .ok()
        .unwrap();
    carol.join(&room).await;
    // Server-side sends reach connections.
    handle
        .chat()
        .send_to_room(
            &room.as_str().into(),
            User::new("bot", "Bot"),
            "welcome".into(),
        )
        .await
        .unwrap();
    let m = carol.expect("message").await;
    assert_eq!(
        (m["body"].as_str(), m["from"]["id"].as_str()),
        (Some("welcome"), Some("bot"))
    );
}
