//! Per-request context: request id (task-local, for error bodies), a tracing span labelled by
//! route template, metrics, and one log line per request. The query string is never logged:
//! it may carry a token (`/v1/sync?token=`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::early::PeerAddr;
use super::error::REQUEST_ID;
use crate::config::Cidr;
use crate::state::AppState;

/// The client's address for throttling and logs, as [`client_ip`] judged it; set on every
/// request by [`observe`].
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The client's address: the socket's peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (each proxy appends
/// the address it received from, so entries left of an untrusted one may be forged).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        // An unparseable entry ends the chain: what lies left of it cannot be trusted either.
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.ip())
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        });
    let client = peer.map(|p| client_ip(p, req.headers(), &state.config.trusted_proxies));
    if let Some(ip) = client {
        req.extensions_mut().insert(ClientIp(ip));
    }
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
        client.address = client.map(tracing::field::display),
    );
    let start = Instant::now();
    let res = REQUEST_ID
        .scope(request_id, next.run(req).instrument(span.clone()))
        .await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    state.metrics.observe_http(&method, &route, status, elapsed);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    // Probes come every few seconds from load balancers and scrapers: a successful one is
    // logged at DEBUG so they do not drown the requests people make.
    let probe = matches!(route.as_str(), "/health" | "/ready" | "/metrics");
    span.in_scope(|| {
        if probe && res.status().is_success() {
            tracing::debug!(http.response.status_code = status, latency_ms, "request")
        } else {
            tracing::info!(http.response.status_code = status, latency_ms, "request")
        }
    });
    res
}
