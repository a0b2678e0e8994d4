//! Logs (tracing: pretty on a terminal, JSON otherwise), optional OpenTelemetry export, and the
//! Prometheus metrics registry.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the OTLP pipeline alive; flushes spans on drop.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// `FIREMODE_LOG`, else `RUST_LOG`, else `info` with chatty dependencies at `warn`.
fn default_filter() -> EnvFilter {
    let given = std::env::var("FIREMODE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .filter(|s| !s.trim().is_empty());
    let directives = filter_directives(given.as_deref());
    EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("invalid log filter '{directives}' ({e}); using 'info'");
        EnvFilter::new(filter_directives(None))
    })
}

/// automerge opens an `info` span around every sync message and change load, and formats its
/// arguments (the whole change graph) into it: a fifth of the hub's CPU under sync load. It
/// stays at `warn` unless a filter names it.
fn filter_directives(given: Option<&str>) -> String {
    match given {
        None => "info,sqlx=warn,hyper=warn,automerge=warn".to_owned(),
        Some(f) if f.contains("automerge") => f.to_owned(),
        Some(f) => format!("{f},automerge=warn"),
    }
}

/// Install the global subscriber. OTLP export is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set; otherwise nothing is sent anywhere.
pub fn init(format: LogFormat) -> TelemetryGuard {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    let mut provider = None;
    let otel_layer = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let p = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("firemode")
                            .build(),
                    )
                    .build();
                let tracer = p.tracer("firemode");
                provider = Some(p);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("OpenTelemetry export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(default_filter())
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    TelemetryGuard { provider }
}

/// Per-server metrics (a registry per instance, so several servers in one test process do not
/// share counters). Labels are route templates, never raw paths or user ids.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub sync_connections: IntGauge,
    pub sync_documents: IntGauge,
    pub projections_pending: IntGauge,
    pub sync_changes: IntCounter,
    pub sync_remote_catch_ups: IntCounter,
    pub projection_rows: IntCounter,
    pub projection_failures: IntCounter,
    /// `firemode_db_pool_connections{pool, state}`: open connections, idle or in use.
    pub db_pool_connections: IntGaugeVec,
    pub db_pool_max: IntGaugeVec,
    /// Serialises bringing the mirrored counters up to the hub's totals: two scrapes at once
    /// would each add the same difference (the old over-count).
    mirror: std::sync::Mutex<()>,
}

/// Totals the hub counts itself, mirrored into Prometheus counters at each scrape.
pub struct HubTotals {
    pub changes_stored: u64,
    pub remote_catch_ups: u64,
    pub projection_rows: u64,
    pub projection_failures: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new_custom(Some("firemode".into()), None).unwrap_or_default();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ],
            ),
            &["method", "route"],
        )
        .expect("static metric definition");
        let sync_connections = IntGauge::new("sync_connections", "Open sync WebSocket connections")
            .expect("static metric definition");
        let sync_documents = IntGauge::new("sync_documents_loaded", "Session documents in memory")
            .expect("static metric definition");
        let projections_pending = IntGauge::new(
            "projections_pending",
            "Sessions queued for projection (each once however often it changed)",
        )
        .expect("static metric definition");
        let sync_changes = IntCounter::new(
            "sync_changes_stored_total",
            "Automerge changes committed by the sync hub",
        )
        .expect("static metric definition");
        let sync_remote_catch_ups = IntCounter::new(
            "sync_remote_catch_ups_total",
            "Loaded documents asked to catch up with changes other nodes stored (doorbells and sweeps)",
        )
        .expect("static metric definition");
        let projection_rows = IntCounter::new(
            "projection_rows_written_total",
            "Session item rows written by the projection (rows that changed, or all of a session)",
        )
        .expect("static metric definition");
        let projection_failures = IntCounter::new(
            "projection_failures_total",
            "Projection writes that failed (the session is re-projected at its next change or at the next start; /ready names the last one)",
        )
        .expect("static metric definition");
        let db_pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database connections open, by pool (writer, reader) and state (idle, in_use)",
            ),
            &["pool", "state"],
        )
        .expect("static metric definition");
        let db_pool_max = IntGaugeVec::new(
            Opts::new(
                "db_pool_max_connections",
                "Largest size of each database pool",
            ),
            &["pool"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(db_pool_connections.clone()));
        let _ = registry.register(Box::new(db_pool_max.clone()));
        let _ = registry.register(Box::new(http_requests.clone()));
        let _ = registry.register(Box::new(http_duration.clone()));
        let _ = registry.register(Box::new(sync_connections.clone()));
        let _ = registry.register(Box::new(sync_documents.clone()));
        let _ = registry.register(Box::new(projections_pending.clone()));
        let _ = registry.register(Box::new(sync_changes.clone()));
        let _ = registry.register(Box::new(sync_remote_catch_ups.clone()));
        let _ = registry.register(Box::new(projection_rows.clone()));
        let _ = registry.register(Box::new(projection_failures.clone()));
        Self {
            registry,
            http_requests,
            http_duration,
            sync_connections,
            sync_documents,
            projections_pending,
            sync_changes,
            sync_remote_catch_ups,
            projection_rows,
            projection_failures,
            db_pool_connections,
            db_pool_max,
            mirror: std::sync::Mutex::new(()),
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Bring the mirrored counters up to the hub's totals, one scrape at a time.
    pub fn mirror_hub(&self, totals: HubTotals) {
        let _one_at_a_time = self.mirror.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, total) in [
            (&self.sync_changes, totals.changes_stored),
            (&self.sync_remote_catch_ups, totals.remote_catch_ups),
            (&self.projection_rows, totals.projection_rows),
            (&self.projection_failures, totals.projection_failures),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    pub fn set_pools(&self, pools: &[crate::store::PoolStats]) {
        for p in pools {
            let idle = i64::from(p.idle.min(p.open));
            self.db_pool_connections
                .with_label_values(&[p.pool, "idle"])
                .set(idle);
            self.db_pool_connections
                .with_label_values(&[p.pool, "in_use"])
                .set(i64::from(p.open) - idle);
            self.db_pool_max
                .with_label_values(&[p.pool])
                .set(i64::from(p.max));
        }
    }

    /// The registry in text format, then the process metrics and the build info (standard
    /// names, without the `firemode_` prefix for the process ones, as Prometheus' own clients
    /// name them).
    pub fn render(&self, backend: &str) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        text.push_str(&build_info(backend));
        text.push_str(&process_metrics());
        text
    }
}

fn build_info(backend: &str) -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "# HELP firemode_build_info The running binary: version, build profile, database backend\n\
         # TYPE firemode_build_info gauge\n\
         firemode_build_info{{version=\"{}\",profile=\"{profile}\",backend=\"{backend}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Linux's USER_HZ: the unit of the CPU times in `/proc/<pid>/stat` (100 on every mainstream
/// architecture; the kernel scales to it whatever its internal tick rate).
const USER_HZ: f64 = 100.0;

/// `process_*` metrics read from `/proc/self` (Linux; nothing elsewhere).
fn process_metrics() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which is in parentheses and may contain spaces).
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        // rest[0] is field 3 (state): utime is field 14, stime 15, starttime 22, vsize 23.
        if let (Some(u), Some(s)) = (num(11), num(12)) {
            metric(
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, in seconds",
                (u + s) / USER_HZ,
            );
        }
        if let Some(v) = num(20) {
            metric(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes",
                v,
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(start), Some(boot)) = (num(19), boot) {
            metric(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds",
                boot + start / USER_HZ,
            );
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        if let Some(kib) = rss_kib {
            metric(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes",
                kib * 1024.0,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(
            "process_open_fds",
            "gauge",
            "Open file descriptors",
            fds.count() as f64,
        );
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let Some(max) = max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors",
            max,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::filter_directives;

    #[test]
    fn automerge_spans_stay_off_unless_named() {
        assert!(filter_directives(None).ends_with("automerge=warn"));
        assert_eq!(filter_directives(Some("debug")), "debug,automerge=warn");
        assert_eq!(
            filter_directives(Some("info,automerge=trace")),
            "info,automerge=trace"
        );
    }
}
