//! `/v1/auth`: login, refresh (rotating), logout.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::Json;
use crate::audit::Target;
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::store::{RefreshTokenRecord, StoreError, UserRecord};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// The client's address (behind a trusted proxy, the one it forwarded for), when the server
/// was started with connect info.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<super::middleware::ClientIp>()
                .map(|c| c.0),
        ))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "admin@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    /// Always "Bearer".
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; exchange at `/v1/auth/refresh`. Rotated on every use.
    pub refresh_token: String,
}

const BAD_CREDENTIALS: &str = "invalid email or password";

/// Log in with email and password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenPair>> {
    let email = req.email.trim().to_lowercase();
    if email.is_empty() {
        // No account has an empty email (and "" names an address's own throttle counter).
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    // Counted before the hash runs: concurrent guesses cannot all pass while the first ones hash.
    let attempt = match state
        .limiter
        .begin(state.store.as_ref(), &email, ip)
        .await?
    {
        Ok(a) => a,
        Err(wait) => {
            return Err(ApiError::TooManyRequests {
                retry_after_secs: wait,
            })
        }
    };
    let user = match state.store.get_user_by_email(&email).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let ok = match state.hasher.verify(req.password, phc).await {
        Ok(ok) => ok,
        Err(e) => {
            // Not checked (the hasher was busy): it must not count against the owner, or a storm
            // from elsewhere would lock them out through their retries.
            state.limiter.abandon(state.store.as_ref(), attempt).await?;
            return Err(e.into());
        }
    };
    let user = match user {
        Some(u) if ok && u.active => u,
        other => {
            // Already counted by `begin`.
            if let Some(u) = other {
                state
                    .audit_as(
                        Some(u.org_id),
                        Some(u.id),
                        "auth.login_failed",
                        None,
                        json!({ "ip": ip }),
                    )
                    .await?;
            }
            return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
        }
    };
    state
        .limiter
        .succeeded(state.store.as_ref(), attempt)
        .await?;
    let pair = issue_pair(&state, &user, Uuid::now_v7()).await?;
    state
        .audit_as(
            Some(user.org_id),
            Some(user.id),
            "auth.login",
            None,
            json!({ "ip": ip }),
        )
        .await?;
    Ok(Json(pair))
}

/// Mint an access token and a refresh token in `family`.
async fn issue_pair(state: &AppState, user: &UserRecord, family: Uuid) -> ApiResult<TokenPair> {
    let now = Utc::now();
    let iat = state.revocations.issue_time(user.id, now);
    let (access_token, _) = state
        .tokens
        .issue(user.id, user.org_id, user.role(), family, iat);
    let (refresh_token, hash) = new_refresh_token();
    let ttl =
        chrono::Duration::from_std(state.config.refresh_token_ttl).map_err(anyhow::Error::from)?;
    state
        .store
        .insert_refresh_token(&RefreshTokenRecord {
            id: Uuid::now_v7(),
            token_hash: hash,
            family_id: family,
            user_id: user.id,
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
            revoked_at: None,
        })
        .await?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_token,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchange a refresh token for a new pair. Reusing an already-rotated refresh token revokes its
/// whole family (a stolen copy was probably used).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem)))]
async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenPair>> {
    let invalid = || ApiError::Unauthorized("the refresh token is invalid or expired".into());
    let rec = match state
        .store
        .get_refresh_token(&hash_refresh_token(&req.refresh_token))
        .await
    {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(invalid()),
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    if rec.revoked_at.is_some() || rec.expires_at <= now {
        return Err(invalid());
    }
    if !state.store.use_refresh_token(rec.id, now).await? {
        state
            .store
            .revoke_refresh_family(rec.family_id, now)
            .await?;
        // Both holders of the family (the owner and whoever copied the refresh token) lose
        // their access tokens and sync sockets now, not when those expire.
        state
            .revocations
            .revoke_family(state.store.as_ref(), rec.family_id, state.tokens.access_ttl)
            .await?;
        let user = state.store.get_user(rec.user_id).await?;
        state
            .audit_as(
                Some(user.org_id),
                Some(user.id),
                "auth.refresh_reuse_detected",
                Some(Target::new("token_family", rec.family_id)),
                json!({}),
            )
            .await?;
        tracing::warn!(user_id = %user.id, family = %rec.family_id, "refresh token reuse: family revoked");
        return Err(invalid());
    }
    let user = state.store.get_user(rec.user_id).await?;
    if !user.active {
        return Err(invalid());
    }
    Ok(Json(issue_pair(&state, &user, rec.family_id).await?))
}

/// Log out: the access token is revoked until it expires and its refresh family is revoked.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    state
        .revocations
        .revoke_token(state.store.as_ref(), &user.claims)
        .await?;
    state
        .store
        .revoke_refresh_family(user.claims.sid, Utc::now())
        .await?;
    state.audit(&user, "auth.logout", None, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}
