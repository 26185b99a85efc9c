//! The soak test (issue 16): about a minute, loopback only. Two demo-server instances on one
//! Redis; clients connect, join, send, leave and disconnect in waves while Redis is killed
//! and restarted twice and one instance is drained (SIGTERM) and started again. Afterwards:
//! RSS of the surviving instance near its baseline, no connections, subscriptions, leaked
//! tasks or presence left (`/metrics`, `PUBSUB`, the presence keys), and every message
//! either delivered once to every peer that stayed connected (and was not told `resync`) or
//! reported to its sender. The figures are printed (`--nocapture`).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use roomcast_tests::{redis_server::RedisServer, DemoProcess};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the waves go on.
const SOAK: Duration = Duration::from_secs(45);
const CLIENTS_PER_WAVE: usize = 12;
const MESSAGES_PER_CLIENT: usize = 5;
/// How long a receiver waits for what its peers' acks promise before counting it missing.
const RECEIVE_WAIT: Duration = Duration::from_secs(6);
const SECRET: &str = "soak-secret-0123456789abcdef0123456789abcdef";

fn demo_args(redis: &str) -> Vec<String> {
    [
        "--redis-url",
        redis,
        "--token-secret",
        SECRET,
        "--presence-ttl-secs",
        "2",
        "--drain-timeout-secs",
        "3",
        "--user-messages-per-second",
        "100000",
        "--user-messages-burst",
        "100000",
        "--frame-burst",
        "100000",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn start_demo(redis: &str) -> DemoProcess {
    let args = demo_args(redis);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    DemoProcess::start_anonymous(&args).await
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn scrape(http: &reqwest::Client, addr: SocketAddr) -> String {
    http.get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// POST with JSON; `None` on any failure (Redis away, instance draining): the caller retries.
async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Option<Value> {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

/// Retries `f` until it gives `Some` (an outage lasts about a second here).
async fn retry<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recovery in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client of a wave.
struct Peer {
    name: String,
    token: String,
    ws: Option<Ws>,
    /// Bodies of room messages received, with how often.
    received: HashMap<String, u32>,
    /// Told `resync`: it may have missed messages (and would reload).
    resynced: bool,
    /// Closed by the server (1012) at some point: not a receiver to check.
    closed: bool,
    acked: Vec<String>,
    reported: usize,
    unanswered: usize,
}

enum Reply {
    Ack,
    Error,
    Closed,
}

impl Peer {
    /// A client that joined as `name` and holds `token`, not connected yet.
    fn new(name: String, token: String) -> Self {
        Self {
            name,
            token,
            ws: None,
            received: HashMap::new(),
            resynced: false,
            closed: false,
            acked: Vec::new(),
            reported: 0,
            unanswered: 0,
        }
    }

    fn note(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("message") => {
                *self
                    .received
                    .entry(frame["body"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
            Some("resync") => self.resynced = true,
            _ => {}
        }
    }

    /// The next frame; `None` once the socket closed (or after `wait`).
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let ws = self.ws.as_mut()?;
        loop {
            match tokio::time::timeout(wait, ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(text.as_str()).unwrap())
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    assert!(
                        matches!(code, Some(1012)),
                        "unexpected close {code:?} for {}",
                        self.name
                    );
                    self.ws = None;
                    self.closed = true;
                    return None;
                }
                Ok(_) => {
                    self.ws = None;
                    self.closed = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    async fn send(&mut self, frame: Value) -> bool {
        match self.ws.as_mut() {
            Some(ws) => ws.send(Message::text(frame.to_string())).await.is_ok(),
            None => false,
        }
    }

    /// Sends `body` (its own `clientMsgId`) and waits for its ack or error.
    async fn say(&mut self, room: &str, body: &str) -> Reply {
        let frame = json!({"type": "message", "room": room, "body": body, "clientMsgId": body});
        if !self.send(frame).await {
            return Reply::Closed;
        }
        loop {
            let Some(frame) = self.next(Duration::from_secs(10)).await else {
                return Reply::Closed;
            };
            match frame["type"].as_str() {
                Some("ack") if frame["clientMsgId"] == body => return Reply::Ack,
                Some("error") if frame["clientMsgId"] == body => return Reply::Error,
                _ => self.note(&frame),
            }
        }
    }

    /// Connects to the survivor, retrying through an outage; `false` if it cannot within
    /// 10 s (Redis restarted empty: the wave's room is gone). Either way it is no longer a
    /// receiver to check (it was away for a while).
    async fn reconnect(&mut self, addr: SocketAddr, room: &str) -> bool {
        self.closed = true;
        let start = Instant::now();
        while !self.connect(addr, room).await {
            if start.elapsed() > Duration::from_secs(10) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Connects and joins `room` on `addr`; `false` if the instance refused (draining).
    async fn connect(&mut self, addr: SocketAddr, room: &str) -> bool {
        let Ok((ws, _)) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={}", self.token)).await
        else {
            return false;
        };
        self.ws = Some(ws);
        if !self.send(json!({"type": "join", "room": room})).await {
            return false;
        }
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(f) if f["type"] == "joined" => return true,
                Some(f) if f["type"] == "error" => {
                    self.ws = None;
                    return false;
                }
                Some(f) => self.note(&f),
                None => return false,
            }
        }
    }
}

#[derive(Default, Debug)]
struct Totals {
    waves: usize,
    clients: usize,
    sent: usize,
    acked: usize,
    reported: usize,
    unanswered: usize,
    resent_after_1012: usize,
    deliveries_expected: usize,
    delivered_once: usize,
    skipped_resynced: usize,
    duplicates: usize,
    missing: usize,
}

/// One wave: a room, clients half on each instance, each sends, everyone checks what it got,
/// then leaves and disconnects.
async fn wave(
    http: &reqwest::Client,
    addrs: [SocketAddr; 2],
    survivor: SocketAddr,
    n: usize,
    totals: &mut Totals,
) {
    // The room and its members in one step, retried whole: a room made just before an
    // outage is lost with Redis's data (it keeps nothing on disk here), so its joins would
    // answer 404 for good; the retry makes a new one.
    let (room, joined) = retry(|| async {
        let guest = post(
            http,
            format!("http://{survivor}/guests"),
            None,
            json!({"name": format!("owner{n}")}),
        )
        .await?;
        let token = guest["token"].as_str()?.to_owned();
        let room = post(
            http,
            format!("http://{survivor}/create-room"),
            Some(&token),
            json!({"name": format!("wave {n}"), "visibility": "public"}),
        )
        .await?;
        let room = room["roomId"].as_str()?.to_owned();
        let mut joined = Vec::new();
        for i in 0..CLIENTS_PER_WAVE {
            let name = format!("w{n}c{i}");
            let ticket = post(
                http,
                format!("http://{survivor}/join-room/{room}"),
                None,
                json!({"user": name}),
            )
            .await?;
            joined.push((name, ticket["token"].as_str()?.to_owned()));
        }
        Some((room, joined))
    })
    .await;
    let mut peers: Vec<Peer> = joined
        .into_iter()
        .map(|(name, token)| Peer::new(name, token))
        .collect();
    // Connect: half on each instance; one refused (draining, or gone) goes to the survivor.
    let connected =
        futures_util::future::join_all(peers.iter_mut().enumerate().map(|(i, peer)| {
            let room = room.clone();
            async move {
                if !peer.connect(addrs[i % 2], &room).await {
                    peer.reconnect(survivor, &room).await;
                }
                // Connected, or not at all (then its sends are reported as failed).
            }
        }));
    connected.await;
    totals.clients += peers.len();
    // Send, all at once; a message whose connection was closed by a drain is sent again on
    // the survivor with the same clientMsgId (as the browser client does).
    let resent = futures_util::future::join_all(peers.iter_mut().map(|peer| {
        let room = room.clone();
        async move {
            let mut resent = 0;
            for m in 0..MESSAGES_PER_CLIENT {
                let body = format!("{}m{m}", peer.name);
                loop {
                    match peer.say(&room, &body).await {
                        Reply::Ack => peer.acked.push(body.clone()),
                        Reply::Error => peer.reported += 1,
                        Reply::Closed => {
                            if peer.ws.is_some() {
                                // No answer within 10 s on an open socket: a lost message.
                                peer.unanswered += 1;
                                break;
                            }
                            if !peer.reconnect(survivor, &room).await {
                                // Nowhere to send it: the client reports it as not sent.
                                peer.reported += 1;
                                break;
                            }
                            resent += 1;
                            continue;
                        }
                    }
                    break;
                }
            }
            resent
        }
    }))
    .await;
    totals.resent_after_1012 += resent.iter().sum::<usize>();
    // Receive: each peer reads until it has every acked message of the others, or a
    // `resync`, a close, or the wait is over.
    let acked: Vec<(String, String)> = peers
        .iter()
        .flat_map(|p| p.acked.iter().map(|b| (p.name.clone(), b.clone())))
        .collect();
    futures_util::future::join_all(peers.iter_mut().map(|peer| {
        let expected: Vec<String> = acked
            .iter()
            .filter(|(from, _)| *from != peer.name)
            .map(|(_, body)| body.clone())
            .collect();
        async move {
            let deadline = Instant::now() + RECEIVE_WAIT;
            while !peer.resynced
                && !peer.closed
                && !expected.iter().all(|b| peer.received.contains_key(b))
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Some(frame) = peer.next(left).await {
                    peer.note(&frame);
                }
            }
        }
    }))
    .await;
    for peer in &peers {
        totals.sent += MESSAGES_PER_CLIENT;
        totals.acked += peer.acked.len();
        totals.reported += peer.reported;
        totals.unanswered += peer.unanswered;
        assert_eq!(
            peer.acked.len() + peer.reported + peer.unanswered,
            MESSAGES_PER_CLIENT,
            "{}: every message acked or reported",
            peer.name
        );
        for (from, body) in &acked {
            if *from == peer.name {
                continue;
            }
            let got = peer.received.get(body).copied().unwrap_or(0);
            totals.duplicates += usize::from(got > 1);
            if peer.closed || peer.resynced {
                totals.skipped_resynced += 1;
                continue;
            }
            totals.deliveries_expected += 1;
            match got {
                1 => totals.delivered_once += 1,
                0 => totals.missing += 1,
                _ => {}
            }
        }
    }
    // Leave and disconnect.
    for mut peer in peers {
        let _ = peer.send(json!({"type": "leave", "room": room})).await;
        if let Some(mut ws) = peer.ws.take() {
            let _ = ws.close(None).await;
            while let Ok(Some(Ok(_))) =
                tokio::time::timeout(Duration::from_secs(2), ws.next()).await
            {}
        }
    }
    totals.waves += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_waves_through_redis_restarts_and_a_drain() {
    let redis = Arc::new(tokio::sync::Mutex::new(RedisServer::start().await));
    let url = redis.lock().await.url();
    let a = start_demo(&url).await;
    let b = start_demo(&url).await;
    let http = reqwest::Client::new();
    let mut totals = Totals::default();

    // Warm-up wave, then the baseline (allocator arenas and caches filled once).
    wave(&http, [a.addr, b.addr], a.addr, 0, &mut totals).await;
    let idle_tasks = settle(&http, a.addr).await;
    let rss_before = rss_kib(a.pid());
    let baseline_channels = pubsub_channels(&redis).await;

    // Chaos, on a timeline, while the waves go on.
    let b_addr = Arc::new(std::sync::Mutex::new(b.addr));
    let chaos_done = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn({
        let redis = redis.clone();
        let url = url.clone();
        let b_addr = b_addr.clone();
        let done = chaos_done.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            redis.lock().await.kill().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            redis.lock().await.restart().await;
            tokio::time::sleep(Duration::from_secs(8)).await;
            // Drain B (SIGTERM) and start it again (on a new port: the load balancer's
            // view of "the same instance, restarted"). Three clients sit on B meanwhile, so
            // the drain has connections to close whatever the waves are doing.
            let http = reqwest::Client::new();
            let lurkers = lurkers_on(&http, b.addr, 3).await;
            let status = b.terminate().await;
            assert!(status.success(), "{status:?}");
            for mut lurker in lurkers {
                while lurker.next(Duration::from_secs(5)).await.is_some() {}
                assert!(lurker.closed, "{} closed by the drain (1012)", lurker.name);
            }
            let b = start_demo(&url).await;
            *b_addr.lock().unwrap() = b.addr;
            tokio::time::sleep(Duration::from_secs(8)).await;
            redis.lock().await.kill().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            redis.lock().await.restart().await;
            done.store(true, Ordering::SeqCst);
            b
        }
    });
    let start = Instant::now();
    let mut n = 1;
    while start.elapsed() < SOAK || !chaos_done.load(Ordering::SeqCst) {
        let b_now = *b_addr.lock().unwrap();
        wave(&http, [a.addr, b_now], a.addr, n, &mut totals).await;
        n += 1;
    }
    let b = chaos.await.unwrap();
    // One calm wave after the last restart: the instances recovered.
    let calm_before = totals.missing;
    wave(&http, [a.addr, b.addr], a.addr, n, &mut totals).await;
    assert_eq!(totals.missing, calm_before, "a calm wave misses nothing");

    // Afterwards: nothing left.
    let tasks_after = settle(&http, a.addr).await;
    settle(&http, b.addr).await;
    let rss_after = rss_kib(a.pid());
    // What failed during the last outage is retried (unsubscribes every second, the node's
    // room index at the next heartbeat): wait for it, with a deadline.
    let start = Instant::now();
    while (pubsub_channels(&redis).await > 0 || presence_keys(&redis).await > 0)
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_in = start.elapsed();
    let channels_after = pubsub_channels(&redis).await;
    let presence = presence_keys(&redis).await;
    let text_a = scrape(&http, a.addr).await;
    eprintln!(
        "soak: {totals:?}\n  RSS of instance A: {rss_before} KiB before, {rss_after} KiB after\n  \
         runtime tasks on A when idle: {idle_tasks} before, {tasks_after} after\n  \
         Redis Pub/Sub channels: {baseline_channels} at baseline, {channels_after} after\n  \
         presence keys left: {presence} (Redis settled in {settled_in:?})\n  A: messages {} deliveries {} reconnects {} resyncs(broker) {} closed(draining) {} publish errors {}",
        sample(&text_a, r#"roomcast_messages_total{kind="room"}"#),
        sample(&text_a, "roomcast_deliveries_total"),
        sample(&text_a, "roomcast_broker_reconnects_total"),
        sample(&text_a, r#"roomcast_resyncs_total{reason="broker_reconnected"}"#),
        sample(&text_a, r#"roomcast_connections_closed_total{reason="draining"}"#),
        sample(&text_a, r#"roomcast_publish_errors_total{kind="room"}"#),
    );
    assert_eq!(totals.duplicates, 0, "no message delivered twice");
    assert_eq!(
        totals.unanswered, 0,
        "every message acked or reported to its sender"
    );
    assert_eq!(
        totals.missing, 0,
        "every acked message delivered to every peer that stayed"
    );
    assert!(totals.delivered_once > 0);
    assert!(sample(&text_a, "roomcast_broker_reconnects_total") >= 2.0);
    assert_eq!(sample(&text_a, "roomcast_connections"), 0.0);
    assert_eq!(sample(&text_a, "roomcast_subscriptions"), 0.0);
    assert!(
        tasks_after <= idle_tasks + 2.0,
        "tasks leaked: {idle_tasks} -> {tasks_after}"
    );
    assert_eq!(
        channels_after,
        0,
        "no Redis Pub/Sub channel left (baseline {baseline_channels}): {:?}",
        pubsub_channel_names(&redis).await
    );
    assert_eq!(presence, 0, "no presence left in Redis");
    // Near the baseline: a bound on leaks (a wave's worth of connections and rooms leaking
    // per wave would add far more), not a measurement.
    assert!(
        rss_after < rss_before + rss_before / 2 + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// `n` clients joined to a room of their own on `addr`.
async fn lurkers_on(http: &reqwest::Client, addr: SocketAddr, n: usize) -> Vec<Peer> {
    let room = retry(|| async {
        let guest = post(
            http,
            format!("http://{addr}/guests"),
            None,
            json!({"name": "host"}),
        )
        .await?;
        let room = post(
            http,
            format!("http://{addr}/create-room"),
            guest["token"].as_str(),
            json!({"name": "lurkers", "visibility": "public"}),
        )
        .await?;
        Some(room["roomId"].as_str()?.to_owned())
    })
    .await;
    let mut lurkers = Vec::new();
    for i in 0..n {
        let joined = retry(|| {
            post(
                http,
                format!("http://{addr}/join-room/{room}"),
                None,
                json!({"user": format!("lurker{i}")}),
            )
        })
        .await;
        let mut peer = Peer::new(
            format!("lurker{i}"),
            joined["token"].as_str().unwrap().to_owned(),
        );
        assert!(peer.connect(addr, &room).await);
        lurkers.push(peer);
    }
    lurkers
}

/// Waits until the instance has no connection and no subscription; returns its idle task
/// count.
async fn settle(http: &reqwest::Client, addr: SocketAddr) -> f64 {
    let start = Instant::now();
    loop {
        let text = scrape(http, addr).await;
        if sample(&text, "roomcast_connections") == 0.0
            && sample(&text, "roomcast_subscriptions") == 0.0
        {
            return sample(&text, "roomcast_runtime_tasks");
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not idle: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pubsub_channels(redis: &tokio::sync::Mutex<RedisServer>) -> usize {
    pubsub_channel_names(redis).await.len()
}

async fn pubsub_channel_names(redis: &tokio::sync::Mutex<RedisServer>) -> Vec<String> {
    let mut conn = redis.lock().await.conn().await;
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut conn)
        .await
        .unwrap();
    channels
}

async fn presence_keys(redis: &tokio::sync::Mutex<RedisServer>) -> usize {
    let mut conn = redis.lock().await.conn().await;
    let mut n = 0;
    for pattern in ["*:online", "*:conns:*", "*:node:*:rooms"] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        n += keys.len();
    }
    n
}
