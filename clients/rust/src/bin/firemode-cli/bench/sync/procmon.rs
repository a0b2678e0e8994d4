//! Memory and CPU of a local process from `/proc/<pid>/{status,stat}` (Linux), sampled in the
//! background so short peaks between the benchmark's own checkpoints are seen too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Resident set size now (VmRSS), MiB.
    pub rss_mib: f64,
    /// Peak resident set size since the process started (VmHWM), MiB.
    pub hwm_mib: f64,
    /// User + system CPU time since the process started, seconds.
    pub cpu_secs: f64,
    /// The system (kernel) part of `cpu_secs`: sockets, wake-ups, files.
    pub sys_secs: f64,
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// (user + system, system) CPU seconds of a process.
fn cpu_secs(pid: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let (user, sys): (u64, u64) = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some((u.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
    Ok((
        (user + sys) as f64 / TICKS_PER_SEC,
        sys as f64 / TICKS_PER_SEC,
    ))
}

/// Read a process now (`pid` may be `self`).
pub fn sample(pid: &str) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is the pid right?)"))?;
    let rss = status_kib(&status, "VmRSS:").ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let hwm = status_kib(&status, "VmHWM:").unwrap_or(rss);
    let (cpu_secs, sys_secs) = cpu_secs(pid)?;
    Ok(Sample {
        rss_mib: rss as f64 / 1024.0,
        hwm_mib: hwm as f64 / 1024.0,
        cpu_secs,
        sys_secs,
    })
}

/// Busy CPU time of the whole machine since boot, seconds (all CPUs; `/proc/stat`), to see
/// how much of the machine other processes took during a run.
pub fn machine_busy_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    if f.len() < 5 {
        return Err(anyhow!("unexpected /proc/stat"));
    }
    let total: u64 = f.iter().take(8).sum();
    Ok((total - f[3] - f[4]) as f64 / TICKS_PER_SEC)
}

/// Samples a process every `every` and keeps the highest RSS seen.
pub struct Monitor {
    pid: String,
    peak_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    pub fn start(pid: u32, every: Duration) -> Result<Self> {
        let pid = pid.to_string();
        sample(&pid)?;
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (p, peak) = (pid.clone(), peak_kib.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Ok(s) = sample(&p) {
                    peak.fetch_max((s.rss_mib * 1024.0) as u64, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            pid,
            peak_kib,
            task,
        })
    }

    /// Read now (and count it towards the peak).
    pub fn now(&self) -> Option<Sample> {
        let s = sample(&self.pid).ok()?;
        self.peak_kib
            .fetch_max((s.rss_mib * 1024.0) as u64, Ordering::Relaxed);
        Some(s)
    }

    /// Wait (at most `limit`) until the RSS has not fallen for two seconds, then read it: a
    /// baseline taken while the allocator is still returning freed memory to the system (the
    /// 19 MiB of the login's password hash, freed just before) is too high by that much.
    pub async fn settled(&self, limit: Duration) -> Option<Sample> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = self.now()?;
        let mut since = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s = self.now()?;
            if s.rss_mib < last.rss_mib - 0.25 {
                since = tokio::time::Instant::now();
            }
            last = s;
            if since.elapsed() >= Duration::from_secs(2) {
                break;
            }
        }
        Some(last)
    }

    /// A phase's baseline: [`Monitor::settled`] (at most 20 s), and the peak starts over.
    pub async fn baseline(&self) -> Option<Sample> {
        let settled = self.settled(Duration::from_secs(20)).await;
        self.reset_peak();
        settled
    }

    /// Highest RSS sampled so far, MiB.
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }

    /// Forget the peak so far (start a new phase).
    pub fn reset_peak(&self) {
        self.peak_kib.store(0, Ordering::Relaxed);
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample("self").unwrap();
        assert!(s.rss_mib > 0.0 && s.hwm_mib >= s.rss_mib * 0.5, "{s:?}");
        assert!(s.cpu_secs >= 0.0);
    }

    #[test]
    fn machine_time_grows() {
        let a = machine_busy_secs().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(machine_busy_secs().unwrap() >= a);
    }

    #[test]
    fn parses_status_lines() {
        let st = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(st, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(st, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(st, "VmSwap:"), None);
    }
}
