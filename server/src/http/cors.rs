//! CORS for browser clients (a tablet app in a web view, a back-office page on another origin).
//!
//! Only origins listed in `cors_allowed_origins` get CORS headers; a request from any other
//! origin is served exactly as if CORS did not exist (the browser then withholds the answer
//! from the page). Credentials are off: the API authenticates with bearer tokens, never
//! cookies, so `Access-Control-Allow-Credentials` is never sent. Preflights (`OPTIONS` with
//! `Access-Control-Request-Method`) from a listed origin are answered here, 204, before
//! routing.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// Request headers a page may send: the ones the API reads.
const ALLOW_HEADERS: &str =
    "authorization, content-type, idempotency-key, content-digest, repr-digest, x-request-id";
/// Response headers a page may read besides the CORS-safelisted ones.
pub const EXPOSE_HEADERS: &str = "retry-after, x-request-id, location, etag, repr-digest, \
                                  idempotent-replayed, www-authenticate, content-disposition";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let allowed = &state.config.cors_allowed_origins;
    if allowed.is_empty() {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| allowed.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(&o).ok());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = match (&origin, preflight) {
        (Some(_), true) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE),
            );
            res
        }
        (Some(_), false) => {
            let mut res = next.run(req).await;
            res.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
            res
        }
        (None, _) => next.run(req).await,
    };
    let h = res.headers_mut();
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    // The answer depends on the Origin header whenever CORS is configured: caches must key
    // on it.
    h.append(header::VARY, HeaderValue::from_static("origin"));
    res
}
