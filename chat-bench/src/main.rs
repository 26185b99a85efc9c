//! `chat-bench`: the load generator of roomcast.
//!
//! Starts demo-server instances (and a private redis-server) or targets running ones, drives
//! WebSocket clients through a scenario, and reports deliveries, end-to-end latency, loss,
//! server CPU and memory, and Redis cost per message. See `chat-bench/README.md`.
//!
//! ```text
//! chat-bench <fanout|bigroom|direct|idle|connect|ceiling> [flags]   (chat-bench --help)
//! ```

mod args;
mod ceiling;
mod client;
mod cluster;
mod conns;
mod report;
mod traffic;
mod ws;

use anyhow::Context as _;

/// Open files the bench asks for when it may raise the hard limit (as root): the idle
/// scenario's 20,000 connections need a little more than 20,000 in the server, which is
/// exactly the hard limit some machines set.
const NOFILE_WANTED: u64 = 262_144;

/// Raises the open-file limit (children inherit it: the servers the bench starts too): both
/// limits to [`NOFILE_WANTED`] where the process may raise the hard one, else the soft limit
/// to the hard one. Returns the soft limit in force.
fn raise_nofile() -> u64 {
    use rlimit::Resource;
    match Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if hard < NOFILE_WANTED && Resource::NOFILE.set(NOFILE_WANTED, NOFILE_WANTED).is_ok() {
                NOFILE_WANTED
            } else if soft < hard && Resource::NOFILE.set(hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 1024,
    }
}

/// Builds the runtime with `threads` threads (`None`: tokio's default, one worker per core)
/// and runs `f` on it. One thread is the current-thread runtime: no work stealing and no
/// wakeups across threads.
fn block_on<F: std::future::Future<Output = ()>>(threads: Option<usize>, f: F) {
    let mut runtime = if threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all();
    if let Some(n) = threads.filter(|n| *n > 1) {
        runtime.worker_threads(n);
    }
    match runtime.build() {
        Ok(rt) => rt.block_on(f),
        Err(err) => {
            eprintln!("chat-bench: starting the runtime: {err}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let nofile = raise_nofile();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("__worker") => block_on(None, async {
            if let Err(err) = conns::worker_main().await {
                eprintln!("chat-bench worker: {err:#}");
                std::process::exit(1);
            }
        }),
        Some("__ceiling-server") => block_on(None, async {
            if let Err(err) = ceiling::server_main().await {
                eprintln!("chat-bench ceiling server: {err:#}");
                std::process::exit(1);
            }
        }),
        _ => {
            // Parsed before the runtime exists: the scenario decides its thread count.
            let args = match args::parse(argv) {
                Ok(Some(args)) => args,
                Ok(None) => return,
                Err(err) => {
                    eprintln!("chat-bench: {err:#}");
                    std::process::exit(1);
                }
            };
            block_on(args.runtime_threads(), async move {
                if let Err(err) = run(args, nofile).await {
                    eprintln!("chat-bench: {err:#}");
                    std::process::exit(1);
                }
            });
        }
    }
}

async fn run(args: args::Args, nofile: u64) -> anyhow::Result<()> {
    if args.scenario == args::Scenario::Ceiling {
        let report = ceiling::run(&args).await?;
        return print_report(&args, &report);
    }
    let mut cluster = cluster::Cluster::start(&args)
        .await
        .context("starting the servers")?;
    let result = if args.scenario.sends() {
        traffic::run(&args, &mut cluster).await
    } else {
        conns::run(&args, &mut cluster, nofile).await
    };
    let crashed = cluster.exited();
    let log = cluster.log_excerpts(8);
    cluster.stop().await;
    let mut report = result?;
    report.warnings.extend(crashed);
    report.server_log = log;
    report.bench_nofile_soft = Some(nofile.to_string());
    report.bench_threads = args.runtime_threads();
    print_report(&args, &report)
}

fn print_report(args: &args::Args, report: &report::Report) -> anyhow::Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}
