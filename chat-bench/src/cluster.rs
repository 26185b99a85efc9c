//! The system under test: demo-server instances (and a private redis-server) that the bench
//! starts itself, or existing servers it targets; plus the readings taken from them: CPU time
//! and memory from `/proc`, and Redis `INFO`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

use crate::args::Args;

/// One server the bench talks to.
pub(crate) struct Instance {
    /// `http://127.0.0.1:PORT`
    pub(crate) base: String,
    pub(crate) addr: SocketAddr,
    pub(crate) pid: Option<u32>,
    child: Option<Child>,
    pub(crate) log: Option<PathBuf>,
}

/// The servers (and Redis) of one run. Processes it started are killed when it is dropped.
pub(crate) struct Cluster {
    pub(crate) instances: Vec<Instance>,
    /// `host:port` of the Redis that `INFO` is read from.
    pub(crate) redis_addr: Option<String>,
    pub(crate) redis_pid: Option<u32>,
    redis_child: Option<Child>,
    pub(crate) mode: &'static str,
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_tcp(addr: &str, child: &mut Option<Child>, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("{what} exited during startup: {status}");
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {addr} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL.
fn redis_host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("redis://")
        .with_context(|| format!("only redis:// URLs are supported: {url}"))?;
    let rest = rest.split('/').next().unwrap_or(rest);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    Ok(if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:6379")
    })
}

impl Cluster {
    /// Starts (or attaches to) what `args` asks for.
    pub(crate) async fn start(args: &Args) -> anyhow::Result<Self> {
        if !args.targets.is_empty() {
            let mut instances = Vec::new();
            for (i, t) in args.targets.iter().enumerate() {
                let hostport = t
                    .strip_prefix("http://")
                    .with_context(|| format!("--target needs http://host:port, got {t}"))?;
                let addr = tokio::net::lookup_host(hostport)
                    .await?
                    .next()
                    .with_context(|| format!("cannot resolve {hostport}"))?;
                instances.push(Instance {
                    base: t.clone(),
                    addr,
                    pid: args.pids.get(i).copied(),
                    child: None,
                    log: None,
                });
            }
            let redis_addr = args.redis_url.as_deref().map(redis_host_port).transpose()?;
            return Ok(Self {
                instances,
                redis_addr,
                redis_pid: None,
                redis_child: None,
                mode: if args.redis {
                    "redis (targets)"
                } else {
                    "targets"
                },
            });
        }

        let bin = &args.server_bin;
        if !bin.exists() {
            bail!(
                "demo-server binary not found at {} (cargo build --release -p demo-server, or pass --server-bin)",
                bin.display()
            );
        }
        let mut redis_child = None;
        let mut redis_pid = None;
        let redis_url = match (&args.redis_url, args.redis) {
            (Some(url), _) => Some(url.clone()),
            (None, true) => {
                let port = free_port()?;
                let child = Command::new(&args.redis_bin)
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| {
                        format!(
                            "starting {} (apt-get install redis-server, or --redis-bin / --redis-url)",
                            args.redis_bin
                        )
                    })?;
                redis_pid = child.id();
                redis_child = Some(child);
                let addr = format!("127.0.0.1:{port}");
                wait_tcp(&addr, &mut redis_child, "redis-server").await?;
                // Listening is not yet serving: wait for PING.
                let deadline = Instant::now() + Duration::from_secs(10);
                while redis_command(&addr, &["PING"]).await.is_err() {
                    if Instant::now() > deadline {
                        bail!("redis-server on {addr} does not answer PING");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(format!("redis://{addr}/"))
            }
            (None, false) => None,
        };
        let redis_addr = redis_url.as_deref().map(redis_host_port).transpose()?;

        let mut instances = Vec::new();
        for i in 0..args.instances {
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
            let log = std::env::temp_dir()
                .join(format!("chat-bench-{}-server{i}.log", std::process::id()));
            let log_file = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            let mut cmd = Command::new(bin);
            cmd.args(["--listen", &addr.to_string()])
                .env("RUST_LOG", &args.server_log)
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file))
                .kill_on_drop(true);
            if let Some(url) = &redis_url {
                cmd.args(["--redis-url", url]);
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let pid = child.id();
            let mut child = Some(child);
            wait_tcp(&addr.to_string(), &mut child, "demo-server").await?;
            instances.push(Instance {
                base: format!("http://{addr}"),
                addr,
                pid,
                child,
                log: Some(log),
            });
        }
        Ok(Self {
            instances,
            redis_addr,
            redis_pid,
            redis_child,
            mode: if redis_url.is_some() {
                "redis"
            } else {
                "memory"
            },
        })
    }

    /// Reads every reading at once.
    pub(crate) async fn snapshot(&self) -> Snapshot {
        let servers = self
            .instances
            .iter()
            .map(|i| i.pid.and_then(ProcSample::read))
            .collect();
        let redis = match &self.redis_addr {
            Some(addr) => RedisStats::read(addr).await.ok(),
            None => None,
        };
        Snapshot {
            at: Instant::now(),
            servers,
            redis_proc: self.redis_pid.and_then(ProcSample::read),
            redis,
            bench: ProcSample::read(std::process::id()),
        }
    }

    /// Servers (and Redis) that exited on their own, as messages: a crash is a finding.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            if let Some(c) = inst.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    out.push(format!("server {i} exited: {status}"));
                }
            }
        }
        if let Some(c) = self.redis_child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                out.push(format!("redis-server exited: {status}"));
            }
        }
        out
    }

    /// Warnings and errors the servers logged (first lines), for the report.
    pub(crate) fn log_excerpts(&self, max_lines: usize) -> Vec<String> {
        let mut out = Vec::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let Some(path) = &inst.log else { continue };
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() {
                continue;
            }
            out.push(format!(
                "server {i}: {} log lines in {}",
                lines.len(),
                path.display()
            ));
            for l in lines.iter().take(max_lines) {
                out.push(format!("  {}", strip_ansi(l)));
            }
        }
        out
    }

    /// Kills the processes it started and removes empty logs.
    pub(crate) async fn stop(mut self) {
        for inst in &mut self.instances {
            if let Some(c) = inst.child.as_mut() {
                let _ = c.kill().await;
            }
            if let Some(log) = &inst.log {
                if std::fs::metadata(log)
                    .map(|m| m.len() == 0)
                    .unwrap_or(false)
                {
                    let _ = std::fs::remove_file(log);
                }
            }
        }
        if let Some(c) = self.redis_child.as_mut() {
            let _ = c.kill().await;
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// All readings at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) servers: Vec<Option<ProcSample>>,
    pub(crate) redis_proc: Option<ProcSample>,
    pub(crate) redis: Option<RedisStats>,
    pub(crate) bench: Option<ProcSample>,
}

/// CPU time and memory of one process, from `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    /// utime + stime, in seconds.
    pub(crate) cpu_s: f64,
    /// utime alone: the process's own code, without the kernel's work on its behalf.
    pub(crate) user_cpu_s: f64,
    /// VmRSS, KiB.
    pub(crate) rss_kb: u64,
    /// VmHWM (peak RSS since start), KiB.
    pub(crate) hwm_kb: u64,
    pub(crate) threads: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub(crate) fds: u64,
    /// Context switches of the live threads, voluntary (a thread went to sleep: parked, or
    /// waiting in `epoll_wait` or on a lock) and involuntary (preempted), summed over
    /// `/proc/PID/task/*/status`. A thread that exited takes its counts with it.
    pub(crate) switches: Switches,
}

/// Context switches of a process's threads (see [`ProcSample::switches`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Switches {
    pub(crate) voluntary: u64,
    pub(crate) involuntary: u64,
}

impl Switches {
    fn read(pid: u32) -> Self {
        let mut sum = Self::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return sum;
        };
        for task in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            sum.voluntary += status_field(&status, "voluntary_ctxt_switches:");
            sum.involuntary += status_field(&status, "nonvoluntary_ctxt_switches:");
        }
        sum
    }
}

/// The first number after `name` on its line of a `/proc` status file (0 if absent).
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

impl ProcSample {
    pub(crate) fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may contain spaces: count fields after its ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| status_field(&status, name);
        Some(Self {
            cpu_s: (utime + stime) as f64 / clock_ticks(),
            user_cpu_s: utime as f64 / clock_ticks(),
            rss_kb: field("VmRSS:"),
            hwm_kb: field("VmHWM:"),
            threads: field("Threads:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            switches: Switches::read(pid),
        })
    }
}

/// The soft and hard open-file limits of a process, from `/proc/PID/limits`.
pub(crate) fn nofile_limits(pid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut parts = line["Max open files".len()..].split_whitespace();
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// What Redis said about itself: per-command call counts, CPU, traffic.
#[derive(Clone, Debug, Default)]
pub(crate) struct RedisStats {
    /// `cmdstat_<name>` → calls (includes commands run inside scripts).
    pub(crate) calls: BTreeMap<String, u64>,
    pub(crate) cpu_s: f64,
    pub(crate) net_in: u64,
    pub(crate) net_out: u64,
    pub(crate) used_memory: u64,
}

impl RedisStats {
    pub(crate) async fn read(addr: &str) -> anyhow::Result<Self> {
        let mut out = Self::default();
        let commandstats = redis_command(addr, &["INFO", "commandstats"]).await?;
        for line in commandstats.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.calls.insert(name.to_string(), calls);
        }
        let kv = |text: &str, key: &str| -> Option<String> {
            text.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .strip_prefix(':')
                    .map(|v| v.trim().to_string())
            })
        };
        let cpu = redis_command(addr, &["INFO", "cpu"]).await?;
        let f = |k: &str| {
            kv(&cpu, k)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        out.cpu_s = f("used_cpu_sys") + f("used_cpu_user");
        let stats = redis_command(addr, &["INFO", "stats"]).await?;
        let u = |t: &str, k: &str| kv(t, k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.net_in = u(&stats, "total_net_input_bytes");
        out.net_out = u(&stats, "total_net_output_bytes");
        let memory = redis_command(addr, &["INFO", "memory"]).await?;
        out.used_memory = u(&memory, "used_memory");
        Ok(out)
    }

    /// Calls of every command except the bench's own `INFO`.
    pub(crate) fn total_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(k, _)| k.as_str() != "info")
            .map(|(_, v)| v)
            .sum()
    }
}

/// One command over plain TCP in RESP; returns a bulk or simple string reply as text.
pub(crate) async fn redis_command(addr: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .context("connecting to Redis timed out")??;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
    }
    stream.write_all(req.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line))
        .await
        .context("Redis did not answer")??;
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'+') => Ok(line[1..].to_string()),
        Some(b'-') => bail!("Redis error: {}", &line[1..]),
        Some(b'$') => {
            let len: i64 = line[1..].parse()?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0u8; len as usize + 2];
            tokio::time::timeout(Duration::from_secs(5), reader.read_exact(&mut buf))
                .await
                .context("Redis reply truncated")??;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        _ => bail!("unexpected Redis reply: {line}"),
    }
}
