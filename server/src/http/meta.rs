//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document and its page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
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
    /// Projection writes that failed since start, and the last one: results and defects of that
    /// session are stale until its next change re-projects it. Informational; readiness is the
    /// database's.
    projection_failures: u64,
    #[schema(value_type = Option<Object>)]
    last_projection_failure: Option<crate::projection::ProjectionFailure>,
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
            projection_failures: state.hub.projection_failures(),
            last_projection_failure: state.hub.last_projection_failure(),
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

/// Prometheus metrics (text exposition format). With `metrics_token` set it needs
/// `Authorization: Bearer <metrics_token>`; with `metrics_listen` set it is served only there
/// (404 on the API port).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, body = super::error::Problem), (status = 404, body = super::error::Problem)))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.config.metrics_listen.is_some() {
        return ApiError::NotFound.into_response();
    }
    metrics_response(&state, &headers)
}

/// `GET /metrics` on the separate metrics listener.
async fn metrics_only(State(state): State<AppState>, headers: HeaderMap) -> Response {
    metrics_response(&state, &headers)
}

/// The metrics, if the request may see them.
fn metrics_response(state: &AppState, headers: &HeaderMap) -> Response {
    if let Some(expected) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer)
            .unwrap_or_default();
        // Digests compared, so the time taken says nothing about how much of the token matched.
        if Sha256::digest(given.as_bytes()) != Sha256::digest(expected.expose().as_bytes()) {
            return ApiError::Unauthorized(
                "/metrics needs Authorization: Bearer <metrics_token>".into(),
            )
            .into_response();
        }
    }
    state
        .metrics
        .sync_connections
        .set(state.hub.connections() as i64);
    state
        .metrics
        .sync_documents
        .set(state.hub.loaded_documents() as i64);
    state
        .metrics
        .projections_pending
        .set(state.hub.projections_pending() as i64);
    state.metrics.mirror_hub(crate::telemetry::HubTotals {
        changes_stored: state.hub.changes_stored(),
        remote_catch_ups: state.hub.remote_hints(),
        projection_rows: state.hub.projection_rows_written(),
        projection_failures: state.hub.projection_failures(),
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

/// The router of the separate metrics listener (`metrics_listen`): `GET /metrics` only.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_only))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
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
        .route(
            "/docs/app.js",
            get(|| async { docs_asset("text/javascript; charset=utf-8", DOCS_JS) }),
        )
        .route(
            "/docs/docs.css",
            get(|| async { docs_asset("text/css; charset=utf-8", DOCS_CSS) }),
        )
}

/// The API reference page, rendered from the OpenAPI document so that it reads without
/// scripts; its module (`docs_ui/app.js`, embedded) adds each operation's fields, responses
/// and a form to try it against this server. Nothing is fetched from elsewhere: the CSP allows
/// only this origin.
pub struct DocsPage {
    html: String,
}

const DOCS_JS: &str = include_str!("docs_ui/app.js");
const DOCS_CSS: &str = include_str!("docs_ui/docs.css");
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                        img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

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
                    "<div class=op data-op=\"{}\"><span class=m>{method}</span><code>{}</code><div class=d>{}<br>Responses: {}</div></div>",
                    escape(op.operation_id.as_deref().unwrap_or("")),
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
             <meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <link rel=stylesheet href=\"/docs/docs.css\"><script type=module src=\"/docs/app.js\"></script>\
             </head><body><h1>FireMode API</h1><p>{}</p>\
             <p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1). \
             Authenticate with <code>Authorization: Bearer &lt;access_token&gt;</code> from \
             <code>POST /v1/auth/login</code> (or sign in below: the token stays in this page). \
             Errors are <code>application/problem+json</code>.</p>{body}</body></html>",
            escape(spec.info.description.as_deref().unwrap_or(""))
        );
        Self { html }
    }

    fn response(&self) -> Response {
        with_csp((StatusCode::OK, Html(self.html.clone())).into_response())
    }
}

fn with_csp(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    );
    res
}

/// An embedded asset of the docs page.
fn docs_asset(content_type: &'static str, body: &'static str) -> Response {
    with_csp(
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The generated OpenAPI document, finished in one place so that every operation follows the
/// same contract without repeating it in each `#[utoipa::path]`:
///
/// - `operationId`s from method and path, named after the resource (`listBuildings`,
///   `getBuilding`, `createBuildingAsset`, `importBuildingAssets`, `revokeUserTokens`):
///   utoipa's default is the handler's name, which repeats (`list`, `get`, `create`) and breaks
///   client generators;
/// - error responses (4xx, 5xx) as `application/problem+json` with the `Problem` schema, and a
///   `401` on every operation that takes a token;
/// - downloaded bodies (PDF, CSV, octet-stream) as `type: string, format: binary`;
/// - a description on every response (the status's reason phrase where none was written);
/// - `GET /v1/sync`, the WebSocket endpoint, which is not an axum route utoipa sees.
pub fn finish_spec(spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let Ok(mut doc) = serde_json::to_value(&spec) else {
        return spec;
    };
    finish_value(&mut doc);
    serde_json::from_value(doc).unwrap_or(spec)
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn finish_value(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let problem_ref = json!({ "$ref": "#/components/schemas/Problem" });
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        paths.insert("/v1/sync".into(), sync_path());
        for (path, item) in paths.iter_mut() {
            for method in METHODS {
                let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                    continue;
                };
                op.insert(
                    "operationId".into(),
                    Value::String(operation_id(method, path)),
                );
                let secured = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                let responses = op
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut();
                let Some(responses) = responses else { continue };
                if secured && !responses.contains_key("401") {
                    responses.insert(
                        "401".into(),
                        json!({ "description": "Missing, invalid, revoked or expired token (`unauthorized`, `token_expired`)" }),
                    );
                }
                for (status, response) in responses.iter_mut() {
                    let code: u16 = status.parse().unwrap_or(0);
                    let Some(response) = response.as_object_mut() else {
                        continue;
                    };
                    let empty = response
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(|d| d.trim().is_empty());
                    if empty {
                        let reason = axum::http::StatusCode::from_u16(code)
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Response");
                        response.insert("description".into(), Value::String(reason.into()));
                    }
                    if code >= 400 {
                        response.insert(
                            "content".into(),
                            json!({ "application/problem+json": { "schema": problem_ref.clone() } }),
                        );
                        continue;
                    }
                    if let Some(content) =
                        response.get_mut("content").and_then(Value::as_object_mut)
                    {
                        for (media, body) in content.iter_mut() {
                            // Downloads: generated clients should hand over bytes (a
                            // CSV report is a file to save, not a string to parse).
                            let binary = media == "application/pdf"
                                || media.starts_with("text/csv")
                                || media == "application/octet-stream"
                                || media.starts_with("image/")
                                || media.starts_with("video/");
                            if binary {
                                if let Some(body) = body.as_object_mut() {
                                    body.insert(
                                        "schema".into(),
                                        json!({ "type": "string", "format": "binary" }),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    super::vocabulary::link_pages(doc);
    super::vocabulary::allow_any(doc);
    super::vocabulary::add_enums(doc);
    super::vocabulary::add_examples(doc);
}

/// `GET /v1/sync`, described for readers of the document (its protocol is in
/// docs/protocol.md).
fn sync_path() -> serde_json::Value {
    serde_json::json!({ "get": {
        "tags": ["sync"],
        "summary": "The sync WebSocket (automerge-repo network protocol 1)",
        "description": "Upgrade to a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`) and \
            speak the automerge-repo network protocol, version 1, in CBOR binary frames: `join` \
            with senderId `<user id>:<device id>`, then `request`/`sync` per session document \
            (document id = the session's `document_url` without `automerge:`). The token is the \
            access token from `/v1/auth/login`, as `Authorization: Bearer` or, for browsers, \
            `?token=`. Close codes and the document schema: docs/protocol.md.",
        "parameters": [
            { "name": "token", "in": "query", "required": false,
              "description": "The access token, where a header cannot be set (browsers)",
              "schema": { "type": "string" } },
            { "name": "Authorization", "in": "header", "required": false,
              "description": "`Bearer <access token>` (or use `token`)",
              "schema": { "type": "string" } }
        ],
        "responses": {
            "101": { "description": "Switching Protocols: the socket speaks the sync protocol" },
            "400": { "description": "Not a WebSocket upgrade (`websocket_required`)" },
            "401": { "description": "Missing, invalid, revoked or expired token" }
        }
    }})
}

/// `operationId` from the method and the path: the path's words in camel case, a word followed
/// by a `{parameter}` in the singular, and a verb: `list`/`create` on a collection,
/// `get`/`update`/`replace`/`delete` on an item, `get` on a singular resource, and for `POST`
/// to an action (`/import`, `/resolve`, `/revoke-tokens`) the action itself.
pub fn operation_id(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1")
        .collect();
    let is_param = |s: &str| s.starts_with('{');
    let mut words: Vec<String> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if is_param(seg) {
            continue;
        }
        let before_param = segs.get(i + 1).is_some_and(|s| is_param(s));
        for (k, w) in seg.split('-').enumerate() {
            let last_part = k == seg.split('-').count() - 1;
            words.push(if before_param && last_part {
                singular(w)
            } else {
                w.to_owned()
            });
        }
    }
    let last = segs.last().copied().unwrap_or("");
    let item = is_param(last);
    let plural = !item && is_collection(last);
    let (verb, mut words) = match (method, item) {
        ("get", true) => ("get".to_owned(), words),
        ("patch", true) => ("update".to_owned(), words),
        ("put", true) => ("replace".to_owned(), words),
        ("delete", true) => ("delete".to_owned(), words),
        ("get", false) if plural => ("list".to_owned(), words),
        ("post", false) if plural => {
            if let Some(w) = words.last_mut() {
                *w = singular(w);
            }
            ("create".to_owned(), words)
        }
        ("post", false) => {
            // An action: its (first) word is the verb, the rest names what it acts on.
            let action = last.split('-').count();
            let mut action_words: Vec<String> = words.split_off(words.len().saturating_sub(action));
            let verb = if action_words.is_empty() {
                "post".to_owned()
            } else {
                action_words.remove(0)
            };
            words.extend(action_words);
            (verb, words)
        }
        (m, _) => (m.to_owned(), words),
    };
    let mut id = verb;
    for w in words.iter_mut() {
        let mut cs = w.chars();
        if let Some(first) = cs.next() {
            id.push(first.to_ascii_uppercase());
            id.push_str(cs.as_str());
        }
    }
    id
}

/// Collections (listed with GET, added to with POST): plural nouns, and `evidence`.
fn is_collection(seg: &str) -> bool {
    !seg.contains('-') && seg != "metrics" && (seg == "evidence" || seg.ends_with('s'))
}

fn singular(w: &str) -> String {
    match w {
        "evidence" | "tests" => w.to_owned(),
        _ => w.strip_suffix('s').unwrap_or(w).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::operation_id;

    #[test]
    fn operation_ids_are_named_after_resources() {
        for (method, path, id) in [
            ("get", "/v1/buildings", "listBuildings"),
            ("post", "/v1/buildings", "createBuilding"),
            ("get", "/v1/buildings/{id}", "getBuilding"),
            ("patch", "/v1/buildings/{id}", "updateBuilding"),
            ("delete", "/v1/buildings/{id}", "deleteBuilding"),
            ("get", "/v1/buildings/{id}/assets", "listBuildingAssets"),
            ("post", "/v1/buildings/{id}/assets", "createBuildingAsset"),
            (
                "post",
                "/v1/buildings/{id}/assets/import",
                "importBuildingAssets",
            ),
            (
                "get",
                "/v1/buildings/{id}/assets/{asset_id}",
                "getBuildingAsset",
            ),
            (
                "get",
                "/v1/buildings/{id}/compliance",
                "getBuildingCompliance",
            ),
            ("post", "/v1/users/{id}/revoke-tokens", "revokeUserTokens"),
            (
                "post",
                "/v1/rules/{code}/versions/{version}/deactivate",
                "deactivateRuleVersion",
            ),
            (
                "post",
                "/v1/tests/sessions/{id}/conflicts/resolve",
                "resolveTestsSessionConflicts",
            ),
            (
                "post",
                "/v1/tests/sessions/{id}/results",
                "createTestsSessionResult",
            ),
            (
                "get",
                "/v1/tests/sessions/{id}/evidence",
                "listTestsSessionEvidence",
            ),
            ("post", "/v1/evidence", "createEvidence"),
            ("get", "/v1/evidence/{id}/content", "getEvidenceContent"),
            ("post", "/v1/auth/login", "loginAuth"),
            ("post", "/v1/classify", "classify"),
            ("get", "/metrics", "getMetrics"),
            ("get", "/health", "getHealth"),
        ] {
            assert_eq!(operation_id(method, path), id, "{method} {path}");
        }
    }
}
