//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): a client may retry a POST
//! safely. Keys are scoped per user and kept `idempotency_ttl` (24 h).
//!
//! - What identifies a request: SHA-256 over the method, the path (with query) and the body.
//!   Same key + same request replays the stored status and body with `Idempotent-Replayed:
//!   true`; same key + another request is 422 `idempotency_key_reused`; same key while the
//!   first request still runs is 409 `in_flight` (retryable).
//! - What is stored: 2xx, and 4xx other than 401, 408, 409 and 429 (those may succeed on a
//!   retry). A 5xx releases the key so a retry runs again: replaying a failure forever would
//!   turn a passing outage into a permanent one.
//! - A claim whose process died (or whose client hung up mid-handler) stays `in_flight` until
//!   it is `idempotency_stale_after` old (5 min); then the same request may take it over.
//!
//! JSON routes get this from the `layer` middleware, which buffers the body (up to the JSON
//! limit) to hash it. The multipart evidence upload is streamed, so its handler computes its
//! own fingerprint and calls `begin` / `Claim::finish` itself.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::idempotency::{ClaimOutcome, NewClaim, StoredResponse};
use crate::store::Store;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Routes that refuse a POST without a key.
const REQUIRED: &[&str] = &["/v1/tests/sessions/{id}/results"];
/// Routes whose handlers apply idempotency themselves (streamed bodies).
const HANDLED_BY_ROUTE: &[&str] = &["/v1/evidence"];
/// Unauthenticated routes: there is no user to scope a key to.
const EXEMPT: &[&str] = &["/v1/auth/login", "/v1/auth/refresh"];

const MAX_KEY_LEN: usize = 255;
/// How often expired keys are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(10 * 60);

/// The request's key, if any. Accepts the draft's quoted sf-string form and a bare token.
pub fn key_from_headers(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or("").trim();
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if key.is_empty()
        || key.len() > MAX_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
    {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1-{MAX_KEY_LEN} visible ASCII characters (a UUID is a good choice)"),
        ));
    }
    Ok(Some(key.to_owned()))
}

pub fn key_required() -> ApiError {
    ApiError::bad_request(
        "idempotency_key_required",
        "this endpoint needs an Idempotency-Key header (e.g. a random UUID, reused on retries)",
    )
}

/// SHA-256 over the parts that identify a request. Every part is length-prefixed, so no two
/// different sequences of parts hash alike.
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new(method: &Method, path: &str) -> Self {
        let mut f = Self(Sha256::new());
        f.part(method.as_str().as_bytes());
        f.part(path.as_bytes());
        f
    }

    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// What to do after trying to claim a key.
pub enum Begin {
    /// Run the request, then `Claim::finish`.
    Execute(Claim),
    /// Answer with this (a replay, or a 409/422 problem).
    Respond(Response),
}

/// An in-flight claim on a key, owned by one request.
pub struct Claim {
    user_id: Uuid,
    key: String,
    claim_id: Uuid,
}

/// Claim `key` for `user_id` and a request with fingerprint `hash`.
pub async fn begin(
    state: &AppState,
    user_id: Uuid,
    key: String,
    hash: [u8; 32],
) -> ApiResult<Begin> {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(state.config.idempotency_ttl)
        .unwrap_or(chrono::Duration::hours(24));
    let stale = chrono::Duration::from_std(state.config.idempotency_stale_after)
        .unwrap_or(chrono::Duration::minutes(5));
    let outcome = state
        .store
        .claim_idempotency_key(&NewClaim {
            user_id,
            key: &key,
            request_hash: &hash,
            now,
            expires_at: now + ttl,
            stale_before: now - stale,
        })
        .await?;
    Ok(match outcome {
        ClaimOutcome::Claimed(claim_id) => Begin::Execute(Claim {
            user_id,
            key,
            claim_id,
        }),
        ClaimOutcome::Replay(stored) => Begin::Respond(replay(stored)),
        ClaimOutcome::InFlight => Begin::Respond(
            ApiError::conflict(
                "in_flight",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into_response(),
        ),
        ClaimOutcome::Mismatch => Begin::Respond(
            ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request; use a new key",
            )
            .into_response(),
        ),
    })
}

/// Whether a response is kept for replay (see the module docs).
pub fn storable(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error() && !matches!(status.as_u16(), 401 | 408 | 409 | 429))
}

impl Claim {
    /// Keep the response for replay when `storable`, otherwise free the key for a retry.
    pub async fn finish(
        self,
        state: &AppState,
        status: StatusCode,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let result = if storable(status) {
            let stored = StoredResponse {
                status: status.as_u16(),
                content_type: content_type.map(str::to_owned),
                body: body.to_vec(),
            };
            state
                .store
                .complete_idempotency_key(self.user_id, &self.key, self.claim_id, &stored)
                .await
                .map(|ours| {
                    if !ours {
                        tracing::warn!("idempotency claim was taken over before it completed");
                    }
                })
        } else {
            state
                .store
                .release_idempotency_key(self.user_id, &self.key, self.claim_id)
                .await
        };
        // The response still goes out; the claim stays in flight until it goes stale.
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record the idempotency outcome");
        }
    }

    /// Free the key without storing anything (the request failed before it changed state).
    pub async fn release(self, state: &AppState) {
        if let Err(e) = state
            .store
            .release_idempotency_key(self.user_id, &self.key, self.claim_id)
            .await
        {
            tracing::error!(error = %e, "cannot release an idempotency key");
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = (status, stored.body).into_response();
    let h = res.headers_mut();
    if let Some(ct) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        h.insert(CONTENT_TYPE, ct);
    }
    h.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    res
}

/// The middleware for JSON POST routes (see the module docs).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match apply(&state, req, next).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn apply(state: &AppState, req: Request, next: Next) -> ApiResult<Response> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        return Ok(next.run(req).await);
    };
    if EXEMPT.contains(&route.as_str()) || HANDLED_BY_ROUTE.contains(&route.as_str()) {
        return Ok(next.run(req).await);
    }
    // No valid token: let the handler answer 401 as usual; nothing is claimed or stored.
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .map(str::to_owned);
    let user = match token {
        Some(t) => state.authenticate(&t).await.ok(),
        None => None,
    };
    let Some(user) = user else {
        return Ok(next.run(req).await);
    };
    // The handler's `AuthUser` is this one: the token is verified once per request.
    let mut req = req;
    req.extensions_mut().insert(user.clone());
    let key = key_from_headers(req.headers());
    if matches!(key, Ok(None)) && !REQUIRED.contains(&route.as_str()) {
        return Ok(next.run(req).await);
    }
    // From here the answer may be ours: read the body first (it is hashed, and reading it
    // keeps the connection usable whatever the answer).
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, state.config.max_json_body).await else {
        let e = ApiError::PayloadTooLarge(
            "the request body is larger than this endpoint accepts".into(),
        );
        return Ok(closing(e.into_response()));
    };
    let Some(key) = key? else {
        return Err(key_required());
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut fp = Fingerprint::new(&parts.method, path);
    fp.part(&bytes);
    let claim = match begin(state, user.user_id, key, fp.finish()).await? {
        Begin::Execute(claim) => claim,
        Begin::Respond(res) => return Ok(res),
    };

    let res = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = res.status();
    if !storable(status) {
        claim.release(state).await;
        return Ok(res);
    }
    let (parts, body) = res.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            claim.release(state).await;
            return Err(ApiError::Internal(anyhow::anyhow!(
                "reading a response body: {e}"
            )));
        }
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    claim.finish(state, status, content_type, &body).await;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Mark a response as the last on its connection: sent when the request body was not read to
/// its end, so the client must not reuse the connection.
pub fn closing(mut res: Response) -> Response {
    res.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    res
}

/// Delete expired keys now and every `PURGE_EVERY` until shutdown.
pub fn spawn_purger(store: Arc<dyn Store>, shutdown: CancellationToken, tasks: &TaskTracker) {
    tasks.spawn(async move {
        loop {
            match store.purge_idempotency_keys(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(purged = n, "expired idempotency keys deleted"),
                Err(e) => tracing::warn!(error = %e, "purging idempotency keys failed; will retry"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(PURGE_EVERY) => {}
            }
        }
    });
}
