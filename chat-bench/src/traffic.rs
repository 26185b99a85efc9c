//! The message scenarios (`fanout`, `bigroom`, `direct`): connect and join every client, send
//! at a fixed rate per sender, count every delivery per message, and time it end to end.
//!
//! Each message body starts `t=<µs since bench start>;s=<sender>;n=<seq>;`; the receiver
//! subtracts `t` from its own clock (one process, one monotonic clock) when it decodes the
//! frame. Every message has a slot in a table of receive counters, so loss, duplicates and
//! reordering are counted per message, not just in total.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc, LazyLock, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use memchr::memmem;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::{
    args::{Args, Phases, Scenario},
    client::{source_ip, Frame, Rest},
    cluster::Cluster,
    report::{histogram, round3, Latency, Report, Traffic, TrafficMemory},
    ws::{self, WsRead, WsWrite},
};

const UNSENT: u8 = 0;
const SENT: u8 = 1;
const ACKED: u8 = 2;
const REJECTED: u8 = 3;

/// State shared by every connection task of a run.
struct Shared {
    /// The clock origin of the `t=` timestamps.
    base: Instant,
    messages: usize,
    /// Per message (`sender * messages + seq`): copies received.
    received: Vec<AtomicU32>,
    /// Per message: UNSENT / SENT / ACKED / REJECTED.
    status: Vec<AtomicU8>,
    /// Per message: send time (µs since base), for the ack latency.
    sent_at: Vec<AtomicU64>,
    /// Per sender: connections that should receive each of its messages.
    expected_per_sender: Vec<u32>,
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    delivered: AtomicU64,
    reordered: AtomicU64,
    foreign: AtomicU64,
    system: AtomicU64,
    last_delivery_us: AtomicU64,
    last_send_us: AtomicU64,
    /// Set just before the readers are told to stop (closes after it are expected).
    stopping: AtomicBool,
    latency: Mutex<Histogram<u64>>,
    ack_latency: Mutex<Histogram<u64>>,
    send_lag: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    closed: Mutex<BTreeMap<String, u64>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    fn key(&self, s: u32, n: u32) -> Option<usize> {
        let k = s as usize * self.messages + n as usize;
        (k < self.received.len() && (n as usize) < self.messages).then_some(k)
    }

    fn count(map: &Mutex<BTreeMap<String, u64>>, what: String) {
        *lock(map).entry(what).or_default() += 1;
    }
}

/// `t=..;s=..;n=..;` → (t, s, n). By hand: it runs once per delivery.
pub(crate) fn parse_body(body: &str) -> Option<(u64, u32, u32)> {
    /// `name` then decimal digits then `;` (or the end): the number and what follows.
    fn field<'a>(b: &'a [u8], name: &[u8]) -> Option<(u64, &'a [u8])> {
        let rest = b.strip_prefix(name)?;
        let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || !matches!(rest.get(digits), None | Some(b';')) {
            return None;
        }
        let mut v = 0u64;
        for &c in &rest[..digits] {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        Some((v, rest.get(digits + 1..).unwrap_or_default()))
    }
    let (t, rest) = field(body.as_bytes(), b"t=")?;
    let (s, rest) = field(rest, b"s=")?;
    let (n, _) = field(rest, b"n=")?;
    Some((t, u32::try_from(s).ok()?, u32::try_from(n).ok()?))
}

/// `"s.n"` → (s, n).
fn parse_cmid(id: &str) -> Option<(u32, u32)> {
    let (s, n) = id.split_once('.')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

/// The fields the bench reads from a room or direct message, found without parsing the JSON:
/// (t, s, n) from the body. The bench decodes ~250k frames a second on the same two cores as
/// the servers it measures, and a full parse of each was a fifth of its CPU. Exact for the
/// server's frames: `type` comes first, and `"body":"` cannot occur inside a JSON string (its
/// quotes would be escaped). Anything else (acks, errors, system frames) gets `None` and the
/// full parse.
pub(crate) fn quick_delivery(text: &str) -> Option<(u64, u32, u32)> {
    static BODY: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(br#""body":""#));
    let rest = text
        .strip_prefix(r#"{"type":"message","#)
        .or_else(|| text.strip_prefix(r#"{"type":"direct","#))?;
    let at = BODY.find(rest.as_bytes())?;
    // `at` starts an ASCII match, so the slice after it is on a character boundary.
    parse_body(rest.get(at + r#""body":""#.len()..)?)
}

/// What one reader received and has not yet published to [`Shared`]. The delivery count
/// (which the drain watches) is published after every read; the latencies (the histogram is
/// a lock every reader wants) once [`Tally::BATCH`] have gathered, and the rest when the
/// reader ends: the run awaits its readers before it reads the histogram.
#[derive(Default)]
struct Tally {
    latency: Vec<u64>,
    delivered: u64,
    last_us: u64,
}

impl Tally {
    /// Latencies gathered per lock of the shared histogram.
    const BATCH: usize = 256;

    fn record(&mut self, sh: &Shared, latency_us: u64, now: u64) {
        self.latency.push(latency_us);
        self.delivered += 1;
        self.last_us = now;
        if self.latency.len() >= Self::BATCH {
            self.publish_latencies(sh);
        }
    }

    fn publish_latencies(&mut self, sh: &Shared) {
        let mut latency = lock(&sh.latency);
        for v in self.latency.drain(..) {
            let _ = latency.record(v);
        }
    }

    /// After each read: the count the drain waits for.
    fn publish_count(&mut self, sh: &Shared) {
        if self.delivered > 0 {
            sh.delivered.fetch_add(self.delivered, Relaxed);
            self.delivered = 0;
        }
    }

    /// When the reader ends.
    fn publish(&mut self, sh: &Shared) {
        self.publish_latencies(sh);
        self.publish_count(sh);
        sh.last_delivery_us.fetch_max(self.last_us, Relaxed);
    }
}

/// Counts one delivery of message (t, s, n) received at `now`.
fn delivery(
    sh: &Shared,
    tally: &mut Tally,
    last: &mut [u32],
    (t, s, n): (u64, u32, u32),
    now: u64,
) {
    const NONE: u32 = u32::MAX;
    let Some(k) = sh.key(s, n) else {
        sh.foreign.fetch_add(1, Relaxed);
        return;
    };
    sh.received[k].fetch_add(1, Relaxed);
    tally.record(sh, now.saturating_sub(t).max(1), now);
    if let Some(prev) = last.get_mut(s as usize) {
        if *prev != NONE && n < *prev {
            sh.reordered.fetch_add(1, Relaxed);
        }
        *prev = n;
    }
}

/// How a reader's connection ended before the run stopped it (counted under `closed`, and
/// the join's answer if it was still awaited).
fn ended(sh: &Shared, joined: &mut Option<oneshot::Sender<Result<(), String>>>, why: String) {
    if sh.stopping.load(Relaxed) {
        return;
    }
    Shared::count(&sh.closed, why.clone());
    if let Some(j) = joined.take() {
        let _ = j.send(Err(why));
    }
}

/// Reads one connection until the run stops: records deliveries, acks and errors, and
/// reports `joined` (or a join error) once. Every frame of one read is handled in one pass,
/// timed with one clock reading taken when the read returned.
async fn reader(
    mut ws: WsRead,
    sh: Arc<Shared>,
    mut joined: Option<oneshot::Sender<Result<(), String>>>,
    mut stop: watch::Receiver<bool>,
) {
    // Per sender: the last sequence number seen here, to count reordering.
    let mut last: Vec<u32> = vec![u32::MAX; sh.expected_per_sender.len()];
    let mut tally = Tally::default();
    // One stop future for the reader's life: creating one per read registers and drops a
    // waiter under the watch's lock.
    let stop_signal = stop.changed();
    tokio::pin!(stop_signal);
    loop {
        let read = tokio::select! {
            biased;
            _ = &mut stop_signal => break,
            r = ws.fill() => r,
        };
        match read {
            Ok(0) => {
                ended(&sh, &mut joined, "eof".into());
                break;
            }
            Ok(_) => {}
            Err(err) => {
                ended(&sh, &mut joined, format!("error: {err}"));
                break;
            }
        }
        let now = sh.now_us();
        let end = ws.frames(|text| frame(&sh, &mut tally, &mut last, &mut joined, text, now));
        tally.publish_count(&sh);
        match end {
            Ok(None) => {}
            Ok(Some(close)) => {
                let why = match close.code {
                    Some(code) => format!("close {code} {}", close.reason),
                    None => "close (no code)".to_string(),
                };
                ended(&sh, &mut joined, why);
                break;
            }
            Err(err) => {
                ended(&sh, &mut joined, format!("error: {err}"));
                break;
            }
        }
        if ws.has_pings() {
            if let Err(err) = ws.answer_pings().await {
                ended(&sh, &mut joined, format!("error: {err}"));
                break;
            }
        }
    }
    tally.publish(&sh);
}

/// Handles one text frame received at `now`.
fn frame(
    sh: &Shared,
    tally: &mut Tally,
    last: &mut [u32],
    joined: &mut Option<oneshot::Sender<Result<(), String>>>,
    text: &str,
    now: u64,
) {
    if let Some(fields) = quick_delivery(text) {
        delivery(sh, tally, last, fields, now);
        return;
    }
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        sh.foreign.fetch_add(1, Relaxed);
        return;
    };
    match &*frame.ty {
        "message" | "direct" => match frame.body.as_deref().and_then(parse_body) {
            Some(fields) => delivery(sh, tally, last, fields, now),
            None => {
                sh.foreign.fetch_add(1, Relaxed);
            }
        },
        "ack" => {
            if let Some(k) = frame
                .client_msg_id
                .as_deref()
                .and_then(parse_cmid)
                .and_then(|(s, n)| sh.key(s, n))
            {
                if sh.status[k]
                    .compare_exchange(SENT, ACKED, Relaxed, Relaxed)
                    .is_ok()
                {
                    sh.acked.fetch_add(1, Relaxed);
                    let at = sh.sent_at[k].load(Relaxed);
                    let _ = lock(&sh.ack_latency).record(now.saturating_sub(at).max(1));
                }
            }
        }
        "error" => {
            let code = frame.code.as_deref().unwrap_or("?").to_string();
            let key = frame
                .client_msg_id
                .as_deref()
                .and_then(parse_cmid)
                .and_then(|(s, n)| sh.key(s, n));
            match key {
                Some(k) => {
                    if sh.status[k]
                        .compare_exchange(SENT, REJECTED, Relaxed, Relaxed)
                        .is_ok()
                    {
                        sh.rejected.fetch_add(1, Relaxed);
                    }
                    Shared::count(&sh.errors, code);
                }
                None => {
                    let what = format!("{code}: {}", frame.message.as_deref().unwrap_or_default());
                    if let Some(j) = joined.take() {
                        let _ = j.send(Err(what.clone()));
                    }
                    Shared::count(&sh.errors, what);
                }
            }
        }
        "joined" => {
            if let Some(j) = joined.take() {
                let _ = j.send(Ok(()));
            }
        }
        "system" => {
            sh.system.fetch_add(1, Relaxed);
        }
        _ => {}
    }
}

/// Where a sender's messages go.
enum Target {
    Room(String),
    User(String),
}

/// Sends `messages` frames at `period` intervals, starting at `start`. Returns why it stopped
/// early, if it did.
#[allow(clippy::too_many_arguments)]
async fn sender(
    ws: WsWrite,
    s: u32,
    target: Target,
    sh: Arc<Shared>,
    start: tokio::time::Instant,
    period: Duration,
    body_bytes: usize,
) -> Option<String> {
    let mut next = start;
    let mut failure = None;
    for n in 0..sh.messages as u32 {
        tokio::time::sleep_until(next).await;
        let now = tokio::time::Instant::now();
        let _ = lock(&sh.send_lag).record(now.duration_since(next).as_micros() as u64 + 1);
        let t = sh.now_us();
        let mut body = format!("t={t};s={s};n={n};");
        while body.len() < body_bytes {
            body.push('x');
        }
        let frame = match &target {
            Target::Room(room) => format!(
                r#"{{"type":"message","room":"{room}","body":"{body}","clientMsgId":"{s}.{n}"}}"#
            ),
            Target::User(user) => format!(
                r#"{{"type":"direct","to":"{user}","body":"{body}","clientMsgId":"{s}.{n}"}}"#
            ),
        };
        if let Some(k) = sh.key(s, n) {
            sh.sent_at[k].store(t, Relaxed);
            sh.status[k].store(SENT, Relaxed);
        }
        if let Err(err) = ws.send_text(&frame).await {
            if let Some(k) = sh.key(s, n) {
                sh.status[k].store(UNSENT, Relaxed);
            }
            failure = Some(format!("sender {s}: {err}"));
            break;
        }
        sh.sent.fetch_add(1, Relaxed);
        sh.last_send_us.fetch_max(sh.now_us(), Relaxed);
        next += period;
    }
    failure
}

/// Placement of client `i`: (instance, room) for the scenario.
pub(crate) fn placement(args: &Args, i: usize) -> (usize, usize) {
    let n = args.instances;
    match args.scenario {
        // Pairs (2k, 2k+1) straddle instances so direct messages cross them, and share a
        // room (the default policy sends direct messages between users who share one).
        Scenario::Direct => (i % n, (i / 2) % args.rooms),
        // Room members alternate over instances (room i % R, then instance by round).
        _ => ((i / args.rooms) % n, i % args.rooms),
    }
}

/// Creates the rooms, spread over the instances.
pub(crate) async fn create_rooms(
    rest: &Rest,
    cluster: &Cluster,
    rooms: usize,
) -> anyhow::Result<Vec<String>> {
    let sem = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for r in 0..rooms {
        let base = cluster.instances[r % cluster.instances.len()].base.clone();
        let rest = rest.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            rest.create_room(&base, &format!("bench-{r}")).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await??);
    }
    Ok(ids)
}

/// Runs a message scenario end to end.
pub(crate) async fn run(args: &Args, cluster: &mut Cluster) -> anyhow::Result<Report> {
    // The servers before any client: the base of the memory per connection.
    let bare_snap = cluster.snapshot().await;
    let setup_start = Instant::now();
    let rest = Rest::new()?;
    let rooms = create_rooms(&rest, cluster, args.rooms).await?;
    let direct = args.scenario == Scenario::Direct;
    let clients = if direct {
        args.clients - args.clients % 2
    } else {
        args.clients
    };
    let senders = args.senders.min(clients);
    let mut room_size = vec![0u32; args.rooms];
    let mut per_instance = vec![0usize; args.instances];
    for i in 0..clients {
        let (inst, room) = placement(args, i);
        room_size[room] += 1;
        per_instance[inst] += 1;
    }
    let expected_per_sender: Vec<u32> = (0..senders)
        .map(|s| {
            if direct {
                1
            } else {
                room_size[placement(args, s).1].saturating_sub(1)
            }
        })
        .collect();
    let total = senders * args.messages;
    let sh = Arc::new(Shared {
        base: Instant::now(),
        messages: args.messages,
        received: (0..total).map(|_| AtomicU32::new(0)).collect(),
        status: (0..total).map(|_| AtomicU8::new(UNSENT)).collect(),
        sent_at: (0..total).map(|_| AtomicU64::new(0)).collect(),
        expected_per_sender,
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        reordered: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        system: AtomicU64::new(0),
        last_delivery_us: AtomicU64::new(0),
        last_send_us: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        latency: Mutex::new(histogram()),
        ack_latency: Mutex::new(histogram()),
        send_lag: Mutex::new(histogram()),
        errors: Mutex::new(BTreeMap::new()),
        closed: Mutex::new(BTreeMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let source_ips = if args.source_ips == 0 {
        1
    } else {
        args.source_ips
    };

    // Connect and join everyone (bounded concurrency).
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let (inst, room) = placement(args, i);
        let base = cluster.instances[inst].base.clone();
        let addr = cluster.instances[inst].addr;
        let room_id = rooms[room].clone();
        let rest = rest.clone();
        let sem = sem.clone();
        let sh = sh.clone();
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let ticket = rest.join_room(&base, &room_id, &format!("u{i}")).await?;
            let (read, write) =
                ws::connect(addr, &ticket.websocket_url, source_ip(i, source_ips)).await?;
            let (jtx, jrx) = oneshot::channel();
            let reading = tokio::spawn(reader(read, sh, Some(jtx), stop));
            if !direct {
                write
                    .send_text(&format!(r#"{{"type":"join","room":"{room_id}"}}"#))
                    .await?;
                match tokio::time::timeout(Duration::from_secs(60), jrx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => bail!("client {i}: join failed: {e}"),
                    Ok(Err(_)) => bail!("client {i}: connection ended before joined"),
                    Err(_) => bail!("client {i}: no joined within 60 s"),
                }
            }
            anyhow::Ok((write, reading, ticket.user_id))
        }));
    }
    let mut writers: Vec<WsWrite> = Vec::with_capacity(clients);
    let mut readers = Vec::with_capacity(clients);
    let mut user_ids = Vec::with_capacity(clients);
    for (i, t) in tasks.into_iter().enumerate() {
        let (write, reading, uid) = t.await?.with_context(|| format!("setting up client {i}"))?;
        writers.push(write);
        readers.push(reading);
        user_ids.push(uid);
    }

    // Let the join announcements (`system` frames) finish before measuring.
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    let mut last = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let now = sh.system.load(Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(300) {
            break;
        }
        if Instant::now() > settle_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    let setup_errors: BTreeMap<String, u64> = std::mem::take(&mut *lock(&sh.errors));
    let setup_closed: BTreeMap<String, u64> = std::mem::take(&mut *lock(&sh.closed));
    let system_before = sh.system.load(Relaxed);

    // Measure.
    let start_snap = cluster.snapshot().await;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
    let t0_us = sh.now_us() + 50_000;
    let mut send_tasks = Vec::with_capacity(senders);
    for (s, write) in writers.iter().enumerate().take(senders) {
        let target = if direct {
            Target::User(user_ids[s ^ 1].clone())
        } else {
            Target::Room(rooms[placement(args, s).1].clone())
        };
        let phase = period.mul_f64(match args.phases {
            // Spread the senders' phases evenly over one period.
            Phases::Even => s as f64 / senders as f64,
            Phases::Random => unit_random(s as u64),
        });
        send_tasks.push(tokio::spawn(sender(
            write.clone(),
            s as u32,
            target,
            sh.clone(),
            t0 + phase,
            period,
            args.body_bytes,
        )));
    }
    let mut warnings = Vec::new();
    for t in send_tasks {
        if let Some(f) = t.await? {
            warnings.push(f);
        }
    }

    // Drain: until every sent message is answered and every expected copy arrived, or nothing
    // moved for the drain timeout.
    let expected_now = |sh: &Shared| -> u64 {
        let mut e = 0u64;
        for (k, st) in sh.status.iter().enumerate() {
            let st = st.load(Relaxed);
            if st == SENT || st == ACKED {
                e += u64::from(sh.expected_per_sender[k / sh.messages]);
            }
        }
        e
    };
    let mut progress = (u64::MAX, u64::MAX);
    let mut last_progress = Instant::now();
    let mut timed_out = false;
    loop {
        let sent = sh.sent.load(Relaxed);
        let answered = sh.acked.load(Relaxed) + sh.rejected.load(Relaxed);
        let delivered = sh.delivered.load(Relaxed);
        if answered >= sent && delivered >= expected_now(&sh) {
            break;
        }
        if (answered, delivered) != progress {
            progress = (answered, delivered);
            last_progress = Instant::now();
        } else if last_progress.elapsed() > args.drain_timeout {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end_snap = cluster.snapshot().await;
    // What stays per connection once the traffic is over (buffers grown by it).
    let held_snap = if args.hold_after.is_zero() {
        None
    } else {
        tokio::time::sleep(args.hold_after).await;
        Some(cluster.snapshot().await)
    };

    // Tear down: stop readers, close sockets politely, and wait for the readers to publish
    // what they hold.
    sh.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    let closes = writers.iter().map(|w| async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), w.close()).await;
    });
    futures_util::future::join_all(closes).await;
    for r in readers {
        let _ = r.await;
    }

    // Per-message accounting.
    let mut t = Traffic {
        messages_sent: sh.sent.load(Relaxed),
        acked: sh.acked.load(Relaxed),
        delivered: sh.delivered.load(Relaxed),
        reordered: sh.reordered.load(Relaxed),
        foreign: sh.foreign.load(Relaxed),
        system_frames: sh.system.load(Relaxed) - system_before,
        drain_timed_out: timed_out,
        ..Default::default()
    };
    for (k, st) in sh.status.iter().enumerate() {
        let st = st.load(Relaxed);
        let got = u64::from(sh.received[k].load(Relaxed));
        if st == UNSENT || st == REJECTED {
            t.duplicates += got;
            if st == REJECTED {
                t.refused_delivered += got;
            }
            continue;
        }
        if st == SENT {
            t.unanswered += 1;
        }
        let exp = u64::from(sh.expected_per_sender[k / sh.messages]);
        t.expected_deliveries += exp;
        if got < exp {
            t.lost_deliveries += exp - got;
            t.messages_with_loss += 1;
        } else {
            t.duplicates += got - exp;
        }
    }
    t.rejected = lock(&sh.errors).clone();
    t.loss_pct = if t.expected_deliveries > 0 {
        (t.lost_deliveries as f64 * 100.0 / t.expected_deliveries as f64 * 10_000.0).round()
            / 10_000.0
    } else {
        0.0
    };
    let last_send = sh.last_send_us.load(Relaxed);
    let last_delivery = sh.last_delivery_us.load(Relaxed);
    t.send_window_s = round3(last_send.saturating_sub(t0_us) as f64 / 1e6);
    t.delivery_window_s = round3(last_delivery.saturating_sub(t0_us) as f64 / 1e6);
    t.sent_per_s = round3(t.messages_sent as f64 / t.send_window_s.max(1e-3));
    t.delivered_per_s = round3(t.delivered as f64 / t.delivery_window_s.max(1e-3));
    t.latency = Latency::of(&lock(&sh.latency));
    t.ack_latency = Latency::of(&lock(&sh.ack_latency));
    t.send_lag = Latency::of(&lock(&sh.send_lag));
    t.closed = lock(&sh.closed).clone();

    let mut report = Report {
        scenario: args.scenario.name().into(),
        mode: cluster.mode.into(),
        instances: cluster.instances.len(),
        clients,
        rooms: args.rooms,
        senders,
        messages_per_sender: args.messages,
        rate_per_sender: args.rate,
        body_bytes: args.body_bytes,
        phases: args.phases.name().into(),
        setup_s: round3(setup_s),
        ..Default::default()
    };
    report.fill_resources(
        cluster,
        &start_snap,
        &end_snap,
        &per_instance,
        t.messages_sent,
    );
    report.set_efficiency(t.delivered);
    report.memory = Some(TrafficMemory::of(
        &bare_snap,
        &start_snap,
        &end_snap,
        held_snap.as_ref(),
        clients,
        args.hold_after.as_secs_f64(),
    ));
    if args.rate > 20.0 {
        warnings.push(format!(
            "rate {}/s per sender exceeds the server's default limit (20/s, burst 40): expect rate_limited rejections",
            args.rate
        ));
    }
    if !setup_errors.is_empty() {
        warnings.push(format!("errors during setup: {setup_errors:?}"));
    }
    if !setup_closed.is_empty() {
        warnings.push(format!("connections closed during setup: {setup_closed:?}"));
    }
    if t.send_lag.p99_us > 50_000 {
        warnings.push(format!(
            "senders ran up to {} ms late (p99 {} ms): the offered rate was not kept, the bench or the machine is saturated",
            t.send_lag.max_us / 1000,
            t.send_lag.p99_us / 1000
        ));
    }
    report.traffic = Some(t);
    report.warnings = warnings;
    Ok(report)
}

/// A number in [0, 1) drawn from `seed` (splitmix64): the same for the same seed, so that every
/// run with `--phases random` draws the same phases.
fn unit_random(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_phases_are_the_same_every_run_and_spread_over_the_period() {
        let phases: Vec<f64> = (0..500).map(unit_random).collect();
        assert_eq!(phases, (0..500).map(unit_random).collect::<Vec<_>>());
        assert!(phases.iter().all(|p| (0.0..1.0).contains(p)));
        // Every tenth of the period gets some senders, none most of them.
        for tenth in 0..10 {
            let n = phases
                .iter()
                .filter(|p| (**p * 10.0) as usize == tenth)
                .count();
            assert!((20..=80).contains(&n), "tenth {tenth}: {n} of 500");
        }
    }

    #[test]
    fn bodies_and_ids_parse() {
        assert_eq!(parse_body("t=12;s=3;n=4;xxxx"), Some((12, 3, 4)));
        assert_eq!(parse_body("hello"), None);
        assert_eq!(parse_body("t=12;s=3;n=4"), Some((12, 3, 4)));
        assert_eq!(parse_body("t=12;s=3;n=;"), None);
        assert_eq!(parse_body("t=12;s=99999999999;n=4;"), None);
        assert_eq!(parse_body("t=99999999999999999999;s=3;n=4;"), None);
        assert_eq!(parse_body("t=1x;s=3;n=4;"), None);
        assert_eq!(parse_cmid("7.9"), Some((7, 9)));
        assert_eq!(parse_cmid("x"), None);
    }

    #[test]
    fn the_quick_path_reads_what_the_full_parse_reads() {
        let room = r#"{"type":"message","id":"1-0","room":"r","from":{"id":"u1","name":"a \"body\":\"t=9;s=9;n=9;"},"body":"t=12;s=3;n=4;xx","ts":5}"#;
        let direct = r#"{"type":"direct","id":"d","from":{"id":"u1","name":"a"},"to":"u2","body":"t=1;s=2;n=3;","ts":5}"#;
        for text in [room, direct] {
            let frame: Frame<'_> = serde_json::from_str(text).unwrap();
            assert_eq!(
                quick_delivery(text),
                frame.body.as_deref().and_then(parse_body),
                "{text}"
            );
        }
        assert_eq!(quick_delivery(room), Some((12, 3, 4)));
        for other in [
            r#"{"type":"ack","clientMsgId":"1.2","id":"x","ts":1}"#,
            r#"{"type":"system","room":"r","event":"user_joined","user":{"id":"u","name":"body"},"ts":1}"#,
            r#"{"type":"message","body":"hello"}"#,
        ] {
            assert_eq!(quick_delivery(other), None, "{other}");
        }
    }
}
