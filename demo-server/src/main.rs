//! The roomcast demo: the chat router at `/`, the browser client (`frontendws/`) beside it,
//! and Swagger UI at `/docs`.
//!
//! ```text
//! demo-server [--listen ADDR] [--redis-url URL] [--static-dir DIR] [--token-secret S]
//!             [--presence-ttl-secs N] [--write-coalesce-ms MS] [--write-coalesce-max-ms MS]
//!             [--dedup-window-secs N] [--auth guest|jwt] [--jwt-secret S | --jwt-public-key FILE [--jwt-alg ALG]]
//!             [--jwt-issuer ISS] [--jwt-audience AUD] [--jwt-name-claim CLAIM]
//!             [--header-read-timeout-secs N] [--http-idle-timeout-secs N] [--max-connections N]
//! ```
//! Each flag also reads an environment variable: `LISTEN_ADDR` (default `127.0.0.1:3000`),
//! `REDIS_URL` (absent: in memory, one instance), `STATIC_DIR` (default: the repository's
//! `frontendws/`), `TOKEN_SECRET` (default: in memory random; with Redis, a secret shared through Redis),
//! `PRESENCE_TTL_SECS` (default 15: how soon a crashed instance's users leave presence),
//! `WRITE_COALESCE_MS` (default 2: the shortest period of the flush tick that batches frames
//! for a WebSocket written less than a period ago; 0 writes every frame at once),
//! `WRITE_COALESCE_MAX_MS` (default 8: the longest period, which heavy fan-out adapts up to;
//! set it to `WRITE_COALESCE_MS` for a fixed period), `DEDUP_WINDOW_SECS` (default 120: how
//! long a sent `clientMsgId` is remembered, so that a retry is not published twice).
//!
//! HTTP serving (`chat_tower::serve`: hyper's HTTP/1 connections, a semaphore-capped accept
//! loop): `HEADER_READ_TIMEOUT_SECS` (default 10: a connection that has not sent a whole
//! request header this long after it opened or after its previous response is closed),
//! `HTTP_IDLE_TIMEOUT_SECS` (default 60: no byte either way this long closes a connection,
//! WebSockets too; keep it above their 20 s ping), `MAX_CONNECTIONS` (default 50,000 open
//! connections, WebSockets included; past it new ones wait in the listen backlog of 4,096).
//! 0 turns a timeout off.
//!
//! Identity: `AUTH` (default `guest`: anyone picks a display name with `POST /guests`).
//! `jwt`: no guests; every client sends a JWT from the identity provider as
//! `Authorization: Bearer` (the WebSocket also takes `?token=`), verified with
//! `JWT_SECRET` (HS256) or the PEM public key in the file `JWT_PUBLIC_KEY` (RS256, ES256 or
//! EdDSA, from the key's type; `JWT_ALG` names it to refuse other key types). Optional:
//! `JWT_ISSUER` and `JWT_AUDIENCE` (then required in every token), `JWT_NAME_CLAIM` (the
//! display name's claim, default `name`, else `sub`). `sub` is the user id; `exp` is
//! required (30 s leeway).

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use axum::Router;
use chat_tower::{
    identity::{JwtAlgorithm, JwtIdentity},
    ChatBuilder,
};
use tower_http::{services::ServeDir, trace::TraceLayer};
use tracing_subscriber::EnvFilter;
use utoipa_swagger_ui::{Config, SwaggerUi};

mod pages;
mod redact;

struct Args {
    listen: SocketAddr,
    redis_url: Option<String>,
    static_dir: PathBuf,
    token_secret: Option<String>,
    presence_ttl: Option<f64>,
    write_coalesce_ms: Option<f64>,
    write_coalesce_max_ms: Option<f64>,
    /// How long a sent `clientMsgId` is remembered (`ChatConfig::dedup_window`).
    dedup_window_secs: Option<f64>,
    header_read_timeout: Option<f64>,
    http_idle_timeout: Option<f64>,
    max_connections: Option<usize>,
    /// `None`: guest mode.
    jwt: Option<JwtIdentity>,
}

const USAGE: &str =
    "demo-server [--listen ADDR] [--redis-url URL] [--static-dir DIR] [--token-secret S] \
[--presence-ttl-secs N] [--write-coalesce-ms MS] [--write-coalesce-max-ms MS] \
[--dedup-window-secs N (default 120)] [--auth guest|jwt] \
[--jwt-secret S | --jwt-public-key FILE [--jwt-alg RS256|ES256|EdDSA]] [--jwt-issuer ISS] \
[--jwt-audience AUD] [--jwt-name-claim CLAIM] [--header-read-timeout-secs N] \
[--http-idle-timeout-secs N] [--max-connections N]";

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
    let mut static_dir = std::env::var("STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontendws")));
    let mut token_secret = std::env::var("TOKEN_SECRET").ok().filter(|s| !s.is_empty());
    let mut presence_ttl = std::env::var("PRESENCE_TTL_SECS").ok();
    let mut write_coalesce = std::env::var("WRITE_COALESCE_MS").ok();
    let mut write_coalesce_max = std::env::var("WRITE_COALESCE_MAX_MS").ok();
    let mut dedup_window = std::env::var("DEDUP_WINDOW_SECS").ok();
    let mut header_read_timeout = std::env::var("HEADER_READ_TIMEOUT_SECS").ok();
    let mut http_idle_timeout = std::env::var("HTTP_IDLE_TIMEOUT_SECS").ok();
    let mut max_connections = std::env::var("MAX_CONNECTIONS").ok();
    let mut auth = std::env::var("AUTH")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "guest".into());
    let mut jwt = JwtArgs::from_env();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--redis-url" => redis_url = Some(value()?),
            "--static-dir" => static_dir = PathBuf::from(value()?),
            "--token-secret" => token_secret = Some(value()?),
            "--presence-ttl-secs" => presence_ttl = Some(value()?),
            "--write-coalesce-ms" => write_coalesce = Some(value()?),
            "--write-coalesce-max-ms" => write_coalesce_max = Some(value()?),
            "--dedup-window-secs" => dedup_window = Some(value()?),
            "--header-read-timeout-secs" => header_read_timeout = Some(value()?),
            "--http-idle-timeout-secs" => http_idle_timeout = Some(value()?),
            "--max-connections" => max_connections = Some(value()?),
            "--auth" => auth = value()?,
            "--jwt-secret" => jwt.secret = Some(value()?),
            "--jwt-public-key" => jwt.public_key = Some(PathBuf::from(value()?)),
            "--jwt-alg" => jwt.alg = Some(value()?),
            "--jwt-issuer" => jwt.issuer = Some(value()?),
            "--jwt-audience" => jwt.audience = Some(value()?),
            "--jwt-name-claim" => jwt.name_claim = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
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
        dedup_window_secs: parse_secs("dedup window", dedup_window)?,
        header_read_timeout: parse_secs("header read timeout", header_read_timeout)?,
        http_idle_timeout: parse_secs("HTTP idle timeout", http_idle_timeout)?,
        max_connections: max_connections
            .map(|s| match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(anyhow::anyhow!("bad max connections {s} (1 or more)")),
            })
            .transpose()?,
        jwt,
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

    let mut builder = ChatBuilder::new();
    match args.jwt.take() {
        // Plugging in an identity turns guest mode off: `POST /guests` answers 404.
        Some(identity) => {
            tracing::info!(algorithm = %identity.algorithm(), "identity: JWT bearer tokens, no guests");
            builder = builder.identity(identity);
        }
        None => tracing::info!("identity: guests (pass --auth jwt for JWT bearer tokens)"),
    }
    let mut config = chat_tower::chat_core::ChatConfig::default();
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
            // One call: the backend, and the secret shared through Redis unless one was set.
            builder = builder
                .redis_with(url, config)
                .await
                .with_context(|| format!("connecting to Redis at {}", redact::redact(url)))?;
            tracing::info!(url = %redact::redact(url), "backend: redis");
        }
        None => tracing::info!("backend: in memory (one instance; pass --redis-url to scale out)"),
    }
    let (chat_router, chat) = builder.build();

    let docs: Router = SwaggerUi::new("/docs")
        .config(Config::from("/openapi.json"))
        .into();
    let app = pages::with_headers(
        Router::new()
            .merge(chat_router)
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
    // never go to the logs.
    .layer(TraceLayer::new_for_http().make_span_with(
        |request: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        },
    ));

    let listener = listen(args.listen).with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, static_dir = %args.static_dir.display(), "listening");

    // `chat_tower::serve`: the HTTP limits of `config`, and TCP_NODELAY on every accepted
    // socket (chat frames are small and latency-bound; with Nagle's algorithm a frame can wait
    // for the previous one's delayed ACK: p99 33 ms vs 1.4 ms in chat-bench's light fan-out).
    chat_tower::serve(listener, app, &config, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: closing WebSockets (1001)");
        chat.shutdown().await;
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
