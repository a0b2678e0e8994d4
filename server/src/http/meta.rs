//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document and its page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ApiResult};
use super::extract::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    status: &'static str,
    database: &'static str,
}

/// Readiness: the database answers. 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = super::error::Problem)))]
async fn ready(State(state): State<AppState>) -> ApiResult<Json<Ready>> {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => Ok(Json(Ready {
            status: "ready",
            database: state.store.backend(),
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            Err(ApiError::Unavailable("the database is unreachable".into()))
        }
        Err(_) => Err(ApiError::Unavailable(
            "the database did not answer in time".into(),
        )),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .sync_connections
        .set(state.hub.connections() as i64);
    state
        .metrics
        .sync_documents
        .set(state.hub.loaded_documents() as i64);
    state.metrics.mirror_hub(crate::telemetry::HubTotals {
        changes_stored: state.hub.changes_stored(),
        remote_catch_ups: state.hub.remote_hints(),
        projection_rows: state.hub.projection_rows_written(),
    });
    state.metrics.set_pools(&state.store.pool_stats());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(state.store.backend()),
    )
        .into_response()
}

/// `/openapi.json` and `/docs`, built once from the generated spec.
pub fn spec_routes(spec: utoipa::openapi::OpenApi, docs: DocsPage) -> Router<AppState> {
    let json = Arc::new(spec.to_json().unwrap_or_else(|_| "{}".into()));
    let docs = Arc::new(docs);
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.as_str().to_owned(),
                    )
                }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let docs = docs.clone();
                async move { docs.response() }
            }),
        )
}

/// A self-contained API reference page rendered from the OpenAPI document: no scripts, no
/// network, CSP pinned to the hash of its one style block.
pub struct DocsPage {
    html: String,
    csp: String,
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;margin-top:2rem}.op{margin:.8rem 0;padding:.5rem .8rem;\
border-left:4px solid #c33;background:#fafafa}.m{font-weight:700;text-transform:uppercase;display:inline-block;\
width:4.5rem}code{font-size:14px}.d{color:#555;margin:.2rem 0 0 4.5rem}";

impl DocsPage {
    pub fn new(spec: &utoipa::openapi::OpenApi) -> Self {
        let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (path, item) in &spec.paths.paths {
            let ops = [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first().cloned())
                    .unwrap_or_else(|| "other".into());
                let summary = op
                    .summary
                    .clone()
                    .or_else(|| op.description.clone())
                    .unwrap_or_default();
                let mut responses: Vec<_> = op.responses.responses.keys().cloned().collect();
                responses.sort();
                by_tag.entry(tag).or_default().push(format!(
                    "<div class=op><span class=m>{method}</span><code>{}</code><div class=d>{}<br>Responses: {}</div></div>",
                    escape(path),
                    escape(&summary),
                    escape(&responses.join(", "))
                ));
            }
        }
        let mut body = String::new();
        for (tag, ops) in by_tag {
            body.push_str(&format!("<h2>{}</h2>", escape(&tag)));
            for op in ops {
                body.push_str(&op);
            }
        }
        let html = format!(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>FireMode API</title>\
             <style>{STYLE}</style></head><body><h1>FireMode API</h1><p>{}</p>\
             <p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1). \
             Authenticate with <code>Authorization: Bearer &lt;access_token&gt;</code> from \
             <code>POST /v1/auth/login</code>. Errors are <code>application/problem+json</code>.</p>{body}</body></html>",
            escape(spec.info.description.as_deref().unwrap_or(""))
        );
        let hash =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        let csp = format!("default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'");
        Self { html, csp }
    }

    fn response(&self) -> Response {
        let mut res = (StatusCode::OK, Html(self.html.clone())).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.csp) {
            res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
        res
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
