//! `redis-server` processes on free ports, owned by a test: killed on drop, and killable and
//! restartable on the same port for fault tests.

use std::{process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// A private redis-server.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

/// A free port below the kernel's ephemeral range, so that it stays free while the server is
/// down for a fault test: a port from that range (what binding port 0 gives) can be taken
/// meanwhile by an outgoing connection, even by a client reconnecting to it (on loopback a
/// connection from port P to port P connects to itself), and the restart could not bind.
pub(crate) fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (from, to) = (low.saturating_sub(12_000).max(1_024), low);
    // Tests of one process start servers at once: a counter keeps their picks apart.
    static PICKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let pick = PICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16)
        ^ pick.wrapping_mul(2_654_435_761);
    let span = u32::from(to - from);
    for i in 0..span {
        let port = from + ((seed.wrapping_add(i.wrapping_mul(7_919))) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into())
}

/// The key's `PTTL` (milliseconds; -1 without a TTL, -2 if there is no such key).
pub async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: impl AsRef<str>) -> i64 {
    redis::cmd("PTTL")
        .arg(key.as_ref())
        .query_async(conn)
        .await
        .unwrap()
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new(binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                // DEBUG SLEEP stalls it in the tests (refused by default since Redis 7).
                "--enable-debug-command",
                "local",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server not found: install it (apt-get install redis-server) or set REDIS_SERVER_BIN");
        self.child = Some(child);
        for _ in 0..200 {
            if let Ok(mut conn) = self.try_conn().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn try_conn(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// A plain connection for the test's own inspection.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.try_conn().await.unwrap()
    }

    /// SIGKILL: no goodbye to clients.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts again on the same port (empty: it keeps nothing on disk).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// `connected_clients` from `INFO clients`, asked over `conn` (a connection the test keeps
    /// open), minus that connection.
    pub async fn connected_clients(&self, conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        let info: redis::InfoDict = redis::cmd("INFO")
            .arg("clients")
            .query_async(conn)
            .await
            .unwrap();
        info.get::<u64>("connected_clients").unwrap() - 1
    }

    /// Resets `INFO commandstats`.
    pub async fn reset_stats(&self) {
        let mut conn = self.conn().await;
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// `calls=` of every command in `INFO commandstats`.
    pub async fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let mut conn = self.conn().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }
}
