//! The back-office web console under `/console`: plain HTML, CSS and JavaScript modules from
//! `server/console/`, embedded in the binary (nothing fetched at run time, nothing to build).
//!
//! `/console/` is the one page (hash routing: `#/buildings/<id>`), `/console/assets/{file}` the
//! modules and the style sheet, each with `cache-control: no-cache` and an ETag (a hash of the
//! file, computed once at start) so a browser revalidates and an upgrade is picked up at once.
//! Console responses carry their own Content-Security-Policy: only this origin's scripts, styles,
//! images and connections, no inline code, no frames, no forms posting elsewhere.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::state::AppState;

/// The policy of every console response (overrides the API's `default-src 'none'`).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// A file of the console: its name under `/console/assets/` (`""` for the page itself), its
/// content type and its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            body: include_str!(concat!("../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every embedded file (index.html is the page at `/console/`).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("styles.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("live.js", JS),
    asset!("buildings.js", JS),
    asset!("building.js", JS),
    asset!("sessions.js", JS),
    asset!("session.js", JS),
    asset!("conflicts.js", JS),
    asset!("history.js", JS),
    asset!("defects.js", JS),
    asset!("users.js", JS),
];

/// The ETag of each asset, in `ASSETS` order (a quoted prefix of its SHA-256).
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, a)| a.name == name)
    {
        Some((i, _)) => serve(i, &headers),
        None => ApiError::NotFound.into_response(),
    }
}

/// `/` → 303 `/console/`, `/console` → 308 `/console/`, the page and its assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(page))
        .route("/console/assets/{file}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_distinct_names_and_etags() {
        let names: std::collections::BTreeSet<_> = ASSETS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), ASSETS.len());
        assert_eq!(etags().len(), ASSETS.len());
        assert!(etags().iter().all(|t| t.len() == 26 && t.starts_with('"')));
    }
}
