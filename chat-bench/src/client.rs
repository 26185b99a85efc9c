//! The client side of the protocol: REST calls, WebSocket connects (optionally from a chosen
//! 127.0.0.x source address), and a borrowed decoder for server frames.

use std::{
    borrow::Cow,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    client_async_with_config, tungstenite::protocol::WebSocketConfig, WebSocketStream,
};

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// REST calls, over a pool of keep-alive connections.
#[derive(Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
}

/// What `POST /join-room/{roomId}` returns.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ticket {
    pub(crate) user_id: String,
    pub(crate) websocket_url: String,
}

impl Rest {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .build()?,
        })
    }

    /// Creates a room as a new guest (contract v2: nothing is anonymous but the documents).
    pub(crate) async fn create_room(&self, base: &str, name: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("{base}/guests"))
            .json(&serde_json::json!({ "name": "bench" }))
            .send()
            .await
            .with_context(|| format!("POST {base}/guests"))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.context("guests reply")?;
        let token = match body["token"].as_str() {
            Some(token) if status.is_success() => token.to_owned(),
            _ => bail!("guests: {status} {body}"),
        };
        let res = self
            .http
            .post(format!("{base}/create-room"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .with_context(|| format!("POST {base}/create-room"))?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.context("create-room reply")?;
        if !status.is_success() {
            bail!("create-room: {status} {body}");
        }
        body["roomId"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("create-room: no roomId in {body}"))
    }

    pub(crate) async fn join_room(
        &self,
        base: &str,
        room: &str,
        user: &str,
    ) -> anyhow::Result<Ticket> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = self
                .http
                .post(format!("{base}/join-room/{room}"))
                .json(&serde_json::json!({ "user": user }))
                .send()
                .await;
            let res = match res {
                Ok(r) => r,
                // A storm of setup requests may see a refused or reset connection: retry a few
                // times, as a real client would.
                Err(err) if attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    let _ = err;
                    continue;
                }
                Err(err) => return Err(err).with_context(|| format!("POST {base}/join-room")),
            };
            let status = res.status();
            let body: serde_json::Value = res.json().await.context("join-room reply")?;
            if !status.is_success() {
                bail!("join-room: {status} {body}");
            }
            return Ok(Ticket {
                user_id: body["user"]["id"]
                    .as_str()
                    .context("join-room: no user.id")?
                    .to_string(),
                websocket_url: body["websocketUrl"]
                    .as_str()
                    .context("join-room: no websocketUrl")?
                    .to_string(),
            });
        }
    }
}

/// How long a WebSocket handshake may take before the client counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP connection to `addr` from `source` (a 127.0.0.x address, port chosen by the kernel)
/// when given, with `TCP_NODELAY`.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))
            .with_context(|| format!("binding a client socket to {ip}"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a tokio-tungstenite WebSocket to `addr` at `path` (the `websocketUrl` from
/// join-room), from `source` when given: the connection scenarios' client (the message
/// scenarios use the lighter [`crate::ws`]).
pub(crate) async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    source: Option<Ipv4Addr>,
) -> anyhow::Result<Ws> {
    let stream = tcp_connect(addr, source).await?;
    // Small buffers: at tens of thousands of connections the defaults (128 KiB) would make the
    // bench, not the server, the memory hog.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20));
    let url = format!("ws://{addr}{path}");
    // A server out of file descriptors leaves the connection in its listen backlog: the TCP
    // connect succeeds and the handshake never answers. Fail it instead of waiting forever.
    let handshake = client_async_with_config(url.as_str(), stream, Some(config));
    let (ws, _resp) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "WebSocket handshake with {addr}: no answer in {} s (is the server at its open-file limit?)",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("WebSocket handshake with {addr}"))?;
    Ok(ws)
}

/// The parts of a server frame the bench looks at (everything else is skipped).
#[derive(serde::Deserialize)]
pub(crate) struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) ty: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) body: Option<Cow<'a, str>>,
    #[serde(default, rename = "clientMsgId", borrow)]
    pub(crate) client_msg_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) message: Option<Cow<'a, str>>,
}

/// The `i`-th client source address: 127.0.0.1, 127.0.0.2, ... (`None` with one address: let
/// the kernel choose, which lets ports be shared across destinations).
pub(crate) fn source_ip(i: usize, count: usize) -> Option<Ipv4Addr> {
    if count <= 1 {
        return None;
    }
    let n = (i % count) as u32 + 1;
    Some(Ipv4Addr::from(0x7f00_0000u32 + n))
}
