//! Shared fixtures for the cross-crate tests: servers on port 0, a REST client, a WebSocket
//! client that reads frames as JSON, and `redis-server` processes on free ports.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod failing;
pub mod postgres_server;
pub mod redis_server;

use std::{net::SocketAddr, time::Duration};

use axum::Router;
use chat_tower::{ChatBuilder, ChatHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long a test waits for a frame before failing: a hang guard, not a timing assertion.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// Serves `app` on 127.0.0.1:0, with each request's peer address (`ConnectInfo`, as a host
/// should serve the chat); returns the address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// One chat instance mounted at the root of its own server.
pub struct Server {
    pub addr: SocketAddr,
    pub handle: ChatHandle,
    pub api: Api,
}

impl Server {
    /// Serves `builder`'s chat; `api` is signed in as a guest named "tester" where guest mode
    /// is on (anonymous otherwise).
    pub async fn start(builder: ChatBuilder) -> Self {
        let (router, handle) = builder.build();
        let addr = serve(router).await;
        let mut api = Api::new(format!("http://{addr}"));
        let (status, guest) = api.post("/guests", Some(json!({ "name": "tester" }))).await;
        if status == 201 {
            api = api.with_token(guest["token"].as_str().unwrap());
        }
        Self { addr, handle, api }
    }

    /// Joins `room` over REST as a new guest named `name`, then opens and joins the
    /// WebSocket. Returns the client (after its `joined` frame) and the user JSON.
    pub async fn guest_in_room(&self, room: &str, name: &str) -> (Client, Value) {
        let joined = self.api.join_room(room, name).await;
        let mut client = Client::connect(self.addr, joined["websocketUrl"].as_str().unwrap()).await;
        client.join(room).await;
        (client, joined["user"].clone())
    }

    /// Another connection (tab) for the user of `token`, joined to `room`.
    pub async fn tab(&self, token: &str, room: &str) -> Client {
        let mut client = Client::connect(self.addr, &format!("/ws?token={token}")).await;
        client.join(room).await;
        client
    }
}

/// A small REST client for the chat endpoints, anonymous or with a token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// The same client, sending `token` as `Authorization: Bearer`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// A new guest named `name` on this server: its client (with its token) and its user.
    pub async fn guest(&self, name: &str) -> (Api, Value) {
        let (status, body) = self
            .anonymous()
            .post("/guests", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            self.with_token(body["token"].as_str().unwrap()),
            body["user"].clone(),
        )
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    pub async fn create_room(&self, name: &str) -> String {
        self.create_room_with(name, "public").await
    }

    /// Creates a room with this visibility (`public` or `private`); returns its id.
    pub async fn create_room_with(&self, name: &str, visibility: &str) -> String {
        let res = self
            .auth(self.http.post(format!("{}/create-room", self.base)))
            .json(&json!({ "name": name, "visibility": visibility }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        body["roomId"].as_str().unwrap().to_owned()
    }

    /// `POST /join-room/{room}` as a new (v1) guest; the whole response.
    pub async fn join_room(&self, room: &str, name: &str) -> Value {
        let (status, body) = self
            .anonymous()
            .post(&format!("/join-room/{room}"), Some(json!({ "user": name })))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// `GET /rooms/{room}/messages?{query}`: the page's message frames and `nextBefore`.
    pub async fn history(&self, room: &str, query: &str) -> (Vec<Value>, Option<String>) {
        let (status, page) = self.get(&format!("/rooms/{room}/messages?{query}")).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap().clone();
        (messages, page["nextBefore"].as_str().map(str::to_owned))
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.auth(self.http.post(format!("{}{path}", self.base)));
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::read(req.send().await.unwrap()).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let req = self
            .auth(self.http.post(format!("{}{path}", self.base)))
            .header("content-type", "application/json")
            .body(body);
        Self::read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::read(
            self.auth(self.http.get(format!("{}{path}", self.base)))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        Self::read(
            self.auth(self.http.delete(format!("{}{path}", self.base)))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn read(res: reqwest::Response) -> (u16, Value) {
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            assert_eq!(
                content_type, "application/problem+json",
                "error {status} {body}"
            );
            assert_eq!(body["status"], status, "{body}");
            for field in ["type", "title", "detail"] {
                assert!(body[field].is_string(), "problem without {field}: {body}");
            }
        }
        (status, body)
    }
}

/// A WebSocket client that reads JSON frames.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for a reply (see [`Client::say`]), served first by `next`.
    pending: std::collections::VecDeque<Value>,
}

impl Client {
    /// Connects to `path` (e.g. `/ws?token=...`) on `addr`.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap();
        Self {
            ws,
            pending: Default::default(),
        }
    }

    /// Tries to connect with extra headers; returns the HTTP status on refusal.
    pub async fn try_connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, u16> {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Self {
                ws,
                pending: Default::default(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(err) => panic!("connect failed: {err}"),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next JSON frame (skipping pings and pongs).
    pub async fn next(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        self.read().await
    }

    async fn read(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("no frame within FRAME_WAIT")
                .expect("socket closed")
                .expect("socket error");
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The next frame, asserting its type.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], ty, "expected {ty}, got {frame}");
        frame
    }

    /// The next frame, asserting it is an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["message"].is_string());
        frame
    }

    /// Sends `join` and waits for `joined`; returns it.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"type": "join", "room": room})).await;
        let joined = self.expect("joined").await;
        assert_eq!(joined["room"], room);
        joined
    }

    /// A round trip that proves nothing else is queued before its reply: re-joining a joined
    /// room answers `joined` and changes nothing.
    pub async fn barrier(&mut self, room: &str) {
        self.send(json!({"type": "join", "room": room})).await;
        let frame = self.next().await;
        assert_eq!(
            frame["type"], "joined",
            "something was queued before the barrier: {frame}"
        );
    }

    /// Sends a room message and returns its `ack`. Frames that arrive before the ack (other
    /// users' messages) are kept for `next`; none of them may be this message (no echo).
    pub async fn say(&mut self, room: &str, body: &str) -> Value {
        self.send(json!({"type": "message", "room": room, "body": body, "clientMsgId": body}))
            .await;
        let ack = loop {
            let frame = self.read().await;
            if frame["type"] == "ack" {
                break frame;
            }
            assert!(
                !(frame["type"] == "message" && frame["body"] == body),
                "echo of its own message: {frame}"
            );
            self.pending.push_back(frame);
        };
        assert_eq!(ack["clientMsgId"], body);
        ack
    }

    /// The next JSON frame, or the close code if the server closes first.
    pub async fn next_or_close(&mut self) -> Result<Value, u16> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("no frame within FRAME_WAIT");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Message::Close(Some(frame)))) => return Err(u16::from(frame.code)),
                Some(Ok(Message::Close(None))) => return Err(u16::from(CloseCode::Status)),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("socket error before close: {err}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .expect("no close within FRAME_WAIT");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("socket error before close: {err}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close reply, so the server has seen the close.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(FRAME_WAIT, self.ws.next()).await {}
    }
}

/// A chat instance on a shared Redis (in this process).
pub async fn redis_instance(
    redis: &redis_server::RedisServer,
    config: chat_tower::chat_core::backend::redis::RedisConfig,
) -> Server {
    redis_instance_with(redis, config, Default::default()).await
}

/// A chat instance on a shared Redis, with a chat config.
pub async fn redis_instance_with(
    redis: &redis_server::RedisServer,
    config: chat_tower::chat_core::backend::redis::RedisConfig,
    chat: chat_tower::chat_core::ChatConfig,
) -> Server {
    let builder = ChatBuilder::new()
        .config(chat)
        .redis_with(&redis.url(), config)
        .await
        .unwrap();
    Server::start(builder).await
}

/// The demo-server binary, built if missing (`DEMO_SERVER_BIN` overrides).
pub fn demo_server_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("DEMO_SERVER_BIN") {
        return bin.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let bin = root.join("target/debug/demo-server");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "demo-server"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "building demo-server failed");
    bin
}

/// A demo-server process (for crash tests): killed on drop.
pub struct DemoProcess {
    pub addr: SocketAddr,
    pub api: Api,
    child: tokio::process::Child,
}

impl DemoProcess {
    /// The demo with `extra_args`, its `api` signed in as a guest (as `Server::start` does).
    pub async fn start(extra_args: &[&str]) -> Self {
        let mut demo = Self::start_anonymous(extra_args).await;
        demo.api = demo.api.guest("tester").await.0;
        demo
    }

    /// The demo with `extra_args` (the auth variables of the environment left out), its
    /// `api` anonymous, once it listens.
    pub async fn start_anonymous(extra_args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = tokio::process::Command::new(demo_server_bin())
            .args(["--listen", &addr.to_string()])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env_remove("AUTH")
            .env_remove("JWT_SECRET")
            .env_remove("JWT_PUBLIC_KEY")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let api = Api::new(format!("http://{addr}"));
        for _ in 0..400 {
            if TcpStream::connect(addr).await.is_ok() {
                return Self { addr, api, child };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("demo-server did not start on {addr}");
    }

    /// The process id (for `/proc/{pid}/status` and signals).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL: the instance vanishes without leaving anything.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM: graceful shutdown. Returns the exit status once it exits.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::timeout(FRAME_WAIT, self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

impl Client {
    /// Reads frames until one of type `ty` (skipping others); returns it.
    pub async fn drain_until(&mut self, ty: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == ty {
                return frame;
            }
        }
    }

    /// Skips frames until a `user_joined` in `room` has arrived for each of `names`: the
    /// barrier for joins made on other instances, whose system messages come through Redis
    /// and may arrive after any reply of this connection's own instance.
    pub async fn await_arrivals(&mut self, room: &str, names: &[String]) {
        let mut waiting: std::collections::HashSet<&str> =
            names.iter().map(String::as_str).collect();
        while !waiting.is_empty() {
            let frame = self.next().await;
            if frame["type"] == "system" && frame["event"] == "user_joined" && frame["room"] == room
            {
                if let Some(name) = frame["user"]["name"].as_str() {
                    waiting.remove(name);
                }
            }
        }
    }

    /// Skips whatever is queued (e.g. system messages), ending on a barrier reply. The reply
    /// comes from this connection's own instance, so frames still on their way through Redis
    /// from other instances may come after it (see [`Client::await_arrivals`]).
    pub async fn drain_until_quiet(&mut self, room: &str) {
        self.send(json!({"type": "join", "room": room})).await;
        self.drain_until("joined").await;
    }
}

/// A chat config without rate limits (per connection and per user), for tests that send fast.
pub fn unlimited() -> chat_tower::chat_core::ChatConfig {
    chat_tower::chat_core::ChatConfig {
        rate_per_second: 100_000,
        rate_burst: 100_000,
        user_messages_per_second: 100_000,
        user_messages_burst: 100_000,
        user_joins_per_second: 100_000,
        user_joins_burst: 100_000,
        user_directs_per_second: 100_000,
        user_directs_burst: 100_000,
        user_rooms_per_minute: 100_000,
        max_connections_per_user: 100_000,
        ..Default::default()
    }
}

/// Alice (on `talk`) keeps sending while Bob's only connection drops and comes back on
/// `rejoin` with `join` + `since`: Bob must end up with every message exactly once, in the
/// room's order (replay, then live, with nothing lost or doubled at the seam).
pub async fn since_replay_scenario(talk: &Server, rejoin: &Server) {
    let room = talk.api.create_room("since").await;
    let (mut alice, _) = talk.guest_in_room(&room, "alice").await;
    let bob_join = rejoin.api.join_room(&room, "bob").await;
    let token = bob_join["token"].as_str().unwrap().to_owned();
    let mut bob = rejoin.tab(&token, &room).await;
    alice.expect("system").await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(alice.say(&room, &format!("before{i}")).await["id"].clone());
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(bob.expect("message").await["id"].clone());
    }
    // Bob's only tab goes away; Alice keeps talking while Bob comes back with `since`.
    bob.close().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let room_for_alice = room.clone();
    let talker = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut started = Some(started_tx);
        for i in 0..400 {
            ids.push(alice.say(&room_for_alice, &format!("during{i}")).await["id"].clone());
            if i == 20 {
                let _ = started.take().unwrap().send(());
            }
        }
        ids
    });
    started_rx.await.unwrap();
    let mut bob = Client::connect(rejoin.addr, &format!("/ws?token={token}")).await;
    bob.send(json!({"type": "join", "room": room, "since": seen.last().unwrap()}))
        .await;
    bob.expect("joined").await;
    sent.extend(talker.await.unwrap());
    while seen.len() < sent.len() {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["id"].clone()),
            Some("system") => {}
            _ => panic!("unexpected {frame}"),
        }
    }
    assert_eq!(
        seen, sent,
        "every message exactly once, in the room's order"
    );
}

/// Polls `check` until it is true, failing the test after 15 s: a guard against hangs while
/// waiting for something that happens in the background (a heartbeat, a reap, a drain), not
/// a timing assertion.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    const DEADLINE: Duration = Duration::from_secs(15);
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
