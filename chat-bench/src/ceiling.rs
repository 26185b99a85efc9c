//! `ceiling`: the same traffic as `fanout`, served by the least a fan-out server can do.
//!
//! A child process (`chat-bench __ceiling-server`) accepts plain TCP connections; a client's
//! first line names its room, every later line is a message that the server copies, with one
//! non-blocking `write` per recipient, to the room's other members. No WebSocket framing, no
//! JSON, no queues, no acks: what is left is the kernel's cost of one TCP send per delivery on
//! loopback (and the bench's cost of receiving it), which no chat server on this machine can
//! go below without putting several messages in one write. The report has the same shape as
//! the other scenarios, so its deliveries per server CPU-second and latency percentiles sit
//! beside `fanout`'s.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{tcp::OwnedWriteHalf, TcpListener, TcpStream},
    process::Command,
};

use crate::{
    args::Args,
    cluster::ProcSample,
    report::{histogram, round3, Latency, Report, ServerStats, Traffic},
    traffic::lock,
};

/// Bytes a room message frame of roomcast takes with a `body_bytes` body (id, room, sender,
/// timestamps and JSON around it): the raw lines are padded to this, so both servers move
/// the same bytes.
const FRAME_OVERHEAD: usize = 200;

type Members = Vec<(u64, Arc<OwnedWriteHalf>)>;

/// The child process: serves until its stdin closes. Prints the port it listens on.
pub(crate) async fn server_main() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let rooms: Arc<RwLock<HashMap<u32, Members>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let mut stdin = tokio::io::stdin();
    let mut next_id = 0u64;
    let mut sink = [0u8; 1];
    loop {
        tokio::select! {
            // The parent closes stdin (or dies): stop.
            _ = stdin.read(&mut sink) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                next_id += 1;
                tokio::spawn(serve_conn(stream, next_id, rooms.clone(), failed.clone()));
            }
        }
    }
    eprintln!("ceiling server: {} writes failed", failed.load(Relaxed));
    Ok(())
}

async fn serve_conn(
    stream: TcpStream,
    id: u64,
    rooms: Arc<RwLock<HashMap<u32, Members>>>,
    failed: Arc<AtomicU64>,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let write = Arc::new(write);
    let mut lines = BufReader::with_capacity(1024, read);
    let mut line = Vec::with_capacity(512);
    if !matches!(lines.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
        return;
    }
    let Some(room) = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.trim().strip_prefix('R'))
        .and_then(|r| r.parse::<u32>().ok())
    else {
        return;
    };
    write_lock(&rooms)
        .entry(room)
        .or_default()
        .push((id, write.clone()));
    let _ = write.try_write(b"J\n");
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(n) if n > 0 => {}
            _ => break,
        }
        let members = read_lock(&rooms);
        for (member, socket) in members.get(&room).into_iter().flatten() {
            if *member != id && !matches!(socket.try_write(&line), Ok(n) if n == line.len()) {
                failed.fetch_add(1, Relaxed);
            }
        }
    }
    if let Some(members) = write_lock(&rooms).get_mut(&room) {
        members.retain(|(m, _)| *m != id);
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

struct Shared {
    base: Instant,
    messages: usize,
    received: Vec<AtomicU32>,
    delivered: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

/// Runs the `ceiling` scenario with the sizes of `args` (clients, rooms, senders, messages,
/// rate, body bytes).
pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let setup_start = Instant::now();
    let exe = std::env::current_exe().context("locating chat-bench")?;
    let mut child = Command::new(exe)
        .arg("__ceiling-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the ceiling server")?;
    let pid = child.id().context("ceiling server pid")?;
    let mut port_line = String::new();
    let stdout = child.stdout.take().context("ceiling server stdout")?;
    BufReader::new(stdout)
        .read_line(&mut port_line)
        .await
        .context("reading the ceiling server's port")?;
    let addr: SocketAddr = format!("127.0.0.1:{}", port_line.trim())
        .parse()
        .with_context(|| format!("bad port line {port_line:?}"))?;

    let clients = args.clients;
    let senders = args.senders.min(clients);
    let mut room_size = vec![0u32; args.rooms];
    for i in 0..clients {
        room_size[i % args.rooms] += 1;
    }
    let total = senders * args.messages;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        messages: args.messages,
        received: (0..total).map(|_| AtomicU32::new(0)).collect(),
        delivered: AtomicU64::new(0),
        latency: Mutex::new(histogram()),
    });

    // Connect everyone and wait for each join confirmation.
    let mut writers = Vec::with_capacity(clients);
    let mut readers = Vec::with_capacity(clients);
    for i in 0..clients {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("client {i}: connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("R{}\n", i % args.rooms).as_bytes())
            .await?;
        let mut read = BufReader::with_capacity(8 * 1024, read);
        let mut joined = Vec::new();
        read.read_until(b'\n', &mut joined).await?;
        if joined != b"J\n" {
            bail!("client {i}: no join confirmation");
        }
        readers.push(tokio::spawn(reader(read, sh.clone())));
        writers.push(write);
    }
    let setup_s = setup_start.elapsed().as_secs_f64();

    let start = (
        Instant::now(),
        ProcSample::read(pid),
        ProcSample::read(std::process::id()),
    );
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
    let line_bytes = args.body_bytes + FRAME_OVERHEAD;
    let mut send_tasks = Vec::with_capacity(senders);
    for (s, write) in writers.drain(..senders).enumerate() {
        let phase = period.mul_f64(s as f64 / senders as f64);
        send_tasks.push(tokio::spawn(sender(
            write,
            s as u32,
            sh.clone(),
            t0 + phase,
            period,
            line_bytes,
        )));
    }
    let mut sent = 0u64;
    for t in send_tasks {
        let (write, n) = t.await??;
        // Held to the end: dropping a write half shuts the socket down for writing, and the
        // server would take that client out of its room.
        writers.push(write);
        sent += n;
    }
    let expected: u64 = (0..senders)
        .map(|s| u64::from(room_size[s % args.rooms].saturating_sub(1)) * args.messages as u64)
        .sum();
    let mut last = (0, Instant::now());
    loop {
        let delivered = sh.delivered.load(Relaxed);
        if delivered >= expected {
            break;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > args.drain_timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = (
        Instant::now(),
        ProcSample::read(pid),
        ProcSample::read(std::process::id()),
    );
    drop(child.stdin.take());
    for r in readers {
        r.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;

    let window = end.0.duration_since(start.0).as_secs_f64().max(1e-9);
    let mut t = Traffic {
        messages_sent: sent,
        expected_deliveries: expected,
        delivered: sh.delivered.load(Relaxed),
        ..Default::default()
    };
    for (k, got) in sh.received.iter().enumerate() {
        let exp = u64::from(room_size[(k / sh.messages) % args.rooms].saturating_sub(1));
        let got = u64::from(got.load(Relaxed));
        if got < exp {
            t.lost_deliveries += exp - got;
            t.messages_with_loss += 1;
        } else {
            t.duplicates += got - exp;
        }
    }
    t.send_window_s = round3(window);
    t.sent_per_s = round3(sent as f64 / window);
    t.delivery_window_s = round3(window);
    t.delivered_per_s = round3(t.delivered as f64 / window);
    t.latency = Latency::of(&lock(&sh.latency));
    let server = ServerStats::over(0, Some(pid), clients, start.1.zip(end.1), window);
    let mut report = Report {
        scenario: "ceiling".into(),
        mode: "raw tcp".into(),
        instances: 1,
        clients,
        rooms: args.rooms,
        senders,
        messages_per_sender: args.messages,
        rate_per_sender: args.rate,
        body_bytes: line_bytes,
        setup_s: round3(setup_s),
        window_s: round3(window),
        server_cpu_s: server.cpu_s,
        server_user_cpu_s: server.user_cpu_s,
        server_switches: server.voluntary_switches + server.involuntary_switches,
        ..Default::default()
    };
    if let (Some(s), Some(e)) = (start.2, end.2) {
        report.bench_cpu_s = round3(e.cpu_s - s.cpu_s);
    }
    report.set_efficiency(t.delivered);
    report.servers.push(server);
    report.traffic = Some(t);
    Ok(report)
}

async fn reader(mut read: BufReader<tokio::net::tcp::OwnedReadHalf>, sh: Arc<Shared>) {
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        match read.read_until(b'\n', &mut line).await {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        let now = sh.base.elapsed().as_micros() as u64;
        let Some((t, s, n)) = std::str::from_utf8(&line)
            .ok()
            .and_then(crate::traffic::parse_body)
        else {
            continue;
        };
        let k = s as usize * sh.messages + n as usize;
        if let Some(counter) = sh.received.get(k) {
            counter.fetch_add(1, Relaxed);
            sh.delivered.fetch_add(1, Relaxed);
            let _ = lock(&sh.latency).record(now.saturating_sub(t).max(1));
        }
    }
}

async fn sender(
    mut write: OwnedWriteHalf,
    s: u32,
    sh: Arc<Shared>,
    start: tokio::time::Instant,
    period: Duration,
    line_bytes: usize,
) -> anyhow::Result<(OwnedWriteHalf, u64)> {
    let mut next = start;
    let mut sent = 0;
    for n in 0..sh.messages as u32 {
        tokio::time::sleep_until(next).await;
        let t = sh.base.elapsed().as_micros() as u64;
        let mut line = format!("t={t};s={s};n={n};");
        while line.len() + 1 < line_bytes {
            line.push('x');
        }
        line.push('\n');
        write.write_all(line.as_bytes()).await?;
        sent += 1;
        next += period;
    }
    Ok((write, sent))
}
