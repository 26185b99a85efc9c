//! A private `redis-server` for one test, on a free port, killed when dropped (the binary is
//! `redis-server` on the PATH, or `REDIS_SERVER_BIN`).

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::backend::{
    redis::{RedisBackend, RedisConfig},
    Backend,
};

/// No persistence: the server starts empty and leaves nothing behind.
const ARGS: [&str; 6] = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];

pub(super) struct TestRedis {
    child: Child,
    pub(super) url: String,
}

impl TestRedis {
    /// Starts one and waits until it accepts connections.
    pub(super) async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .arg("--port")
            .arg(port.to_string())
            .args(ARGS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install it or set REDIS_SERVER_BIN");
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {port} did not start");
    }

    /// A new node on this server.
    pub(super) async fn backend(&self) -> Backend {
        RedisBackend::connect(&self.url, RedisConfig::default())
            .await
            .unwrap()
            .into_backend()
    }

    /// A plain connection, for looking at the keys.
    pub(super) async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
