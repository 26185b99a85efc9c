//! Issue 15, "HTTP", "Input", "Logs and pages": the demo's HTTP serving limits (header-read
//! timeout, idle timeout, connection cap), JSON-only bodies, malformed cursors on memory and
//! on Redis, backend errors told as correlation ids, names with format characters, secrets
//! kept out of the logs at `trace`, and the security headers of the demo's pages.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use chat_tower::{chat_core::backend::redis::RedisConfig, identity::JwtIdentity, ChatBuilder};
use roomcast_tests::{demo_server_bin, redis_server::RedisServer, Api, Client, Server, FRAME_WAIT};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

// ------------------------------------------------------------------ a demo with its log

/// A demo-server process whose log (stderr, at `rust_log`) goes to a file; killed on drop.
struct LoggedDemo {
    addr: SocketAddr,
    log: PathBuf,
    child: tokio::process::Child,
}

impl LoggedDemo {
    async fn start(args: &[&str], rust_log: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::env::temp_dir().join(format!(
            "roomcast-hardening-{}-{port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(demo_server_bin())
            .args(["--listen", &addr.to_string()])
            .args(args)
            .env("RUST_LOG", rust_log)
            .env_remove("AUTH")
            .env_remove("JWT_SECRET")
            .env_remove("JWT_PUBLIC_KEY")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + FRAME_WAIT;
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "demo-server did not start on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self { addr, log, child }
    }

    fn api(&self) -> Api {
        Api::new(format!("http://{}", self.addr))
    }

    /// SIGTERM, wait for the exit, and the whole log.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let _ = tokio::time::timeout(FRAME_WAIT, self.child.wait()).await;
        let log = std::fs::read_to_string(&self.log).unwrap();
        let _ = std::fs::remove_file(&self.log);
        log
    }
}

/// Reads until the server closes the connection (EOF or reset); false if still open at the
/// deadline. What was read is discarded.
async fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends a whole `GET path` on `stream` (keep-alive) and reads the response head.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_head(stream).await
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(FRAME_WAIT, stream.read(&mut byte))
            .await
            .expect("no response")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before a response: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

// ------------------------------------------------------------------ HTTP serving

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_are_closed_after_the_header_read_timeout() {
    let demo = LoggedDemo::start(&["--header-read-timeout-secs", "0.5"], "warn").await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(demo.addr).await.unwrap();
        stream
            .write_all(b"GET /rooms HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let deadline = Instant::now() + FRAME_WAIT;
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, deadline).await,
            "half-header connection {i} still open"
        );
    }
    // The server still serves whoever sends a whole request.
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    let head = get_on(&mut stream, "/openapi.json").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_closed_after_the_idle_timeout() {
    // The header timeout stays long: what closes the connection is the idle timeout.
    let demo = LoggedDemo::start(
        &[
            "--header-read-timeout-secs",
            "30",
            "--http-idle-timeout-secs",
            "0.5",
        ],
        "warn",
    )
    .await;
    let mut stream = TcpStream::connect(demo.addr).await.unwrap();
    stream
        .write_all(
            b"POST /guests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut stream, Instant::now() + FRAME_WAIT).await,
        "a connection whose body stalled is still open"
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_queues_the_one_beyond_it_until_one_closes() {
    let demo = LoggedDemo::start(&["--max-connections", "3"], "warn").await;
    // Three keep-alive connections, each served once: each holds one of the three places.
    // (The start-up probe's connection may still hold a place for a moment: the first
    // request on each waits for it.)
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(demo.addr).await.unwrap();
        let head = get_on(&mut stream, "/openapi.json").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(stream);
    }
    for stream in &mut held {
        // Drain the bodies so that the responses are done.
        let mut buf = vec![0u8; 1 << 20];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    }
    // The fourth is queued (the kernel completes its handshake; the server does not accept).
    let mut fourth = TcpStream::connect(demo.addr).await.unwrap();
    fourth
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    // One closes: the fourth is accepted and served.
    drop(held.pop());
    let head = read_head(&mut fourth).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    demo.stop().await;
}

// ------------------------------------------------------------------ JSON-only bodies

async fn post_typed(
    api: &Api,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> (u16, Value) {
    let mut req = api.http.post(format!("{}{path}", api.base)).body(body);
    if let Some(token) = &api.token {
        req = req.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let problem_json = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json");
    let body = res.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert!(problem_json, "{status} {body}");
    }
    (status, body)
}

#[tokio::test]
async fn bodies_must_be_json_and_a_create_without_a_body_still_works() {
    let server = Server::start(ChatBuilder::new()).await;
    let room = server.api.create_room("forms").await;
    let routes = [
        ("/guests", server.api.anonymous()),
        ("/create-room", server.api.clone()),
        (&*format!("/join-room/{room}"), server.api.clone()),
    ]
    .map(|(path, api)| (path.to_owned(), api));
    let refused = [
        (Some("application/x-www-form-urlencoded"), "name=x&user=y"),
        (
            Some("multipart/form-data; boundary=b"),
            "--b\r\n\r\nx\r\n--b--",
        ),
        (Some("text/plain"), "{\"name\":\"x\",\"user\":\"y\"}"),
        // A form with no fields still declares its type.
        (Some("application/x-www-form-urlencoded"), ""),
        // A body without a type.
        (None, "{\"name\":\"x\",\"user\":\"y\"}"),
    ];
    for (path, api) in &routes {
        for (content_type, body) in refused {
            let (status, problem) = post_typed(api, path, content_type, body).await;
            assert_eq!(status, 415, "{path} {content_type:?}: {problem}");
            assert_eq!(problem["code"], "unsupported_media_type");
        }
    }
    // No body, no type: the optional body of create-room and join-room.
    let (status, created) = post_typed(&server.api, "/create-room", None, "").await;
    assert_eq!(status, 201, "{created}");
    let (status, joined) = post_typed(&server.api, &format!("/join-room/{room}"), None, "").await;
    assert_eq!(status, 200, "{joined}");
    // JSON, with a charset, is fine.
    let (status, guest) = post_typed(
        &server.api.anonymous(),
        "/guests",
        Some("application/json; charset=utf-8"),
        "{\"name\":\"json\"}",
    )
    .await;
    assert_eq!(status, 201, "{guest}");
}

// ------------------------------------------------------------------ malformed cursors

/// Cursors no store ever issues, including those a naive pass-through hands to Redis.
fn bad_cursors() -> Vec<String> {
    let max = u64::MAX;
    vec![
        "0-0".into(),
        format!("{max}-{max}"),
        "18446744073709551616-0".into(),
        "abc".into(),
        String::new(),
        "9".repeat(4096),
        "-".into(),
        "1-".into(),
        "01-1".into(),
        "-1".into(),
        "1-2-3".into(),
        "\u{202E}1-0".into(),
    ]
}

/// Every paginated route and the WebSocket `join.since` answer a bad cursor with 400 /
/// `bad_frame`, never a 5xx, and the connection keeps working.
async fn bad_cursors_are_client_errors(server: &Server) {
    let room = server.api.create_room("cursors").await;
    let joined = server.api.join_room(&room, "alice").await;
    let token = joined["websocketUrl"].as_str().unwrap();
    let mut alice = Client::connect(server.addr, token).await;
    alice.join(&room).await;
    let first = alice.say(&room, "one").await;
    alice.say(&room, "two").await;
    let api = &server.api;
    for bad in bad_cursors() {
        let queries = [
            (format!("/rooms/{room}/messages"), "before"),
            ("/rooms".to_owned(), "cursor"),
            (format!("/rooms/{room}/members"), "cursor"),
        ];
        for (path, name) in queries {
            let mut req = api
                .http
                .get(format!("{}{path}", api.base))
                .query(&[(name, &bad)]);
            req = req.bearer_auth(api.token.as_ref().unwrap());
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let problem: Value = res.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 400, "{path}?{name}={bad:.40}: {problem}");
            assert_eq!(problem["code"], "bad_request");
        }
        alice
            .send(json!({"type": "join", "room": room, "since": bad}))
            .await;
        let err = alice.expect_error("bad_frame").await;
        assert!(
            !err["message"].as_str().unwrap().contains("ERR"),
            "a Redis error reached the client: {err}"
        );
    }
    // A good cursor still works, on both routes.
    let (messages, _) = api
        .history(
            &room,
            &format!(
                "before={}",
                alice.say(&room, "three").await["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(messages.len(), 2);
    alice
        .send(json!({"type": "join", "room": room, "since": first["id"]}))
        .await;
    alice.expect("joined").await;
    assert_eq!(alice.expect("message").await["body"], "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cursors_are_400_or_bad_frame_in_memory() {
    let server = Server::start(ChatBuilder::new().config(roomcast_tests::unlimited())).await;
    bad_cursors_are_client_errors(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cursors_are_400_or_bad_frame_on_redis_on_both_instances() {
    let redis = RedisServer::start().await;
    let chat = roomcast_tests::unlimited();
    let a = roomcast_tests::redis_instance_with(&redis, RedisConfig::default(), chat.clone()).await;
    let b = roomcast_tests::redis_instance_with(&redis, RedisConfig::default(), chat).await;
    bad_cursors_are_client_errors(&a).await;
    bad_cursors_are_client_errors(&b).await;
}

// ------------------------------------------------------------------ backend errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failure_reaches_the_client_as_a_correlation_id_that_the_log_holds() {
    let mut redis = RedisServer::start().await;
    let demo = LoggedDemo::start(&["--redis-url", &redis.url()], "info").await;
    let (api, _) = demo.api().guest("tester").await;
    let room = api.create_room("outage").await;
    let joined = api.join_room(&room, "alice").await;
    let mut alice = Client::connect(demo.addr, joined["websocketUrl"].as_str().unwrap()).await;
    alice.join(&room).await;
    alice.say(&room, "before").await;

    redis.kill().await;
    let (status, problem) = api.get(&format!("/rooms/{room}/messages")).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "unavailable");
    let rest_id = problem["correlationId"].as_str().unwrap().to_owned();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&rest_id), "{problem}");
    alice
        .send(json!({"type": "message", "room": room, "body": "during", "clientMsgId": "d"}))
        .await;
    let frame = alice.drain_until("error").await;
    assert_eq!(frame["code"], "unavailable", "{frame}");
    let message = frame["message"].as_str().unwrap();
    let ws_id = message
        .rsplit_once("correlation id ")
        .map(|(_, id)| id.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| panic!("no correlation id in {frame}"));
    for told in [detail, message] {
        for raw in [
            "redis",
            "Redis",
            "refused",
            "os error",
            "127.0.0.1",
            "broken pipe",
            "IoError",
        ] {
            assert!(
                !told.contains(raw),
                "backend text {raw:?} reached the client: {told}"
            );
        }
    }
    let log = demo.stop().await;
    for id in [&rest_id, &ws_id] {
        let line = log
            .lines()
            .find(|line| line.contains(id.as_str()))
            .unwrap_or_else(|| panic!("correlation id {id} not in the log:\n{log}"));
        assert!(line.contains("ERROR") && line.contains("cause"), "{line}");
    }
}

// ------------------------------------------------------------------ names and bodies

#[tokio::test]
async fn names_with_bidi_controls_or_zero_width_characters_are_refused() {
    let server = Server::start(ChatBuilder::new()).await;
    let room = server.api.create_room("names").await;
    for name in [
        "evil\u{202E}txt.exe",
        "a\u{200B}b",
        "word\u{2060}joiner",
        "\u{FEFF}bom",
        "\u{200B}\u{2060}\u{FEFF}",
    ] {
        let (status, problem) = server
            .api
            .anonymous()
            .post("/guests", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 422, "guest {name:?}: {problem}");
        let (status, problem) = server
            .api
            .post("/create-room", Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 422, "room {name:?}: {problem}");
        let (status, problem) = server
            .api
            .anonymous()
            .post(&format!("/join-room/{room}"), Some(json!({ "user": name })))
            .await;
        assert_eq!(status, 422, "v1 guest {name:?}: {problem}");
    }
    // A body of only zero-width characters is empty; the connection goes on.
    let (mut alice, _) = server.guest_in_room(&room, "alice").await;
    alice
        .send(json!({"type": "message", "room": room, "body": "\u{200B}\u{2060}\u{FEFF}", "clientMsgId": "zw"}))
        .await;
    let err = alice.expect_error("empty_body").await;
    assert_eq!(err["clientMsgId"], "zw");
    alice.say(&room, "visible").await;
}

#[tokio::test]
async fn a_jwt_name_with_format_characters_never_reaches_the_websocket() {
    const SECRET: &[u8] = b"the identity provider's test secret, 32+ bytes long";
    let server =
        Server::start(ChatBuilder::new().identity(JwtIdentity::hs256(SECRET).unwrap())).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "\u{200B}bob\u{202E}", "name": "x\u{202E}gpj.exe", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let api = server.api.with_token(&token);
    let room = api.create_room("jwt names").await;
    let mut bob = Client::connect(server.addr, &format!("/ws?token={token}")).await;
    let joined = bob.join(&room).await;
    let names: Vec<&str> = joined["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob"], "{joined}");
    let (status, room_json) = api.get(&format!("/rooms/{room}")).await;
    assert_eq!(status, 200);
    assert_eq!(room_json["members"][0]["name"], "bob", "{room_json}");
}

// ------------------------------------------------------------------ logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_redis_password_and_no_token() {
    const PASSWORD: &str = "s3cret-Redis-pass";
    let redis = RedisServer::start().await;
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query_async(&mut conn)
        .await
        .unwrap();
    let url = redis
        .url()
        .replace("redis://", &format!("redis://:{PASSWORD}@"));
    let demo = LoggedDemo::start(&["--redis-url", &url], "trace").await;
    let (api, _) = demo.api().guest("alice").await;
    let token = api.token.clone().unwrap();
    let room = api.create_room("secrets").await;
    let (status, _) = api.post(&format!("/join-room/{room}"), None).await;
    assert_eq!(status, 200);
    // The token in the query (as browsers send it) and in the header.
    let mut tab = Client::connect(demo.addr, &format!("/ws?token={token}")).await;
    tab.join(&room).await;
    let mut other = Client::try_connect(
        demo.addr,
        "/ws",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap();
    other.join(&room).await;
    tab.say(&room, "hello").await;
    assert_eq!(other.expect("message").await["body"], "hello");
    let (status, _) = api.get(&format!("/rooms/{room}/messages?limit=5")).await;
    assert_eq!(status, 200);
    let (_, invite) = api.post(&format!("/rooms/{room}/invites"), None).await;
    let invite = invite["invite"].as_str().unwrap().to_owned();
    let log = demo.stop().await;

    assert!(log.lines().count() > 20, "trace logging was on:\n{log}");
    assert!(
        log.contains("redis://:***@"),
        "the URL is logged, redacted:\n{log}"
    );
    let signature = token.rsplit('.').next().unwrap();
    for secret in [PASSWORD, &token, signature, &invite] {
        let line = log.lines().find(|line| line.contains(secret));
        assert!(line.is_none(), "a secret in the log: {line:?}");
    }
}

// ------------------------------------------------------------------ pages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pages_carry_csp_nosniff_and_referrer_policy() {
    let demo = LoggedDemo::start(&[], "warn").await;
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/index.html",
        "/main.js",
        "/style.css",
        "/docs/",
        "/docs/swagger-initializer.js",
        "/openapi.json",
        "/no-such-page",
    ] {
        let res = http
            .get(format!("http://{}{path}", demo.addr))
            .send()
            .await
            .unwrap();
        let headers = res.headers();
        let csp = headers
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap();
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    demo.stop().await;
}

#[tokio::test]
async fn a_failed_redis_connection_exits_without_the_password_in_the_error() {
    const PASSWORD: &str = "not-the-Redis-pass";
    // This Redis has another password: AUTH fails, and the demo exits with an error.
    let redis = RedisServer::start().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("the-real-one")
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let url = redis
        .url()
        .replace("redis://", &format!("redis://:{PASSWORD}@"));
    let out = tokio::time::timeout(
        FRAME_WAIT,
        tokio::process::Command::new(demo_server_bin())
            .args(["--listen", "127.0.0.1:0", "--redis-url", &url])
            .env("RUST_LOG", "trace")
            .env_remove("AUTH")
            .output(),
    )
    .await
    .expect("the demo did not exit")
    .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("redis://:***@"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}
