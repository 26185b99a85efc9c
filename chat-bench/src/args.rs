//! Hand-parsed command line: `chat-bench <scenario> [flags]`.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    /// Many rooms of moderate size, every client sends.
    Fanout,
    /// One big room, a few senders.
    Bigroom,
    /// Pairs of users sending direct messages to each other.
    Direct,
    /// Joined connections that do nothing: server memory per connection.
    Idle,
    /// Connect storm: time until C clients are connected and joined.
    Connect,
    /// `fanout`'s traffic through a bare TCP fan-out server: the machine's floor.
    Ceiling,
}

impl Scenario {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "fanout" => Self::Fanout,
            "bigroom" => Self::Bigroom,
            "direct" => Self::Direct,
            "idle" => Self::Idle,
            "connect" => Self::Connect,
            "ceiling" => Self::Ceiling,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Bigroom => "bigroom",
            Self::Direct => "direct",
            Self::Idle => "idle",
            Self::Connect => "connect",
            Self::Ceiling => "ceiling",
        }
    }

    /// Whether the scenario sends chat messages (as opposed to only holding connections).
    pub(crate) fn sends(self) -> bool {
        matches!(
            self,
            Self::Fanout | Self::Bigroom | Self::Direct | Self::Ceiling
        )
    }
}

/// Everything the run needs, defaults resolved for the scenario.
/// Where each sender's first message falls within one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phases {
    /// Sender `s` of `S` at `s / S` of the period: each room's members take turns, so a
    /// connection's frames come evenly spaced.
    Even,
    /// Uniformly at random (a fixed seed: every run draws the same phases), so frames for one
    /// connection sometimes come together, as when people send.
    Random,
}

impl Phases {
    /// The flag's value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phases::Even => "even",
            Phases::Random => "random",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) scenario: Scenario,
    /// Client connections (one user each).
    pub(crate) clients: usize,
    /// Rooms the clients are spread over (client `i` joins room `i % rooms`).
    pub(crate) rooms: usize,
    /// How many of the clients send (the first `senders` clients); the others only receive.
    pub(crate) senders: usize,
    /// Messages each sender sends.
    pub(crate) messages: usize,
    /// Messages per second per sender.
    pub(crate) rate: f64,
    /// Size of each message body in bytes (the timestamp header plus padding).
    pub(crate) body_bytes: usize,
    /// How the senders' phases lie within one period.
    pub(crate) phases: Phases,
    /// Server instances to start.
    pub(crate) instances: usize,
    /// Start a private redis-server and connect the instances to it.
    pub(crate) redis: bool,
    /// Use this Redis instead of starting one (implies `redis`).
    pub(crate) redis_url: Option<String>,
    /// Existing servers to target (`http://host:port`); nothing is started then.
    pub(crate) targets: Vec<String>,
    /// Server process ids to measure when targeting existing servers.
    pub(crate) pids: Vec<u32>,
    pub(crate) server_bin: PathBuf,
    pub(crate) redis_bin: String,
    /// How long idle connections are held before memory is read.
    pub(crate) hold: Duration,
    /// Traffic scenarios: how long the connections are held after the traffic before server
    /// memory is read again (zero: not held, not read).
    pub(crate) hold_after: Duration,
    /// How long to wait for outstanding deliveries after the last send.
    pub(crate) drain_timeout: Duration,
    /// Setup requests (REST joins, WebSocket connects) in flight at once, per client process.
    pub(crate) concurrency: usize,
    /// Client source addresses (127.0.0.1, 127.0.0.2, ...); 0 = automatic.
    pub(crate) source_ips: usize,
    /// Client processes for `idle` and `connect`; 0 = automatic.
    pub(crate) procs: usize,
    pub(crate) json: bool,
    /// Log server output (RUST_LOG for the servers), default `warn`.
    pub(crate) server_log: String,
    /// The bench's runtime threads (`None`: the scenario's default, [`Args::runtime_threads`]).
    pub(crate) threads: Option<usize>,
}

impl Args {
    /// The bench's runtime threads. The message scenarios run on one thread unless told
    /// otherwise: their readers are the bench's hot part, one thread does not cost more per
    /// delivery than two (no work stealing, no wakeups across threads), at W1's saturation it
    /// needed 0.4 µs per delivery (2.9 million in 1.1 CPU-s), and it leaves the other core to
    /// the servers it measures. The connection scenarios and `ceiling` keep tokio's default
    /// (one worker per core).
    pub(crate) fn runtime_threads(&self) -> Option<usize> {
        match (self.threads, self.scenario) {
            (Some(n), _) => Some(n),
            (None, Scenario::Fanout | Scenario::Bigroom | Scenario::Direct) => Some(1),
            (None, _) => None,
        }
    }
}

pub(crate) const USAGE: &str = "\
chat-bench <fanout|bigroom|direct|idle|connect|ceiling> [flags]

scenario sizes (defaults depend on the scenario; see README.md):
  --clients C        client connections (one user each)
  --rooms R          rooms; client i joins room i % R
  --senders S        how many clients send (the first S)
  --messages M       messages per sender
  --rate HZ          messages per second per sender (server limit: 20/s, burst 40)
  --body-bytes B     message body size (default 64)
  --phases even|random  the senders' phases within one period: spread evenly (default; a
                     room's members send in turn) or drawn at random, the same each run (as
                     people send: two messages to one connection may come microseconds apart)
  --hold SECS        idle: how long to hold the connections before reading memory (default 3)
  --hold-after SECS  fanout/bigroom/direct: hold the connections this long after the traffic,
                     then read server memory again (JSON `memory`; default 0: off)
  --drain-timeout S  give up waiting for deliveries after S seconds without progress (default 5)
servers:
  --instances N      demo-server instances to start (default 1 in memory, 2 with --redis)
  --redis            start a private redis-server (--redis-bin, default redis-server)
  --redis-url URL    use this Redis instead (INFO is read from it)
  --target URL       benchmark running servers (repeat or comma-separate); starts nothing
  --pids P,P         with --target: server pids to read CPU and memory from
  --server-bin PATH  default target/release/demo-server
  --server-log LVL   RUST_LOG of the started servers (default warn)
client:
  --concurrency K    setup requests in flight at once (default 64)
  --source-ips K     spread client sockets over 127.0.0.1..K (default: automatic)
  --procs K          idle/connect: client processes (default: one per 15,000 connections)
  --threads N        the bench's runtime threads (default: 1 for fanout, bigroom and direct,
                     else one per core)
output:
  --json             one JSON object on stdout instead of the summary
  --smoke            tiny sizes, finishes in seconds (used by the tests)
";

fn default_server_bin() -> PathBuf {
    // The workspace's target directory, wherever the bench is run from.
    let from_manifest = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/demo-server"
    ));
    if from_manifest.exists() {
        return from_manifest;
    }
    PathBuf::from("target/release/demo-server")
}

/// Parses `argv[1..]`. `Ok(None)` means help was printed.
pub(crate) fn parse(argv: Vec<String>) -> anyhow::Result<Option<Args>> {
    let mut it = argv.into_iter();
    let mut scenario = None;
    let mut clients = None;
    let mut rooms = None;
    let mut senders = None;
    let mut messages = None;
    let mut rate = None;
    let mut body_bytes = 64usize;
    let mut phases = Phases::Even;
    let mut instances = None;
    let mut redis = false;
    let mut redis_url = None;
    let mut targets = Vec::new();
    let mut pids = Vec::new();
    let mut server_bin = None;
    let mut redis_bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
    let mut hold = None;
    let mut hold_after = 0.0f64;
    let mut drain = 5.0f64;
    let mut concurrency = 64usize;
    let mut source_ips = 0usize;
    let mut procs = 0usize;
    let mut json = false;
    let mut smoke = false;
    let mut server_log = "warn".to_string();
    let mut threads = None;

    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{flag} needs a value")),
            }
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> anyhow::Result<T> {
            v.replace('_', "")
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: not a number: {v}"))
        }
        match flag.as_str() {
            "-h" | "--help" | "help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--clients" | "-c" => clients = Some(num(&flag, value()?)?),
            "--rooms" | "-r" => rooms = Some(num(&flag, value()?)?),
            "--senders" => senders = Some(num(&flag, value()?)?),
            "--messages" | "-m" => messages = Some(num(&flag, value()?)?),
            "--rate" => rate = Some(num::<f64>(&flag, value()?)?),
            "--body-bytes" => body_bytes = num(&flag, value()?)?,
            "--phases" => {
                phases = match value()?.as_str() {
                    "even" => Phases::Even,
                    "random" => Phases::Random,
                    other => bail!("--phases: `{other}` is neither `even` nor `random`"),
                }
            }
            "--instances" | "-n" => instances = Some(num(&flag, value()?)?),
            "--redis" => redis = true,
            "--redis-url" => {
                redis = true;
                redis_url = Some(value()?);
            }
            "--target" => targets.extend(
                value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_end_matches('/').to_string()),
            ),
            "--pids" => {
                for p in value()?.split(',').filter(|s| !s.is_empty()) {
                    pids.push(num(&flag, p.to_string())?);
                }
            }
            "--server-bin" => server_bin = Some(PathBuf::from(value()?)),
            "--redis-bin" => redis_bin = value()?,
            "--server-log" => server_log = value()?,
            "--hold" => hold = Some(num::<f64>(&flag, value()?)?),
            "--hold-after" => hold_after = num(&flag, value()?)?,
            "--drain-timeout" => drain = num(&flag, value()?)?,
            "--concurrency" => concurrency = num(&flag, value()?)?,
            "--source-ips" => source_ips = num(&flag, value()?)?,
            "--procs" => procs = num(&flag, value()?)?,
            "--json" => json = true,
            "--threads" => threads = Some(num::<usize>(&flag, value()?)?.max(1)),
            "--smoke" => smoke = true,
            other if !other.starts_with('-') && scenario.is_none() => {
                scenario = Some(
                    Scenario::parse(other)
                        .with_context(|| format!("unknown scenario {other}\n\n{USAGE}"))?,
                );
            }
            other => bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    let scenario = scenario.unwrap_or(Scenario::Fanout);

    // Scenario defaults: (clients, rooms, senders, messages, rate); smoke sizes are tiny.
    let (d_clients, d_rooms, d_messages, d_rate): (usize, Option<usize>, usize, f64) =
        match (scenario, smoke) {
            (Scenario::Fanout | Scenario::Ceiling, false) => (500, Some(10), 20, 10.0),
            (Scenario::Fanout | Scenario::Ceiling, true) => (12, Some(3), 5, 20.0),
            (Scenario::Bigroom, false) => (1_000, Some(1), 40, 10.0),
            (Scenario::Bigroom, true) => (20, Some(1), 5, 20.0),
            (Scenario::Direct, false) => (2_000, Some(1), 20, 10.0),
            (Scenario::Direct, true) => (10, Some(1), 5, 20.0),
            (Scenario::Idle, false) => (20_000, None, 0, 0.0),
            (Scenario::Idle, true) => (60, None, 0, 0.0),
            (Scenario::Connect, false) => (5_000, None, 0, 0.0),
            (Scenario::Connect, true) => (60, None, 0, 0.0),
        };
    let clients = clients.unwrap_or(d_clients).max(1);
    let rooms = rooms
        .or(d_rooms)
        .unwrap_or_else(|| clients.div_ceil(50))
        .clamp(1, clients);
    let d_senders = match scenario {
        Scenario::Bigroom => {
            if smoke {
                2
            } else {
                5
            }
        }
        Scenario::Idle | Scenario::Connect => 0,
        _ => clients,
    };
    let senders = senders.unwrap_or(d_senders).min(clients);
    if scenario == Scenario::Direct && clients < 2 {
        bail!("direct needs at least 2 clients (pairs)");
    }
    let redis = redis || redis_url.is_some();
    let instances = if targets.is_empty() {
        instances.unwrap_or(if redis { 2 } else { 1 })
    } else {
        targets.len()
    }
    .max(1);
    if !redis && targets.is_empty() && instances > 1 {
        bail!(
            "{instances} in-memory instances would be {instances} separate chats: add --redis (or --redis-url) to make them one"
        );
    }
    let rate = rate.unwrap_or(d_rate);
    if scenario.sends() && !(rate > 0.0 && rate.is_finite()) {
        bail!("--rate must be positive");
    }
    Ok(Some(Args {
        scenario,
        clients,
        rooms,
        senders,
        messages: messages.unwrap_or(d_messages),
        rate,
        body_bytes: body_bytes.clamp(32, 3_900),
        phases,
        instances,
        redis,
        redis_url,
        targets,
        pids,
        server_bin: server_bin.unwrap_or_else(default_server_bin),
        redis_bin,
        hold: Duration::from_secs_f64(hold.unwrap_or(if smoke { 0.5 } else { 3.0 }).max(0.0)),
        hold_after: Duration::from_secs_f64(hold_after.max(0.0)),
        drain_timeout: Duration::from_secs_f64(drain.max(0.5)),
        concurrency: concurrency.max(1),
        source_ips,
        procs,
        json,
        server_log,
        threads,
    }))
}
