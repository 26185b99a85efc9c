//! socket.io v5 / Engine.IO v4 (plain WebSocket) fan-out + idle-memory bench client.
//!
//! fanout --ports P1,P2 --pids PID1,PID2 [--clients 500 --rooms 10 --messages 20 --rate 10
//!        --body-bytes 64 --drain 10 --json]
//! idle   --port P --pid PID [--clients 5000 --rooms 100 --hold 3]
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

struct Shared {
    base: Instant,
    messages: usize,
    body_bytes: usize,
    sent: AtomicU64,
    delivered: AtomicU64,
    table: Vec<AtomicU8>,
    lat_us: Mutex<Vec<u32>>,
    joined: AtomicUsize,
    echoes: AtomicU64,
    wrong_room: AtomicU64,
    pings: AtomicU64,
    conn_errors: AtomicU64,
    rejoins: AtomicU64,
}

#[derive(Deserialize)]
struct MsgIn<'a> {
    room: &'a str,
    from: usize,
    seq: usize,
    ts: u64,
}

fn clk_tck() -> f64 {
    let o = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}
fn cpu_s(pid: &str, tck: f64) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ")": f[0]=state(field 3) ... utime=field 14 -> f[11], stime=field 15 -> f[12]
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / tck
}
/// utime alone: the process's own code, without the kernel's work on its behalf.
fn user_cpu_s(pid: &str, tck: f64) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() as f64 / tck
}
fn rss_kb(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D049BB133111EB);
    x ^ (x >> 31)
}

#[allow(clippy::too_many_arguments)]
async fn client(
    i: usize,
    url: String,
    room: String,
    sh: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut start_rx: watch::Receiver<Option<Instant>>,
    mut stop_rx: watch::Receiver<bool>,
    offset: Duration,
    interval: Duration,
) {
    let permit = sem.acquire_owned().await.unwrap();
    let ws = match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            eprintln!("client {i}: connect: {e}");
            sh.conn_errors.fetch_add(1, Relaxed);
            return;
        }
    };
    let (mut tx, mut rx) = ws.split();
    // handshake: open packet, connect default namespace, join room
    let mut stage = 0;
    let mut last = String::new();
    let hs_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut rejoin_at = hs_deadline;
    loop {
        if stage == 2 && tokio::time::Instant::now() >= rejoin_at {
            // join was not acknowledged: re-send it (see the server's note on the connect race)
            sh.rejoins.fetch_add(1, Relaxed);
            tx.send(Message::text(format!(r#"42["join","{room}"]"#))).await.unwrap();
            rejoin_at = tokio::time::Instant::now() + Duration::from_secs(1);
        }
        let until = if stage == 2 { rejoin_at.min(hs_deadline) } else { hs_deadline };
        let m = match tokio::time::timeout_at(until, rx.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() >= hs_deadline => break,
            Err(_) => continue,
        };
        let Message::Text(t) = m else { continue };
        let t = t.as_str();
        last = t.to_string();
        if stage == 0 && t.starts_with('0') {
            tx.send(Message::text("40")).await.unwrap();
            stage = 1;
        } else if stage == 1 && t.starts_with("40") {
            tx.send(Message::text(format!(r#"42["join","{room}"]"#))).await.unwrap();
            stage = 2;
            rejoin_at = tokio::time::Instant::now() + Duration::from_secs(1);
        } else if stage == 2 && t.starts_with(r#"42["joined""#) {
            stage = 3;
            break;
        } else if t == "2" {
            tx.send(Message::text("3")).await.unwrap();
        }
    }
    if stage != 3 {
        eprintln!("client {i}: handshake failed at stage {stage}, last frame {last:?}");
        sh.conn_errors.fetch_add(1, Relaxed);
        return;
    }
    drop(permit);
    sh.joined.fetch_add(1, Relaxed);

    let body = "x".repeat(sh.body_bytes);
    let mut lat: Vec<u32> = Vec::with_capacity(1024);
    let mut t0: Option<Instant> = None;
    let mut sent = 0usize;
    let far = tokio::time::Instant::now() + Duration::from_secs(86400);
    loop {
        let next = match t0 {
            Some(t0) if sent < sh.messages => tokio::time::Instant::from_std(t0 + offset + interval * sent as u32),
            _ => far,
        };
        tokio::select! {
            m = rx.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                let t = t.as_str();
                if t == "2" {
                    sh.pings.fetch_add(1, Relaxed);
                    let _ = tx.send(Message::text("3")).await;
                } else if t.starts_with(r#"42["msg","#) {
                    let now = sh.base.elapsed().as_micros() as u64;
                    let (_, msg): (&str, MsgIn) = match serde_json::from_str(&t[2..]) {
                        Ok(v) => v,
                        Err(e) => { eprintln!("bad frame {e}: {t}"); continue }
                    };
                    if msg.from == i { sh.echoes.fetch_add(1, Relaxed); }
                    if msg.room != room { sh.wrong_room.fetch_add(1, Relaxed); }
                    lat.push(now.saturating_sub(msg.ts) as u32);
                    if let Some(c) = sh.table.get(msg.from * sh.messages + msg.seq) { c.fetch_add(1, Relaxed); }
                    sh.delivered.fetch_add(1, Relaxed);
                }
            }
            r = start_rx.changed(), if t0.is_none() => {
                if r.is_err() { break }
                t0 = *start_rx.borrow();
            }
            _ = tokio::time::sleep_until(next), if t0.is_some() && sent < sh.messages => {
                let ts = sh.base.elapsed().as_micros() as u64;
                let f = format!(r#"42["msg",{{"room":"{room}","from":{i},"seq":{sent},"ts":{ts},"body":"{body}"}}]"#);
                if tx.send(Message::text(f)).await.is_err() { break }
                sent += 1;
                sh.sent.fetch_add(1, Relaxed);
            }
            _ = stop_rx.changed() => break,
        }
    }
    sh.lat_us.lock().unwrap().extend_from_slice(&lat);
    let _ = tx.send(Message::Close(None)).await;
}

fn arg(args: &[String], name: &str, def: &str) -> String {
    args.iter().position(|a| a == name).map(|p| args[p + 1].clone()).unwrap_or_else(|| def.to_string())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let tck = clk_tck();
    let idle = mode == "idle";
    let clients: usize = arg(&args, "--clients", if idle { "5000" } else { "500" }).parse().unwrap();
    let rooms: usize = arg(&args, "--rooms", if idle { "100" } else { "10" }).parse().unwrap();
    let messages: usize = if idle { 0 } else { arg(&args, "--messages", "20").parse().unwrap() };
    let rate: f64 = arg(&args, "--rate", "10").parse().unwrap();
    let body_bytes: usize = arg(&args, "--body-bytes", "64").parse().unwrap();
    let json = args.iter().any(|a| a == "--json");
    let ports: Vec<String> = if idle { vec![arg(&args, "--port", "4001")] } else {
        arg(&args, "--ports", "4001,4002").split(',').map(String::from).collect() };
    let pids: Vec<String> = if idle { vec![arg(&args, "--pid", "")] } else {
        arg(&args, "--pids", "").split(',').map(String::from).collect() };
    let sh = Arc::new(Shared {
        base: Instant::now(),
        messages,
        body_bytes,
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        table: (0..clients * messages).map(|_| AtomicU8::new(0)).collect(),
        lat_us: Mutex::new(Vec::new()),
        joined: AtomicUsize::new(0),
        echoes: AtomicU64::new(0),
        wrong_room: AtomicU64::new(0),
        pings: AtomicU64::new(0),
        conn_errors: AtomicU64::new(0),
        rejoins: AtomicU64::new(0),
    });
    let rss_before: Vec<u64> = pids.iter().map(|p| rss_kb(p)).collect();
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let sem = Arc::new(Semaphore::new(64));
    let seed = sh.base.elapsed().as_nanos() as u64 ^ std::process::id() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let setup = Instant::now();
    let mut handles = Vec::new();
    for i in 0..clients {
        let port = &ports[(i / 10) % ports.len()];
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let room = format!("r{}", i % rooms);
        let offset = Duration::from_micros(splitmix(seed ^ i as u64) % 100_000);
        handles.push(tokio::spawn(client(i, url, room, sh.clone(), sem.clone(), start_rx.clone(), stop_rx.clone(), offset, interval)));
    }
    while sh.joined.load(Relaxed) + (sh.conn_errors.load(Relaxed) as usize) < clients {
        if setup.elapsed() > Duration::from_secs(120) { eprintln!("setup timeout"); break }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let joined = sh.joined.load(Relaxed);
    let setup_line = format!("mode={mode} clients={clients} rooms={rooms} joined={joined} conn_errors={} join_resends={} setup_s={:.2}",
        sh.conn_errors.load(Relaxed), sh.rejoins.load(Relaxed), setup.elapsed().as_secs_f64());
    // With --json, stdout carries the one JSON object only.
    if json { eprintln!("{setup_line}") } else { println!("{setup_line}") }

    if idle {
        let hold: f64 = arg(&args, "--hold", "3").parse().unwrap();
        tokio::time::sleep(Duration::from_secs_f64(hold)).await;
        let after = rss_kb(&pids[0]);
        println!("idle: rss_before_kb={} rss_after_kb={} per_conn_bytes={:.0} (over {} connections)",
            rss_before[0], after, (after as f64 - rss_before[0] as f64) * 1024.0 / joined as f64, joined);
        let _ = stop_tx.send(true);
        for h in handles { let _ = h.await; }
        return;
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_s(p, tck)).collect();
    let user0: f64 = pids.iter().map(|p| user_cpu_s(p, tck)).sum();
    let self0 = cpu_s("self", tck);
    let redis_pid = arg(&args, "--redis-pid", "");
    let redis0 = if redis_pid.is_empty() { 0.0 } else { cpu_s(&redis_pid, tck) };
    let start = Instant::now() + Duration::from_millis(20);
    let _ = start_tx.send(Some(start));
    let expected = (clients * messages * (clients / rooms - 1)) as u64;
    // Drain: until every expected copy arrived, or (after the send schedule) nothing arrived
    // for --drain seconds, as chat-bench's --drain-timeout.
    let drain = Duration::from_secs_f64(arg(&args, "--drain", "5").parse().unwrap());
    let schedule_end = start + interval * messages as u32 + Duration::from_millis(100);
    let mut last_change = Instant::now();
    let mut last = 0;
    let mut timed_out = false;
    loop {
        let d = sh.delivered.load(Relaxed);
        if d != last { last = d; last_change = Instant::now(); }
        if d >= expected { break }
        if Instant::now() > schedule_end && last_change.elapsed() > drain { timed_out = true; break }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let done_at = Instant::now();
    let cpu1: Vec<f64> = pids.iter().map(|p| cpu_s(p, tck)).collect();
    let user1: f64 = pids.iter().map(|p| user_cpu_s(p, tck)).sum();
    let self1 = cpu_s("self", tck);
    let redis1 = if redis_pid.is_empty() { 0.0 } else { cpu_s(&redis_pid, tck) };
    let _ = stop_tx.send(true);
    for h in handles { let _ = h.await; }
    let delivered = sh.delivered.load(Relaxed);
    let per_recv = (clients / rooms - 1) as u8;
    let (mut lost, mut dup) = (0u64, 0u64);
    for c in &sh.table {
        let c = c.load(Relaxed);
        if c < per_recv { lost += (per_recv - c) as u64 } else { dup += (c - per_recv) as u64 }
    }
    let mut lat = std::mem::take(&mut *sh.lat_us.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0 };
    let srv: Vec<f64> = cpu0.iter().zip(&cpu1).map(|(a, b)| b - a).collect();
    let srv_sum: f64 = srv.iter().sum();
    let window_s = (done_at - start).as_secs_f64();
    let user_s = user1 - user0;
    if json {
        let out = serde_json::json!({
            "peer": "socketioxide",
            "clients": clients, "rooms": rooms, "joined": joined,
            "conn_errors": sh.conn_errors.load(Relaxed),
            "messages_per_sender": messages, "rate_per_sender": rate, "body_bytes": body_bytes,
            "messages_sent": sh.sent.load(Relaxed),
            "expected_deliveries": expected, "delivered": delivered,
            // No acks or refusals in this protocol: whatever is missing was lost silently.
            "lost_deliveries": lost, "duplicates": dup,
            "echoes": sh.echoes.load(Relaxed), "wrong_room": sh.wrong_room.load(Relaxed),
            "drain_timed_out": timed_out,
            "window_s": window_s,
            "last_delivery_s": last_change.saturating_duration_since(start).as_secs_f64(),
            "server_cpu_s": srv, "server_cpu_sum_s": srv_sum, "server_user_cpu_s": user_s,
            "delivered_per_server_cpu_s": delivered as f64 / srv_sum,
            "delivered_per_server_user_cpu_s": delivered as f64 / user_s,
            "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p999": pct(0.999), "max": pct(1.0)},
            "bench_cpu_s": self1 - self0,
            "bench_cpu_per_s": (self1 - self0) / window_s,
            "redis_cpu_s": redis1 - redis0,
        });
        println!("{out}");
        return;
    }
    println!("delivered={delivered}/{expected} lost={lost} dup={dup} echoes={} wrong_room={} pings={}",
        sh.echoes.load(Relaxed), sh.wrong_room.load(Relaxed), sh.pings.load(Relaxed));
    println!("window_s={:.3} (start..all delivered/timeout; last delivery {:.3}s after start)",
        window_s, last_change.saturating_duration_since(start).as_secs_f64());
    println!("server_cpu_s={} sum={:.2}", srv.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(","), srv_sum);
    println!("deliveries_per_server_cpu_s={:.0}", delivered as f64 / srv_sum);
    // The same split as chat-bench's report: on loopback the kernel part includes the clients'
    // TCP receive processing, which each server write carries.
    println!("server_user_cpu_s={:.2} deliveries_per_server_user_cpu_s={:.0} user_us_per_delivery={:.2}",
        user_s, delivered as f64 / user_s, user_s * 1e6 / delivered as f64);
    println!("latency_ms p50={:.2} p99={:.2} max={:.2}", pct(0.5), pct(0.99), pct(1.0));
    println!("bench_cpu_s={:.2} redis_cpu_s={:.2} (same window){}", self1 - self0, redis1 - redis0,
        if timed_out { " [drain timed out]" } else { "" });
}
