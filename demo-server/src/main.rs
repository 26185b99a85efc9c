//! The roomcast demo: the chat router at `/`, the browser client (`frontendws/`) beside it,
//! and Swagger UI at `/docs`.
//!
//! ```text
//! demo-server [--listen ADDR] [--redis-url URL [--postgres-url URL]] [--static-dir DIR] [--token-secret S]
//!             [--presence-ttl-secs N] [--write-coalesce-ms MS] [--write-coalesce-max-ms MS]
//!             [--dedup-window-secs N] [--auth guest|jwt] [--jwt-secret S | --jwt-public-key FILE [--jwt-alg ALG]]
//!             [--jwt-issuer ISS] [--jwt-audience AUD] [--jwt-name-claim CLAIM]
//!             [--room-ttl-secs N] [--history-max-age-secs N] [--max-members-per-room N]
//!             [--event-queue N]
//!             [--header-read-timeout-secs N] [--http-idle-timeout-secs N] [--max-connections N]
//!             [--drain-timeout-secs N]
//! ```
//! Each flag also reads an environment variable: `LISTEN_ADDR` (default `127.0.0.1:3000`),
//! `REDIS_URL` (absent: in memory, one instance), `POSTGRES_URL` (with Redis: room history
//! also archived in PostgreSQL beyond Redis's caps, table `roomcast_messages`; absent: none),
//! `STATIC_DIR` (default: the repository's
//! `frontendws/`), `TOKEN_SECRET` (default: in memory random; with Redis, a secret shared through Redis),
//! `PRESENCE_TTL_SECS` (default 15: how soon a crashed instance's users leave presence),
//! `WRITE_COALESCE_MS` (default 2: the shortest period of the flush tick that batches frames
//! for a WebSocket written less than a period ago; 0 writes every frame at once),
//! `WRITE_COALESCE_MAX_MS` (default 8: the longest period, which heavy fan-out adapts up to;
//! set it to `WRITE_COALESCE_MS` for a fixed period), `DEDUP_WINDOW_SECS` (default 120: how
//! long a sent `clientMsgId` is remembered, so that a retry is not published twice).
//! Growth: `ROOM_TTL_SECS` (default 604800, 7 days: a room with nobody online and no
//! activity for this long is deleted), `HISTORY_MAX_AGE_SECS` (default 2592000, 30 days:
//! older messages are not served and are trimmed), `MAX_MEMBERS_PER_ROOM` (default 10000:
//! more is `room_full`), `EVENT_QUEUE` (default 65536: events an instance's dispatcher may
//! have waiting; past it, the rooms concerned get `resync`).
//!
//! HTTP serving (`chat_tower::serve`: hyper's HTTP/1 connections, a semaphore-capped accept
//! loop): `HEADER_READ_TIMEOUT_SECS` (default 10: a connection that has not sent a whole
//! request header this long after it opened or after its previous response is closed),
//! `HTTP_IDLE_TIMEOUT_SECS` (default 60: no byte either way this long closes a connection,
//! WebSockets too; keep it above their 20 s ping), `MAX_CONNECTIONS` (default 50,000 open
//! connections, WebSockets included; past it new ones wait in the listen backlog of 4,096).
//! 0 turns a timeout off.
//!
//! Operations (`docs/operations.md`): `/healthz`, `/readyz`, `/metrics` (Prometheus), an
//! `X-Request-Id` on every response. SIGTERM (or SIGINT) drains: new WebSockets get a 503,
//! open ones close with 1012 after what is queued, presence leaves, and the process exits
//! within `DRAIN_TIMEOUT_SECS` (default 10) and a second.
//!
//! Identity: `AUTH` (default `guest`: anyone picks a display name with `POST /guests`).
//! `jwt`: no guests; every client sends a JWT from the identity provider as
//! `Authorization: Bearer` (the WebSocket also takes `?token=`), verified with
//! `JWT_SECRET` (HS256) or the PEM public key in the file `JWT_PUBLIC_KEY` (RS256, ES256 or
//! EdDSA, from the key's type; `JWT_ALG` names it to refuse other key types). Optional:
//! `JWT_ISSUER` and `JWT_AUDIENCE` (then required in every token), `JWT_NAME_CLAIM` (the
//! display name's claim, default `name`, else `sub`). `sub` is the user id; `exp` is
//! required (30 s leeway).
//!
//! Per-user limits (each a `ChatConfig` field; `demo-server --help` lists them with their
//! defaults and environment variables): `--user-messages-per-second`, `--user-messages-burst`,
//! `--user-joins-per-second`, `--user-joins-burst`, `--join-replay-per-token`,
//! `--user-directs-per-second`, `--user-directs-burst`, `--user-rooms-per-minute`,
//! `--max-connections-per-user`, and the per-connection flood guard
//! `--frame-rate-per-second`, `--frame-burst` (see `limits.rs`).

mod limits;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use axum::Router;
use chat_tower::{
    identity::{JwtAlgorithm, JwtIdentity},
    ChatBuilder,
};
use tower_http::{
    services::ServeDir,
    trace::{DefaultOnFailure, TraceLayer},
};
use tracing_subscriber::EnvFilter;
use utoipa_swagger_ui::{Config, SwaggerUi};

mod pages;
mod redact;

struct Args {
    listen: SocketAddr,
    redis_url: Option<String>,
    postgres_url: Option<String>,
    static_dir: PathBuf,
    token_secret: Option<String>,
    presence_ttl: Option<f64>,
    write_coalesce_ms: Option<f64>,
    write_coalesce_max_ms: Option<f64>,
    growth: Growth,
    /// How long a sent `clientMsgId` is remembered (`ChatConfig::dedup_window`).
    dedup_window_secs: Option<f64>,
    header_read_timeout: Option<f64>,
    http_idle_timeout: Option<f64>,
    max_connections: Option<usize>,
    /// `ChatConfig::drain_timeout`.
    drain_timeout: Option<f64>,
    /// `None`: guest mode.
    jwt: Option<JwtIdentity>,
    /// Whose `X-Forwarded-For` names a guest's address (loopback always).
    proxies: chat_tower::TrustedProxies,
    /// Per-user limits as `(flag, value)`, environment first (see `limits.rs`).
    limits: Vec<(&'static str, String)>,
}

/// The bounded-growth settings, as given (flags or environment); `None`: the default.
#[derive(Default)]
struct Growth {
    room_ttl: Option<std::time::Duration>,
    history_max_age: Option<std::time::Duration>,
    max_members_per_room: Option<usize>,
    event_queue: Option<usize>,
}

impl Growth {
    fn parse(
        room_ttl: Option<String>,
        max_age: Option<String>,
        members: Option<String>,
        queue: Option<String>,
    ) -> anyhow::Result<Self> {
        let secs = |what: &str, v: Option<String>| -> anyhow::Result<Option<std::time::Duration>> {
            v.map(|s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|n| *n > 0.0)
                    .and_then(|n| std::time::Duration::try_from_secs_f64(n).ok())
                    .ok_or_else(|| anyhow::anyhow!("bad {what} {s} (seconds, above 0)"))
            })
            .transpose()
        };
        let count = |what: &str, v: Option<String>| -> anyhow::Result<Option<usize>> {
            v.map(|s| match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(anyhow::anyhow!("bad {what} {s} (a count, above 0)")),
            })
            .transpose()
        };
        Ok(Self {
            room_ttl: secs("room TTL", room_ttl)?,
            history_max_age: secs("history max age", max_age)?,
            max_members_per_room: count("max members per room", members)?,
            event_queue: count("event queue", queue)?,
        })
    }
}

const USAGE: &str =
    "demo-server [--listen ADDR] [--redis-url URL [--postgres-url URL]] [--static-dir DIR] [--token-secret S] \
[--presence-ttl-secs N] [--write-coalesce-ms MS] [--write-coalesce-max-ms MS] \
[--dedup-window-secs N (default 120)] [--auth guest|jwt] \
[--jwt-secret S | --jwt-public-key FILE [--jwt-alg RS256|ES256|EdDSA]] [--jwt-issuer ISS] \
[--jwt-audience AUD] [--jwt-name-claim CLAIM] [--room-ttl-secs N] [--history-max-age-secs N] \
[--max-members-per-room N] [--event-queue N] [--header-read-timeout-secs N] \
[--http-idle-timeout-secs N] [--max-connections N] [--drain-timeout-secs N (default 10)] \
[--trusted-proxies NETS (proxies whose X-Forwarded-For names a guest's address; loopback always)]";

/// The JWT settings, as given (flags or environment).
#[derive(Default)]
struct JwtArgs {
    secret: Option<String>,
    public_key: Option<PathBuf>,
    alg: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    name_claim: Option<String>,
}

impl JwtArgs {
    fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|s| !s.is_empty());
        Self {
            secret: var("JWT_SECRET"),
            public_key: var("JWT_PUBLIC_KEY").map(PathBuf::from),
            alg: var("JWT_ALG"),
            issuer: var("JWT_ISSUER"),
            audience: var("JWT_AUDIENCE"),
            name_claim: var("JWT_NAME_CLAIM"),
        }
    }

    fn any(&self) -> bool {
        self.secret.is_some()
            || self.public_key.is_some()
            || self.alg.is_some()
            || self.issuer.is_some()
            || self.audience.is_some()
            || self.name_claim.is_some()
    }

    /// The identity hook for `--auth jwt`: exactly one key, an algorithm that fits it.
    fn identity(self) -> anyhow::Result<JwtIdentity> {
        let alg = self
            .alg
            .as_deref()
            .map(str::parse::<JwtAlgorithm>)
            .transpose()?;
        let mut identity = match (self.secret, self.public_key) {
            (Some(secret), None) => {
                if alg.is_some_and(|alg| alg != JwtAlgorithm::Hs256) {
                    anyhow::bail!(
                        "--jwt-secret verifies HS256 only (--jwt-alg is for --jwt-public-key)"
                    );
                }
                JwtIdentity::hs256(secret.as_bytes())?
            }
            (None, Some(file)) => {
                let pem = std::fs::read(&file)
                    .with_context(|| format!("reading the JWT public key {}", file.display()))?;
                match alg {
                    Some(alg) => JwtIdentity::from_public_key_pem_for(alg, &pem),
                    None => JwtIdentity::from_public_key_pem(&pem),
                }
                .with_context(|| format!("the JWT public key {}", file.display()))?
            }
            _ => anyhow::bail!("--auth jwt needs one of --jwt-secret and --jwt-public-key"),
        };
        if let Some(issuer) = self.issuer {
            identity = identity.issuer(issuer);
        }
        if let Some(audience) = self.audience {
            identity = identity.audience(audience);
        }
        if let Some(claim) = self.name_claim {
            identity = identity.name_claim(claim);
        }
        Ok(identity)
    }
}

fn parse_ms(what: &str, value: Option<String>) -> anyhow::Result<Option<f64>> {
    value
        .map(|s| match s.parse::<f64>() {
            Ok(ms) if (0.0..=1_000.0).contains(&ms) => Ok(ms),
            _ => Err(anyhow::anyhow!("bad {what} {s} (milliseconds, 0 to 1000)")),
        })
        .transpose()
}

fn parse_secs(what: &str, value: Option<String>) -> anyhow::Result<Option<f64>> {
    value
        .map(|s| match s.parse::<f64>() {
            Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => Ok(secs),
            _ => Err(anyhow::anyhow!("bad {what} {s} (seconds, 0 to 86400)")),
        })
        .transpose()
}

fn parse_args() -> anyhow::Result<Args> {
    let mut listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let mut redis_url = std::env::var("REDIS_URL").ok().filter(|s| !s.is_empty());
    let mut postgres_url = std::env::var("POSTGRES_URL").ok().filter(|s| !s.is_empty());
    let mut static_dir = std::env::var("STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontendws")));
    let mut token_secret = std::env::var("TOKEN_SECRET").ok().filter(|s| !s.is_empty());
    let mut presence_ttl = std::env::var("PRESENCE_TTL_SECS").ok();
    let mut write_coalesce = std::env::var("WRITE_COALESCE_MS").ok();
    let mut write_coalesce_max = std::env::var("WRITE_COALESCE_MAX_MS").ok();
    let mut room_ttl = std::env::var("ROOM_TTL_SECS").ok();
    let mut history_max_age = std::env::var("HISTORY_MAX_AGE_SECS").ok();
    let mut max_members = std::env::var("MAX_MEMBERS_PER_ROOM").ok();
    let mut event_queue = std::env::var("EVENT_QUEUE").ok();
    let mut dedup_window = std::env::var("DEDUP_WINDOW_SECS").ok();
    let mut header_read_timeout = std::env::var("HEADER_READ_TIMEOUT_SECS").ok();
    let mut http_idle_timeout = std::env::var("HTTP_IDLE_TIMEOUT_SECS").ok();
    let mut max_connections = std::env::var("MAX_CONNECTIONS").ok();
    let mut drain_timeout = std::env::var("DRAIN_TIMEOUT_SECS").ok();
    let mut proxies = std::env::var("TRUSTED_PROXIES").unwrap_or_default();
    let mut auth = std::env::var("AUTH")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "guest".into());
    let mut jwt = JwtArgs::from_env();
    let mut limit_args = limits::from_env();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--redis-url" => redis_url = Some(value()?),
            "--postgres-url" => postgres_url = Some(value()?),
            "--static-dir" => static_dir = PathBuf::from(value()?),
            "--token-secret" => token_secret = Some(value()?),
            "--presence-ttl-secs" => presence_ttl = Some(value()?),
            "--write-coalesce-ms" => write_coalesce = Some(value()?),
            "--write-coalesce-max-ms" => write_coalesce_max = Some(value()?),
            "--room-ttl-secs" => room_ttl = Some(value()?),
            "--history-max-age-secs" => history_max_age = Some(value()?),
            "--max-members-per-room" => max_members = Some(value()?),
            "--event-queue" => event_queue = Some(value()?),
            "--dedup-window-secs" => dedup_window = Some(value()?),
            "--header-read-timeout-secs" => header_read_timeout = Some(value()?),
            "--http-idle-timeout-secs" => http_idle_timeout = Some(value()?),
            "--max-connections" => max_connections = Some(value()?),
            "--drain-timeout-secs" => drain_timeout = Some(value()?),
            "--trusted-proxies" => proxies = value()?,
            "--auth" => auth = value()?,
            "--jwt-secret" => jwt.secret = Some(value()?),
            "--jwt-public-key" => jwt.public_key = Some(PathBuf::from(value()?)),
            "--jwt-alg" => jwt.alg = Some(value()?),
            "--jwt-issuer" => jwt.issuer = Some(value()?),
            "--jwt-audience" => jwt.audience = Some(value()?),
            "--jwt-name-claim" => jwt.name_claim = Some(value()?),
            name if limits::flag(name).is_some() => {
                let given = value()?;
                limit_args.extend(limits::flag(name).map(|f| (f, given)));
            }
            "-h" | "--help" => {
                println!("{USAGE} [LIMIT N]...\nlimits:\n{}", limits::usage());
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other} (try --help)"),
        }
    }
    let jwt = match auth.as_str() {
        "guest" if jwt.any() => {
            anyhow::bail!("JWT settings given in guest mode: add --auth jwt (or AUTH=jwt)")
        }
        "guest" => None,
        "jwt" => Some(jwt.identity()?),
        other => anyhow::bail!("bad --auth {other} (guest or jwt)"),
    };
    Ok(Args {
        listen: listen
            .parse()
            .with_context(|| format!("bad listen address {listen}"))?,
        redis_url,
        postgres_url,
        static_dir,
        token_secret,
        presence_ttl: presence_ttl
            .map(|s| {
                s.parse::<f64>()
                    .with_context(|| format!("bad presence TTL {s}"))
            })
            .transpose()?,
        write_coalesce_ms: parse_ms("write coalesce", write_coalesce)?,
        write_coalesce_max_ms: parse_ms("write coalesce max", write_coalesce_max)?,
        growth: Growth::parse(room_ttl, history_max_age, max_members, event_queue)?,
        dedup_window_secs: parse_secs("dedup window", dedup_window)?,
        header_read_timeout: parse_secs("header read timeout", header_read_timeout)?,
        http_idle_timeout: parse_secs("HTTP idle timeout", http_idle_timeout)?,
        drain_timeout: parse_secs("drain timeout", drain_timeout)?,
        max_connections: max_connections
            .map(|s| match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(anyhow::anyhow!("bad max connections {s} (1 or more)")),
            })
            .transpose()?,
        jwt,
        proxies: chat_tower::TrustedProxies::parse(&proxies).context("--trusted-proxies")?,
        limits: limit_args,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The error may quote the Redis URL: redacted like the logs.
            eprintln!("Error: {}", redact::redact(&format!("{err:?}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // Logs go to stderr, every line through `redact` (passwords and tokens, whoever logs them).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info")),
        )
        .with_writer(|| redact::Redacting(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = parse_args()?;
    // Before the chat is built: the engine registers its metrics with the recorder it finds.
    let prometheus = chat_tower::ops::install_prometheus()?;

    let mut builder = ChatBuilder::new().trusted_proxies(args.proxies.clone());
    match args.jwt.take() {
        // Plugging in an identity turns guest mode off: `POST /guests` answers 404.
        Some(identity) => {
            tracing::info!(algorithm = %identity.algorithm(), "identity: JWT bearer tokens, no guests");
            builder = builder.identity(identity);
        }
        None => tracing::info!("identity: guests (pass --auth jwt for JWT bearer tokens)"),
    }
    let mut config = chat_tower::chat_core::ChatConfig::default();
    for (flag, value) in &args.limits {
        limits::apply(&mut config, flag, value)?;
    }
    if let Some(n) = args.growth.max_members_per_room {
        config.max_members_per_room = n;
    }
    let ms = |ms: f64| std::time::Duration::from_secs_f64(ms / 1_000.0);
    if let Some(min) = args.write_coalesce_ms {
        config.write_coalesce = ms(min);
    }
    if let Some(max) = args.write_coalesce_max_ms {
        config.write_coalesce_max = ms(max);
    }
    if let Some(secs) = args.dedup_window_secs {
        config.dedup_window = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(secs) = args.header_read_timeout {
        config.http_header_read_timeout = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(secs) = args.http_idle_timeout {
        config.http_idle_timeout = std::time::Duration::from_secs_f64(secs);
    }
    if let Some(n) = args.max_connections {
        config.http_max_connections = n;
    }
    if let Some(secs) = args.drain_timeout {
        config.drain_timeout = std::time::Duration::from_secs_f64(secs);
    }
    builder = builder.config(config.clone());
    if let Some(secret) = &args.token_secret {
        builder = builder.token_secret(secret.as_bytes().to_vec());
    }
    match &args.redis_url {
        Some(url) => {
            let mut config = chat_tower::chat_core::backend::redis::RedisConfig::default();
            if let Some(ttl) = args.presence_ttl {
                config.presence_ttl = std::time::Duration::from_secs_f64(ttl);
            }
            let growth = &args.growth;
            if let Some(ttl) = growth.room_ttl {
                config.room_ttl = ttl;
            }
            if let Some(age) = growth.history_max_age {
                config.history_max_age = age;
            }
            if let Some(n) = growth.event_queue {
                config.event_queue = n;
            }
            // One call: the backend, and the secret shared through Redis unless one was set.
            builder = builder
                .redis_with(url, config)
                .await
                .with_context(|| format!("connecting to Redis at {}", redact::redact(url)))?;
            tracing::info!(url = %redact::redact(url), "backend: redis");
            if let Some(pg) = &args.postgres_url {
                builder = builder.postgres_archive(pg).await.with_context(|| {
                    format!("connecting to PostgreSQL at {}", redact::redact(pg))
                })?;
                tracing::info!(url = %redact::redact(pg), "history archive: postgres");
            }
        }
        None => {
            if args.postgres_url.is_some() {
                anyhow::bail!(
                    "--postgres-url needs --redis-url (the archive keeps Redis's message ids)"
                );
            }
            use chat_tower::chat_core::backend::memory::{MemoryCluster, MemoryConfig};
            let growth = &args.growth;
            let mut config = MemoryConfig::default();
            if let Some(ttl) = growth.room_ttl {
                config.room_ttl = ttl;
            }
            if let Some(age) = growth.history_max_age {
                config.history_max_age = age;
            }
            if let Some(n) = growth.event_queue {
                config.event_queue = n;
            }
            builder = builder.backend(MemoryCluster::with_config(config).node());
            tracing::info!("backend: in memory (one instance; pass --redis-url to scale out)");
        }
    }
    let (chat_router, chat) = builder.build();

    let docs: Router = SwaggerUi::new("/docs")
        .config(Config::from("/openapi.json"))
        .into();
    let app = pages::with_headers(
        Router::new()
            .merge(chat_router)
            .merge(chat_tower::ops::health(chat.clone()))
            .merge(chat_tower::ops::metrics(chat.clone(), prometheus))
            .merge(docs)
            // A path that is neither the API nor a file of the client: the chat's own
            // `not_found` problem (problem+json, like every other API error).
            .fallback_service(ServeDir::new(&args.static_dir).fallback(
                axum::handler::HandlerWithoutStateExt::into_service(|| async {
                    chat_tower::ChatRejection::NoSuchPath("no such path".into())
                }),
            )),
    )
    // The span names the path only: a query may carry a token (`/ws?token=`), and tokens
    // never go to the logs. A 5xx is not logged here as an error: the chat logs its real
    // failures itself (once, under the correlation id the client sees), while a 503 from
    // `/readyz` during an outage or from a draining instance is expected, not a failure.
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            })
            .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    );
    // Outermost: every request (and the WebSocket sessions it starts) in a span with its id.
    let app = chat_tower::ops::request_id(app);

    let listener = listen(args.listen).with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, static_dir = %args.static_dir.display(), "listening");

    // `chat_tower::serve`: the HTTP limits of `config`, and TCP_NODELAY on every accepted
    // socket (chat frames are small and latency-bound; with Nagle's algorithm a frame can wait
    // for the previous one's delayed ACK: p99 33 ms vs 1.4 ms in chat-bench's light fan-out).
    let drain_timeout = config.drain_timeout;
    chat_tower::serve(listener, app, &config, async move {
        shutdown_signal().await;
        // The exit is bounded whatever hangs: the drain's own timeout, then a second more
        // for the HTTP side.
        tokio::spawn(async move {
            tokio::time::sleep(drain_timeout + std::time::Duration::from_secs(1)).await;
            tracing::error!("drain deadline passed; exiting");
            std::process::exit(1);
        });
        tracing::info!("draining: new WebSockets refused, open ones closed with 1012");
        chat.drain().await;
    })
    .await?;
    tracing::info!("bye");
    Ok(())
}

/// Binds with a listen backlog of 4,096 (tokio's `TcpListener::bind` uses 128, which drops
/// connection attempts in a connect storm of a few thousand clients).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
