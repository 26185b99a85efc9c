//! The result of a run: one struct, printed as a human summary or as JSON.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cluster::{Cluster, ProcSample, Snapshot};

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) min_us: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A histogram for microsecond values up to 10 minutes, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)] // constant, valid bounds
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Messages sent, delivered, lost, and how fast.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Traffic {
    /// Message frames the senders wrote.
    pub(crate) messages_sent: u64,
    /// Of those, acknowledged by the server (`ack`).
    pub(crate) acked: u64,
    /// Of those, refused with an `error` frame (by code): not expected to be delivered.
    pub(crate) rejected: BTreeMap<String, u64>,
    /// Sent but neither acked nor refused when the run ended (still counted as expected).
    pub(crate) unanswered: u64,
    /// Sum over every accepted message of the connections that should receive it.
    pub(crate) expected_deliveries: u64,
    /// Message frames the receivers got (each copy counts once).
    pub(crate) delivered: u64,
    /// expected − received, summed per message (a message received too often does not offset
    /// another one's loss).
    pub(crate) lost_deliveries: u64,
    pub(crate) loss_pct: f64,
    /// Messages missing at least one receiver.
    pub(crate) messages_with_loss: u64,
    /// Deliveries beyond the expected count, summed per message.
    pub(crate) duplicates: u64,
    /// Of the duplicates, copies of messages the server refused (an `error` frame told the
    /// sender it was not sent, yet it was delivered).
    pub(crate) refused_delivered: u64,
    /// Deliveries that arrived at a receiver after a later message of the same sender.
    pub(crate) reordered: u64,
    /// Received message frames whose body was not the bench's.
    pub(crate) foreign: u64,
    /// First send → last send, seconds.
    pub(crate) send_window_s: f64,
    /// First send → last delivery, seconds.
    pub(crate) delivery_window_s: f64,
    /// messages_sent / send_window.
    pub(crate) sent_per_s: f64,
    /// delivered / delivery_window.
    pub(crate) delivered_per_s: f64,
    /// End-to-end: body timestamp at send → frame decoded by the receiver.
    pub(crate) latency: Latency,
    /// Sender → ack (the broker round trip as the sender sees it).
    pub(crate) ack_latency: Latency,
    /// How late senders were against their schedule (the bench's own overload; large values
    /// mean the offered rate was not kept).
    pub(crate) send_lag: Latency,
    /// Connections the server closed (or that failed) during the run, by reason.
    pub(crate) closed: BTreeMap<String, u64>,
    /// `system` frames received while measuring.
    pub(crate) system_frames: u64,
    /// The run ended because deliveries stopped for the drain timeout.
    pub(crate) drain_timed_out: bool,
}

/// One server instance, over the measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct ServerStats {
    pub(crate) index: usize,
    pub(crate) pid: Option<u32>,
    /// Clients the bench spread onto this instance.
    pub(crate) clients: usize,
    /// utime + stime delta over the window.
    pub(crate) cpu_s: f64,
    /// cpu_s / window: cores used on average.
    pub(crate) cpu_cores: f64,
    /// The user-space part of cpu_s (utime delta); the rest is the kernel, which on loopback
    /// includes the clients' TCP receive processing that each server write carries.
    pub(crate) user_cpu_s: f64,
    pub(crate) rss_start_kb: u64,
    pub(crate) rss_end_kb: u64,
    /// VmHWM at the end: the peak since the process started (includes setup).
    pub(crate) peak_rss_kb: u64,
    pub(crate) threads: u64,
    /// Open file descriptors at the end of the window.
    pub(crate) open_files_end: u64,
    /// Context switches of its threads in the window, voluntary (a thread slept: parked,
    /// `epoll_wait`, a lock) and involuntary (preempted). At light load a switch costs more
    /// than a write (docs/perf.md, session 16).
    pub(crate) voluntary_switches: u64,
    pub(crate) involuntary_switches: u64,
    pub(crate) nofile_soft: Option<String>,
    pub(crate) nofile_hard: Option<String>,
}

impl ServerStats {
    /// One server's figures over a window, from its `/proc` samples at both ends.
    pub(crate) fn over(
        index: usize,
        pid: Option<u32>,
        clients: usize,
        samples: Option<(ProcSample, ProcSample)>,
        window_s: f64,
    ) -> Self {
        let mut st = ServerStats {
            index,
            pid,
            clients,
            ..Default::default()
        };
        if let Some((s, e)) = samples {
            st.cpu_s = round3(e.cpu_s - s.cpu_s);
            st.cpu_cores = round3(st.cpu_s / window_s);
            st.user_cpu_s = round3(e.user_cpu_s - s.user_cpu_s);
            st.rss_start_kb = s.rss_kb;
            st.rss_end_kb = e.rss_kb;
            st.peak_rss_kb = e.hwm_kb;
            st.threads = e.threads;
            st.open_files_end = e.fds;
            st.voluntary_switches = e.switches.voluntary.saturating_sub(s.switches.voluntary);
            st.involuntary_switches = e
                .switches
                .involuntary
                .saturating_sub(s.switches.involuntary);
        }
        st
    }
}

/// Redis over the measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RedisReport {
    /// Room/direct messages sent in the window (the denominator below).
    pub(crate) messages: u64,
    /// INFO commandstats calls, all commands except INFO (commands inside Lua scripts count
    /// too: an EVALSHA that runs XADD and PUBLISH is 3 calls).
    pub(crate) calls_total: u64,
    pub(crate) calls_per_message: f64,
    pub(crate) evalsha_per_message: f64,
    pub(crate) publish_per_message: f64,
    /// Calls per message, by command (those with calls in the window).
    pub(crate) per_message_by_command: BTreeMap<String, f64>,
    /// used_cpu_sys + used_cpu_user delta.
    pub(crate) cpu_s: f64,
    pub(crate) cpu_ms_per_1000_messages: f64,
    pub(crate) net_in_bytes_per_message: f64,
    pub(crate) net_out_bytes_per_message: f64,
    pub(crate) used_memory_end: u64,
    /// RSS of the redis-server process the bench started.
    pub(crate) rss_end_kb: Option<u64>,
}

/// Connection-holding scenarios (`idle`, `connect`).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Conns {
    pub(crate) target: usize,
    pub(crate) joined: usize,
    pub(crate) failed: usize,
    /// First errors seen, for diagnosis.
    pub(crate) errors: Vec<String>,
    /// REST join-room for every client (tokens), seconds.
    pub(crate) rest_s: f64,
    pub(crate) rest_per_s: f64,
    /// WebSocket connect + `join` → `joined` for every client: from go to the last `joined`.
    pub(crate) connect_all_s: f64,
    pub(crate) connects_per_s: f64,
    /// Per client: start of TCP connect → `joined` received.
    pub(crate) connect_latency: Latency,
    /// Client processes and source addresses used.
    pub(crate) client_procs: usize,
    pub(crate) source_ips: usize,
    /// Setup operations in flight at once per client process.
    pub(crate) concurrency: usize,
    /// Per instance: (RSS after connect − RSS before connect) / clients on it, bytes.
    pub(crate) rss_per_conn_bytes: Vec<f64>,
    /// All instances: total RSS growth over connect / joined connections, bytes.
    pub(crate) rss_per_conn_bytes_all: f64,
    /// The same but from before the REST joins (includes the user's room membership).
    pub(crate) rss_per_user_bytes_all: f64,
    /// Server CPU seconds spent in the connect phase, per 1,000 connections.
    pub(crate) server_cpu_ms_per_1000_connects: f64,
    /// Redis memory growth per connection, bytes.
    pub(crate) redis_bytes_per_conn: Option<f64>,
    /// Redis calls per connection from *tokens* to *held* (connect, join, hold), by command.
    pub(crate) redis_calls_per_conn: BTreeMap<String, f64>,
    /// Redis CPU over the same span, per 1,000 connections.
    pub(crate) redis_cpu_ms_per_1000_conns: Option<f64>,
    /// Seconds the connections were held before memory was read.
    pub(crate) hold_s: f64,
}

/// Traffic scenarios: server memory per connection (RSS growth over the servers' RSS before
/// any client, all instances, divided by the clients) once all joined, right after the
/// traffic, and after `--hold-after` (what stays per connection once the traffic is over).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct TrafficMemory {
    pub(crate) rss_per_conn_joined_bytes: f64,
    pub(crate) rss_per_conn_after_traffic_bytes: f64,
    pub(crate) rss_per_conn_held_bytes: Option<f64>,
    pub(crate) hold_after_s: f64,
}

impl TrafficMemory {
    pub(crate) fn of(
        bare: &Snapshot,
        joined: &Snapshot,
        after: &Snapshot,
        held: Option<&Snapshot>,
        clients: usize,
        hold_after_s: f64,
    ) -> Self {
        let rss = |s: &Snapshot| -> f64 {
            s.servers
                .iter()
                .flatten()
                .map(|p| p.rss_kb as f64 * 1024.0)
                .sum()
        };
        let per = |s: &Snapshot| ((rss(s) - rss(bare)) / clients.max(1) as f64).round();
        Self {
            rss_per_conn_joined_bytes: per(joined),
            rss_per_conn_after_traffic_bytes: per(after),
            rss_per_conn_held_bytes: held.map(per),
            hold_after_s,
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: String,
    /// memory | redis | targets
    pub(crate) mode: String,
    pub(crate) instances: usize,
    pub(crate) clients: usize,
    pub(crate) rooms: usize,
    pub(crate) senders: usize,
    pub(crate) messages_per_sender: usize,
    pub(crate) rate_per_sender: f64,
    pub(crate) body_bytes: usize,
    /// The senders' phases within one period: `even` or `random` (`--phases`).
    pub(crate) phases: String,
    /// Setup (REST joins, connects, joins and settling), seconds.
    pub(crate) setup_s: f64,
    /// The measured window, seconds.
    pub(crate) window_s: f64,
    pub(crate) traffic: Option<Traffic>,
    /// Traffic scenarios: server memory per connection before and after the traffic.
    pub(crate) memory: Option<TrafficMemory>,
    pub(crate) conns: Option<Conns>,
    pub(crate) servers: Vec<ServerStats>,
    pub(crate) server_cpu_s: f64,
    /// The user-space part of server_cpu_s.
    pub(crate) server_user_cpu_s: f64,
    /// delivered / server CPU seconds (all instances).
    pub(crate) delivered_per_server_cpu_s: Option<f64>,
    /// delivered / server user-space CPU seconds: the servers' own code, without the kernel.
    pub(crate) delivered_per_server_user_cpu_s: Option<f64>,
    /// Context switches of the servers' threads in the window (all instances, voluntary and
    /// involuntary).
    pub(crate) server_switches: u64,
    /// server_switches per 1,000 deliveries.
    pub(crate) server_switches_per_1000_deliveries: Option<f64>,
    pub(crate) redis: Option<RedisReport>,
    /// CPU seconds of the bench process itself in the window (it shares the machine).
    pub(crate) bench_cpu_s: f64,
    /// The bench's runtime threads (`null`: one worker per core).
    pub(crate) bench_threads: Option<usize>,
    pub(crate) bench_nofile_soft: Option<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) server_log: Vec<String>,
}

impl Report {
    /// Deliveries per server CPU-second, in all and in user space.
    pub(crate) fn set_efficiency(&mut self, delivered: u64) {
        let per = |cpu_s: f64| (cpu_s > 0.0).then(|| round3(delivered as f64 / cpu_s));
        self.delivered_per_server_cpu_s = per(self.server_cpu_s);
        self.delivered_per_server_user_cpu_s = per(self.server_user_cpu_s);
        self.server_switches_per_1000_deliveries = (delivered > 0)
            .then(|| round3(self.server_switches as f64 * 1000.0 / delivered as f64));
    }

    /// Fills in servers, Redis and bench CPU from two snapshots. `messages` is the denominator
    /// for Redis costs.
    pub(crate) fn fill_resources(
        &mut self,
        cluster: &Cluster,
        start: &Snapshot,
        end: &Snapshot,
        clients_per_instance: &[usize],
        messages: u64,
    ) {
        let window = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
        self.window_s = round3(window);
        self.servers.clear();
        for (i, inst) in cluster.instances.iter().enumerate() {
            let (s, e) = (
                start.servers.get(i).copied().flatten(),
                end.servers.get(i).copied().flatten(),
            );
            let clients = clients_per_instance.get(i).copied().unwrap_or(0);
            let mut st = ServerStats::over(i, inst.pid, clients, s.zip(e), window);
            if let Some((soft, hard)) = inst.pid.and_then(crate::cluster::nofile_limits) {
                st.nofile_soft = Some(soft);
                st.nofile_hard = Some(hard);
            }
            self.servers.push(st);
        }
        self.server_cpu_s = round3(self.servers.iter().map(|s| s.cpu_s).sum());
        self.server_user_cpu_s = round3(self.servers.iter().map(|s| s.user_cpu_s).sum());
        self.server_switches = self
            .servers
            .iter()
            .map(|s| s.voluntary_switches + s.involuntary_switches)
            .sum();
        if let (Some(s), Some(e)) = (start.bench, end.bench) {
            self.bench_cpu_s = round3(e.cpu_s - s.cpu_s);
        }
        if let (Some(s), Some(e)) = (&start.redis, &end.redis) {
            let m = messages.max(1) as f64;
            let mut by = BTreeMap::new();
            for (cmd, calls) in &e.calls {
                if cmd == "info" {
                    continue;
                }
                let d = calls.saturating_sub(s.calls.get(cmd).copied().unwrap_or(0));
                if d > 0 {
                    by.insert(cmd.clone(), round3(d as f64 / m));
                }
            }
            let total = e.total_calls().saturating_sub(s.total_calls());
            let d = |k: &str| {
                e.calls
                    .get(k)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(s.calls.get(k).copied().unwrap_or(0)) as f64
            };
            let cpu = e.cpu_s - s.cpu_s;
            self.redis = Some(RedisReport {
                messages,
                calls_total: total,
                calls_per_message: round3(total as f64 / m),
                evalsha_per_message: round3(d("evalsha") / m),
                publish_per_message: round3(d("publish") / m),
                per_message_by_command: by,
                cpu_s: round3(cpu),
                cpu_ms_per_1000_messages: round3(cpu * 1000.0 * 1000.0 / m),
                net_in_bytes_per_message: round3(e.net_in.saturating_sub(s.net_in) as f64 / m),
                net_out_bytes_per_message: round3(e.net_out.saturating_sub(s.net_out) as f64 / m),
                used_memory_end: e.used_memory,
                rss_end_kb: end.redis_proc.map(|p| p.rss_kb),
            });
        }
    }

    pub(crate) fn human(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "chat-bench {}: {} mode, {} instance(s), {} clients over {} room(s)",
            self.scenario, self.mode, self.instances, self.clients, self.rooms
        );
        if let Some(t) = &self.traffic {
            let _ = writeln!(
                o,
                "  load      {} senders x {} messages at {}/s ({} phases), body {} B; setup {:.2} s, window {:.2} s",
                self.senders,
                self.messages_per_sender,
                self.rate_per_sender,
                self.phases,
                self.body_bytes,
                self.setup_s,
                self.window_s
            );
            let _ = writeln!(
                o,
                "  sent      {} ({:.0}/s), acked {}, rejected {:?}, unanswered {}",
                t.messages_sent, t.sent_per_s, t.acked, t.rejected, t.unanswered
            );
            let _ = writeln!(
                o,
                "  delivered {} of {} expected ({:.0}/s over {:.2} s); lost {} ({:.4}%, {} messages), duplicates {}{}, reordered {}{}",
                t.delivered,
                t.expected_deliveries,
                t.delivered_per_s,
                t.delivery_window_s,
                t.lost_deliveries,
                t.loss_pct,
                t.messages_with_loss,
                t.duplicates,
                if t.refused_delivered > 0 {
                    format!(" ({} of them copies of refused messages)", t.refused_delivered)
                } else {
                    String::new()
                },
                t.reordered,
                if t.drain_timed_out { " [drain timed out]" } else { "" }
            );
            let l = &t.latency;
            let _ = writeln!(
                o,
                "  latency   p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us (mean {:.0} us, n={})",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
            );
            let a = &t.ack_latency;
            let _ = writeln!(
                o,
                "  ack       p50 {} us, p99 {} us, max {} us; send lag p99 {} us, max {} us",
                a.p50_us, a.p99_us, a.max_us, t.send_lag.p99_us, t.send_lag.max_us
            );
            if !t.closed.is_empty() {
                let _ = writeln!(o, "  closed    {:?}", t.closed);
            }
        }
        if let Some(m) = &self.memory {
            let held = m.rss_per_conn_held_bytes.map_or(String::new(), |b| {
                format!(", held {:.0} s: {b:.0} B", m.hold_after_s)
            });
            let _ = writeln!(
                o,
                "  memory    RSS per connection: joined {:.0} B, after the traffic {:.0} B{held}",
                m.rss_per_conn_joined_bytes, m.rss_per_conn_after_traffic_bytes
            );
        }
        if let Some(c) = &self.conns {
            let _ = writeln!(
                o,
                "  conns     {} of {} joined ({} failed) from {} process(es), {} source IP(s), {} in flight each",
                c.joined, c.target, c.failed, c.client_procs, c.source_ips, c.concurrency
            );
            let _ = writeln!(
                o,
                "  rest      join-room x{} in {:.2} s ({:.0}/s)",
                c.target, c.rest_s, c.rest_per_s
            );
            let l = &c.connect_latency;
            let _ = writeln!(
                o,
                "  connect   all joined in {:.2} s ({:.0}/s); per client p50 {} us, p99 {} us, p99.9 {} us, max {} us",
                c.connect_all_s, c.connects_per_s, l.p50_us, l.p99_us, l.p999_us, l.max_us
            );
            let _ = writeln!(
                o,
                "  memory    {:.0} B per connection (all instances; {:?} per instance), {:.0} B per user incl. REST join, held {:.1} s",
                c.rss_per_conn_bytes_all, c.rss_per_conn_bytes, c.rss_per_user_bytes_all, c.hold_s
            );
            let _ = writeln!(
                o,
                "  cpu       {:.1} ms server CPU per 1,000 connects",
                c.server_cpu_ms_per_1000_connects
            );
            if let Some(r) = c.redis_bytes_per_conn {
                let _ = writeln!(
                    o,
                    "  redis     {r:.0} B used_memory per connection, {:.1} ms CPU per 1,000 connections, calls per connection {:?}",
                    c.redis_cpu_ms_per_1000_conns.unwrap_or(0.0),
                    c.redis_calls_per_conn
                );
            }
            for e in &c.errors {
                let _ = writeln!(o, "  error     {e}");
            }
        }
        for s in &self.servers {
            let _ = writeln!(
                o,
                "  server {} pid {:?}: {} clients, CPU {:.2} s ({:.2} cores), RSS {} -> {} KiB, peak {} KiB, {} threads, {} fds open (limit {}/{})",
                s.index,
                s.pid,
                s.clients,
                s.cpu_s,
                s.cpu_cores,
                s.rss_start_kb,
                s.rss_end_kb,
                s.peak_rss_kb,
                s.threads,
                s.open_files_end,
                s.nofile_soft.as_deref().unwrap_or("?"),
                s.nofile_hard.as_deref().unwrap_or("?")
            );
        }
        if let Some(d) = self.delivered_per_server_cpu_s {
            let _ = writeln!(
                o,
                "  efficiency {:.0} deliveries per server CPU-second (server CPU {:.2} s, {:.2} s of it user space; bench CPU {:.2} s, {})",
                d,
                self.server_cpu_s,
                self.server_user_cpu_s,
                self.bench_cpu_s,
                match self.bench_threads {
                    Some(1) => "1 thread".to_string(),
                    Some(n) => format!("{n} threads"),
                    None => "1 thread per core".to_string(),
                }
            );
            if let Some(u) = self.delivered_per_server_user_cpu_s {
                let _ = writeln!(
                    o,
                    "  user space {:.0} deliveries per server user-space CPU-second ({:.2} µs per delivery)",
                    u,
                    1e6 / u.max(1e-9)
                );
            }
            if let Some(per) = self.server_switches_per_1000_deliveries {
                let _ = writeln!(
                    o,
                    "  switches  {} context switches of the servers' threads ({:.1} per 1,000 deliveries; {} involuntary)",
                    self.server_switches,
                    per,
                    self.servers.iter().map(|s| s.involuntary_switches).sum::<u64>()
                );
            }
        } else {
            let _ = writeln!(
                o,
                "  cpu       servers {:.2} s, bench {:.2} s",
                self.server_cpu_s, self.bench_cpu_s
            );
        }
        if let Some(r) = &self.redis {
            let _ = writeln!(
                o,
                "  redis     {:.2} calls/msg (evalsha {:.2}, publish {:.2}), CPU {:.2} s = {:.1} ms per 1,000 msgs, {:.0} B in / {:.0} B out per msg",
                r.calls_per_message,
                r.evalsha_per_message,
                r.publish_per_message,
                r.cpu_s,
                r.cpu_ms_per_1000_messages,
                r.net_in_bytes_per_message,
                r.net_out_bytes_per_message
            );
            let _ = writeln!(o, "  redis cmd {:?}", r.per_message_by_command);
        }
        for w in &self.warnings {
            let _ = writeln!(o, "  warning   {w}");
        }
        for l in &self.server_log {
            let _ = writeln!(o, "  log       {l}");
        }
        o
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
