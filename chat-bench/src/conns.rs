//! The connection scenarios (`idle`, `connect`): hold C joined connections, spread over client
//! processes when one process's open-file limit cannot hold them all, and read what they cost
//! the servers.
//!
//! Both run the same phases: REST join-room for every client (tokens), then a go signal, then
//! WebSocket connect + `join` → `joined` for every client (the storm, timed), then a hold, then
//! memory is read. `idle` is about the memory, `connect` about the time.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use futures_util::{stream::SplitSink, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::{oneshot, Semaphore},
};
use tokio_tungstenite::tungstenite::Message;

use crate::{
    args::{Args, Scenario},
    client::{source_ip, ws_connect, Frame, Rest, Ticket, Ws},
    cluster::{Cluster, RedisStats, Snapshot},
    report::{histogram, round3, Conns, Latency, Report},
    traffic::{create_rooms, placement},
};

/// One client a holder is responsible for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    base: String,
    addr: SocketAddr,
    room: String,
    name: String,
    source: Option<Ipv4Addr>,
}

/// What a client process is asked to do (first line on its stdin).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerSpec {
    clients: Vec<Spec>,
    concurrency: usize,
}

/// The outcome of one phase in one holder.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Phase {
    ok: usize,
    failed: usize,
    elapsed_us: u64,
    errors: Vec<String>,
    latencies_us: Vec<u64>,
}

/// Holds a share of the connections.
pub(crate) struct Holder {
    specs: Vec<Spec>,
    concurrency: usize,
    rest: Rest,
    tickets: Vec<Option<Ticket>>,
    sinks: Vec<SplitSink<Ws, Message>>,
}

/// Reads a held connection: reports `joined`, then discards (answering pings on the way).
async fn idle_reader(
    mut stream: futures_util::stream::SplitStream<Ws>,
    mut joined: Option<oneshot::Sender<Result<(), String>>>,
) {
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Text(t)) if joined.is_some() => {
                if let Ok(f) = serde_json::from_str::<Frame<'_>>(t.as_str()) {
                    match &*f.ty {
                        "joined" => {
                            if let Some(j) = joined.take() {
                                let _ = j.send(Ok(()));
                            }
                        }
                        "error" => {
                            if let Some(j) = joined.take() {
                                let _ = j.send(Err(format!(
                                    "{}: {}",
                                    f.code.as_deref().unwrap_or("?"),
                                    f.message.as_deref().unwrap_or("")
                                )));
                            }
                        }
                        _ => {}
                    }
                }
            }
            Ok(Message::Close(frame)) => {
                if let Some(j) = joined.take() {
                    let _ = j.send(Err(format!("closed: {frame:?}")));
                }
                return;
            }
            Ok(_) => {}
            Err(err) => {
                if let Some(j) = joined.take() {
                    let _ = j.send(Err(err.to_string()));
                }
                return;
            }
        }
    }
}

fn push_error(errors: &mut Vec<String>, e: String) {
    if errors.len() < 5 {
        errors.push(e);
    }
}

impl Holder {
    pub(crate) fn new(spec: WorkerSpec) -> anyhow::Result<Self> {
        Ok(Self {
            tickets: vec![None; spec.clients.len()],
            specs: spec.clients,
            concurrency: spec.concurrency.max(1),
            rest: Rest::new()?,
            sinks: Vec::new(),
        })
    }

    /// REST join-room for every client.
    pub(crate) async fn tokens(&mut self) -> Phase {
        let start = Instant::now();
        let sem = Arc::new(Semaphore::new(self.concurrency));
        let tasks: Vec<_> = self
            .specs
            .iter()
            .cloned()
            .map(|s| {
                let rest = self.rest.clone();
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _p = sem.acquire().await;
                    rest.join_room(&s.base, &s.room, &s.name).await
                })
            })
            .collect();
        let mut phase = Phase::default();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(Ok(ticket)) => {
                    self.tickets[i] = Some(ticket);
                    phase.ok += 1;
                }
                Ok(Err(e)) => {
                    phase.failed += 1;
                    push_error(&mut phase.errors, format!("join-room: {e:#}"));
                }
                Err(e) => {
                    phase.failed += 1;
                    push_error(&mut phase.errors, e.to_string());
                }
            }
        }
        phase.elapsed_us = start.elapsed().as_micros() as u64;
        // Close the pooled keep-alive REST connections: each holds a file descriptor on the
        // server, which needs every one it has for the WebSockets that follow.
        if let Ok(fresh) = Rest::new() {
            self.rest = fresh;
        }
        phase
    }

    /// WebSocket connect + join for every client that has a ticket.
    pub(crate) async fn connect(&mut self) -> Phase {
        let start = Instant::now();
        let sem = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = Vec::new();
        for (s, t) in self.specs.iter().zip(&self.tickets) {
            let Some(t) = t.clone() else { continue };
            let s = s.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let began = Instant::now();
                let ws = ws_connect(s.addr, &t.websocket_url, s.source).await?;
                let (mut sink, stream) = ws.split();
                let (jtx, jrx) = oneshot::channel();
                tokio::spawn(idle_reader(stream, Some(jtx)));
                sink.send(Message::text(format!(
                    r#"{{"type":"join","room":"{}"}}"#,
                    s.room
                )))
                .await?;
                match tokio::time::timeout(Duration::from_secs(60), jrx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => bail!("join failed: {e}"),
                    Ok(Err(_)) => bail!("connection ended before joined"),
                    Err(_) => bail!("no joined within 60 s"),
                }
                anyhow::Ok((sink, began.elapsed().as_micros() as u64))
            }));
        }
        let mut phase = Phase::default();
        for t in tasks {
            match t.await {
                Ok(Ok((sink, us))) => {
                    self.sinks.push(sink);
                    phase.latencies_us.push(us);
                    phase.ok += 1;
                }
                Ok(Err(e)) => {
                    phase.failed += 1;
                    push_error(&mut phase.errors, format!("{e:#}"));
                }
                Err(e) => {
                    phase.failed += 1;
                    push_error(&mut phase.errors, e.to_string());
                }
            }
        }
        phase.elapsed_us = start.elapsed().as_micros() as u64;
        phase
    }

    /// Closes every connection (close frame, bounded wait).
    pub(crate) async fn close(&mut self) {
        let sem = Arc::new(Semaphore::new(self.concurrency.max(256)));
        let closes = self.sinks.drain(..).map(|mut sink| {
            let sem = sem.clone();
            async move {
                let _p = sem.acquire().await;
                let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
            }
        });
        futures_util::future::join_all(closes).await;
    }
}

/// A client process (`chat-bench __worker`): reads its spec, then `go` and `close` lines on
/// stdin; answers each phase with one JSON line on stdout.
pub(crate) async fn worker_main() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let spec: WorkerSpec = serde_json::from_str(
        &lines
            .next_line()
            .await?
            .context("worker: no spec on stdin")?,
    )?;
    let mut holder = Holder::new(spec)?;
    let tokens = holder.tokens().await;
    out.write_all(format!("{}\n", serde_json::to_string(&tokens)?).as_bytes())
        .await?;
    out.flush().await?;
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "go" => {
                let phase = holder.connect().await;
                out.write_all(format!("{}\n", serde_json::to_string(&phase)?).as_bytes())
                    .await?;
                out.flush().await?;
            }
            "close" => {
                holder.close().await;
                out.write_all(b"{}\n").await?;
                out.flush().await?;
                return Ok(());
            }
            _ => {}
        }
    }
    // The parent went away: drop everything.
    Ok(())
}

/// One share of the clients: here, or in a child process.
enum Part {
    Local(Box<Holder>),
    Remote(Box<Remote>),
}

/// A client process and its pipes.
struct Remote {
    pid: Option<u32>,
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Part {
    async fn read_phase(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<Phase> {
        let line = lines
            .next_line()
            .await?
            .context("client process ended (see its stderr above)")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn tokens(&mut self) -> anyhow::Result<Phase> {
        match self {
            Self::Local(h) => Ok(h.tokens().await),
            Self::Remote(r) => Self::read_phase(&mut r.lines).await,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<Phase> {
        match self {
            Self::Local(h) => Ok(h.connect().await),
            Self::Remote(r) => {
                r.stdin.write_all(b"go\n").await?;
                r.stdin.flush().await?;
                Self::read_phase(&mut r.lines).await
            }
        }
    }

    async fn close(&mut self) {
        match self {
            Self::Local(h) => h.close().await,
            Self::Remote(r) => {
                let _ = r.stdin.write_all(b"close\n").await;
                let _ = r.stdin.flush().await;
                let _ = tokio::time::timeout(Duration::from_secs(30), r.lines.next_line()).await;
            }
        }
    }
}

/// Sums the phases of all parts into (ok, failed, errors, latency histogram, slowest part).
fn merge(phases: &[Phase]) -> (usize, usize, Vec<String>, hdrhistogram::Histogram<u64>, u64) {
    let mut h = histogram();
    let mut errors = Vec::new();
    let (mut ok, mut failed, mut slowest) = (0, 0, 0);
    for p in phases {
        ok += p.ok;
        failed += p.failed;
        slowest = slowest.max(p.elapsed_us);
        for e in &p.errors {
            push_error(&mut errors, e.clone());
        }
        for &l in &p.latencies_us {
            let _ = h.record(l.max(1));
        }
    }
    (ok, failed, errors, h, slowest)
}

/// CPU seconds used so far by the client processes.
fn worker_cpu(parts: &[Part]) -> f64 {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Remote(r) => r.pid.and_then(crate::cluster::ProcSample::read),
            Part::Local(_) => None,
        })
        .map(|s| s.cpu_s)
        .sum()
}

fn redis_delta(a: &Snapshot, b: &Snapshot) -> Option<(u64, f64, i64)> {
    let (s, e): (&RedisStats, &RedisStats) = (a.redis.as_ref()?, b.redis.as_ref()?);
    Some((
        e.total_calls().saturating_sub(s.total_calls()),
        e.cpu_s - s.cpu_s,
        e.used_memory as i64 - s.used_memory as i64,
    ))
}

/// Runs `idle` or `connect`.
pub(crate) async fn run(args: &Args, cluster: &mut Cluster, nofile: u64) -> anyhow::Result<Report> {
    let setup_start = Instant::now();
    let rest = Rest::new()?;
    let rooms = create_rooms(&rest, cluster, args.rooms).await?;
    // Its pooled keep-alive connections would hold server file descriptors.
    drop(rest);
    let clients = args.clients;
    let source_ips = if args.source_ips > 0 {
        args.source_ips
    } else if clients > 10_000 {
        clients.div_ceil(8_000)
    } else {
        1
    };
    // One process holds at most what its open-file limit allows (minus a reserve).
    let per_proc_cap = (nofile.saturating_sub(300) as usize).clamp(100, 15_000);
    let procs = args.procs.max(clients.div_ceil(per_proc_cap)).max(1);
    let mut per_instance = vec![0usize; cluster.instances.len()];
    let mut specs = Vec::with_capacity(clients);
    for i in 0..clients {
        let (inst, room) = placement(args, i);
        per_instance[inst] += 1;
        specs.push(Spec {
            base: cluster.instances[inst].base.clone(),
            addr: cluster.instances[inst].addr,
            room: rooms[room].clone(),
            name: format!("u{i}"),
            source: source_ip(i, source_ips),
        });
    }
    let mut warnings = Vec::new();
    for (i, inst) in cluster.instances.iter().enumerate() {
        if let Some((soft, _)) = inst.pid.and_then(crate::cluster::nofile_limits) {
            if let Ok(soft) = soft.parse::<usize>() {
                if per_instance[i] + 64 > soft {
                    warnings.push(format!(
                        "server {i} gets {} connections but may open only {soft} files (RLIMIT_NOFILE): expect failed connects; use more instances (--redis --instances N)",
                        per_instance[i]
                    ));
                }
            }
        }
    }

    let before = cluster.snapshot().await;
    // Split the clients into `procs` interleaved shares.
    let mut parts = Vec::new();
    for p in 0..procs {
        let share: Vec<Spec> = specs.iter().skip(p).step_by(procs).cloned().collect();
        let spec = WorkerSpec {
            clients: share,
            concurrency: args.concurrency,
        };
        if procs == 1 {
            parts.push(Part::Local(Box::new(Holder::new(spec)?)));
        } else {
            let mut child = Command::new(std::env::current_exe()?)
                .arg("__worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a client process")?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            stdin
                .write_all(format!("{}\n", serde_json::to_string(&spec)?).as_bytes())
                .await?;
            stdin.flush().await?;
            parts.push(Part::Remote(Box::new(Remote {
                pid: child.id(),
                _child: child,
                stdin,
                lines: BufReader::new(stdout).lines(),
            })));
        }
    }

    let rest_start = Instant::now();
    let token_phases: Vec<Phase> =
        futures_util::future::join_all(parts.iter_mut().map(Part::tokens))
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let rest_s = rest_start.elapsed().as_secs_f64();
    let (t_ok, t_failed, t_errors, _, _) = merge(&token_phases);
    let setup_s = setup_start.elapsed().as_secs_f64();

    let tokens = cluster.snapshot().await;
    let workers_before = worker_cpu(&parts);
    let go = Instant::now();
    let connect_phases: Vec<Phase> =
        futures_util::future::join_all(parts.iter_mut().map(Part::connect))
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
    let connect_all_s = go.elapsed().as_secs_f64();
    let connected = cluster.snapshot().await;
    let (c_ok, c_failed, c_errors, hist, _) = merge(&connect_phases);
    tokio::time::sleep(args.hold).await;
    let held = cluster.snapshot().await;
    let workers_cpu = worker_cpu(&parts) - workers_before;
    for e in cluster.exited() {
        warnings.push(e);
    }
    for p in &mut parts {
        p.close().await;
    }

    let mut report = Report {
        scenario: args.scenario.name().into(),
        mode: cluster.mode.into(),
        instances: cluster.instances.len(),
        clients,
        rooms: args.rooms,
        setup_s: round3(setup_s),
        ..Default::default()
    };
    report.fill_resources(cluster, &tokens, &held, &per_instance, 0);
    report.redis = None;
    report.bench_cpu_s = round3(report.bench_cpu_s + workers_cpu);

    let mut c = Conns {
        target: clients,
        joined: c_ok,
        failed: t_failed + c_failed,
        errors: t_errors.into_iter().chain(c_errors).take(8).collect(),
        rest_s: round3(rest_s),
        rest_per_s: round3(t_ok as f64 / rest_s.max(1e-6)),
        connect_all_s: round3(connect_all_s),
        connects_per_s: round3(c_ok as f64 / connect_all_s.max(1e-6)),
        connect_latency: Latency::of(&hist),
        client_procs: procs,
        source_ips,
        concurrency: args.concurrency,
        hold_s: args.hold.as_secs_f64(),
        ..Default::default()
    };
    let mut grow_total = 0i64;
    let mut grow_user_total = 0i64;
    for (i, clients_here) in per_instance.iter().enumerate() {
        let (b, t, h) = (
            before.servers.get(i).copied().flatten(),
            tokens.servers.get(i).copied().flatten(),
            held.servers.get(i).copied().flatten(),
        );
        if let (Some(b), Some(t), Some(h)) = (b, t, h) {
            let grow = (h.rss_kb as i64 - t.rss_kb as i64) * 1024;
            grow_total += grow;
            grow_user_total += (h.rss_kb as i64 - b.rss_kb as i64) * 1024;
            c.rss_per_conn_bytes
                .push(round3(grow as f64 / (*clients_here).max(1) as f64).round());
        }
    }
    c.rss_per_conn_bytes_all = (grow_total as f64 / c_ok.max(1) as f64).round();
    c.rss_per_user_bytes_all = (grow_user_total as f64 / c_ok.max(1) as f64).round();
    let connect_cpu: f64 = (0..cluster.instances.len())
        .filter_map(|i| {
            let s = tokens.servers.get(i).copied().flatten()?;
            let e = connected.servers.get(i).copied().flatten()?;
            Some(e.cpu_s - s.cpu_s)
        })
        .sum();
    c.server_cpu_ms_per_1000_connects = round3(connect_cpu * 1e6 / c_ok.max(1) as f64);
    if let Some((calls, cpu, mem)) = redis_delta(&tokens, &held) {
        let n = c_ok.max(1) as f64;
        c.redis_bytes_per_conn = Some((mem as f64 / n).round());
        c.redis_cpu_ms_per_1000_conns = Some(round3(cpu * 1e6 / n));
        if let (Some(s), Some(e)) = (&tokens.redis, &held.redis) {
            for (cmd, v) in &e.calls {
                let d = v.saturating_sub(s.calls.get(cmd).copied().unwrap_or(0));
                if d > 0 && cmd != "info" {
                    c.redis_calls_per_conn
                        .insert(cmd.clone(), round3(d as f64 / n));
                }
            }
        }
        c.redis_calls_per_conn
            .insert("total".into(), round3(calls as f64 / n));
    }
    if args.scenario == Scenario::Idle && c_ok < clients {
        warnings.push(format!(
            "only {c_ok} of {clients} connections joined: the memory figures are per joined connection"
        ));
    }
    report.conns = Some(c);
    report.warnings.extend(warnings);
    Ok(report)
}
