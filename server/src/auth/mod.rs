//! Authentication and authorization: tokens, passwords, the revocation list, login limits, and
//! the `AuthUser` extractor every protected handler takes.

pub mod known_users;
pub mod limiter;
pub mod password;
pub mod policy;
pub mod revocation;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::{Role, StoreError};
use known_users::UserFacts;
use tokens::{Claims, TokenError};

/// The authenticated caller, from a valid, unrevoked access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
    pub claims: Claims,
}

impl AuthUser {
    /// The caller as the domain layer decides access for it.
    pub fn caller(&self) -> crate::domain::access::Caller {
        crate::domain::access::Caller {
            user_id: self.user_id,
            org_id: self.org_id,
            role: self.role,
        }
    }

    /// Succeeds when the caller has one of `roles`; otherwise 403.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the role {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(&[Role::Admin])
    }
}

/// Extract the bearer token from an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl AppState {
    /// Verify a token string: signature, claims, expiry, the revocation list, and that its
    /// user exists, is active, and belongs to the token's organisation with the token's role
    /// (the database's answer, cached: see `known_users`). A token signed with the real key for
    /// anyone else is refused like a forged one.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, ApiError> {
        let claims = self.tokens.verify(token).map_err(|e| match e {
            TokenError::Expired => ApiError::TokenExpired,
            TokenError::Invalid => ApiError::Unauthorized("the access token is invalid".into()),
        })?;
        // `exp` is the first second the token is no longer valid (RFC 7519 4.1.4).
        if claims.exp <= chrono::Utc::now().timestamp() {
            return Err(ApiError::TokenExpired);
        }
        if self.revocations.is_revoked(&claims) {
            return Err(ApiError::Unauthorized(
                "the access token has been revoked".into(),
            ));
        }
        let facts = match self.revocations.known.get(claims.sub) {
            Some(facts) => facts,
            None => {
                let facts = match self.store.get_user(claims.sub).await {
                    Ok(u) => Some(UserFacts {
                        org: u.org_id,
                        role: u.role(),
                        active: u.active,
                    }),
                    Err(StoreError::NotFound) => None,
                    Err(e) => return Err(e.into()),
                };
                self.revocations.known.put(claims.sub, facts);
                facts
            }
        };
        let valid = facts.is_some_and(|f| f.active && f.org == claims.org && f.role == claims.role);
        if !valid {
            return Err(ApiError::Unauthorized(
                "the access token is not valid for any active user".into(),
            ));
        }
        Ok(AuthUser {
            user_id: claims.sub,
            org_id: claims.org,
            role: claims.role,
            claims,
        })
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Verified earlier in this request, from this request's own header (the idempotency
        // layer authenticates before it claims a key); extensions are only set by the server.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <token>".into())
        })?;
        let token = header.to_str().ok().and_then(bearer).ok_or_else(|| {
            ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
        })?;
        state.authenticate(token).await
    }
}
