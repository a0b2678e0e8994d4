//! Load generator on one shared [`Client`] (one keep-alive connection per task in its pool).
//! Closed loop (default): N tasks each run one workload step after another for a fixed time.
//! Open loop (`rate`): a step is due every 1/rate seconds whatever the server does, at most N in
//! flight; latency counts from when the step was due, so a server that falls behind shows it
//! in the latency instead of slowing the generator down (no coordinated omission).
//!
//! A workload is set up once, unmeasured (log in, create fixtures), then its [`Workload::run_one`]
//! is the measured step. Steps started during the warm-up are not counted; the run stops by
//! itself at the deadline, cancelling steps still in flight (those are not counted either).

pub mod evidence;
pub mod fixtures;
pub mod results;
pub mod stats;
pub mod sync;
pub mod workloads;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use firemode_client::{Client, Error};
use serde::Serialize;
use tokio::time::Instant;

use stats::LatencySummary;

/// One kind of load. Implementations hold whatever their setup prepared.
pub trait Workload: Send + Sync + 'static {
    /// Name in reports (the CLI subcommand name).
    fn name(&self) -> &'static str;

    /// One measured operation. `Err` counts as an error; its latency is not recorded.
    fn run_one(&self, client: &Client) -> impl Future<Output = Result<(), Error>> + Send;
}

/// How long and how hard to run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Closed loop: tasks. Open loop: most steps in flight.
    pub concurrency: usize,
    /// Open loop: steps per second; `None` for closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: &'static str,
    pub url: String,
    pub concurrency: usize,
    /// Open loop: steps due per second; absent for closed loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Operations completed in the measured window (successful + failed).
    pub requests: u64,
    pub errors: u64,
    /// Failures by HTTP status, or `transport` / `decode`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// The first failure's message, to see what went wrong.
    pub first_error: Option<String>,
    /// `requests / duration`.
    pub throughput_rps: f64,
    /// Latency of successful operations; `None` if there were none.
    pub latency: Option<LatencySummary>,
}

#[derive(Default)]
struct WorkerResult {
    latencies_ns: Vec<u64>,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

fn error_kind(e: &Error) -> String {
    match e {
        Error::Api(a) => a.status.to_string(),
        Error::Transport { .. } => "transport".into(),
        Error::Decode { .. } => "decode".into(),
        Error::NotLoggedIn => "not_logged_in".into(),
        Error::InvalidUrl { .. } => "invalid_url".into(),
    }
}

/// Run `workload` on `client` as `settings` say and report.
pub async fn run<W: Workload>(workload: Arc<W>, client: Client, settings: Settings) -> Report {
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let end = measure_from + settings.duration;
    let workers: Vec<_> = match settings.rate {
        Some(rate) => vec![tokio::spawn(open_loop(
            workload.clone(),
            client.clone(),
            rate,
            settings.concurrency.max(1),
            (start, measure_from, end),
        ))],
        None => (0..settings.concurrency.max(1))
            .map(|_| {
                let workload = workload.clone();
                let client = client.clone();
                tokio::spawn(worker(workload, client, measure_from, end))
            })
            .collect(),
    };

    let mut latencies = Vec::new();
    let mut errors_by_kind = BTreeMap::new();
    let mut first_error = None;
    for w in workers {
        let r = match w.await {
            Ok(r) => r,
            Err(join) => WorkerResult {
                errors: BTreeMap::from([("panic".to_owned(), 1)]),
                first_error: Some(format!("a worker panicked: {join}")),
                ..Default::default()
            },
        };
        latencies.extend(r.latencies_ns);
        for (k, n) in r.errors {
            *errors_by_kind.entry(k).or_insert(0) += n;
        }
        first_error = first_error.or(r.first_error);
    }

    let errors: u64 = errors_by_kind.values().sum();
    let requests = latencies.len() as u64 + errors;
    let secs = settings.duration.as_secs_f64();
    Report {
        workload: workload.name(),
        url: client.base_url().to_owned(),
        concurrency: settings.concurrency.max(1),
        target_rate: settings.rate,
        warmup_secs: settings.warmup.as_secs_f64(),
        duration_secs: secs,
        requests,
        errors,
        errors_by_kind,
        first_error,
        throughput_rps: if secs > 0.0 {
            requests as f64 / secs
        } else {
            0.0
        },
        latency: LatencySummary::from_samples(latencies),
    }
}

async fn worker<W: Workload>(
    workload: Arc<W>,
    client: Client,
    measure_from: Instant,
    end: Instant,
) -> WorkerResult {
    let mut out = WorkerResult::default();
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let Ok(result) = tokio::time::timeout_at(end, workload.run_one(&client)).await else {
            break; // cut off by the deadline: not counted
        };
        let elapsed = t0.elapsed();
        if t0 < measure_from {
            continue;
        }
        out.record(result, elapsed);
    }
    out
}

impl WorkerResult {
    fn record(&mut self, result: Result<(), Error>, elapsed: Duration) {
        match result {
            Ok(()) => self
                .latencies_ns
                .push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)),
            Err(e) => {
                *self.errors.entry(error_kind(&e)).or_insert(0) += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }
}

/// Open loop: step k is due at `start + k / rate`; it starts then, or as soon as one of the
/// `in_flight` slots is free, and its latency runs from when it was due.
async fn open_loop<W: Workload>(
    workload: Arc<W>,
    client: Client,
    rate: f64,
    in_flight: usize,
    (start, measure_from, end): (Instant, Instant, Instant),
) -> WorkerResult {
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut steps = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(Ok(slot)) = tokio::time::timeout_at(end, slots.clone().acquire_owned()).await else {
            break;
        };
        let (workload, client) = (workload.clone(), client.clone());
        steps.spawn(async move {
            let result = tokio::time::timeout_at(end, workload.run_one(&client)).await;
            drop(slot);
            // Cut off by the deadline, or due during the warm-up: not counted.
            let result = result.ok().filter(|_| due >= measure_from)?;
            Some((result, due.elapsed()))
        });
    }
    let mut out = WorkerResult::default();
    while let Some(step) = steps.join_next().await {
        if let Ok(Some((result, elapsed))) = step {
            out.record(result, elapsed);
        }
    }
    out
}

impl Report {
    /// Human-readable summary, a few lines.
    pub fn to_text(&self) -> String {
        let load = match self.target_rate {
            Some(r) => format!("{r} per second due, at most {} in flight", self.concurrency),
            None => format!("concurrency {}", self.concurrency),
        };
        let mut s = format!(
            "{} against {}: {load}, {:.1} s measured after {:.1} s warm-up\n",
            self.workload, self.url, self.duration_secs, self.warmup_secs
        );
        s += &format!(
            "requests    {} ({} errors)\nthroughput  {:.1} req/s\n",
            self.requests, self.errors, self.throughput_rps
        );
        match &self.latency {
            Some(l) => {
                s += &format!(
                    "latency     p50 {:.3} ms  p95 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (mean {:.3} ms)\n",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.mean_ms
                )
            }
            None => s += "latency     no successful requests\n",
        }
        if self.errors > 0 {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            s += &format!("errors      {}\n", kinds.join(", "));
            if let Some(e) = &self.first_error {
                s += &format!("first error {e}\n");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Succeeds on even calls, fails (as a transport-less local error) on odd ones.
    struct Alternate(AtomicU64);

    impl Workload for Alternate {
        fn name(&self) -> &'static str {
            "alternate"
        }
        async fn run_one(&self, _client: &Client) -> Result<(), Error> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.0.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                Ok(())
            } else {
                Err(Error::NotLoggedIn)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_for_the_duration_and_counts_only_the_measured_window() {
        let client = Client::new("http://127.0.0.1:9").unwrap();
        let settings = Settings {
            concurrency: 2,
            rate: None,
            warmup: Duration::from_millis(100),
            duration: Duration::from_secs(1),
        };
        let r = run(Arc::new(Alternate(AtomicU64::new(0))), client, settings).await;
        // Two workers, 5 ms per step, 1 s measured: 200 steps each, the warm-up excluded.
        assert!((395..=400).contains(&r.requests), "{}", r.requests);
        assert_eq!(
            r.errors_by_kind.get("not_logged_in").copied(),
            Some(r.errors)
        );
        assert!(r.errors.abs_diff(r.requests - r.errors) <= 2);
        assert!((r.throughput_rps - r.requests as f64).abs() < 1e-9);
        let l = r.latency.unwrap();
        assert!(l.p50_ms >= 5.0 && l.max_ms < 6.0, "{l:?}");
        assert!(r.to_text().contains("not_logged_in"));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_keeps_the_rate_and_counts_waiting_for_a_slot() {
        let client = Client::new("http://127.0.0.1:9").unwrap();
        // 100 steps/s of 5 ms each with one slot: never waits; 1 s measured = 100 steps.
        let settings = Settings {
            concurrency: 1,
            rate: Some(100.0),
            warmup: Duration::from_millis(100),
            duration: Duration::from_secs(1),
        };
        let r = run(
            Arc::new(Alternate(AtomicU64::new(0))),
            client.clone(),
            settings,
        )
        .await;
        assert!((99..=101).contains(&r.requests), "{}", r.requests);
        assert_eq!(r.target_rate, Some(100.0));
        let l = r.latency.unwrap();
        assert!(l.p50_ms >= 5.0 && l.max_ms < 6.0, "{l:?}");
        // 400 steps/s of 5 ms with one slot: the server (200/s) falls behind, and the latency
        // shows the queue (it grows through the run) instead of the generator slowing down.
        let settings = Settings {
            rate: Some(400.0),
            ..settings
        };
        let r = run(Arc::new(Alternate(AtomicU64::new(0))), client, settings).await;
        // Step k starts at 5k ms when due at 2.5k ms: counted are those due after the warm-up
        // (k >= 40) and done before the end (k <= 219).
        assert!((175..=185).contains(&r.requests), "{}", r.requests);
        let l = r.latency.unwrap();
        assert!(l.max_ms > 100.0, "{l:?}");
    }
}
