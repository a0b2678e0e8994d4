//! Logs (tracing: pretty on a terminal, JSON otherwise), optional OpenTelemetry export, and the
//! Prometheus metrics registry.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
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
    pub sync_changes: IntCounter,
    pub sync_remote_catch_ups: IntCounter,
    pub projection_rows: IntCounter,
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
        let _ = registry.register(Box::new(http_requests.clone()));
        let _ = registry.register(Box::new(http_duration.clone()));
        let _ = registry.register(Box::new(sync_connections.clone()));
        let _ = registry.register(Box::new(sync_documents.clone()));
        let _ = registry.register(Box::new(sync_changes.clone()));
        let _ = registry.register(Box::new(sync_remote_catch_ups.clone()));
        let _ = registry.register(Box::new(projection_rows.clone()));
        Self {
            registry,
            http_requests,
            http_duration,
            sync_connections,
            sync_documents,
            sync_changes,
            sync_remote_catch_ups,
            projection_rows,
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

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
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
