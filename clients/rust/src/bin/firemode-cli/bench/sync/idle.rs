//! `bench sync-idle`: what an idle authenticated sync socket costs the server. Opens
//! `--sockets` WebSockets (each authenticated, `join`ed with its own device id, attached to no
//! document), holds them, and reads the server's RSS from `/proc` before and after:
//! (RSS with every socket open − baseline) ÷ sockets. Then closes them and reads it again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::peer::Peer;
use super::procmon;
use super::target::Target;
use super::{ServerKind, TargetArgs};

/// `bench sync-idle`.
#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Sockets to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Sockets opening at the same time.
    #[arg(long, default_value_t = 32)]
    pub connect_concurrency: usize,
    /// Seconds to hold every socket open (idle) before the measurement (pings go both ways
    /// meanwhile).
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: ServerKind,
    pub sockets: usize,
    pub connect_secs: f64,
    pub errors: usize,
    pub first_error: Option<String>,
    pub baseline_rss_mib: f64,
    pub open_rss_mib: f64,
    /// (RSS with every socket open and idle − baseline) ÷ sockets.
    pub per_socket_kib: f64,
    pub after_close_rss_mib: f64,
    /// Server CPU spent opening the sockets, ms per socket.
    pub connect_cpu_ms_per_socket: f64,
    /// Server CPU while they were held idle, ms per socket per second.
    pub idle_cpu_ms_per_socket_sec: f64,
}

impl Report {
    pub fn to_text(&self) -> String {
        format!(
            "{} idle sockets ({} errors) opened in {:.1} s\nserver RSS: baseline {:.1} MiB, open {:.1} MiB ({:.2} KiB per socket), after close {:.1} MiB\nserver CPU: {:.3} ms per socket to open, {:.4} ms per socket per second idle\n",
            self.sockets,
            self.errors,
            self.connect_secs,
            self.baseline_rss_mib,
            self.open_rss_mib,
            self.per_socket_kib,
            self.after_close_rss_mib,
            self.connect_cpu_ms_per_socket,
            self.idle_cpu_ms_per_socket_sec
        )
    }
}

pub async fn run(args: &IdleArgs, json: bool) -> Result<Report> {
    let Some(pid) = args.target.server_pid else {
        bail!("--server-pid is needed: the figure is the server's RSS");
    };
    let pid_s = pid.to_string();
    let target = Target::connect(&args.target).await?;
    target.check_token_lasts(Duration::from_secs_f64(args.hold + 120.0))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = procmon::sample(&pid_s)?;
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let t0 = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let peers: Vec<Peer> = stream::iter(0..args.sockets)
        .map(|i| {
            let ep = target.endpoint.clone();
            let peer_id = target.peer_id(&format!("idle-{}-{i}", &run_id[..8]));
            let errors = errors.clone();
            let first_error = first_error.clone();
            async move {
                match Peer::connect(&ep, peer_id, Duration::from_secs(30)).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert_with(|| format!("{e:#}"));
                        }
                        None
                    }
                }
            }
        })
        .buffer_unordered(args.connect_concurrency.max(1))
        .filter_map(|p| async move { p })
        .collect()
        .await;
    let connect_secs = t0.elapsed().as_secs_f64();
    let connected = procmon::sample(&pid_s)?;
    if !json {
        eprintln!(
            "{} sockets open in {connect_secs:.1} s; holding {:.0} s ...",
            peers.len(),
            args.hold
        );
    }
    // Hold them: the server's ping timers fire and the sockets answer (tungstenite answers a
    // ping when the stream is polled, so every socket is read in the background).
    let holders: Vec<_> = peers
        .into_iter()
        .map(|p| tokio::spawn(p.hold_until(Instant::now() + Duration::from_secs_f64(args.hold))))
        .collect();
    let mut peers = Vec::with_capacity(holders.len());
    for h in holders {
        if let Ok(Some(p)) = h.await {
            peers.push(p);
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let open = procmon::sample(&pid_s)?;
    let n = peers.len();
    for p in peers {
        p.close().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procmon::sample(&pid_s)?;
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    Ok(Report {
        server: target.kind,
        sockets: n,
        connect_secs,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        baseline_rss_mib: baseline.rss_mib,
        open_rss_mib: open.rss_mib,
        per_socket_kib: if n > 0 {
            (open.rss_mib - baseline.rss_mib) * 1024.0 / n as f64
        } else {
            0.0
        },
        after_close_rss_mib: after.rss_mib,
        connect_cpu_ms_per_socket: if n > 0 {
            (connected.cpu_secs - baseline.cpu_secs) * 1000.0 / n as f64
        } else {
            0.0
        },
        idle_cpu_ms_per_socket_sec: if n > 0 && args.hold > 0.0 {
            (open.cpu_secs - connected.cpu_secs) * 1000.0 / n as f64 / args.hold
        } else {
            0.0
        },
    })
}
