//! Sync benchmarks: `bench sync` (load: N clients editing M shared documents) and
//! `bench sync-touch` (memory: many documents touched once), against FireMode's `/v1/sync` or
//! the reference JS sync server (`@automerge/automerge-repo-sync-server`), with the same client
//! code and workload for both. Loopback only. See docs/benchmarks.md, "Sync".

pub mod idle;
pub mod load;
mod peer;
mod procmon;
mod target;
pub mod touch;

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;
use uuid::Uuid;

/// Which server is listening at `--url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// FireMode: `ws://<host>/v1/sync` with a bearer token; sessions made over REST.
    Firemode,
    /// `@automerge/automerge-repo-sync-server`: `ws://<host>/`, no authentication; documents
    /// are built here and pushed by a seeding client first.
    Reference,
}

/// The server under test.
#[derive(Args, Debug)]
pub struct TargetArgs {
    /// Base URL of the server (loopback only), e.g. http://127.0.0.1:8080.
    #[arg(long, env = "FIREMODE_URL")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = ServerKind::Firemode)]
    pub server: ServerKind,
    /// FireMode: an admin or office user (sessions are created and synced as this user).
    #[arg(long, env = "FIREMODE_EMAIL")]
    pub email: Option<String>,
    /// Password (or FIREMODE_PASSWORD, which keeps it out of the process list).
    #[arg(long, env = "FIREMODE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// FireMode: building whose assets the sessions cover (default: create one over REST).
    #[arg(long)]
    pub building_id: Option<Uuid>,
    /// Items per session document (reference server documents; for FireMode, assets of a
    /// building created here).
    #[arg(long, default_value_t = 20)]
    pub assets: usize,
    /// Document ids, one per line; read if present, created (and written) if not. FireMode:
    /// sessions made over REST; reference: documents seeded into its storage by an earlier
    /// run (they are not seeded again, so a restarted server loads them only when asked).
    #[arg(long)]
    pub sessions_file: Option<PathBuf>,
    /// Server process id: its RSS (VmRSS/VmHWM) and CPU time are read from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Parallel REST calls (session creation) or seeding connections.
    #[arg(long, default_value_t = 16)]
    pub setup_concurrency: usize,
}

/// `bench sync`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Clients (one WebSocket each).
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Documents; client i works on document i mod docs.
    #[arg(long, default_value_t = 10)]
    pub docs: usize,
    /// Edits per second per client; 0 = closed loop (see --window).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Closed loop: edits a client may have sent that the server has not acknowledged yet.
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// Seconds of editing before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for convergence after the last edit.
    #[arg(long, default_value_t = 30.0)]
    pub converge_timeout: f64,
    /// Clients connecting (and fetching their document) at the same time.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// FireMode: seconds to wait for the server to unload documents before the baseline.
    #[arg(long, default_value_t = 60.0)]
    pub settle: f64,
    /// Another node of the same FireMode deployment (same database and secrets): the clients
    /// of each document alternate between --url and this one (client i goes to this node
    /// when i / docs is odd), so every edit reaches its peer across nodes.
    #[arg(long)]
    pub peer_url: Option<String>,
    /// Only create (FireMode) or seed (reference) the documents into --sessions-file and
    /// stop. Run again against a restarted server with the same file: its baseline then holds
    /// no document and nothing the setup allocated, so (loaded − baseline) ÷ documents is what
    /// a loaded document costs.
    #[arg(long, requires = "sessions_file")]
    pub create_only: bool,
}

/// `bench sync-touch`.
#[derive(Args, Debug)]
pub struct TouchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Documents to touch (FireMode: sessions, created if --sessions-file has fewer).
    #[arg(long, default_value_t = 1000)]
    pub documents: usize,
    /// Connections touching at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Documents touched on one connection before it closes (1: connect, touch, leave).
    #[arg(long, default_value_t = 1)]
    pub per_connection: usize,
    /// Only fetch each document; no edit.
    #[arg(long)]
    pub no_edit: bool,
    /// Keep every connection open until all documents are touched (so all stay loaded).
    #[arg(long)]
    pub hold: bool,
    /// Only create the sessions (FireMode) or seed the documents (reference) into
    /// --sessions-file and stop; touch them later on a freshly started server, so that
    /// creating them does not count.
    #[arg(long, requires = "sessions_file")]
    pub create_only: bool,
    /// Seconds to wait after touching for idle documents to unload (FireMode: stops early
    /// once nothing is loaded).
    #[arg(long, default_value_t = 10.0)]
    pub idle_wait: f64,
    /// FireMode: seconds to wait for the server to unload documents before the baseline.
    #[arg(long, default_value_t = 60.0)]
    pub settle: f64,
}
