//! PostgreSQL servers on free ports, owned by a test: a fresh cluster (`initdb`) in a
//! temporary directory, stopped and deleted on drop, and stoppable and restartable on the same
//! port and data for fault tests. As root, the server runs as the `postgres` user (PostgreSQL
//! refuses root). The binaries: `POSTGRES_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package), else `PATH`.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

/// A private PostgreSQL server.
pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("POSTGRES_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin").join(name)))
        })
        .filter(|(_, path)| path.exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from(name), |(_, path)| path)
}

/// The uid and gid to run as: the `postgres` user when running as root.
fn run_as() -> Option<(u32, u32)> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse::<u32>()
        .ok()?;
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn command(name: &str) -> Command {
    let mut std = std::process::Command::new(bin(name));
    if let Some((uid, gid)) = run_as() {
        std.uid(uid).gid(gid);
    }
    std.stdout(Stdio::null()).stderr(Stdio::null());
    Command::from(std)
}

impl PostgresServer {
    /// A new cluster on a free port, waiting until it accepts connections.
    pub async fn start() -> Self {
        let port = crate::redis_server::free_port();
        let dir = std::env::temp_dir().join(format!("roomcast-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let status = command("initdb")
            .args(["-D"])
            .arg(dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .status()
            .await
            .expect("initdb not found: install PostgreSQL (apt-get install postgresql) or set POSTGRES_BIN_DIR");
        assert!(status.success(), "initdb failed: {status}");
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ])
            .kill_on_drop(true)
            .spawn()
            .expect("postgres not found");
        self.child = Some(child);
        for _ in 0..400 {
            if tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("postgres on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A connection for the test's own inspection.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// Stops it at once (SIGQUIT: every connection drops), keeping its data (every commit:
    /// the server runs without `fsync`, which only a machine crash would lose, but with
    /// synchronous commits).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-QUIT", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Freezes it (SIGSTOP to the server and every backend): connections stay open and
    /// statements hang, as on a stalled machine. [`resume`](Self::resume) thaws it.
    pub fn pause(&self) {
        self.signal_all("-STOP");
    }

    /// Thaws what [`pause`](Self::pause) froze.
    pub fn resume(&self) {
        self.signal_all("-CONT");
    }

    /// Sends `signal` to the server and its children (the backends).
    fn signal_all(&self, signal: &str) {
        let Some(pid) = self.child.as_ref().and_then(|c| c.id()) else {
            return;
        };
        let mut pids = vec![pid.to_string()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`: the fields after the last `)`.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(pid.to_string().as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = std::process::Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pids:?}");
    }

    /// Starts again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-QUIT", &pid.to_string()])
                    .status();
                // The postmaster ends its backends before it exits; the files can go after.
                for _ in 0..200 {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
