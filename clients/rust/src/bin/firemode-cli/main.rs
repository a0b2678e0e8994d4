//! `firemode-cli`: log in to a FireMode server, list sessions, inspect and resolve conflicts,
//! read history (those commands live in the library's `cli` module, so the end-to-end tests can
//! build the same tool), and load-test it (`bench`, here).
//!
//! Exit status: 0 on success, 1 on any error (one line on stderr; with `--json`, one JSON
//! object `{"error": {...}}` on stderr), 2 on bad usage.

mod bench;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use firemode_client::cli::{self, GlobalArgs};
use firemode_client::Client;

use bench::workloads::{CreateSession, UsersMe};

#[derive(Parser)]
#[command(
    name = "firemode-cli",
    version,
    about = "FireMode command line: log in, sessions, conflicts, history, and load benchmarks",
    after_help = "Exit status: 0 success, 1 error (one line on stderr), 2 bad usage."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Tool(cli::Command),
    /// Load-test a server (closed loop: each task sends its next request when the last is done).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// GET /v1/users/me with one bearer token (JWT check + one database read per request).
    UsersMe(BenchArgs),
    /// POST /v1/evidence: multipart photo uploads (256 KiB by default, each one different).
    EvidenceUpload(bench::evidence::EvidenceArgs),
    /// POST /v1/tests/sessions: the server builds and stores a session document per request.
    CreateSession(CreateSessionArgs),
    /// POST /v1/tests/sessions/{id}/results: a few results per request (5 by default), round
    /// robin over sessions of one building; each is checked, committed and projected.
    Results(bench::results::ResultsArgs),
    /// Sync load: N clients editing M shared session documents over the automerge-repo
    /// protocol (FireMode or the reference JS sync server); edit-to-peer latency, edits/s,
    /// convergence, server memory.
    Sync(bench::sync::SyncArgs),
    /// Sync memory: touch many session documents once each and watch the server's memory.
    SyncTouch(bench::sync::TouchArgs),
    /// Sync memory: hold many idle authenticated sockets (joined, no document) and report the
    /// server's RSS per socket.
    SyncIdle(bench::sync::idle::IdleArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Server base URL; the only host this sends requests to.
    #[arg(long, env = "FIREMODE_URL")]
    url: String,
    #[arg(long, env = "FIREMODE_EMAIL")]
    email: String,
    /// Password (or FIREMODE_PASSWORD, which keeps it out of the process list).
    #[arg(long, env = "FIREMODE_PASSWORD", hide_env_values = true)]
    password: String,
    /// Concurrent tasks, each with its own connection (with --rate: most requests in flight).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// Open loop: requests per second, sent on schedule whatever the answers take (latency
    /// counts from when a request was due). Default: closed loop.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    duration: f64,
    /// Seconds of unmeasured load before measuring.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_secs)]
    warmup: f64,
    /// Per-request timeout in seconds (a timed-out request counts as an error).
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    timeout: f64,
}

#[derive(Args)]
struct CreateSessionArgs {
    #[command(flatten)]
    common: BenchArgs,
    /// Create sessions for this building; default: create one with `--assets` assets (needs an
    /// admin or office login, as creating sessions does).
    #[arg(long)]
    building: Option<uuid::Uuid>,
    /// Assets of the building created for the run (eight kinds with six-monthly routines).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    assets: u16,
    /// Frequency of the sessions (decides which assets get an item).
    #[arg(long, default_value = "six_monthly")]
    frequency: String,
}

fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds between 0 and 86400"
        )),
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a rate between 0 and 1000000 per second"
        )),
    }
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match non_negative_secs(s) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds above 0")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    cli::exit(run(cli).await, json)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.global.json;
    match &cli.command {
        Command::Tool(command) => cli::run(command, &cli.global).await,
        Command::Bench(BenchCommand::UsersMe(args)) => bench_users_me(args, json).await,
        Command::Bench(BenchCommand::EvidenceUpload(args)) => {
            bench::evidence::run(args, json).await
        }
        Command::Bench(BenchCommand::CreateSession(args)) => bench_create_session(args, json).await,
        Command::Bench(BenchCommand::Results(args)) => bench::results::run(args, json).await,
        Command::Bench(BenchCommand::Sync(args)) if args.create_only => {
            bench::sync::load::prepare(args).await
        }
        Command::Bench(BenchCommand::Sync(args)) => {
            let r = bench::sync::load::run(args, json).await?;
            print_report(&r, || r.to_text(), json)
        }
        Command::Bench(BenchCommand::SyncTouch(args)) => {
            let r = bench::sync::touch::run(args, json).await?;
            print_report(&r, || r.to_text(), json)
        }
        Command::Bench(BenchCommand::SyncIdle(args)) => {
            let r = bench::sync::idle::run(args, json).await?;
            print_report(&r, || r.to_text(), json)
        }
    }
}

fn print_report<R: serde::Serialize>(
    r: &R,
    text: impl FnOnce() -> String,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

/// The HTTP client for a load run: one keep-alive connection per task.
fn bench_client(args: &BenchArgs) -> anyhow::Result<Client> {
    let http = firemode_client::reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .pool_max_idle_per_host(usize::from(args.concurrency))
        .tcp_nodelay(true)
        .build()
        .context("cannot build the HTTP client")?;
    Ok(Client::with_http_client(&args.url, http)?)
}

/// Run a prepared workload as `args` say and print its report.
async fn bench_run<W: bench::Workload>(
    workload: W,
    client: Client,
    args: &BenchArgs,
    json: bool,
) -> anyhow::Result<()> {
    let settings = bench::Settings {
        concurrency: usize::from(args.concurrency),
        rate: args.rate,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
    };
    if !json {
        let load = match args.rate {
            Some(r) => format!("{r}/s, at most {} in flight", settings.concurrency),
            None => format!("{} tasks", settings.concurrency),
        };
        eprintln!(
            "running {} against {}: {load}, {:.1} s warm-up + {:.1} s",
            workload.name(),
            client.base_url(),
            args.warmup,
            args.duration
        );
    }
    let report = bench::run(Arc::new(workload), client, settings).await;
    print_report(&report, || report.to_text(), json)
}

async fn bench_users_me(args: &BenchArgs, json: bool) -> anyhow::Result<()> {
    let client = bench_client(args)?;
    let workload = UsersMe::setup(&client, &args.email, &args.password)
        .await
        .context("setup failed")?;
    bench_run(workload, client, args, json).await
}

async fn bench_create_session(args: &CreateSessionArgs, json: bool) -> anyhow::Result<()> {
    let client = bench_client(&args.common)?;
    let workload = CreateSession::setup(
        &client,
        &args.common.email,
        &args.common.password,
        args.building,
        usize::from(args.assets),
        &args.frequency,
    )
    .await
    .context("setup failed")?;
    bench_run(workload, client, &args.common, json).await
}
