//! The message scenarios' WebSocket client, by hand: the upgrade request, then frames read
//! straight from the socket's read half into one buffer and written to its write half.
//!
//! Why not tokio-tungstenite (which `idle` and `connect` still use): the bench shares the two
//! cores with the servers it measures, and its readers are its hot part (W1 at 10/s is 245,000
//! deliveries a second). Through a split `WebSocketStream` each read went through the split's
//! lock, the stream's wakers and a buffer zeroed per read (a tenth of the bench's CPU was
//! `memset`). Here a reader owns its half of the socket, reads whatever is there into a
//! buffer initialised once, and hands every complete frame to the caller in one synchronous
//! pass: one wakeup and one clock reading per read, however many frames it brought.
//!
//! Server frames are unmasked (RFC 6455 5.1); no extension is negotiated, so the reserved
//! bits must be clear. Text frames are checked for UTF-8 as tungstenite did. Pings are
//! answered after the batch; a close frame ends the reader with its code and reason.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
    sync::Mutex,
};

use crate::client::tcp_connect;

/// The read buffer of one connection. A read takes whatever the socket holds up to this; a
/// larger frame grows the buffer until it is consumed.
const READ_BUFFER: usize = 16 * 1024;
/// The largest frame accepted (as the tungstenite client was configured).
const MAX_FRAME: usize = 16 << 20;
/// The largest upgrade response accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long a WebSocket handshake may take before the client counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 6455's GUID for `Sec-WebSocket-Accept`.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A close frame from the server.
#[derive(Debug)]
pub(crate) struct Close {
    pub(crate) code: Option<u16>,
    pub(crate) reason: String,
}

/// The reading side of a connection.
pub(crate) struct WsRead {
    half: OwnedReadHalf,
    dec: Decoder,
    write: WsWrite,
}

/// Server frames out of the bytes read: the buffer and what a frame split over reads needs.
struct Decoder {
    /// Bytes read and not yet consumed are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the first incomplete frame needs in all (at least its 2-byte header).
    need: usize,
    /// A fragmented message being put together, and whether it is text.
    partial: Vec<u8>,
    partial_text: Option<bool>,
    /// Ping payloads to answer once the batch is handled.
    pongs: Vec<Vec<u8>>,
}

/// The writing side of a connection (cheap to clone: senders, the reader's pongs and the
/// teardown share it).
#[derive(Clone)]
pub(crate) struct WsWrite {
    inner: Arc<Writer>,
}

struct Writer {
    /// An async lock: a sender and a pong may write at once, and a write may wait on the
    /// socket. Uncontended but for those rare pongs.
    half: Mutex<OwnedWriteHalf>,
    /// State of the masking keys (client frames must be masked; the key needs no secrecy here).
    mask: AtomicU64,
}

/// A 64-bit mix (splitmix64): handshake keys and masks.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A seed that differs between connections and runs.
fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    mix(t ^ COUNTER.fetch_add(1, Relaxed).rotate_left(32) ^ u64::from(std::process::id()))
}

/// `Sec-WebSocket-Accept` for `key`.
fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Opens a WebSocket to `addr` at `path` (the `websocketUrl` from join-room), from `source`
/// (a 127.0.0.x address) when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    path: &str,
    source: Option<Ipv4Addr>,
) -> anyhow::Result<(WsRead, WsWrite)> {
    // A server out of file descriptors leaves the connection in its listen backlog: the TCP
    // connect succeeds and the handshake never answers. Fail it instead of waiting forever.
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(addr, path, source))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "WebSocket handshake with {addr}: no answer in {} s (is the server at its open-file limit?)",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("WebSocket handshake with {addr}"))
}

async fn handshake(
    addr: SocketAddr,
    path: &str,
    source: Option<Ipv4Addr>,
) -> anyhow::Result<(WsRead, WsWrite)> {
    let mut stream = tcp_connect(addr, source).await?;
    let s = seed();
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&mix(s).to_le_bytes());
    nonce[8..].copy_from_slice(&mix(s ^ 1).to_le_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;

    let mut buf = vec![0u8; READ_BUFFER];
    let mut end = 0;
    let head_len = loop {
        let n = stream.read(&mut buf[end..]).await?;
        if n == 0 {
            bail!("connection closed during the upgrade");
        }
        end += n;
        if let Some(at) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if end >= MAX_HEAD {
            bail!("upgrade response longer than {MAX_HEAD} bytes");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        bail!("upgrade refused: {status}");
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.trim().to_string());
    if accept.as_deref() != Some(accept_for(&key).as_str()) {
        bail!("bad Sec-WebSocket-Accept: {accept:?}");
    }
    // Frames the server sent right behind its answer are the reader's.
    buf.copy_within(head_len..end, 0);
    let (read, write) = stream.into_split();
    let write = WsWrite {
        inner: Arc::new(Writer {
            half: Mutex::new(write),
            mask: AtomicU64::new(mix(s ^ 2)),
        }),
    };
    let reader = WsRead {
        half: read,
        dec: Decoder::new(buf, end - head_len),
        write: write.clone(),
    };
    Ok((reader, write))
}

impl WsRead {
    /// Reads once from the socket (whatever it holds, up to the buffer's room). `Ok(0)` is the
    /// end of the stream. Cancel-safe: nothing is consumed until the read completes.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        let room = self.dec.room();
        let n = self.half.read(room).await?;
        self.dec.end += n;
        Ok(n)
    }

    /// Hands every complete frame read so far to the caller ([`Decoder::frames`]).
    pub(crate) fn frames(&mut self, on_text: impl FnMut(&str)) -> Result<Option<Close>, String> {
        self.dec.frames(on_text)
    }

    /// Whether pings wait for their pong.
    pub(crate) fn has_pings(&self) -> bool {
        !self.dec.pongs.is_empty()
    }

    /// Answers the pings of the last batch.
    pub(crate) async fn answer_pings(&mut self) -> io::Result<()> {
        for payload in std::mem::take(&mut self.dec.pongs) {
            self.write.send(OP_PONG, &payload).await?;
        }
        Ok(())
    }
}

impl Decoder {
    /// `buf[..end]` holds bytes already read.
    fn new(buf: Vec<u8>, end: usize) -> Self {
        Self {
            buf,
            start: 0,
            end,
            need: 2,
            partial: Vec::new(),
            partial_text: None,
            pongs: Vec::new(),
        }
    }

    /// The free part of the buffer, after making room for the frame under way.
    fn room(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > READ_BUFFER {
                // A large frame grew it; give the memory back.
                self.buf = vec![0; READ_BUFFER];
            }
        } else if self.end == self.buf.len() || self.start + self.need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.need > self.buf.len() {
            self.buf.resize(self.need, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Hands every complete frame in the buffer to the caller: each text message (put
    /// together if fragmented) to `on_text`; pings are queued for [`WsRead::answer_pings`].
    /// `Ok(Some(close))` when the server closed; `Err` on a protocol violation.
    fn frames(&mut self, mut on_text: impl FnMut(&str)) -> Result<Option<Close>, String> {
        let Self {
            buf,
            start,
            end,
            need,
            partial,
            partial_text,
            pongs,
            ..
        } = self;
        loop {
            let avail = &buf[*start..*end];
            if avail.len() < 2 {
                *need = 2;
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b1 & 0x80 != 0 {
                return Err("masked frame from the server".into());
            }
            if b0 & 0x70 != 0 {
                return Err("reserved bits set (no extension was negotiated)".into());
            }
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            let (len, header) = match b1 & 0x7f {
                126 => {
                    if avail.len() < 4 {
                        *need = 4;
                        return Ok(None);
                    }
                    (usize::from(u16::from_be_bytes([avail[2], avail[3]])), 4)
                }
                127 => {
                    if avail.len() < 10 {
                        *need = 10;
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    let len = u64::from_be_bytes(b);
                    if len > MAX_FRAME as u64 {
                        return Err(format!("frame of {len} bytes"));
                    }
                    (len as usize, 10)
                }
                n => (usize::from(n), 2),
            };
            if len > MAX_FRAME {
                return Err(format!("frame of {len} bytes"));
            }
            if avail.len() < header + len {
                *need = header + len;
                return Ok(None);
            }
            let payload = &avail[header..header + len];
            *start += header + len;
            match opcode {
                OP_TEXT | OP_BINARY if partial_text.is_some() => {
                    return Err("new message inside a fragmented one".into());
                }
                OP_TEXT if fin => {
                    on_text(std::str::from_utf8(payload).map_err(|_| "text frame is not UTF-8")?)
                }
                OP_TEXT | OP_BINARY => {
                    if !fin {
                        partial.clear();
                        partial.extend_from_slice(payload);
                        *partial_text = Some(opcode == OP_TEXT);
                    }
                    // A whole binary message: the server sends none; skipped.
                }
                OP_CONTINUATION => {
                    let Some(text) = *partial_text else {
                        return Err("continuation without a message".into());
                    };
                    partial.extend_from_slice(payload);
                    if partial.len() > MAX_FRAME {
                        return Err("fragmented message too large".into());
                    }
                    if fin {
                        if text {
                            on_text(
                                std::str::from_utf8(partial)
                                    .map_err(|_| "text message is not UTF-8")?,
                            );
                        }
                        partial.clear();
                        *partial_text = None;
                    }
                }
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    return Ok(Some(Close { code, reason }));
                }
                OP_PING => pongs.push(payload.to_vec()),
                OP_PONG => {}
                other => return Err(format!("unknown opcode {other:#x}")),
            }
        }
    }
}

impl WsWrite {
    /// Sends one text frame.
    pub(crate) async fn send_text(&self, text: &str) -> io::Result<()> {
        self.send(OP_TEXT, text.as_bytes()).await
    }

    /// Sends a close frame (1000) and shuts the socket's write side.
    pub(crate) async fn close(&self) -> io::Result<()> {
        self.send(OP_CLOSE, &1000u16.to_be_bytes()).await?;
        self.inner.half.lock().await.shutdown().await
    }

    async fn send(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let key = (mix(self.inner.mask.fetch_add(1, Relaxed)) as u32).to_be_bytes();
        let frame = masked_frame(opcode, payload, key);
        self.inner.half.lock().await.write_all(&frame).await
    }
}

/// One final client frame: header, mask key, masked payload.
fn masked_frame(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_6455_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let key = [1, 2, 3, 4];
            let f = masked_frame(OP_TEXT, &payload, key);
            assert_eq!(f[0], 0x81);
            assert_eq!(f[1] & 0x80, 0x80);
            let (len_field, at) = match f[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([f[2], f[3]])), 4),
                127 => (
                    u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (usize::from(n), 2),
            };
            assert_eq!(len_field, len);
            assert_eq!(&f[at..at + 4], &key);
            let unmasked: Vec<u8> = f[at + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i & 3])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = masked_frame(opcode, payload, [0; 4]);
        if !fin {
            f[0] &= 0x7f;
        }
        f[1] &= 0x7f;
        let at = f.len() - payload.len() - 4;
        f.drain(at..at + 4);
        f
    }

    /// Feeds `bytes` to a decoder `step` bytes at a time; returns the texts, the pings queued
    /// and how it ended.
    fn decode(bytes: &[u8], step: usize) -> (Vec<String>, usize, Result<Option<Close>, String>) {
        let mut d = Decoder::new(vec![0; 64], 0);
        let mut texts = Vec::new();
        let mut fed = 0;
        loop {
            let r = d.frames(|t| texts.push(t.to_string()));
            if !matches!(r, Ok(None)) || fed == bytes.len() {
                return (texts, d.pongs.len(), r);
            }
            let room = d.room();
            let n = step.min(room.len()).min(bytes.len() - fed);
            room[..n].copy_from_slice(&bytes[fed..fed + n]);
            d.end += n;
            fed += n;
        }
    }

    #[test]
    fn frames_split_anyhow_decode_the_same() {
        let big = "y".repeat(70_000);
        let mut bytes = Vec::new();
        bytes.extend(server_frame(true, OP_TEXT, b"hello"));
        bytes.extend(server_frame(true, OP_PING, b"p"));
        bytes.extend(server_frame(true, OP_TEXT, big.as_bytes()));
        bytes.extend(server_frame(false, OP_TEXT, "fra".as_bytes()));
        bytes.extend(server_frame(true, OP_PING, b""));
        bytes.extend(server_frame(true, OP_CONTINUATION, "gmented é".as_bytes()));
        bytes.extend(server_frame(true, OP_TEXT, &[b'x'; 300]));
        bytes.extend(server_frame(true, OP_CLOSE, b"\x0f\xa8slow consumer"));
        bytes.extend(server_frame(true, OP_TEXT, b"after the close"));
        for step in [1, 3, 64, 1000, usize::MAX] {
            let (texts, pings, end) = decode(&bytes, step);
            assert_eq!(texts.len(), 4, "step {step}");
            assert_eq!(texts[0], "hello");
            assert_eq!(texts[1], big);
            assert_eq!(texts[2], "fragmented é");
            assert_eq!(texts[3], "x".repeat(300));
            assert_eq!(pings, 2);
            let close = end.unwrap().unwrap();
            assert_eq!(close.code, Some(4008));
            assert_eq!(close.reason, "slow consumer");
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut masked = server_frame(true, OP_TEXT, b"hi");
        masked[1] |= 0x80;
        let mut reserved = server_frame(true, OP_TEXT, b"hi");
        reserved[0] |= 0x40;
        for bad in [
            masked,
            reserved,
            server_frame(true, OP_TEXT, &[0xff, 0xfe]),
            server_frame(true, OP_CONTINUATION, b"x"),
            server_frame(true, 0x3, b""),
        ] {
            let (_, _, end) = decode(&bad, usize::MAX);
            assert!(end.is_err(), "{bad:?}");
        }
    }
}
