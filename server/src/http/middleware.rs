//! Per-request context: request id (task-local, for error bodies), a tracing span labelled by
//! route template, metrics, and one log line per request. The query string is never logged:
//! it may carry a token (`/v1/sync?token=`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::error::REQUEST_ID;
use crate::state::AppState;

pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http_request",
        http.request.method = %method,
        http.route = %route,
        request_id = %request_id,
    );
    let start = Instant::now();
    let res = REQUEST_ID
        .scope(request_id, next.run(req).instrument(span.clone()))
        .await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    state.metrics.observe_http(&method, &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            http.response.status_code = status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    res
}
