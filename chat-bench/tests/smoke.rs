//! Runs every scenario of the bench in `--smoke` mode against a debug demo-server, in memory,
//! and checks the accounting: something was delivered, nothing was lost or duplicated, every
//! connection joined. No timing is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

/// The demo-server binary: `DEMO_SERVER_BIN`, else the workspace's debug build (built here if
/// missing).
fn demo_server() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("DEMO_SERVER_BIN") {
            return PathBuf::from(bin);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
        let bin = target.join("debug/demo-server");
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "demo-server"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .status()
                .expect("running cargo build -p demo-server");
            assert!(status.success(), "cargo build -p demo-server failed");
        }
        bin
    })
    .clone()
}

fn bench(args: &[&str]) -> Value {
    let server = demo_server();
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(args)
        .args(["--smoke", "--json", "--server-bin"])
        .arg(&server)
        .output()
        .expect("running chat-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "chat-bench {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("chat-bench {args:?}: output is not JSON ({e}):\n{stdout}"))
}

fn check_traffic(scenario: &str) {
    check_traffic_with(scenario, &[]);
}

/// Runs `scenario` with `extra` flags, checks its traffic figures, and returns the report.
fn check_traffic_with(scenario: &str, extra: &[&str]) -> Value {
    let report = bench(&[&[scenario], extra].concat());
    assert_eq!(report["scenario"], scenario);
    assert_eq!(report["mode"], "memory");
    let t = &report["traffic"];
    let sent = t["messages_sent"].as_u64().unwrap();
    let delivered = t["delivered"].as_u64().unwrap();
    assert!(sent > 0, "{scenario}: nothing sent: {report:#}");
    assert!(delivered > 0, "{scenario}: nothing delivered: {report:#}");
    assert_eq!(t["acked"].as_u64().unwrap(), sent, "{report:#}");
    assert_eq!(t["lost_deliveries"].as_u64().unwrap(), 0, "{report:#}");
    assert_eq!(t["duplicates"].as_u64().unwrap(), 0, "{report:#}");
    assert_eq!(t["reordered"].as_u64().unwrap(), 0, "{report:#}");
    assert_eq!(
        delivered,
        t["expected_deliveries"].as_u64().unwrap(),
        "{report:#}"
    );
    // Readers tally deliveries locally and publish them in batches: every counted delivery
    // has its latency in the histogram.
    assert_eq!(
        t["latency"]["count"].as_u64().unwrap(),
        delivered,
        "{report:#}"
    );
    let servers = report["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert!(servers[0]["pid"].as_u64().is_some(), "{report:#}");
    // User space is a part of the server's CPU time.
    let total = report["server_cpu_s"].as_f64().unwrap();
    let user = report["server_user_cpu_s"].as_f64().unwrap();
    assert!((0.0..=total).contains(&user), "{report:#}");
    assert_eq!(servers[0]["user_cpu_s"].as_f64(), Some(user), "{report:#}");
    // The server's threads slept and woke while they delivered (each switch counted once).
    let switches = report["server_switches"].as_u64().unwrap();
    assert!(switches > 0, "{report:#}");
    assert_eq!(
        servers[0]["voluntary_switches"].as_u64().unwrap()
            + servers[0]["involuntary_switches"].as_u64().unwrap(),
        switches,
        "{report:#}"
    );
    let per_1k = report["server_switches_per_1000_deliveries"]
        .as_f64()
        .unwrap();
    assert!(
        (per_1k - switches as f64 * 1000.0 / delivered as f64).abs() < 0.01,
        "{report:#}"
    );
    report
}

#[test]
fn fanout_smoke_delivers_everything() {
    check_traffic("fanout");
}

#[test]
fn fanout_smoke_with_random_phases_delivers_everything() {
    let report = check_traffic_with("fanout", &["--phases", "random"]);
    assert_eq!(report["phases"], "random", "{report:#}");
}

#[test]
fn bigroom_smoke_delivers_everything() {
    check_traffic("bigroom");
}

#[test]
fn direct_smoke_delivers_everything() {
    check_traffic("direct");
}

#[test]
fn ceiling_smoke_delivers_everything_through_the_bare_server() {
    let report = bench(&["ceiling"]);
    assert_eq!(report["scenario"], "ceiling");
    let t = &report["traffic"];
    let delivered = t["delivered"].as_u64().unwrap();
    assert!(delivered > 0, "{report:#}");
    assert_eq!(
        delivered,
        t["expected_deliveries"].as_u64().unwrap(),
        "{report:#}"
    );
    assert_eq!(t["lost_deliveries"].as_u64().unwrap(), 0, "{report:#}");
    assert_eq!(t["latency"]["count"].as_u64().unwrap(), delivered);
    assert!(report["servers"][0]["pid"].as_u64().is_some(), "{report:#}");
}

#[test]
fn idle_and_connect_smoke_join_every_client() {
    for scenario in ["idle", "connect"] {
        let report = bench(&[scenario]);
        let c = &report["conns"];
        let target = c["target"].as_u64().unwrap();
        assert!(target > 0);
        assert_eq!(c["joined"].as_u64().unwrap(), target, "{report:#}");
        assert_eq!(c["failed"].as_u64().unwrap(), 0, "{report:#}");
        assert!(report["servers"][0]["rss_end_kb"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(["fanout", "--instances", "2"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "two in-memory instances must be refused"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(["nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args(["fanout", "--phases", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--phases takes even or random");
}
