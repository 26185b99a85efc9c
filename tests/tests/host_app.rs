//! The `host-app` example, end to end: the host's cookie login is the chat's identity (REST
//! and WebSocket, no token), the host's policy and moderation apply, a host handler posts as
//! the system user, and logging out locks the chat.

#[path = "../../chat-tower/examples/host-app/app.rs"]
mod app;

use roomcast_tests::{serve, Client};
use serde_json::{json, Value};

/// A browser of the host app: its cookie, if logged in.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            cookie: None,
        }
    }

    /// `POST /login`; keeps the `session` cookie it sets.
    async fn login(&mut self, user: &str, password: &str) -> u16 {
        let res = self
            .http
            .post(format!("{}/login", self.base))
            .json(&json!({"user": user, "password": password}))
            .send()
            .await
            .unwrap();
        if let Some(set) = res.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        res.status().as_u16()
    }

    /// A request with the cookie (and a bearer token, if given); status and JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body, None).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    /// Opens `/chat/ws` with the cookie only (and `?token=`, if given): the HTTP status on
    /// refusal.
    async fn websocket(
        &self,
        addr: std::net::SocketAddr,
        token: Option<&str>,
    ) -> Result<Client, u16> {
        let path = match token {
            Some(token) => format!("/chat/ws?token={token}"),
            None => "/chat/ws".to_owned(),
        };
        let headers: Vec<(&'static str, &str)> = self
            .cookie
            .iter()
            .map(|cookie| ("cookie", cookie.as_str()))
            .collect();
        Client::try_connect(addr, &path, &headers).await
    }
}

#[tokio::test]
async fn the_host_login_is_the_chat_identity_and_its_policy_applies() {
    let (router, _chat) = app::app();
    let addr = serve(router).await;
    let (mut alice, mut bob) = (Browser::new(addr), Browser::new(addr));
    assert_eq!(alice.login("alice", "wrong").await, 401);
    assert_eq!(alice.login("alice", "alice-pw").await, 204);
    assert_eq!(bob.login("bob", "bob-pw").await, 204);
    assert_eq!(alice.get("/me").await.1["staff"], true);

    // Policy: staff create rooms, others are refused (403, problem+json).
    let (status, room) = alice
        .post("/chat/create-room", Some(json!({"name": "Lobby"})))
        .await;
    assert_eq!(status, 201, "{room}");
    let room = room["roomId"].as_str().unwrap().to_owned();
    let (status, problem) = bob.post("/chat/create-room", None).await;
    assert_eq!(
        (status, &problem["code"]),
        (403, &json!("forbidden")),
        "{problem}"
    );

    // The cookie alone identifies REST and WebSocket calls; no token anywhere.
    let (status, joined) = bob.post(&format!("/chat/join-room/{room}"), None).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["user"], json!({"id": "bob", "name": "Bob"}));
    assert!(joined["websocketUrl"]
        .as_str()
        .unwrap()
        .starts_with("/chat/ws"));
    let bob_token = joined["token"].as_str().unwrap().to_owned();
    let mut bob_ws = bob.websocket(addr, None).await.unwrap();
    bob_ws.join(&room).await;
    let mut alice_ws = alice.websocket(addr, None).await.unwrap();
    alice_ws.join(&room).await;
    assert_eq!(bob_ws.expect("system").await["user"]["id"], "alice");

    // Another user's token is refused while the cookie says alice.
    assert_eq!(
        alice.websocket(addr, Some(&bob_token)).await.err(),
        Some(401)
    );
    let (status, _) = alice
        .send(reqwest::Method::GET, "/chat/rooms", None, Some(&bob_token))
        .await;
    assert_eq!(status, 401);

    // Moderation rewrites what alice says before bob sees it.
    alice_ws.say(&room, "darn it").await;
    let message = bob_ws.expect("message").await;
    assert_eq!(message["body"], "d**n it");
    assert_eq!(message["from"], json!({"id": "alice", "name": "Alice"}));

    // A host handler posts as the chat's system user; everyone in the room gets it.
    let (status, posted) = alice
        .post(
            "/announce",
            Some(json!({"room": room, "text": "lunch at noon"})),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let system = json!({"id": "system", "name": "System"});
    assert_eq!(posted["from"], system);
    for ws in [&mut bob_ws, &mut alice_ws] {
        let message = ws.expect("message").await;
        assert_eq!(
            (&message["body"], &message["from"]),
            (&json!("lunch at noon"), &system)
        );
        assert_eq!(message["id"], posted["id"]);
    }
    let (status, problem) = bob
        .post("/announce", Some(json!({"room": room, "text": "me too"})))
        .await;
    assert_eq!((status, &problem["code"]), (403, &json!("forbidden")));
    let (status, problem) = alice
        .post("/announce", Some(json!({"room": "nope", "text": "hi"})))
        .await;
    assert_eq!((status, &problem["code"]), (404, &json!("room_not_found")));

    // The host reads typed history.
    let (status, transcript) = bob.get(&format!("/transcript/{room}")).await;
    assert_eq!(status, 200);
    assert_eq!(transcript, "Alice: d**n it\nSystem: lunch at noon\n");

    // Logging out locks the chat: REST and WebSocket answer 401, even to the old cookie
    // (which the browser here keeps sending: the session is gone on the server).
    let (status, _) = bob.post("/logout", None).await;
    assert_eq!(status, 204);
    assert_eq!(bob.get("/chat/rooms").await.0, 401);
    assert_eq!(bob.websocket(addr, None).await.err(), Some(401));
    assert_eq!(bob.get("/me").await.0, 401);
    let anonymous = Browser::new(addr);
    assert_eq!(anonymous.get("/chat/rooms").await.0, 401);
    assert_eq!(
        anonymous
            .post("/announce", Some(json!({"room": room, "text": "x"})))
            .await
            .0,
        401
    );
}

/// `ChatBuilder::redis(url)` is all two instances need to be one chat: the same rooms, and
/// the tokens of one accepted by the other (the secret is shared through Redis).
#[tokio::test]
async fn one_call_puts_instances_on_redis_with_a_shared_secret() {
    use chat_tower::{chat_core::RoomId, ChatBuilder};
    use roomcast_tests::{redis_server::RedisServer, Server};

    let redis = RedisServer::start().await;
    let a = ChatBuilder::new().redis(&redis.url()).await.unwrap();
    let b = ChatBuilder::new().redis(&redis.url()).await.unwrap();
    let (a, b) = (Server::start(a).await, Server::start(b).await);
    let room = a.api.create_room("shared").await;
    // A's guest token works on B.
    let token = a.api.token.clone().unwrap();
    let mut on_b = b.tab(&token, &room).await;
    let posted = a
        .handle
        .room(&RoomId::new(room.clone()))
        .send("hello from A")
        .await;
    let message = on_b.expect("message").await;
    assert_eq!(message["id"], posted.unwrap().id.as_str());
    assert_eq!(message["from"], json!({"id": "system", "name": "System"}));
    assert!(ChatBuilder::<()>::new().redis("not a url").await.is_err());
}
