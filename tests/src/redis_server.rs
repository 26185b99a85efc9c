//! `redis-server` processes on free ports, owned by a test: killed on drop, and killable and
//! restartable on the same port for fault tests.

use std::{process::Stdio, time::Duration};

use tokio::process::{Child, Command};

/// A private redis-server.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into())
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
