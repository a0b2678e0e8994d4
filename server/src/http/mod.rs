//! The HTTP layer: one router per resource, shared middleware, problem+json errors.

pub mod auth;
pub mod buildings;
pub mod compliance;
pub mod console;
mod cors;
pub mod csv_upload;
pub mod defects;
pub mod early;
pub mod error;
pub mod events;
pub mod evidence;
pub mod extract;
pub mod idempotency;
pub mod meta;
pub mod middleware;
pub mod notices;
pub mod pagination;
pub mod records;
pub mod reference_values;
pub mod rules;
pub mod schedule;
pub(crate) mod schedule_cache;
mod session_diff;
mod session_doc;
mod session_history;
pub mod sessions;
mod sync;
pub mod users;
pub mod vocabulary;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;
use error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FireMode API",
        description = "AS 1851 routine-service compliance: auth, buildings, rules, test sessions, \
                       evidence, defects, reports. Errors are RFC 9457 problem+json.",
        version = env!("CARGO_PKG_VERSION")
    ),
    components(schemas(error::Problem)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// All API routes with their OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(buildings::router())
        .merge(reference_values::router())
        .merge(compliance::router())
        .merge(schedule::router())
        .merge(records::router())
        .merge(rules::router())
        .merge(sessions::router())
        .merge(defects::router())
        .merge(notices::router())
        .merge(evidence::router())
        .merge(events::router())
}

/// The OpenAPI document for the routes this server serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    meta::finish_spec(api_routes().into_openapi())
}

/// The complete application router.
pub fn app(state: AppState) -> Router {
    let (router, spec) = api_routes().split_for_parts();
    let spec = meta::finish_spec(spec);
    let docs = meta::DocsPage::new(&spec);
    router
        .merge(meta::spec_routes(spec, docs))
        .route("/v1/sync", axum::routing::get(sync::upgrade))
        // The web console (not in the OpenAPI: a page and its files, not API).
        .merge(console::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_json_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cors::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// `listener`, with Nagle's algorithm off on every accepted socket. A sync message forwarded to
/// a tablet that had nothing to answer to our last one (so its TCP stack delays the ACK, up to
/// 40 ms on Linux) would otherwise wait for that ACK behind the previous small write. Sync
/// bench, 200 clients at 1 edit/s each: p99 edit-to-peer 32 ms with Nagle, 9 ms without.
pub fn without_nagle(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    fn no_delay(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    axum::serve::ListenerExt::tap_io(listener, no_delay as fn(&mut tokio::net::TcpStream))
}

/// Serve until `state.shutdown` is cancelled, then drain in-flight requests.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let app = app(state);
    // Nagle off (as `without_nagle`) and hyper's own 400/414/431 answers made problem+json.
    let listener = early::Listener(listener);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<early::PeerAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// Serve `GET /metrics` alone on `listener` (the `metrics_listen` address) until
/// `state.shutdown` is cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    axum::serve(listener, meta::metrics_app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = super::without_nagle(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (io, _) = listener.accept().await;
        assert!(io.nodelay().unwrap());
    }
}
